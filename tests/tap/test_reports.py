"""Report streams: the plan of calls, the flattening, and agreement with the ledger.

The sandbox computes its reports from its own journals; the flattened rows must agree
with those journals (`/_sandbox/truth/{tenant}/Journals`) to the cent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from tap_xero.reports import (
    Accounts,
    Call,
    add_months,
    balance_sheet_calls,
    budget_summary_calls,
    check_window,
    flatten,
    month_end,
    months_between,
    months_to_read,
    months_to_reread,
    parse_number,
    period_digests,
    profit_and_loss_calls,
    unlocked_from,
)

from tests.tap.xero_helpers import control, run_tap, start_sandbox, tap_config, truth

REPORT_STREAMS = {
    "profit_and_loss",
    "balance_sheet",
    "trial_balance",
    "bank_summary",
    "executive_summary",
    "budget_summary",
    "aged_receivables_by_contact",
    "aged_payables_by_contact",
}
START = date(2025, 10, 1)


# ---------------------------------------------------------------- the plan


def test_months_first_run_and_later_runs():
    today = date(2026, 11, 20)
    first = months_to_read(START, today, None, 3)
    assert first[0] == date(2025, 10, 1)
    assert first[-1] == date(2026, 11, 1)
    assert len(first) == 14
    # Later: the month open at the bookmark, and 3 closed ones before it.
    later = months_to_read(START, date(2026, 12, 3), date(2026, 11, 30), 3)
    assert later == [date(2026, m, 1) for m in range(8, 13)]
    # Never before start_date; a future bookmark (budgets) counts as today.
    assert months_to_read(date(2026, 10, 15), today, date(2027, 10, 31), 12)[0] == date(2026, 10, 1)
    assert months_to_read(None, today, None, 3)[0] == date(2025, 12, 1)


def test_report_history_bounds_the_first_run_not_later_ones():
    today = date(2026, 11, 20)
    bounded = months_to_read(date(2000, 1, 1), today, None, 3, history_months=24)
    assert bounded[0] == date(2024, 12, 1)
    assert len(bounded) == 24
    assert months_to_read(START, today, None, 3, history_months=24)[0] == START
    later = months_to_read(date(2000, 1, 1), date(2026, 12, 3), date(2026, 11, 30), 3, 24)
    assert later == [date(2026, m, 1) for m in range(8, 13)]


@pytest.mark.parametrize("count", [1, 2, 12, 13, 14, 25, 40])
def test_profit_and_loss_plan_covers_each_month_once_with_whole_months(count):
    last = date(2026, 11, 1)
    wanted = [
        date(last.year + (last.month - 1 - k) // 12, (last.month - 1 - k) % 12 + 1, 1)
        for k in range(count)
    ]
    calls = profit_and_loss_calls(wanted, ("accrual",))
    covered = [m for c in calls for m in c.months]
    assert sorted(covered) == sorted(wanted)  # each month once
    for call in calls:
        assert date.fromisoformat(call.params["toDate"]).day == 31  # whole earlier months
        assert int(call.params.get("periods", "0")) <= 12
    assert len(calls) <= math.ceil(count / 13) + 1
    assert len(profit_and_loss_calls(wanted, ("accrual", "cash"))) == 2 * len(calls)


def test_balance_sheet_and_budget_plans():
    wanted = [date(2025, m, 1) for m in range(1, 13)] + [date(2026, 1, 1)]
    calls = balance_sheet_calls(wanted, ("accrual", "cash"))
    assert len(calls) == 2  # 13 month ends in one call per basis
    assert calls[0].params == {"date": "2026-01-31", "timeframe": "MONTH", "periods": "12"}
    assert calls[1].params["paymentsOnly"] == "true"
    budget = budget_summary_calls([date(2026, 11, 1)])
    assert [c.params["date"] for c in budget] == ["2026-11-01"]
    assert len(budget[0].months) == 12


def test_a_lock_date_closes_the_months_that_end_on_or_before_it():
    assert unlocked_from(None) is None
    assert unlocked_from(date(2026, 6, 30)) == date(2026, 7, 1)
    assert unlocked_from(date(2026, 6, 15)) == date(2026, 6, 1)  # June still open after the 15th
    today = date(2026, 11, 20)
    assert check_window(date(2000, 1, 1), today, 24, None)[0] == date(2024, 12, 1)
    # Without start_date, a later run checks the year a first run read, no more.
    assert check_window(None, today, 24, None) == months_to_read(None, today, None, 3, 24)
    assert check_window(START, today, 24, date(2026, 6, 30)) == [
        date(2026, m, 1) for m in range(7, 12)
    ]
    # A month the last run checked and that is locked since is checked once more.
    window = check_window(START, today, 24, date(2026, 6, 30), [date(2026, 5, 1)])
    assert window[0] == date(2026, 5, 1)
    assert check_window(START, today, 24, date(2026, 11, 30)) == []  # all locked


def _figure(month: str, value: float, account: str = "a") -> dict[str, Any]:
    return {
        "report": "ProfitAndLoss",
        "basis": "accrual",
        "section": "Income",
        "account_id": account,
        "row_title": "Sales",
        "column": month,
        "period_end": f"{month}-28",
        "value": value,
        "value_text": f"{value:.2f}",
    }


def test_the_months_reread_start_at_the_first_whose_figures_changed():
    window = [date(2026, m, 1) for m in range(7, 12)]
    rows = [_figure(f"2026-{m:02d}", 10.0 * m) for m in range(7, 12)]
    before = period_digests(rows, window)
    assert months_to_reread(window, before, before) == []
    # A zero cell (an account shown because another month of the call moved) changes nothing.
    assert period_digests([*rows, _figure("2026-08", 0.0, "b")], window) == before
    changed = period_digests([*rows[:2], _figure("2026-09", 1.0), *rows[3:]], window)
    assert months_to_reread(window, changed, before) == window[2:]
    # A month the last run did not check (a new month, or no digests yet) counts as changed.
    assert months_to_reread(window, before, {}) == window
    new_month = [*window, date(2026, 12, 1)]
    assert months_to_reread(new_month, period_digests(rows, new_month), before) == [
        date(2026, 12, 1)
    ]


# ---------------------------------------------------------------- flattening


def _cell(value: str, account: str | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"Value": value}
    if account:
        cell["Attributes"] = [{"Id": "account", "Value": account}]
    return cell


def test_flatten_uses_header_titles_sections_and_account_attribute():
    body = {
        "Reports": [
            {
                "Rows": [
                    {
                        "RowType": "Header",
                        "Cells": [_cell(""), _cell("31 Oct 26"), _cell("30 Sep 26")],
                    },
                    {
                        "RowType": "Section",
                        "Title": "Income",
                        "Rows": [
                            {
                                "RowType": "Row",
                                "Cells": [
                                    _cell("Sales", "A1"),
                                    _cell("1,200.50", "A1"),
                                    _cell("(3.00)", "A1"),
                                ],
                            },
                            {
                                "RowType": "SummaryRow",
                                "Cells": [_cell("Total Income"), _cell("1200.50"), _cell("-3.00")],
                            },
                        ],
                    },
                ]
            }
        ]
    }
    call = Call("ProfitAndLoss", "cash", {}, frozenset({date(2026, 10, 1)}))
    accounts = Accounts({"A1": ("200", "Sales")})
    rows = list(flatten(body, call, accounts, "T1"))
    # September is not wanted by this call: only the October column is kept.
    assert [(r["row_title"], r["column"], r["value"]) for r in rows] == [
        ("Sales", "31 Oct 26", 1200.5),
        ("Total Income", "31 Oct 26", 1200.5),
    ]
    sales = rows[0]
    assert sales["account_id"] == "A1"
    assert sales["account_code"] == "200"
    assert sales["section"] == "Income"
    assert sales["basis"] == "cash"
    assert (sales["period_start"], sales["period_end"]) == ("2026-10-01", "2026-10-31")
    assert rows[1]["account_id"] is None
    assert rows[1]["row_type"] == "SummaryRow"
    assert len({r["row_key"] for r in rows}) == 2
    assert parse_number("(3.00)") == -3.0
    assert parse_number("Ref 12") is None


# ---------------------------------------------------------------- against the sandbox


def _cents(value: float | None) -> int:
    return round((value or 0.0) * 100)


def _day(msdate: str) -> date:
    ms = int(msdate.split("(")[1].split("+")[0].split(")")[0])
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date()


class Ledger:
    """Journal lines of one organisation as (day, account id, cents), per basis."""

    def __init__(self, journals: list[dict[str, Any]]) -> None:
        self.lines = [
            (_day(j["JournalDate"]), line["AccountID"], _cents(line["NetAmount"]))
            for j in journals
            for line in j["JournalLines"]
        ]

    def total(self, account: str, start: date | None, end: date) -> int:
        return sum(
            c
            for d, a, c in self.lines
            if a == account and (start is None or d >= start) and d <= end
        )


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    sbx = start_sandbox(seed=3, size="small", tenants=1)
    try:
        config = tap_config(
            sbx, tmp, start_date=f"{START.isoformat()}T00:00:00Z", aged_reports_enabled=True
        )
        run = run_tap(tmp, config, selected=REPORT_STREAMS)
        assert run.returncode == 0, run.stderr[-2000:]
        tenant = sbx.config["tenant_ids"][0]
        stats = control(sbx, "stats")
        accounts = {a["AccountID"]: a for a in truth(sbx, tenant, "Accounts")}
        ledgers = {
            "accrual": Ledger(truth(sbx, tenant, "Journals")),
            "cash": Ledger(truth(sbx, tenant, "Journals", paymentsOnly="true")),
        }
        second_state = run.states[-1]
        second = run_tap(
            tmp,
            {**config, "report_closed_periods_to_refresh": 1},
            selected={"profit_and_loss"},
            state=second_state,
            tag="second",
        )
        assert second.returncode == 0, second.stderr[-2000:]
        second_stats = control(sbx, "stats")
        yield {
            "run": run,
            "second": second,
            "tenant": tenant,
            "stats": stats,
            "second_stats": second_stats,
            "accounts": accounts,
            "ledgers": ledgers,
            "invoices": truth(sbx, tenant, "Invoices"),
            "budgets": truth(sbx, tenant, "Budgets"),
        }
    finally:
        sbx.stop()


def _rows(report_run, stream: str) -> list[dict[str, Any]]:
    return report_run["run"].records[stream]


def _calls(stats: dict[str, Any], tenant: str, endpoint: str) -> int:
    return sum(stats["calls"].get(tenant, {}).get(endpoint, {}).values())


def test_every_report_streams_rows_with_unique_keys(report_run):
    for stream in REPORT_STREAMS:
        rows = _rows(report_run, stream)
        assert rows, stream
        keys = [r["row_key"] for r in rows]
        assert len(keys) == len(set(keys)), stream
        assert {r["tenant_id"] for r in rows} == {report_run["tenant"]}


def test_profit_and_loss_agrees_with_journals_to_the_cent(report_run):
    accounts = report_run["accounts"]
    checked = 0
    seen: set[tuple[str, str, str]] = set()
    for row in _rows(report_run, "profit_and_loss"):
        start, end = date.fromisoformat(row["period_start"]), date.fromisoformat(row["period_end"])
        assert start.day == 1 and end == month_end(start)
        assert start >= START
        ledger = report_run["ledgers"][row["basis"]]
        if row["account_id"]:
            sign = -1 if accounts[row["account_id"]]["Class"] == "REVENUE" else 1
            assert _cents(row["value"]) == sign * ledger.total(row["account_id"], start, end), row
            seen.add((row["basis"], row["account_id"], row["period_start"]))
            checked += 1
        elif row["row_title"] == "Net Profit":
            pl = [a for a, acc in accounts.items() if acc["Class"] in ("REVENUE", "EXPENSE")]
            assert _cents(row["value"]) == -sum(ledger.total(a, start, end) for a in pl)
    assert checked > 100
    # Every account that moved in a month has its row, on both bases.
    for basis, ledger in report_run["ledgers"].items():
        for day, account, cents in ledger.lines:
            if cents and day >= START and accounts[account]["Class"] in ("REVENUE", "EXPENSE"):
                assert (basis, account, date(day.year, day.month, 1).isoformat()) in seen


def test_balance_sheet_and_trial_balance_agree_with_journals(report_run):
    accounts = report_run["accounts"]
    checked = 0
    for row in _rows(report_run, "balance_sheet"):
        if not row["account_id"]:
            continue
        end = date.fromisoformat(row["period_end"])
        assert end == month_end(end) and row["period_start"] == row["period_end"]
        sign = 1 if accounts[row["account_id"]]["Class"] == "ASSET" else -1
        ledger = report_run["ledgers"][row["basis"]]
        assert _cents(row["value"]) == sign * ledger.total(row["account_id"], None, end), row
        checked += 1
    debit_credit: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for row in _rows(report_run, "trial_balance"):
        if row["account_id"] and row["column"] in ("Debit", "Credit"):
            key = (row["basis"], row["account_id"], row["period_end"])
            debit_credit[key][row["column"]] = _cents(row["value"])
    for (basis, account, end), values in debit_credit.items():
        balance = report_run["ledgers"][basis].total(account, None, date.fromisoformat(end))
        assert values["Debit"] - values["Credit"] == balance
        checked += 1
    assert checked > 100
    assert {r["basis"] for r in _rows(report_run, "trial_balance")} == {"accrual", "cash"}


def test_bank_and_executive_summaries_agree_with_journals(report_run):
    accounts = report_run["accounts"]
    ledger = report_run["ledgers"]["accrual"]
    banks = [a for a, acc in accounts.items() if acc["Type"] == "BANK"]
    closing_seen = 0
    for row in _rows(report_run, "bank_summary"):
        if not row["account_id"]:
            continue
        start, end = date.fromisoformat(row["period_start"]), date.fromisoformat(row["period_end"])
        account = row["account_id"]
        moves = [c for d, a, c in ledger.lines if a == account and start <= d <= end]
        expected = {
            "Opening Balance": ledger.total(account, None, start - timedelta(days=1)),
            "Cash Received": sum(c for c in moves if c > 0),
            "Cash Spent": -sum(c for c in moves if c < 0),
            "Closing Balance": ledger.total(account, None, end),
        }[row["column"]]
        assert _cents(row["value"]) == expected, row
        closing_seen += row["column"] == "Closing Balance"
    assert closing_seen >= 14
    income_types = ("REVENUE", "SALES")
    for row in _rows(report_run, "executive_summary"):
        start, end = date.fromisoformat(row["period_start"]), date.fromisoformat(row["period_end"])
        if row["row_title"] == "Closing bank balance":
            assert _cents(row["value"]) == sum(ledger.total(b, None, end) for b in banks)
        if row["row_title"] == "Income":
            income = [a for a, acc in accounts.items() if acc["Type"] in income_types]
            assert _cents(row["value"]) == -sum(ledger.total(a, start, end) for a in income)


def test_budget_and_aged_reports_agree_with_records(report_run):
    budget: dict[tuple[str, str], int] = defaultdict(int)
    for record in report_run["budgets"]:
        if record["Type"] != "OVERALL":
            continue
        for line in record["BudgetLines"]:
            for balance in line["BudgetBalances"]:
                day = _day(balance["Period"])
                budget[(line["AccountID"], f"{day:%Y-%m}")] += _cents(balance["Amount"])
    rows = _rows(report_run, "budget_summary")
    assert any(r["value"] for r in rows)
    for row in rows:
        assert _cents(row["value"]) == budget.get((row["account_id"], row["period_start"][:7]), 0)
    due: dict[str, int] = defaultdict(int)
    for invoice in report_run["invoices"]:
        if invoice["Type"] == "ACCREC" and invoice["Status"] == "AUTHORISED":
            due[invoice["Contact"]["ContactID"]] += _cents(invoice["AmountDue"])
    totals = {
        r["contact_id"]: _cents(r["value"])
        for r in _rows(report_run, "aged_receivables_by_contact")
        if r["row_type"] == "SummaryRow" and r["column"] == "Due"
    }
    assert {c: v for c, v in totals.items() if v} == {c: v for c, v in due.items() if v}


def test_calls_are_few_and_an_unchanged_ledger_is_not_read_again(report_run):
    tenant = report_run["tenant"]
    months = months_to_read(START, datetime.now(timezone.utc).date(), None, 3)
    planned = profit_and_loss_calls(months, ("accrual", "cash"))
    sheets = balance_sheet_calls(months, ("accrual", "cash"))
    assert _calls(report_run["stats"], tenant, "Reports/ProfitAndLoss") == len(planned) <= 6
    # The check's answers serve the balance sheet stream: no call twice.
    assert _calls(report_run["stats"], tenant, "Reports/BalanceSheet") == len(sheets)
    assert _calls(report_run["stats"], tenant, "Reports/TrialBalance") == 2 * len(months)
    assert _calls(report_run["stats"], tenant, "Accounts") == 1  # one lookup for all reports
    assert _calls(report_run["stats"], tenant, "Contacts") == 1  # one list for both aged reports
    # Second run, nothing changed in between: the check's calls, and no month read again.
    assert report_run["second"].records.get("profit_and_loss", []) == []
    for endpoint, calls in (("ProfitAndLoss", planned), ("BalanceSheet", sheets)):
        extra = _calls(report_run["second_stats"], tenant, f"Reports/{endpoint}") - _calls(
            report_run["stats"], tenant, f"Reports/{endpoint}"
        )
        assert extra == len(calls), endpoint


# ---------------------------------------------------------------- late entries and lock dates


def _asked_months(query: str) -> set[date]:
    """The months a report request covers, from its query string."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    last = month_end(date.fromisoformat(params.get("toDate") or params["date"]))
    return {add_months(last, -k) for k in range(int(params.get("periods", "0")) + 1)}


def _report_requests(stats: dict[str, Any], since: int) -> list[tuple[str, set[date]]]:
    return [
        (r["endpoint"], _asked_months(r["query"]))
        for r in stats["requests"][since:]
        if r["endpoint"].startswith("Reports/")
    ]


def _voidable(sbx: Any, tenant: str, month: date) -> str:
    for invoice in truth(sbx, tenant, "Invoices"):
        day = _day(invoice["Date"])
        if (
            (day.year, day.month) == (month.year, month.month)
            and invoice["Status"] == "AUTHORISED"
            and not invoice["AmountPaid"]
            and not invoice["AmountCredited"]
        ):
            return str(invoice["InvoiceID"])
    pytest.fail(f"the seeded company has no unpaid invoice dated {month:%Y-%m} to void")


@pytest.fixture(scope="module")
def late_entries(tmp_path_factory):
    """Three runs: a back-dated void 5 months ago, then a lock; then a void 2 months ago."""
    tmp = tmp_path_factory.mktemp("late")
    sbx = start_sandbox(seed=3, size="small", tenants=1)
    try:
        tenant = sbx.config["tenant_ids"][0]
        config = tap_config(sbx, tmp, start_date=f"{START.isoformat()}T00:00:00Z")
        selected = {"organisations", "trial_balance", "profit_and_loss"}
        this_month = add_months(datetime.now(timezone.utc).date(), 0)
        voided, late = add_months(this_month, -5), add_months(this_month, -2)
        runs = [run_tap(tmp, config, selected=selected, tag="first")]
        control(
            sbx,
            "mutate",
            {"tenant_id": tenant, "action": "void", "id": _voidable(sbx, tenant, voided)},
        )
        lock = month_end(add_months(voided, 1))
        control(
            sbx,
            "mutate",
            {"tenant_id": tenant, "action": "lock", "end_of_year_lock_date": lock.isoformat()},
        )
        marks = [len(control(sbx, "stats")["requests"])]
        runs.append(
            run_tap(tmp, config, selected=selected, state=runs[-1].states[-1], tag="second")
        )
        refused = requests.post(
            f"{sbx.url}/_sandbox/mutate",
            json={"tenant_id": tenant, "action": "void", "id": _voidable(sbx, tenant, voided)},
            timeout=10,
        )
        control(
            sbx,
            "mutate",
            {"tenant_id": tenant, "action": "void", "id": _voidable(sbx, tenant, late)},
        )
        marks.append(len(control(sbx, "stats")["requests"]))
        runs.append(run_tap(tmp, config, selected=selected, state=runs[-1].states[-1], tag="third"))
        for run in runs:
            assert run.returncode == 0, run.stderr[-2000:]
        yield {
            "runs": runs,
            "stats": control(sbx, "stats"),
            "marks": marks,
            "lock": lock,
            "voided": voided,
            "late": late,
            "refused": refused,
            "tenant": tenant,
            "accounts": {a["AccountID"]: a for a in truth(sbx, tenant, "Accounts")},
            "ledgers": {
                "accrual": Ledger(truth(sbx, tenant, "Journals")),
                "cash": Ledger(truth(sbx, tenant, "Journals", paymentsOnly="true")),
            },
        }
    finally:
        sbx.stop()


def _months_read(run: Any, stream: str) -> set[date]:
    return {date.fromisoformat(r["period_start"][:8] + "01") for r in run.records.get(stream, [])}


def test_a_changed_closed_unlocked_month_is_read_again(late_entries):
    """A void dated 5 closed months back (and locked since) is read, with every later month."""
    this_month = add_months(datetime.now(timezone.utc).date(), 0)
    voided = late_entries["voided"]
    expected = {add_months(voided, k) for k in range(months_between(this_month, voided) + 1)}
    second = late_entries["runs"][1]
    assert _months_read(second, "trial_balance") == expected
    assert _months_read(second, "profit_and_loss") == expected


def test_locked_months_are_never_read_again(late_entries):
    lock, late = late_entries["lock"], late_entries["late"]
    assert late_entries["refused"].status_code == 400  # the sandbox keeps the lock, as Xero does
    asked = _report_requests(late_entries["stats"], late_entries["marks"][1])
    assert asked, "the third run checked nothing"
    assert all(min(months) > lock for _, months in asked), asked
    third = late_entries["runs"][2]
    this_month = add_months(datetime.now(timezone.utc).date(), 0)
    assert _months_read(third, "trial_balance") == {
        add_months(late, k) for k in range(months_between(this_month, late) + 1)
    }
    # The lock date came with the organisations stream: /Organisation is read once a run.
    assert _calls(late_entries["stats"], late_entries["tenant"], "Organisation") == 3


def test_the_trial_balances_kept_equal_the_ledger_after_late_entries(late_entries):
    latest: dict[str, dict[str, Any]] = {}
    for run in late_entries["runs"]:
        for row in run.records.get("trial_balance", []):
            latest[row["row_key"]] = row
    debit_credit: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for row in latest.values():
        if row["account_id"] and row["column"] in ("Debit", "Credit"):
            key = (row["basis"], row["account_id"], row["period_end"])
            debit_credit[key][row["column"]] = _cents(row["value"])
    assert len(debit_credit) > 100
    for (basis, account, end), values in debit_credit.items():
        balance = late_entries["ledgers"][basis].total(account, None, date.fromisoformat(end))
        assert values["Debit"] - values["Credit"] == balance, (basis, account, end)


def test_flatten_reports_a_column_it_cannot_place_instead_of_guessing():
    body = {
        "Rows": [
            {"RowType": "Header", "Cells": [_cell(""), _cell("Mystery")]},
            {
                "RowType": "Section",
                "Title": "",
                "Rows": [{"RowType": "Row", "Cells": [_cell("Net Profit"), _cell("5.00")]}],
            },
        ]
    }
    call = Call("ProfitAndLoss", "accrual", {}, frozenset({date(2026, 10, 1)}))
    warnings: list[str] = []
    assert list(flatten(body, call, Accounts(), "T1", warnings.append)) == []
    assert warnings == ["ProfitAndLoss: column 'Mystery' names no period; skipped"]

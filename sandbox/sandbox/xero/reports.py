"""Xero's reports, computed from the sandbox's own ledger in Xero's Rows/Cells shape.

Signs: the ledger holds debits positive; income, liabilities and equity are shown positive
when they are credits, as Xero shows them.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Mapping
from datetime import date

from sandbox.xero.company import ACCOUNT_CLASS, AP, AR, Org
from sandbox.xero.queries import ApiError
from sandbox.xero.util import DAY_MS, Record, date_of, ms_of, msdate, parse_msdate

REPORTS = (
    "ProfitAndLoss",
    "BalanceSheet",
    "TrialBalance",
    "BankSummary",
    "AgedReceivablesByContact",
    "AgedPayablesByContact",
    "ExecutiveSummary",
    "BudgetSummary",
)
PL_SECTIONS = (
    ("Income", ("REVENUE", "SALES"), -1),
    ("Less Cost of Sales", ("DIRECTCOSTS",), 1),
    ("Other Income", ("OTHERINCOME",), -1),
    ("Less Operating Expenses", ("EXPENSE", "OVERHEADS", "DEPRECIATN"), 1),
)
BS_SECTIONS = (
    ("Bank", ("BANK",), 1),
    ("Current Assets", ("CURRENT", "INVENTORY", "PREPAYMENT"), 1),
    ("Fixed Assets", ("FIXED", "NONCURRENT"), 1),
    ("Current Liabilities", ("CURRLIAB",), -1),
    ("Non-current Liabilities", ("LIABILITY", "TERMLIAB"), -1),
    ("Equity", ("EQUITY",), -1),
)


def fmt(cents: int) -> str:
    return f"{cents / 100:.2f}"


def cell(value: str, account_id: str | None = None) -> Record:
    out: Record = {"Value": value}
    if account_id is not None:
        out["Attributes"] = [{"Id": "account", "Value": account_id}]
    return out


def header(*titles: str) -> Record:
    return {"RowType": "Header", "Cells": [{"Value": t} for t in titles]}


def long_date(d: date) -> str:
    return f"{d.day} {calendar.month_name[d.month]} {d.year}"


def _date_param(params: Mapping[str, str], name: str, default: date) -> date:
    raw = params.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise ApiError(400, "Validation", f"{name} must be a date (YYYY-MM-DD)") from None


def _periods(params: Mapping[str, str]) -> tuple[int, int]:
    """(extra comparison periods, months per period)."""
    try:
        periods = int(params.get("periods") or 0)
    except ValueError:
        raise ApiError(400, "Validation", "periods must be an integer") from None
    if periods < 0 or periods > 12:
        raise ApiError(400, "Validation", "periods must be between 1 and 12")
    timeframe = (params.get("timeframe") or "MONTH").upper()
    months = {"MONTH": 1, "QUARTER": 3, "YEAR": 12, "1": 1, "3": 3, "12": 12}.get(timeframe)
    if months is None:
        raise ApiError(400, "Validation", "timeframe must be MONTH, QUARTER or YEAR")
    return periods, months


def shift_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year = d.year + month // 12
    month = month % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def balances(
    org: Org,
    *,
    cash: bool,
    start: date | None,
    end: date,
    tracking: list[frozenset[str]] | None = None,
) -> dict[str, int]:
    """Sum of journal net amounts by account code for journal dates in [start, end]; with
    `tracking`, only lines tagged with one option of each given set."""
    low = ms_of(start) if start is not None else -(2**62)
    high = ms_of(end) + DAY_MS - 1
    out: dict[str, int] = defaultdict(int)
    for day_ms, code, net, options in org.cash_postings if cash else org.postings:
        if low <= day_ms <= high:
            if tracking and not all(options & wanted for wanted in tracking):
                continue
            out[code] += net
    return out


def tracking_filter(org: Org, params: Mapping[str, str]) -> list[frozenset[str]] | None:
    """trackingCategoryID/trackingOptionID (and ...ID2): the options each line must carry."""
    categories = {c["TrackingCategoryID"]: c for c in org.data["TrackingCategories"].values()}
    out = []
    for suffix in ("", "2"):
        category_id = params.get(f"trackingCategoryID{suffix}")
        option_id = params.get(f"trackingOptionID{suffix}")
        if not category_id and not option_id:
            continue
        category = categories.get(category_id or "")
        if category is None:
            raise ApiError(400, "Validation", f"unknown trackingCategoryID{suffix}")
        options = {o["TrackingOptionID"] for o in category["Options"]}
        if option_id:
            if option_id not in options:
                raise ApiError(400, "Validation", f"unknown trackingOptionID{suffix}")
            options = {option_id}
        out.append(frozenset(options))
    return out or None


def _accounts_of(org: Org, kinds: tuple[str, ...]) -> list[Record]:
    return sorted((a for a in org.accounts.values() if a["Type"] in kinds), key=lambda a: a["Code"])


def _titles(org: Org, name: str, span: str) -> list[str]:
    return [name, org.name, span]


def _report(
    org: Org, report_id: str, name: str, span: str, rows: list[Record], now_ms: int
) -> Record:
    return {
        "ReportID": report_id,
        "ReportName": name,
        "ReportType": report_id,
        "ReportTitles": _titles(org, name, span),
        "ReportDate": long_date(date_of(now_ms)),
        "UpdatedDateUTC": msdate(now_ms),
        "Fields": [],
        "Rows": rows,
    }


def run(org: Org, name: str, params: Mapping[str, str], now_ms: int) -> Record:
    today = date_of(now_ms)
    cash = params.get("paymentsOnly", "").lower() == "true"
    if name == "ProfitAndLoss":
        return profit_and_loss(org, params, today, cash, now_ms)
    if name == "BalanceSheet":
        return balance_sheet(org, params, today, cash, now_ms)
    if name == "TrialBalance":
        return trial_balance(org, params, today, cash, now_ms)
    if name == "BankSummary":
        return bank_summary(org, params, today, now_ms)
    if name in ("AgedReceivablesByContact", "AgedPayablesByContact"):
        return aged(org, name, params, today, now_ms)
    if name == "ExecutiveSummary":
        return executive_summary(org, params, today, now_ms)
    if name == "BudgetSummary":
        return budget_summary(org, params, today, now_ms)
    raise ApiError(404, "Not Found", f"no such report: {name}")


# ---- profit and loss -----------------------------------------------------------------------
def profit_and_loss(
    org: Org, params: Mapping[str, str], today: date, cash: bool, now_ms: int
) -> Record:
    start = _date_param(params, "fromDate", date(today.year, today.month, 1))
    end = _date_param(params, "toDate", month_end(start))
    if end < start:
        raise ApiError(400, "Validation", "toDate is before fromDate")
    periods, months = _periods(params)
    spans = [(start, end)]
    for n in range(1, periods + 1):
        s = shift_months(start, -months * n)
        spans.append((s, shift_months(end, -months * n)))
    tracking = tracking_filter(org, params)
    columns = [balances(org, cash=cash, start=s, end=e, tracking=tracking) for s, e in spans]
    labels = [e.strftime("%d %b %y").lstrip("0") for _, e in spans]
    rows: list[Record] = [header("", *labels)]
    totals: dict[str, list[int]] = {}
    for title, kinds, sign in PL_SECTIONS:
        accounts = _accounts_of(org, kinds)
        section_rows = []
        sums = [0] * len(columns)
        for account in accounts:
            values = [sign * col.get(account["Code"], 0) for col in columns]
            if not any(values) and account["Code"] not in columns[0]:
                continue
            section_rows.append(
                {
                    "RowType": "Row",
                    "Cells": [
                        cell(account["Name"], account["AccountID"]),
                        *(cell(fmt(v), account["AccountID"]) for v in values),
                    ],
                }
            )
            sums = [a + b for a, b in zip(sums, values, strict=True)]
        totals[title] = sums
        label = title.replace("Less ", "")
        section_rows.append(
            {
                "RowType": "SummaryRow",
                "Cells": [cell(f"Total {label}"), *(cell(fmt(v)) for v in sums)],
            }
        )
        rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})
        if title == "Less Cost of Sales":
            gross = [a - b for a, b in zip(totals["Income"], sums, strict=True)]
            rows.append(
                {
                    "RowType": "Section",
                    "Title": "",
                    "Rows": [
                        {
                            "RowType": "Row",
                            "Cells": [cell("Gross Profit"), *(cell(fmt(v)) for v in gross)],
                        }
                    ],
                }
            )
    net = [
        i - c + o - e
        for i, c, o, e in zip(
            totals["Income"],
            totals["Less Cost of Sales"],
            totals["Other Income"],
            totals["Less Operating Expenses"],
            strict=True,
        )
    ]
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [
                {"RowType": "Row", "Cells": [cell("Net Profit"), *(cell(fmt(v)) for v in net)]}
            ],
        }
    )
    span = f"For the period {long_date(start)} to {long_date(end)}"
    return _report(org, "ProfitAndLoss", "Profit and Loss", span, rows, now_ms)


# ---- balance sheet -------------------------------------------------------------------------
def balance_sheet(
    org: Org, params: Mapping[str, str], today: date, cash: bool, now_ms: int
) -> Record:
    at = _date_param(params, "date", month_end(today))
    periods, months = _periods(params)
    dates = [at] + [month_end(shift_months(at, -months * n)) for n in range(1, periods + 1)]
    columns = [balances(org, cash=cash, start=None, end=d) for d in dates]
    rows: list[Record] = [header("", *(long_date(d) for d in dates))]
    pl_kinds = {k for k, c in ACCOUNT_CLASS.items() if c in ("REVENUE", "EXPENSE")}
    sections: dict[str, list[int]] = {}
    for title, kinds, sign in BS_SECTIONS:
        section_rows = []
        sums = [0] * len(columns)
        for account in _accounts_of(org, kinds):
            values = [sign * col.get(account["Code"], 0) for col in columns]
            if not any(values):
                continue
            section_rows.append(
                {
                    "RowType": "Row",
                    "Cells": [
                        cell(account["Name"], account["AccountID"]),
                        *(cell(fmt(v), account["AccountID"]) for v in values),
                    ],
                }
            )
            sums = [a + b for a, b in zip(sums, values, strict=True)]
        if title == "Equity":
            earnings = [
                -sum(v for code, v in col.items() if org.accounts[code]["Type"] in pl_kinds)
                for col in columns
            ]
            section_rows.append(
                {
                    "RowType": "Row",
                    "Cells": [cell("Current Year Earnings"), *(cell(fmt(v)) for v in earnings)],
                }
            )
            sums = [a + b for a, b in zip(sums, earnings, strict=True)]
        sections[title] = sums
        section_rows.append(
            {
                "RowType": "SummaryRow",
                "Cells": [cell(f"Total {title}"), *(cell(fmt(v)) for v in sums)],
            }
        )
        rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})
    assets = [
        sum(x)
        for x in zip(
            sections["Bank"], sections["Current Assets"], sections["Fixed Assets"], strict=True
        )
    ]
    liabilities = [
        a + b
        for a, b in zip(
            sections["Current Liabilities"], sections["Non-current Liabilities"], strict=True
        )
    ]
    net_assets = [a - b for a, b in zip(assets, liabilities, strict=True)]
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [
                {
                    "RowType": "Row",
                    "Cells": [cell("Total Assets"), *(cell(fmt(v)) for v in assets)],
                },
                {
                    "RowType": "Row",
                    "Cells": [cell("Total Liabilities"), *(cell(fmt(v)) for v in liabilities)],
                },
                {
                    "RowType": "SummaryRow",
                    "Cells": [cell("Net Assets"), *(cell(fmt(v)) for v in net_assets)],
                },
            ],
        }
    )
    return _report(org, "BalanceSheet", "Balance Sheet", f"As at {long_date(at)}", rows, now_ms)


# ---- trial balance -------------------------------------------------------------------------
def trial_balance(
    org: Org, params: Mapping[str, str], today: date, cash: bool, now_ms: int
) -> Record:
    """Debit/Credit: each account's balance at `date`; YTD: since the financial year's start
    for income and expense accounts, the same balance for the others."""
    at = _date_param(params, "date", today)
    organisation = next(iter(org.data["Organisation"].values()))
    fy_month = int(organisation["FinancialYearEndMonth"]) % 12 + 1
    fy_start = date(at.year if at.month >= fy_month else at.year - 1, fy_month, 1)
    total = balances(org, cash=cash, start=None, end=at)
    ytd = balances(org, cash=cash, start=fy_start, end=at)
    rows: list[Record] = [header("Account", "Debit", "Credit", "YTD Debit", "YTD Credit")]
    sums = [0, 0, 0, 0]
    for title, klass in (
        ("Revenue", "REVENUE"),
        ("Expenses", "EXPENSE"),
        ("Assets", "ASSET"),
        ("Liabilities", "LIABILITY"),
        ("Equity", "EQUITY"),
    ):
        section_rows = []
        for account in sorted(org.accounts.values(), key=lambda a: a["Code"]):
            if account["Class"] != klass:
                continue
            balance = total.get(account["Code"], 0)
            year = ytd.get(account["Code"], 0) if klass in ("REVENUE", "EXPENSE") else balance
            if balance == 0 and year == 0:
                continue
            values = [max(balance, 0), max(-balance, 0), max(year, 0), max(-year, 0)]
            sums = [a + b for a, b in zip(sums, values, strict=True)]
            label = f"{account['Name']} ({account['Code']})"
            section_rows.append(
                {
                    "RowType": "Row",
                    "Cells": [
                        cell(label, account["AccountID"]),
                        *(cell(fmt(v), account["AccountID"]) for v in values),
                    ],
                }
            )
        rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [
                {"RowType": "SummaryRow", "Cells": [cell("Total"), *(cell(fmt(v)) for v in sums)]}
            ],
        }
    )
    return _report(org, "TrialBalance", "Trial Balance", f"As at {long_date(at)}", rows, now_ms)


# ---- bank summary --------------------------------------------------------------------------
def bank_summary(org: Org, params: Mapping[str, str], today: date, now_ms: int) -> Record:
    start = _date_param(params, "fromDate", date(today.year, today.month, 1))
    end = _date_param(params, "toDate", month_end(start))
    banks = _accounts_of(org, ("BANK",))
    codes = {a["Code"] for a in banks}
    opening: dict[str, int] = defaultdict(int)
    received: dict[str, int] = defaultdict(int)
    spent: dict[str, int] = defaultdict(int)
    low, high = ms_of(start), ms_of(end) + DAY_MS - 1
    for day_ms, code, net, _options in org.postings:
        if code not in codes:
            continue
        if day_ms < low:
            opening[code] += net
        elif day_ms <= high:
            if net > 0:
                received[code] += net
            else:
                spent[code] -= net
    rows: list[Record] = [
        header("Bank Accounts", "Opening Balance", "Cash Received", "Cash Spent", "Closing Balance")
    ]
    section_rows = []
    sums = [0, 0, 0, 0]
    for account in banks:
        code = account["Code"]
        values = [
            opening[code],
            received[code],
            spent[code],
            opening[code] + received[code] - spent[code],
        ]
        sums = [a + b for a, b in zip(sums, values, strict=True)]
        section_rows.append(
            {
                "RowType": "Row",
                "Cells": [
                    cell(account["Name"], account["AccountID"]),
                    *(cell(fmt(v), account["AccountID"]) for v in values),
                ],
            }
        )
    section_rows.append(
        {"RowType": "SummaryRow", "Cells": [cell("Total"), *(cell(fmt(v)) for v in sums)]}
    )
    rows.append({"RowType": "Section", "Title": "", "Rows": section_rows})
    span = f"From {long_date(start)} to {long_date(end)}"
    return _report(org, "BankSummary", "Bank Summary", span, rows, now_ms)


# ---- aged receivables / payables -----------------------------------------------------------
def aged(org: Org, name: str, params: Mapping[str, str], today: date, now_ms: int) -> Record:
    contact_id = params.get("contactId") or params.get("contactID") or ""
    if contact_id not in org.data["Contacts"]:
        raise ApiError(
            400, "Validation", "contactId is required and must be a contact of the organisation"
        )
    at = _date_param(params, "date", today)
    kind = "ACCREC" if name == "AgedReceivablesByContact" else "ACCPAY"
    rows: list[Record] = [
        header("Date", "Reference", "Due Date", "", "Total", "Paid", "Credited", "Due")
    ]
    section_rows = []
    sums = [0, 0, 0, 0]
    at_ms = ms_of(at) + DAY_MS - 1
    for invoice in org.data["Invoices"].values():
        if invoice["Type"] != kind or invoice["Contact"]["ContactID"] != contact_id:
            continue
        if invoice["Status"] not in ("AUTHORISED", "PAID") or parse_msdate(invoice["Date"]) > at_ms:
            continue
        total = round(invoice["Total"] * 100)
        paid = sum(
            round(p["Amount"] * 100)
            for p in invoice["Payments"]
            if parse_msdate(p["Date"]) <= at_ms
        )
        credited = sum(
            round(c["AppliedAmount"] * 100)
            for c in invoice["CreditNotes"]
            if parse_msdate(c["Date"]) <= at_ms
        )
        due = total - paid - credited
        if due == 0:
            continue
        values = [total, paid, credited, due]
        sums = [a + b for a, b in zip(sums, values, strict=True)]
        section_rows.append(
            {
                "RowType": "Row",
                "Cells": [
                    cell(date_of(parse_msdate(invoice["Date"])).isoformat() + "T00:00:00"),
                    cell(
                        invoice["InvoiceNumber"]
                        if kind == "ACCREC"
                        else invoice.get("Reference", "")
                    ),
                    cell(date_of(parse_msdate(invoice["DueDate"])).isoformat() + "T00:00:00"),
                    cell(""),
                    *(cell(fmt(v)) for v in values),
                ],
            }
        )
    section_rows.append(
        {
            "RowType": "SummaryRow",
            "Cells": [cell("Total"), cell(""), cell(""), cell(""), *(cell(fmt(v)) for v in sums)],
        }
    )
    rows.append({"RowType": "Section", "Title": "", "Rows": section_rows})
    contact = org.data["Contacts"][contact_id]["Name"]
    title = "Aged Receivables By Contact" if kind == "ACCREC" else "Aged Payables By Contact"
    report = _report(org, name, title, f"As at {long_date(at)}", rows, now_ms)
    report["ReportTitles"] = [title, contact, org.name, f"As at {long_date(at)}"]
    return report


# ---- executive summary ---------------------------------------------------------------------
def executive_summary(org: Org, params: Mapping[str, str], today: date, now_ms: int) -> Record:
    at = _date_param(params, "date", today)
    months = [(date(at.year, at.month, 1), month_end(at))]
    prev = shift_months(months[0][0], -1)
    months.append((prev, month_end(prev)))
    columns = [balances(org, cash=False, start=s, end=e) for s, e in months]
    closing = [balances(org, cash=False, start=None, end=e) for _, e in months]
    banks = {a["Code"] for a in _accounts_of(org, ("BANK",))}

    def by_kinds(col: dict[str, int], kinds: tuple[str, ...]) -> int:
        return sum(v for code, v in col.items() if org.accounts[code]["Type"] in kinds)

    def row(label: str, values: list[int]) -> Record:
        return {"RowType": "Row", "Cells": [cell(label), *(cell(fmt(v)) for v in values)]}

    received = []
    spent = []
    for s, e in months:
        low, high = ms_of(s), ms_of(e) + DAY_MS - 1
        r = sp = 0
        for day_ms, code, net, _options in org.postings:
            if code in banks and low <= day_ms <= high:
                if net > 0:
                    r += net
                else:
                    sp -= net
        received.append(r)
        spent.append(sp)
    income = [-by_kinds(c, ("REVENUE", "SALES")) for c in columns]
    direct = [by_kinds(c, ("DIRECTCOSTS",)) for c in columns]
    other = [-by_kinds(c, ("OTHERINCOME",)) for c in columns]
    expenses = [by_kinds(c, ("EXPENSE", "OVERHEADS", "DEPRECIATN")) for c in columns]
    rows: list[Record] = [
        header("", long_date(months[0][1]), long_date(months[1][1])),
        {
            "RowType": "Section",
            "Title": "Cash",
            "Rows": [
                row("Cash received", received),
                row("Cash spent", spent),
                row(
                    "Cash surplus (deficit)", [a - b for a, b in zip(received, spent, strict=True)]
                ),
                row("Closing bank balance", [sum(c.get(b, 0) for b in banks) for c in closing]),
            ],
        },
        {
            "RowType": "Section",
            "Title": "Profitability",
            "Rows": [
                row("Income", income),
                row("Direct costs", direct),
                row("Gross profit (loss)", [a - b for a, b in zip(income, direct, strict=True)]),
                row("Other Income", other),
                row("Expenses", expenses),
                row(
                    "Profit (loss)",
                    [
                        a - b + c - d
                        for a, b, c, d in zip(income, direct, other, expenses, strict=True)
                    ],
                ),
            ],
        },
        {
            "RowType": "Section",
            "Title": "Balance Sheet",
            "Rows": [
                row("Debtors", [c.get(AR, 0) for c in closing]),
                row("Creditors", [-c.get(AP, 0) for c in closing]),
                row(
                    "Net assets",
                    [
                        by_kinds(
                            c, ("BANK", "CURRENT", "INVENTORY", "PREPAYMENT", "FIXED", "NONCURRENT")
                        )
                        + by_kinds(c, ("CURRLIAB", "LIABILITY", "TERMLIAB"))
                        for c in closing
                    ],
                ),
            ],
        },
    ]
    return _report(
        org, "ExecutiveSummary", "Executive Summary", f"For the month of {at:%B %Y}", rows, now_ms
    )


# ---- budget summary ------------------------------------------------------------------------
def budget_summary(org: Org, params: Mapping[str, str], today: date, now_ms: int) -> Record:
    at = _date_param(params, "date", date(today.year, today.month, 1))
    periods, months = _periods(params)
    count = periods or 12
    starts = [shift_months(date(at.year, at.month, 1), months * n) for n in range(count)]
    budget: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for record in org.data["Budgets"].values():
        if record["Type"] != "OVERALL":
            continue
        for line in record["BudgetLines"]:
            for bal in line["BudgetBalances"]:
                d = date_of(parse_msdate(bal["Period"]))
                budget[line["AccountCode"]][date(d.year, d.month, 1)] += round(bal["Amount"] * 100)
    rows: list[Record] = [header("Account", *(f"{s:%b-%y}" for s in starts))]
    for title, kinds, _sign in PL_SECTIONS:
        section_rows = []
        for account in _accounts_of(org, kinds):
            if account["Code"] not in budget:
                continue
            values = []
            for s in starts:
                end = shift_months(s, months)
                values.append(sum(v for d, v in budget[account["Code"]].items() if s <= d < end))
            section_rows.append(
                {
                    "RowType": "Row",
                    "Cells": [
                        cell(account["Name"], account["AccountID"]),
                        *(cell(fmt(v), account["AccountID"]) for v in values),
                    ],
                }
            )
        if section_rows:
            rows.append(
                {"RowType": "Section", "Title": title.replace("Less ", ""), "Rows": section_rows}
            )
    span = f"{len(starts)} periods from {long_date(starts[0])}"
    return _report(org, "BudgetSummary", "Budget Summary", span, rows, now_ms)

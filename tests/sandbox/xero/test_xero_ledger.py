"""The ledger and the reports: balanced journals, and reports that agree with them."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date

from sandbox.xero.generator import generate
from sandbox.xero.util import date_of, parse_msdate

from .conftest import Client, Schemas

PL_TYPES = {"REVENUE", "SALES", "OTHERINCOME", "EXPENSE", "OVERHEADS", "DIRECTCOSTS", "DEPRECIATN"}


def cents(value: str | float) -> int:
    return round(float(value or 0) * 100)


def sums_by_account(journals: list[dict], start: date | None, end: date) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for journal in journals:
        day = date_of(parse_msdate(journal["JournalDate"]))
        if (start is None or day >= start) and day <= end:
            for line in journal["JournalLines"]:
                out[line["AccountID"]] += cents(line["NetAmount"])
    return out


def account_rows(report: dict) -> dict[str, list[int]]:
    """Account id -> its value cells, from rows whose first cell names an account."""
    out = {}
    for section in report["Rows"]:
        for row in section.get("Rows", []):
            attributes = row["Cells"][0].get("Attributes", [])
            if row["RowType"] == "Row" and attributes:
                assert attributes[0]["Id"] == "account"
                out[attributes[0]["Value"]] = [cents(c["Value"]) for c in row["Cells"][1:]]
    return out


def labelled(report: dict, label: str) -> list[int]:
    for section in report["Rows"]:
        for row in section.get("Rows", []):
            if row["Cells"][0]["Value"] == label:
                return [cents(c["Value"]) for c in row["Cells"][1:]]
    raise AssertionError(f"no row {label!r}")


def test_every_journal_balances(client: Client) -> None:
    for tenant in client.config["tenant_ids"]:
        journals = client.truth("Journals", tenant)
        cash = client.control(f"truth/{tenant}/Journals?paymentsOnly=true")["Journals"]
        assert journals and cash
        for journal in journals + cash:
            assert sum(cents(line["NetAmount"]) for line in journal["JournalLines"]) == 0, journal
            for line in journal["JournalLines"]:
                gross = cents(line["NetAmount"]) + cents(line["TaxAmount"])
                assert cents(line["GrossAmount"]) == gross


def test_every_posted_document_has_a_journal(client: Client) -> None:
    sources = {j["SourceID"] for j in client.truth("Journals")}
    for invoice in client.truth("Invoices"):
        posted = invoice["Status"] in ("AUTHORISED", "PAID", "VOIDED")
        assert (invoice["InvoiceID"] in sources) == posted, invoice["Status"]
    for collection, key in (
        ("Payments", "PaymentID"),
        ("BankTransactions", "BankTransactionID"),
        ("BankTransfers", "BankTransferID"),
    ):
        assert all(r[key] in sources for r in client.truth(collection))


def test_trial_balance_agrees_with_journals(client: Client, schemas: Schemas) -> None:
    at = date(2026, 6, 30)
    report = client.get("/Reports/TrialBalance", params={"date": at.isoformat()}).json()["Reports"][
        0
    ]
    schemas.check("Reports", [report])
    expected = sums_by_account(client.truth("Journals"), None, at)
    rows = account_rows(report)
    assert rows
    for account_id, (debit, credit, _ytd_debit, _ytd_credit) in rows.items():
        assert debit - credit == expected[account_id]
    assert {a for a, v in expected.items() if v} == set(rows)
    total = labelled(report, "Total")
    assert total[0] == total[1] > 0  # debits equal credits


def test_profit_and_loss_agrees_with_journals(client: Client, schemas: Schemas) -> None:
    accounts = {a["AccountID"]: a for a in client.truth("Accounts")}
    params = {"fromDate": "2026-04-01", "toDate": "2026-04-30", "periods": 2, "timeframe": "MONTH"}
    report = client.get("/Reports/ProfitAndLoss", params=params).json()["Reports"][0]
    schemas.check("Reports", [report])
    assert len(report["Rows"][0]["Cells"]) == 4  # label + this month + two earlier months
    journals = client.truth("Journals")
    for column, (start, end) in enumerate(
        (
            (date(2026, 4, 1), date(2026, 4, 30)),
            (date(2026, 3, 1), date(2026, 3, 30)),
            (date(2026, 2, 1), date(2026, 2, 28)),
        )
    ):
        sums = sums_by_account(journals, start, end)
        net = -sum(v for a, v in sums.items() if accounts[a]["Type"] in PL_TYPES)
        assert labelled(report, "Net Profit")[column] == net
        for account_id, values in account_rows(report).items():
            sign = -1 if accounts[account_id]["Class"] == "REVENUE" else 1
            assert values[column] == sign * sums.get(account_id, 0)
    cash = client.get("/Reports/ProfitAndLoss", params=params | {"paymentsOnly": "true"}).json()
    cash_journals = client.control(
        f"truth/{client.config['tenant_ids'][0]}/Journals?paymentsOnly=true"
    )["Journals"]
    sums = sums_by_account(cash_journals, date(2026, 4, 1), date(2026, 4, 30))
    net = -sum(v for a, v in sums.items() if accounts[a]["Type"] in PL_TYPES)
    assert labelled(cash["Reports"][0], "Net Profit")[0] == net


def test_balance_sheet_balances(client: Client, schemas: Schemas) -> None:
    report = client.get(
        "/Reports/BalanceSheet", params={"date": "2026-09-30", "periods": 1}
    ).json()["Reports"][0]
    schemas.check("Reports", [report])
    net_assets = labelled(report, "Net Assets")
    equity = labelled(report, "Total Equity")
    assert net_assets == equity and len(equity) == 2


def test_bank_summary_and_executive_summary(client: Client, schemas: Schemas) -> None:
    accounts = {a["AccountID"]: a for a in client.truth("Accounts")}
    bank = client.get(
        "/Reports/BankSummary", params={"fromDate": "2026-05-01", "toDate": "2026-05-31"}
    ).json()["Reports"][0]
    schemas.check("Reports", [bank])
    closing = sums_by_account(client.truth("Journals"), None, date(2026, 5, 31))
    for account_id, (opening, received, spent, end) in account_rows(bank).items():
        assert accounts[account_id]["Type"] == "BANK"
        assert end == closing[account_id] == opening + received - spent
    summary = client.get("/Reports/ExecutiveSummary", params={"date": "2026-05-31"}).json()[
        "Reports"
    ][0]
    schemas.check("Reports", [summary])
    assert labelled(summary, "Closing bank balance")[0] == sum(
        v for a, v in closing.items() if accounts[a]["Type"] == "BANK"
    )


def test_aged_reports_and_budget(client: Client, schemas: Schemas) -> None:
    invoices = [
        i for i in client.truth("Invoices") if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED"
    ]
    contact = invoices[0]["Contact"]["ContactID"]
    report = client.get("/Reports/AgedReceivablesByContact", params={"contactId": contact}).json()[
        "Reports"
    ][0]
    schemas.check("Reports", [report])
    owed = sum(cents(i["AmountDue"]) for i in invoices if i["Contact"]["ContactID"] == contact)
    assert labelled(report, "Total")[-1] == owed > 0
    assert client.get("/Reports/AgedPayablesByContact").status_code == 400
    budget = client.get(
        "/Reports/BudgetSummary", params={"date": "2026-01-01", "periods": 3}
    ).json()["Reports"][0]
    schemas.check("Reports", [budget])
    assert len(budget["Rows"][0]["Cells"]) == 4
    assert client.get("/Reports/NoSuchReport").status_code == 404


def test_standard_role_cannot_run_reports(client: Client) -> None:
    standard = client.config["tenant_ids"][2]
    assert client.get("/Reports/BalanceSheet", tenant=standard).status_code == 403
    assert client.get("/Invoices", tenant=standard, params={"page": 1}).status_code == 200
    client.control("faults", {"standard_role_tenants": [client.config["tenant_ids"][0]]})
    assert client.get("/Reports/BalanceSheet").status_code == 403
    assert client.get("/Reports/BalanceSheet", tenant=standard).status_code == 200


def test_mutations_post_journals_and_bump_updated(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    client.control("clock", {"advance_seconds": 60})
    before = len(client.truth("Journals"))
    target = next(
        i for i in client.truth("Invoices") if i["Status"] == "AUTHORISED" and i["AmountDue"]
    )
    # read it first, so a stale cached copy would show
    assert (
        client.get(f"/Invoices/{target['InvoiceID']}").json()["Invoices"][0]["Status"]
        == "AUTHORISED"
    )
    done = client.control("mutate", {"tenant_id": tenant, "action": "pay"})["results"][0]
    assert done["id"] == target["InvoiceID"]
    invoice = client.get(f"/Invoices/{done['id']}").json()["Invoices"][0]
    assert invoice["Status"] == "PAID" and invoice["AmountDue"] == 0
    assert parse_msdate(invoice["UpdatedDateUTC"]) > max(
        parse_msdate(i["UpdatedDateUTC"])
        for i in client.truth("Invoices")
        if i["InvoiceID"] != done["id"]
    )
    journals = client.truth("Journals")
    assert len(journals) == before + 1
    assert journals[-1]["SourceType"] in ("ACCRECPAYMENT", "ACCPAYPAYMENT")
    assert journals[-1]["SourceID"] in {p["PaymentID"] for p in invoice["Payments"]}
    voided = client.control("mutate", {"tenant_id": tenant, "action": "void"})["results"][0]
    assert client.get(f"/Invoices/{voided['id']}").json()["Invoices"][0]["Status"] == "VOIDED"
    reversal = client.truth("Journals")[-1]
    assert reversal["SourceID"] == voided["id"]
    net = sum(
        cents(line["NetAmount"])
        for j in client.truth("Journals")
        if j["SourceID"] == voided["id"]
        for line in j["JournalLines"]
        if line["AccountCode"] == "610"
    )
    assert net == 0
    archived = client.control("mutate", {"tenant_id": tenant, "action": "archive_contact"})[
        "results"
    ][0]
    assert (
        client.get(f"/Contacts/{archived['id']}").json()["Contacts"][0]["ContactStatus"]
        == "ARCHIVED"
    )
    many = client.control("mutate", {"tenant_id": tenant, "action": "random", "count": 10})[
        "results"
    ]
    assert len(many) == 10
    for t in client.config["tenant_ids"]:
        for journal in client.truth("Journals", t):
            assert sum(cents(line["NetAmount"]) for line in journal["JournalLines"]) == 0
    bad = client.http.post(
        client.sbx.url + "/_sandbox/mutate", json={"tenant_id": tenant, "action": "explode"}
    )
    assert bad.status_code == 400


def test_generation_is_deterministic_and_fast() -> None:
    started = time.process_time()  # CPU time: a loaded machine must not make this flaky
    first = generate(11, "small", 2)
    assert time.process_time() - started < 1.0
    second = generate(11, "small", 2)
    other = generate(12, "small", 2)
    assert first[0].data["Invoices"] == second[0].data["Invoices"]
    assert first[1].journals == second[1].journals
    assert first[0].tenant_id != other[0].tenant_id
    first_invoice = next(iter(first[0].data["Invoices"].values()))
    assert first_invoice != next(iter(other[0].data["Invoices"].values()))
    currencies = {i["CurrencyCode"] for i in first[0].data["Invoices"].values()}
    assert len(currencies) == 2  # a little multi-currency


def test_due_date_change_on_part_paid_invoice_does_not_bump_updated(client: Client) -> None:
    """Xero's known If-Modified-Since gap, reproduced on purpose."""
    tenant = client.config["tenant_ids"][0]
    part = client.control("mutate", {"tenant_id": tenant, "action": "part_pay"})["results"][0]
    before = client.get(f"/Invoices/{part['id']}").json()["Invoices"][0]
    assert before["AmountPaid"] > 0 and before["AmountDue"] > 0
    client.control("mutate", {"tenant_id": tenant, "action": "change_due_date", "id": part["id"]})
    after = client.get(f"/Invoices/{part['id']}").json()["Invoices"][0]
    assert after["DueDate"] != before["DueDate"]
    assert after["UpdatedDateUTC"] == before["UpdatedDateUTC"]


def test_profit_and_loss_by_tracking_option(client: Client) -> None:
    accounts = {a["AccountID"]: a for a in client.truth("Accounts")}
    region = next(c for c in client.truth("TrackingCategories") if c["Name"] == "Region")
    north = region["Options"][0]["TrackingOptionID"]
    params = {
        "fromDate": "2026-01-01",
        "toDate": "2026-06-30",
        "trackingCategoryID": region["TrackingCategoryID"],
        "trackingOptionID": north,
    }
    report = client.get("/Reports/ProfitAndLoss", params=params).json()["Reports"][0]
    expected = 0
    for journal in client.truth("Journals"):
        day = date_of(parse_msdate(journal["JournalDate"]))
        if date(2026, 1, 1) <= day <= date(2026, 6, 30):
            for line in journal["JournalLines"]:
                tagged = {t["TrackingOptionID"] for t in line["TrackingCategories"]}
                if north in tagged and accounts[line["AccountID"]]["Type"] in PL_TYPES:
                    expected -= cents(line["NetAmount"])
    assert labelled(report, "Net Profit") == [expected]
    whole = client.get(
        "/Reports/ProfitAndLoss", params={"fromDate": "2026-01-01", "toDate": "2026-06-30"}
    )
    assert labelled(whole.json()["Reports"][0], "Net Profit") != [expected]
    bad = client.get("/Reports/ProfitAndLoss", params={**params, "trackingOptionID": "nope"})
    assert bad.status_code == 400

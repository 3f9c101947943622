"""Where the emulator once flattered its clients: egress and gzip, deleted transfers,
sub-resources, /Organisations, documented filters and the 400 body."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sandbox.xero.util import parse_msdate

from .conftest import Client


def test_gzip_on_request_and_egress_counted_on_the_wire(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    plain = client.get("/Invoices", params={"page": 1}, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    after_plain = client.control("stats")["egress_bytes"][tenant]
    assert after_plain == len(plain.content)
    packed = client.get("/Invoices", params={"page": 1}, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.json()["Invoices"] == plain.json()["Invoices"]
    wire = packed.num_bytes_downloaded
    assert wire < len(plain.content) / 3
    assert client.control("stats")["egress_bytes"][tenant] == after_plain + wire
    stats = client.control("stats")
    assert stats["calls"][tenant]["Invoices"] == {"GET": 2}
    assert client.config["tenant_ids"][1] not in stats["egress_bytes"]


def test_deleting_a_transfer_keeps_its_creation_date(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    transfers = client.get("/BankTransfers").json()["BankTransfers"]
    client.control("clock", {"advance_seconds": 600})
    now = datetime.fromisoformat(client.control("clock")["now"])
    result = client.control("mutate", {"tenant_id": tenant, "action": "delete_transfer"})
    deleted_id = result["results"][0]["id"]
    before = next(t for t in transfers if t["BankTransferID"] == deleted_id)
    everything = client.get("/BankTransfers", params={"includeDeleted": "true"}).json()
    after = next(t for t in everything["BankTransfers"] if t["BankTransferID"] == deleted_id)
    assert after["Status"] == "DELETED"
    assert after["CreatedDateUTC"] == before["CreatedDateUTC"]
    since = (now - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = client.get(
        "/BankTransfers",
        params={"includeDeleted": "true"},
        headers={"If-Modified-Since": since},
    ).json()["BankTransfers"]
    assert deleted_id not in {t["BankTransferID"] for t in recent}
    assert deleted_id not in {
        t["BankTransferID"] for t in client.get("/BankTransfers").json()["BankTransfers"]
    }


def test_history_of_a_record_shows_its_changes(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    client.control("clock", {"advance_seconds": 600})
    result = client.control("mutate", {"tenant_id": tenant, "action": "void"})["results"][0]
    invoice_id = result["id"]
    body = client.get(f"/Invoices/{invoice_id}/History").json()
    assert "Invoices" not in body
    records = body["HistoryRecords"]
    assert [r["Changes"] for r in records] == ["Created", "Voided"]
    assert all(set(r) >= {"Changes", "DateUTC", "User", "Details"} for r in records)
    stamps = [parse_msdate(r["DateUTC"]) for r in records]
    assert stamps == sorted(stamps)
    untouched = client.get("/Contacts").json()["Contacts"][0]["ContactID"]
    only = client.get(f"/Contacts/{untouched}/History").json()["HistoryRecords"]
    assert [r["Changes"] for r in only] == ["Created"]


def test_sub_resources_never_answer_with_the_parent(client: Client) -> None:
    invoice = client.get("/Invoices", params={"page": 1}).json()["Invoices"][0]["InvoiceID"]
    # attachments need their own scope, which tap-xero does not ask for
    assert client.get(f"/Invoices/{invoice}/Attachments").status_code == 401
    tenant = client.config["tenant_ids"][0]
    creds = client.sbx.custom_connection(tenant)
    token = client.http.post(
        client.config["identity_url"] + "/connect/token",
        auth=(creds["client_id"], creds["client_secret"]),
        data={"grant_type": "client_credentials", "scope": "accounting.attachments.read"},
    ).json()["access_token"]
    attachments = client.get(
        f"/Invoices/{invoice}/Attachments", headers={"Authorization": f"Bearer {token}"}
    )
    assert attachments.status_code == 200
    assert attachments.json()["Attachments"] == [] and "Invoices" not in attachments.json()
    one = client.get(
        f"/Invoices/{invoice}/Attachments/receipt.pdf",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert one.status_code == 404
    contact = client.get("/Contacts").json()["Contacts"][0]["ContactID"]
    org_id = client.get("/Organisation").json()["Organisations"][0]["OrganisationID"]
    for path in (
        f"/Invoices/{invoice}/pdf",
        f"/Invoices/{invoice}/OnlineInvoice",
        f"/Contacts/{contact}/CISSettings",
        f"/Organisation/{org_id}/CISSettings",
        f"/Accounts/{client.get('/Accounts').json()['Accounts'][0]['AccountID']}/History",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "Invoices" not in answer.json() and "Contacts" not in answer.json(), path


def test_organisations_plural_answers_as_organisation(client: Client) -> None:
    plural = client.get("/Organisations")
    assert plural.status_code == 200
    assert plural.json()["Organisations"] == client.get("/Organisation").json()["Organisations"]
    stats = client.control("stats")
    assert stats["calls"][client.config["tenant_ids"][0]]["Organisation"] == {"GET": 2}


def test_documented_filters_are_honoured(client: Client) -> None:
    contacts = client.truth("Contacts")
    target = contacts[3]
    found = client.get("/Contacts", params={"searchTerm": target["EmailAddress"].upper()})
    assert [c["ContactID"] for c in found.json()["Contacts"]] == [target["ContactID"]]
    invoices = client.truth("Invoices")[:2]
    numbers = ",".join(i["InvoiceNumber"] for i in invoices)
    got = client.get("/Invoices", params={"invoicenumbers": numbers}).json()["Invoices"]
    assert {i["InvoiceID"] for i in got} == {i["InvoiceID"] for i in invoices}
    paid = client.get("/Invoices", params={"statuses": "paid,VOIDED"}).json()["Invoices"]
    assert paid and {i["Status"] for i in paid} <= {"PAID", "VOIDED"}
    assert client.get("/Invoices", params={"createdByMyApp": "true"}).json()["Invoices"] == []
    quotes = client.truth("Quotes")
    first_day = min(parse_msdate(q["Date"]) for q in quotes)
    cut = datetime.fromtimestamp(first_day / 1000 + 40 * 86400, tz=timezone.utc).date()
    early = client.get("/Quotes", params={"DateTo": cut.isoformat()}).json()["Quotes"]
    late = client.get("/Quotes", params={"DateFrom": cut.isoformat()}).json()["Quotes"]
    assert early and late and len(early) + len(late) >= len(quotes) - 5
    assert all(parse_msdate(q["Date"]) <= first_day + 41 * 86_400_000 for q in early)
    drafts = client.get("/Quotes", params={"Status": "DRAFT"}).json()["Quotes"]
    assert drafts and {q["Status"] for q in drafts} == {"DRAFT"}
    orders = client.get("/PurchaseOrders", params={"Status": "DRAFT"}).json()["PurchaseOrders"]
    assert orders and {o["Status"] for o in orders} == {"DRAFT"}
    link = client.truth("LinkedTransactions")[0]
    linked = client.get(
        "/LinkedTransactions", params={"SourceTransactionID": link["SourceTransactionID"]}
    ).json()["LinkedTransactions"]
    assert link["LinkedTransactionID"] in {x["LinkedTransactionID"] for x in linked}


@pytest.mark.parametrize(
    ("path", "params", "kind"),
    [
        ("/Invoices", {"where": 'Status=="PAID"'}, "ValidationException"),
        ("/Overpayments", {"References": "x"}, "ValidationException"),
        ("/Budgets", {"DateFrom": "2026-01-01"}, "ValidationException"),
        ("/Quotes", {"DateFrom": "yesterday"}, "ValidationException"),
        ("/Invoices", {"unitdp": "four"}, "ValidationException"),
        ("/Invoices", {"order": "Date UP"}, "QueryParseException"),
        ("/Reports/BalanceSheet", {"trackingOptionID1": "x"}, "ValidationException"),
        ("/Reports/ProfitAndLoss", {"standardLayout": "false"}, "ValidationException"),
        ("/Reports/AgedPayablesByContact", {}, "ValidationException"),
    ],
)
def test_refusals_follow_the_error_schema(
    client: Client, path: str, params: dict[str, str], kind: str
) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["Type"] == kind and isinstance(body["ErrorNumber"], int)
    assert body["Message"] and body["Elements"] == []
    assert set(body) == {"ErrorNumber", "Type", "Message", "Elements"}


def test_undocumented_parameters_are_ignored(client: Client) -> None:
    everything = client.get("/Accounts").json()["Accounts"]
    assert client.get("/Accounts", params={"Statuses": "ARCHIVED"}).json()["Accounts"] == everything

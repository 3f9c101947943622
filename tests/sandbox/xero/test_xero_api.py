"""The Accounting API over loopback: envelope, schemas, paging, If-Modified-Since, soft deletes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sandbox.xero import queries
from sandbox.xero.company import COLLECTIONS, ID_FIELD
from sandbox.xero.queries import ENVELOPE_KEY, PAGE_SIZED, PAGED
from sandbox.xero.util import parse_msdate

from .conftest import Client, Schemas


def read_all(client: Client, collection: str, tenant: str | None = None) -> list[dict]:
    """Every visible record, paging where Xero pages (Journals by offset)."""
    key = ENVELOPE_KEY[collection]
    if collection == "Journals":
        out: list[dict] = []
        while True:
            batch = client.get("/Journals", tenant, {"offset": len(out)}).json()["Journals"]
            if not batch:
                return out
            out.extend(batch)
    if collection not in PAGED:
        response = client.get(f"/{collection}", tenant)
        assert response.status_code == 200, response.text
        return list(response.json()[key])
    out, page = [], 1
    while True:
        params = {"page": page, "pageSize": 1000} if collection in PAGE_SIZED else {"page": page}
        records = client.get(f"/{collection}", tenant, params).json()[key]
        if not records:
            return out
        out.extend(records)
        page += 1


def test_every_collection_conforms_to_xero_schema(client: Client, schemas: Schemas) -> None:
    client.control("faults", {"limits": {"minute": 1000}})
    for collection in COLLECTIONS:
        records = read_all(client, collection)
        assert records, f"{collection} is empty"
        schemas.check(ENVELOPE_KEY[collection], records)
        if collection == "Journals":
            schemas.check(
                "Journals",
                client.get("/Journals", params={"paymentsOnly": "true"}).json()["Journals"],
            )
        key = (
            records[0][ID_FIELD[collection]]
            if collection != "Journals"
            else records[0]["JournalID"]
        )
        one = client.get(f"/{collection}/{key}")
        assert one.status_code == 200, (collection, one.text)
        assert one.json()[ENVELOPE_KEY[collection]] == [records[0]]


def test_json_only_when_asked(client: Client) -> None:
    """Xero's default is XML: a client that forgets Accept: application/json gets no JSON."""
    xml = client.get("/Organisation", headers={"Accept": "*/*"})
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("text/xml")
    assert xml.content.startswith(b"<?xml")


def test_envelope_and_unknown_record(client: Client) -> None:
    body = client.get("/Invoices", params={"page": 1}).json()
    assert body["Status"] == "OK"
    assert body["Id"] and body["ProviderName"]
    assert body["DateTimeUTC"].startswith("/Date(")
    assert client.get("/Invoices/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/NoSuchThing").status_code == 404


def test_paging_edges(client: Client) -> None:
    truth = client.truth("Contacts")
    visible = [c for c in truth if c["ContactStatus"] != "ARCHIVED"]
    everything = client.get("/Contacts", params={"page": 1, "includeArchived": "true"}).json()
    assert everything["pagination"] == {
        "page": 1,
        "pageSize": 100,
        "pageCount": 2,
        "itemCount": 200,
    }
    assert len(everything["Contacts"]) == 100
    # exact multiple of the page size: page 2 is full, page 3 is empty
    second = client.get("/Contacts", params={"page": 2, "includeArchived": "true"}).json()
    assert len(second["Contacts"]) == 100
    third = client.get("/Contacts", params={"page": 3, "includeArchived": "true"}).json()
    assert third["Contacts"] == []
    assert third["pagination"]["itemCount"] == 200
    visible_page = client.get("/Contacts", params={"page": 1, "pageSize": 1000}).json()
    assert visible_page["pagination"]["itemCount"] == len(visible) < 200
    # pageSize is capped at 1000 and defaults to 100
    capped = client.get("/Invoices", params={"page": 1, "pageSize": 5000}).json()
    assert capped["pagination"]["pageSize"] == 1000
    assert len(capped["Invoices"]) == 250
    ids = []
    for page in (1, 2, 3):
        ids += [
            i["InvoiceID"]
            for i in client.get("/Invoices", params={"page": page}).json()["Invoices"]
        ]
    assert len(ids) == len(set(ids)) == 250
    # Quotes take `page` but not pageSize, and send no pagination object
    quotes = client.get("/Quotes", params={"page": 1, "pageSize": 10}).json()
    assert "pagination" not in quotes and len(quotes["Quotes"]) == 30
    assert client.get("/Invoices", params={"page": 0}).status_code == 400
    # no page: all records, no pagination object; unpaged endpoints ignore page
    assert "pagination" not in client.get("/Invoices").json()
    assert len(client.get("/Accounts", params={"page": 2}).json()["Accounts"]) == 29


def test_high_volume_threshold_answers_400_even_when_paged(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Xero refuses a request over more than 100,000 records (here lowered to 220), paged or
    not; a filter that narrows the set, or a smaller collection, gets through."""
    monkeypatch.setattr(queries, "HIGH_VOLUME_LIMIT", 220)
    for params in ({}, {"page": 1}):
        response = client.get("/Invoices", params=params)
        assert response.status_code == 400
        body = response.json()
        assert body["Type"] == "ValidationException" and body["ErrorNumber"] == 10
        assert "high volume threshold" in body["Message"]
    assert client.get("/Invoices", params={"page": 1, "Statuses": "PAID"}).status_code == 200
    assert len(client.get("/Contacts", params={"page": 1}).json()["Contacts"]) == 100


def test_if_modified_since_boundaries(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    client.control("clock", {"advance_seconds": 600})
    result = client.control("mutate", {"tenant_id": tenant, "action": "edit"})["results"][0]
    edited = next(i for i in client.truth("Invoices") if i["InvoiceID"] == result["id"])
    ms = parse_msdate(edited["UpdatedDateUTC"])
    second = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    at = second.strftime("%Y-%m-%dT%H:%M:%S")
    later = datetime.fromtimestamp(ms // 1000 + 1, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    same = client.get("/Invoices", params={"page": 1}, headers={"If-Modified-Since": at}).json()
    assert [i["InvoiceID"] for i in same["Invoices"]] == [result["id"]]
    after = client.get("/Invoices", params={"page": 1}, headers={"If-Modified-Since": later}).json()
    assert after["Invoices"] == []
    # the whole set since a past moment matches the truth exactly
    cut = parse_msdate(client.truth("Invoices")[100]["UpdatedDateUTC"]) // 1000 * 1000
    header = datetime.fromtimestamp(cut / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    expected = {
        i["InvoiceID"] for i in client.truth("Invoices") if parse_msdate(i["UpdatedDateUTC"]) >= cut
    }
    got = client.get(
        "/Invoices", params={"page": 1, "pageSize": 1000}, headers={"If-Modified-Since": header}
    ).json()
    assert {i["InvoiceID"] for i in got["Invoices"]} == expected
    assert 0 < len(expected) < 250
    # an endpoint where Xero ignores the header returns everything
    future = "2099-01-01T00:00:00"
    assert (
        len(client.get("/TaxRates", headers={"If-Modified-Since": future}).json()["TaxRates"]) == 4
    )
    assert client.get("/Accounts", headers={"If-Modified-Since": future}).json()["Accounts"] == []


def test_order(client: Client) -> None:
    body = client.get(
        "/Invoices", params={"page": 1, "pageSize": 1000, "order": "UpdatedDateUTC DESC"}
    ).json()
    stamps = [parse_msdate(i["UpdatedDateUTC"]) for i in body["Invoices"]]
    assert stamps == sorted(stamps, reverse=True)
    numbers = [
        i["InvoiceNumber"]
        for i in client.get("/Invoices", params={"page": 1, "order": "InvoiceNumber ASC"}).json()[
            "Invoices"
        ]
    ]
    assert numbers == sorted(numbers, key=str.lower)
    assert client.get("/Invoices", params={"page": 1, "order": "Date SIDEWAYS"}).status_code == 400


def test_soft_and_hard_deletes(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    statuses = {i["Status"] for i in read_all(client, "Invoices")}
    assert {"DELETED", "VOIDED", "PAID", "AUTHORISED", "DRAFT"} <= statuses
    archived = [c for c in client.truth("Contacts") if c["ContactStatus"] == "ARCHIVED"]
    assert archived
    contacts = client.get("/Contacts", params={"page": 1, "pageSize": 1000}).json()["Contacts"]
    assert not any(c["ContactStatus"] == "ARCHIVED" for c in contacts)
    with_archived = client.get(
        "/Contacts", params={"page": 1, "pageSize": 1000, "includeArchived": "true"}
    ).json()
    assert len(with_archived["Contacts"]) == len(contacts) + len(archived)
    transfers = client.get("/BankTransfers").json()["BankTransfers"]
    all_transfers = client.get("/BankTransfers", params={"includeDeleted": "true"}).json()[
        "BankTransfers"
    ]
    assert len(all_transfers) == len(transfers) + 1
    categories = client.get("/TrackingCategories").json()["TrackingCategories"]
    assert (
        len(
            client.get("/TrackingCategories", params={"includeArchived": "true"}).json()[
                "TrackingCategories"
            ]
        )
        == len(categories) + 1
    )
    # a deleted payment stays visible with its status; a deleted item is gone
    done = client.control("mutate", {"tenant_id": tenant, "action": "delete_payment"})["results"][0]
    payment = client.get(f"/Payments/{done['id']}").json()["Payments"][0]
    assert payment["Status"] == "DELETED"
    item = client.control("mutate", {"tenant_id": tenant, "action": "delete_item"})["results"][0]
    assert client.get(f"/Items/{item['id']}").status_code == 404
    assert item["id"] not in {i["ItemID"] for i in client.get("/Items").json()["Items"]}


def test_journals_offset_and_cash_basis(client: Client) -> None:
    first = client.get("/Journals").json()["Journals"]
    assert len(first) == 100
    assert [j["JournalNumber"] for j in first] == list(range(1, 101))
    later = client.get("/Journals", params={"offset": 150}).json()["Journals"]
    assert later[0]["JournalNumber"] == 151
    total = len(client.truth("Journals"))
    tail = client.get("/Journals", params={"offset": total - 5}).json()["Journals"]
    assert len(tail) == 5
    assert client.get("/Journals", params={"offset": total}).json()["Journals"] == []
    cash = client.get("/Journals", params={"paymentsOnly": "true"}).json()["Journals"]
    assert {j["SourceType"] for j in cash}.isdisjoint({"ACCREC", "ACCPAY"})
    # journal numbers follow creation time
    created = [parse_msdate(j["CreatedDateUTC"]) for j in client.truth("Journals")]
    assert created == sorted(created)


def test_summary_only_and_filters(client: Client) -> None:
    summary = client.get("/Invoices", params={"page": 1, "summaryOnly": "true"}).json()["Invoices"]
    assert all("LineItems" not in i for i in summary)
    paid = client.get("/Invoices", params={"Statuses": "PAID"}).json()["Invoices"]
    assert paid and all(i["Status"] == "PAID" for i in paid)


def test_only_get_reaches_the_api_and_is_recorded(client: Client) -> None:
    response = client.http.post(
        client.config["api_url"] + "/Invoices",
        headers={
            "Authorization": f"Bearer {client.access_token}",
            "xero-tenant-id": client.config["tenant_ids"][0],
        },
        json={"Invoices": []},
    )
    assert response.status_code == 405
    client.get("/Invoices", params={"page": 1})
    stats = client.control("stats")
    tenant = client.config["tenant_ids"][0]
    assert stats["calls"][tenant]["Invoices"] == {"POST": 1, "GET": 1}
    assert {"method": "POST", "endpoint": "Invoices", "tenant": tenant} in stats["requests"]
    assert stats["methods"] == {"POST": 1, "GET": 1}


def test_id_filters_and_where(client: Client) -> None:
    invoices = client.truth("Invoices")[:3]
    ids = ",".join(i["InvoiceID"] for i in invoices)
    got = client.get("/Invoices", params={"IDs": ids}).json()["Invoices"]
    assert [i["InvoiceID"] for i in got] == [i["InvoiceID"] for i in invoices]
    contact = invoices[0]["Contact"]["ContactID"]
    mine = client.get("/Invoices", params={"ContactIDs": contact}).json()["Invoices"]
    assert mine and all(i["Contact"]["ContactID"] == contact for i in mine)
    assert client.get("/Invoices", params={"where": 'Status=="PAID"'}).status_code == 400
    by_number = client.get(f"/Invoices/{invoices[0]['InvoiceNumber']}").json()["Invoices"][0]
    assert by_number["InvoiceID"] == invoices[0]["InvoiceID"]


def test_truth_and_reset(client: Client) -> None:
    tenant = client.config["tenant_ids"][0]
    truth = client.truth("Contacts")
    assert any(c["ContactStatus"] == "ARCHIVED" for c in truth)
    client.control("mutate", {"tenant_id": tenant, "action": "add_contact"})
    assert len(client.truth("Contacts")) == len(truth) + 1
    again = client.control("reset", {})
    assert again["config"] == client.config
    assert client.truth("Contacts") == truth
    # the ready line's refresh token works again after a reset
    assert client.refresh(client.config["refresh_token"]).status_code == 200
    other = client.control("reset", {"seed": 99})["config"]
    assert other["tenant_ids"] != client.config["tenant_ids"]
    assert client.http.get(f"{client.sbx.url}/_sandbox/truth/{tenant}/Contacts").status_code == 404

"""Changes that resemble real use, applied through POST /_sandbox/mutate."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from sandbox.xero import documents
from sandbox.xero.company import Org
from sandbox.xero.util import DAY_MS, Record, ms_of, parse_msdate

ACTIONS = (
    "pay",
    "part_pay",
    "void",
    "edit",
    "change_due_date",
    "add_invoice",
    "add_credit_note",
    "add_contact",
    "archive_contact",
    "delete_item",
    "delete_payment",
    "delete_transfer",
    "lock",
)
LOCK_KEYS = {"period_lock_date": "PeriodLockDate", "end_of_year_lock_date": "EndOfYearLockDate"}
RANDOM_ACTIONS = (
    "pay",
    "part_pay",
    "void",
    "edit",
    "add_invoice",
    "add_contact",
    "add_credit_note",
)


def apply(org: Org, body: dict[str, Any], now_ms: int, rng: random.Random) -> list[dict[str, Any]]:
    """One action (`action`, optional `id`, `amount`) or `count` random ones (`action: random`)."""
    action = str(body.get("action", ""))
    if action == "random":
        out = []
        for _ in range(int(body.get("count", 1))):
            choice = rng.choice(RANDOM_ACTIONS)
            try:
                out.append(_one(org, choice, None, None, now_ms, rng))
            except LookupError:
                continue
        return out
    if action not in ACTIONS:
        msg = f"unknown action {action!r}; one of {', '.join(ACTIONS)} or random"
        raise ValueError(msg)
    if action == "lock":
        return [_lock(org, body)]
    amount = body.get("amount")
    return [
        _one(
            org, action, body.get("id"), float(amount) if amount is not None else None, now_ms, rng
        )
    ]


def _lock(org: Org, body: dict[str, Any]) -> dict[str, Any]:
    """Set or clear lock dates: `period_lock_date`, `end_of_year_lock_date` (YYYY-MM-DD or null)."""
    dates = {
        field: None if body[key] is None else ms_of(date.fromisoformat(str(body[key])))
        for key, field in LOCK_KEYS.items()
        if key in body
    }
    org.set_lock_dates(dates)
    return _result("lock", "Organisation", org.tenant_id)


def _pick(org: Org, collection: str, key: str | None, test: Any) -> Record:
    records = org.data[collection]
    if key is not None:
        if key not in records:
            msg = f"no {collection} record {key}"
            raise LookupError(msg)
        return records[key]
    for record in records.values():
        if test(record):
            return record
    msg = f"no {collection} record fits"
    raise LookupError(msg)


def _locked(org: Org, record: Record) -> bool:
    return org.is_locked(parse_msdate(record["Date"]))


def _open(inv: Record) -> bool:
    return bool(inv["Status"] == "AUTHORISED" and inv["AmountDue"] > 0)


def _one(
    org: Org, action: str, key: Any, amount: float | None, now_ms: int, rng: random.Random
) -> dict[str, Any]:
    today = now_ms - now_ms % DAY_MS
    if action in ("pay", "part_pay"):
        invoice = _pick(org, "Invoices", key, _open)
        if amount is None:
            due = invoice["AmountDue"]
            amount = due if action == "pay" else max(0.01, round(due / 2, 2))
        documents.pay_invoice(org, invoice, amount, today, now_ms, reference="Sandbox payment")
        return _result(action, "Invoices", invoice["InvoiceID"])
    if action == "void":
        invoice = _pick(
            org,
            "Invoices",
            key,
            lambda i: (
                i["Status"] == "AUTHORISED"
                and not i["AmountPaid"]
                and not i["AmountCredited"]
                and not _locked(org, i)
            ),
        )
        documents.void_invoice(org, invoice, now_ms)
        return _result(action, "Invoices", invoice["InvoiceID"])
    if action == "edit":
        invoice = _pick(org, "Invoices", key, lambda i: i["Status"] in ("AUTHORISED", "DRAFT"))
        invoice["Reference"] = f"Edited {now_ms}"
        org.touch("Invoices", invoice["InvoiceID"], now_ms)
        org.event("INVOICE", "UPDATE", invoice["InvoiceID"])
        return _result(action, "Invoices", invoice["InvoiceID"])
    if action == "change_due_date":
        # Xero's known gap: on part-paid documents this does not bump UpdatedDateUTC.
        invoice = _pick(org, "Invoices", key, lambda i: _open(i) and i["AmountPaid"] > 0)
        invoice["DueDate"] = f"/Date({today + 14 * DAY_MS}+0000)/"
        org.cache.pop(("Invoices", invoice["InvoiceID"]), None)
        return _result(action, "Invoices", invoice["InvoiceID"])
    if action == "add_invoice":
        customers = [
            c
            for c in org.data["Contacts"].values()
            if c["IsCustomer"] and c["ContactStatus"] == "ACTIVE"
        ]
        contact = customers[rng.randrange(len(customers))]
        item = list(org.data["Items"].values())[rng.randrange(len(org.data["Items"]))]
        invoice = documents.new_invoice(
            org,
            kind="ACCREC",
            contact=contact,
            date_ms=today,
            due_ms=today + 30 * DAY_MS,
            lines=[_line(org, item, rng.randint(1, 5))],
            currency=org.profile.currency,
            rate=1.0,
            status="AUTHORISED",
            created_ms=now_ms,
        )
        return _result(action, "Invoices", invoice["InvoiceID"])
    if action == "add_credit_note":
        customers = [
            c
            for c in org.data["Contacts"].values()
            if c["IsCustomer"] and c["ContactStatus"] == "ACTIVE"
        ]
        item = next(iter(org.data["Items"].values()))
        note = documents.new_credit_note(
            org,
            kind="ACCRECCREDIT",
            contact=customers[rng.randrange(len(customers))],
            date_ms=today,
            lines=[_line(org, item, 1)],
            currency=org.profile.currency,
            rate=1.0,
            created_ms=now_ms,
            status="AUTHORISED",
        )
        return _result(action, "CreditNotes", note["CreditNoteID"])
    if action == "add_contact":
        n = len(org.data["Contacts"]) + 1
        new: Record = {
            "ContactID": org.new_id(),
            "ContactNumber": f"C{n:05d}",
            "ContactStatus": "ACTIVE",
            "Name": f"New Customer {n}",
            "EmailAddress": f"new{n}@example.com",
            "IsSupplier": False,
            "IsCustomer": True,
            "DefaultCurrency": org.profile.currency,
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "HasAttachments": False,
            "HasValidationErrors": False,
        }
        org.put("Contacts", new, now_ms)
        org.event("CONTACT", "CREATE", new["ContactID"])
        return _result(action, "Contacts", new["ContactID"])
    if action == "archive_contact":
        contact = _pick(org, "Contacts", key, lambda c: c["ContactStatus"] == "ACTIVE")
        contact["ContactStatus"] = "ARCHIVED"
        org.touch("Contacts", contact["ContactID"], now_ms)
        org.event("CONTACT", "UPDATE", contact["ContactID"])
        return _result(action, "Contacts", contact["ContactID"])
    if action == "delete_item":
        item = _pick(org, "Items", key, lambda i: True)
        del org.data["Items"][item["ItemID"]]
        org.cache.pop(("Items", item["ItemID"]), None)
        org.modified["Items"].pop(item["ItemID"], None)
        return _result(action, "Items", item["ItemID"])
    if action == "delete_payment":
        payment = _pick(org, "Payments", key, lambda p: p["Status"] == "AUTHORISED")
        documents.delete_payment(org, payment, now_ms)
        return _result(action, "Payments", payment["PaymentID"])
    transfer = _pick(org, "BankTransfers", key, lambda t: t["Status"] == "AUTHORISED")
    documents.delete_transfer(org, transfer, now_ms)
    return _result(action, "BankTransfers", transfer["BankTransferID"])


def _line(org: Org, item: Record, quantity: int) -> Record:
    details = item["SalesDetails"]
    amount = round(details["UnitPrice"] * 100) * quantity
    rate = org.tax_types["OUTPUT"][0]
    return {
        "LineItemID": org.new_id(),
        "Description": item["Name"],
        "Quantity": float(quantity),
        "UnitAmount": details["UnitPrice"],
        "ItemCode": item["Code"],
        "AccountCode": details["AccountCode"],
        "AccountID": org.accounts[details["AccountCode"]]["AccountID"],
        "TaxType": "OUTPUT" if rate else "NONE",
        "TaxAmount": round(amount * rate) / 100,
        "LineAmount": amount / 100,
        "Tracking": [],
    }


def _result(action: str, collection: str, key: str) -> dict[str, Any]:
    return {"action": action, "collection": collection, "id": key}

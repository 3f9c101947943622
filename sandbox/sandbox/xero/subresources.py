"""GET /{Collection}/{id}/{sub}: History and Attachments as the spec shapes them, else 404.

The spec's sub-resources are History (HistoryRecords), Attachments, pdf, OnlineInvoice and
CISSettings. The sandbox keeps no attachments (an empty list), renders no PDFs and runs no UK
construction-industry scheme (404); it never answers a sub-resource with its parent record.
"""

from __future__ import annotations

from typing import Any

from sandbox.xero.company import ID_FIELD, MODIFIED_FIELD, Org
from sandbox.xero.queries import ApiError
from sandbox.xero.util import Record, iso_of, msdate, parse_msdate

# Collections with GET /{Collection}/{id}/History (Xero's OpenAPI spec)
HISTORY = frozenset(
    {
        "BatchPayments",
        "BankTransactions",
        "BankTransfers",
        "Contacts",
        "CreditNotes",
        "ExpenseClaims",
        "Invoices",
        "Items",
        "ManualJournals",
        "Overpayments",
        "Payments",
        "Prepayments",
        "PurchaseOrders",
        "Quotes",
        "Receipts",
        "RepeatingInvoices",
    }
)
# Collections with GET /{Collection}/{id}/Attachments (Xero's OpenAPI spec)
ATTACHMENTS = frozenset(
    {
        "Accounts",
        "BankTransactions",
        "BankTransfers",
        "Contacts",
        "CreditNotes",
        "Invoices",
        "ManualJournals",
        "PurchaseOrders",
        "Quotes",
        "Receipts",
        "RepeatingInvoices",
    }
)
STATUS_CHANGES = {
    "AUTHORISED": "Approved",
    "PAID": "Paid",
    "VOIDED": "Voided",
    "DELETED": "Deleted",
    "ARCHIVED": "Archived",
    "SUBMITTED": "Submitted",
}


def answer(org: Org, collection: str, record: Record, sub: list[str]) -> dict[str, Any]:
    """The body (without the envelope's header) of a sub-resource GET; ApiError when none."""
    name = sub[0].lower()
    if name == "history" and len(sub) == 1 and collection in HISTORY:
        return {"HistoryRecords": history(org, collection, record)}
    if name == "attachments" and len(sub) == 1 and collection in ATTACHMENTS:
        return {"Attachments": []}
    path = "/".join(sub)
    raise ApiError(404, "Not Found", f"The sandbox does not serve {collection}/{{id}}/{path}")


def history(org: Org, collection: str, record: Record) -> list[Record]:
    """Creation, then each later change (with the status it set), oldest first."""
    key = str(record[ID_FIELD[collection]])
    changes = org.history.get((collection, key)) or [(_created_ms(org, collection, record), None)]
    out: list[Record] = []
    previous: str | None = None
    for index, (ms, status) in enumerate(changes):
        if index == 0:
            label = "Created"
        elif status is not None and status != previous and status in STATUS_CHANGES:
            label = STATUS_CHANGES[status]
        else:
            label = "Edited"
        previous = status or previous
        out.append(
            {
                "Changes": label,
                "DateUTCString": iso_of(ms),
                "DateUTC": msdate(ms).replace("+0000", ""),
                "User": "System Generated",
                "Details": f"{label} by the sandbox's demo data.",
            }
        )
    return out


def _created_ms(org: Org, collection: str, record: Record) -> int:
    created = record.get("CreatedDateUTC")
    if isinstance(created, str) and created.startswith("/Date("):
        return parse_msdate(created)
    key = str(record[ID_FIELD[collection]])
    field = MODIFIED_FIELD.get(collection, "UpdatedDateUTC")
    stamp = org.modified[collection].get(key)
    if stamp is None and isinstance(record.get(field), str):
        stamp = parse_msdate(record[field])
    return stamp or 0

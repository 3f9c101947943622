"""The query parameters Xero's OpenAPI spec documents per collection, each honoured or refused.

A documented parameter is never silently ignored: it filters (`FILTERS`), is read elsewhere
(`HANDLED`: paging, order, flags) or answers 400 (`REFUSED`, with the reason). A parameter the
spec does not document for that collection is ignored, as an unknown query parameter is.
Parameter names match case-insensitively (the spec writes `FromDate`, Xero's pages `fromDate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sandbox.xero.util import Record, date_of, parse_msdate


class Params(Mapping[str, str]):
    """Query parameters looked up by name in any letter case."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self._items = {key.lower(): value for key, value in params.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Filter:
    """`kind` of match on the record's `fields` (dotted paths): any, equals, from, to, search."""

    kind: str
    fields: tuple[str, ...]


def _field(record: Record, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _day(value: Any) -> date | None:
    if isinstance(value, str) and value.startswith("/Date("):
        return date_of(parse_msdate(value))
    return None


def _any(raw: str, f: Filter) -> Callable[[Record], bool]:
    wanted = {x.strip().lower() for x in raw.split(",") if x.strip()}
    return lambda r: any(str(_field(r, p) or "").lower() in wanted for p in f.fields)


def _search(raw: str, f: Filter) -> Callable[[Record], bool]:
    term = raw.strip().lower()
    return lambda r: any(term in str(_field(r, p) or "").lower() for p in f.fields)


def _bound(raw: str, f: Filter, name: str) -> Callable[[Record], bool]:
    try:
        limit = date.fromisoformat(raw.strip()[:10])
    except ValueError:
        raise FilterError(f"{name} must be a date (YYYY-MM-DD)") from None
    after = f.kind == "from"

    def keep(record: Record) -> bool:
        day = _day(_field(record, f.fields[0]))
        return day is not None and (day >= limit if after else day <= limit)

    return keep


class FilterError(ValueError):
    """A documented parameter the request gets wrong, or one the sandbox refuses."""


def _by_ids(*fields: str) -> Filter:
    return Filter("any", fields)


FILTERS: dict[str, dict[str, Filter]] = {
    "Contacts": {
        "ids": _by_ids("ContactID"),
        "searchterm": Filter(
            "search", ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress")
        ),
    },
    "Invoices": {
        "ids": _by_ids("InvoiceID"),
        "invoicenumbers": _by_ids("InvoiceNumber"),
        "contactids": _by_ids("Contact.ContactID"),
        "statuses": _by_ids("Status"),
        "searchterm": Filter("search", ("InvoiceNumber", "Reference")),
    },
    "LinkedTransactions": {
        "linkedtransactionid": _by_ids("LinkedTransactionID"),
        "sourcetransactionid": _by_ids("SourceTransactionID"),
        "targettransactionid": _by_ids("TargetTransactionID"),
        "contactid": _by_ids("ContactID"),
        "status": _by_ids("Status"),
    },
    "PurchaseOrders": {
        "status": _by_ids("Status"),
        "datefrom": Filter("from", ("Date",)),
        "dateto": Filter("to", ("Date",)),
    },
    "Quotes": {
        "datefrom": Filter("from", ("Date",)),
        "dateto": Filter("to", ("Date",)),
        "expirydatefrom": Filter("from", ("ExpiryDate",)),
        "expirydateto": Filter("to", ("ExpiryDate",)),
        "contactid": _by_ids("Contact.ContactID"),
        "status": _by_ids("Status"),
        "quotenumber": _by_ids("QuoteNumber"),
    },
    "Budgets": {"ids": _by_ids("BudgetID")},
}
# Read by queries.py: paging, order, the visibility flags and unit decimal places.
HANDLED: dict[str, frozenset[str]] = {
    name: frozenset(params)
    for name, params in {
        "Accounts": ("order",),
        "BankTransactions": ("order", "page", "pagesize", "unitdp"),
        "BankTransfers": ("order", "includedeleted"),
        "BatchPayments": ("order",),
        "ContactGroups": ("order",),
        "Contacts": ("order", "page", "pagesize", "includearchived", "summaryonly"),
        "CreditNotes": ("order", "page", "pagesize", "unitdp"),
        "Currencies": ("order",),
        "ExpenseClaims": ("order",),
        "Invoices": (
            "order",
            "page",
            "pagesize",
            "includearchived",
            "summaryonly",
            "unitdp",
            "createdbymyapp",
        ),
        "Items": ("order", "unitdp"),
        "Journals": ("offset", "paymentsonly"),
        "LinkedTransactions": ("page",),
        "ManualJournals": ("order", "page", "pagesize"),
        "Overpayments": ("order", "page", "pagesize", "unitdp"),
        "Payments": ("order", "page", "pagesize"),
        "Prepayments": ("order", "page", "pagesize", "unitdp"),
        "PurchaseOrders": ("order", "page", "pagesize"),
        "Quotes": ("order", "page"),
        "Receipts": ("order", "unitdp"),
        "RepeatingInvoices": ("order",),
        "TaxRates": ("order",),
        "TrackingCategories": ("order", "includearchived"),
        "Users": ("order",),
        "Employees": ("order",),
    }.items()
}
_WHERE = "the sandbox does not evaluate `where` filters; use the explicit parameters"
REFUSED: dict[str, dict[str, str]] = {
    name: {"where": _WHERE}
    for name, handled in HANDLED.items()
    if "order" in handled and name not in ("PurchaseOrders", "Quotes")
}
REFUSED["Overpayments"]["references"] = "the sandbox's overpayments carry no references"
REFUSED["Prepayments"]["invoicenumbers"] = "the sandbox does not link prepayments to invoices"
REFUSED["Budgets"] = {
    "datefrom": "the sandbox does not cut budget lines by date",
    "dateto": "the sandbox does not cut budget lines by date",
}


def apply(records: list[Record], collection: str, params: Params) -> list[Record]:
    """`records` through the collection's documented filters; FilterError for refused ones."""
    refused = REFUSED.get(collection, {})
    for name in params:
        if name in refused and params[name]:
            raise FilterError(f"{name}: {refused[name]}")
    for name, spec in FILTERS.get(collection, {}).items():
        raw = params.get(name)
        if not raw:
            continue
        if spec.kind == "any":
            keep = _any(raw, spec)
        elif spec.kind == "search":
            keep = _search(raw, spec)
        else:
            keep = _bound(raw, spec, name)
        records = [r for r in records if keep(r)]
    return records


def filtered(collection: str, params: Params) -> bool:
    """Whether the request narrows the collection with any filter."""
    return any(params.get(name) for name in FILTERS.get(collection, {}))

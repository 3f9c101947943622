"""Reading collections the way Xero's API does: visibility, If-Modified-Since, order, paging."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from sandbox.xero import filters
from sandbox.xero.company import COLLECTIONS, MODIFIED_FIELD, Org
from sandbox.xero.util import Record, parse_msdate

# `page` (1-based) is honoured here ...
PAGED = frozenset(
    {
        "BankTransactions",
        "Contacts",
        "CreditNotes",
        "Invoices",
        "LinkedTransactions",
        "ManualJournals",
        "Overpayments",
        "Payments",
        "Prepayments",
        "PurchaseOrders",
        "Quotes",
    }
)
# ... and `pageSize` with the `pagination` object only here.
PAGE_SIZED = PAGED - {"LinkedTransactions", "Quotes"}
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
JOURNALS_PER_CALL = 100
# Xero's "high volume threshold": a request over more than 100,000 records answers 400, paged
# or not; filters that narrow the set avoid it (docs/sandbox-xero.md cites the source).
HIGH_VOLUME_LIMIT = 100_000

ENVELOPE_KEY = {name: name for name in COLLECTIONS} | {"Organisation": "Organisations"}
ARCHIVABLE = {"Contacts": "ContactStatus", "TrackingCategories": "Status", "Invoices": "Status"}
# ErrorNumber and Type of the spec's `Error` schema, by the kind of 400
ERROR_TYPES = {"Validation": (10, "ValidationException"), "QueryParse": (16, "QueryParseException")}


class ApiError(Exception):
    """An error answer of the API: HTTP status and Xero's body for it.

    400s follow the spec's `Error` schema (ErrorNumber, Type, Message, Elements); the other
    statuses the problem shape Xero sends for them (Type, Title, Status, Detail).
    """

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any]
        if status == 400:
            number, kind = ERROR_TYPES.get(title, ERROR_TYPES["Validation"])
            self.body = {"ErrorNumber": number, "Type": kind, "Message": detail, "Elements": []}
        else:
            self.body = {"Type": None, "Title": title, "Status": status, "Detail": detail}


def parse_if_modified_since(value: str | None) -> int | None:
    """Milliseconds of an If-Modified-Since header (ISO to the second, or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() == "true"


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Validation", f"{name} must be an integer") from None


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str) and value.startswith("/Date("):
        return (1, parse_msdate(value))
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value).lower())


def order_records(records: list[Record], order: str) -> list[Record]:
    """`order=Field [ASC|DESC], ...` (stable, last key first)."""
    keys = []
    for part in order.split(","):
        words = part.strip().split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise ApiError(400, "QueryParse", f"invalid order {order!r}")
        keys.append((words[0], len(words) == 2 and words[1].upper() == "DESC"))
    for name, descending in reversed(keys):
        records = sorted(records, key=lambda r: _sort_key(r.get(name)), reverse=descending)
    return records


SUMMARY_DROPS = frozenset(
    {
        "LineItems",
        "Payments",
        "CreditNotes",
        "Prepayments",
        "Overpayments",
        "Addresses",
        "Phones",
        "ContactGroups",
        "ContactPersons",
    }
)


def select(
    org: Org, collection: str, query: Mapping[str, str], if_modified_since: str | None
) -> tuple[list[Record], dict[str, int] | None]:
    """The records of one GET of a collection, and its `pagination` object where Xero sends one."""
    params = filters.Params(query)
    if collection == "Journals":
        return journals(org, params, if_modified_since), None
    since = parse_if_modified_since(if_modified_since) if collection in MODIFIED_FIELD else None
    chosen = _filtered(_visible(org, collection, params, since), collection, params)
    if len(chosen) > HIGH_VOLUME_LIMIT:
        raise ApiError(
            400,
            "Validation",
            f"The request matches {len(chosen)} records, over Xero's high volume threshold of "
            f"{HIGH_VOLUME_LIMIT}: narrow it with If-Modified-Since or filters",
        )
    if "order" in filters.HANDLED.get(collection, ()) and params.get("order"):
        chosen = order_records(chosen, params["order"])
    if summary_only(collection, params):
        chosen = [{k: v for k, v in r.items() if k not in SUMMARY_DROPS} for r in chosen]
    if collection not in PAGED or "page" not in params:
        return chosen, None
    return _page(chosen, collection, params)


def _visible(
    org: Org, collection: str, params: Mapping[str, str], since: int | None
) -> list[Record]:
    """Records changed since `since`, without the archived and deleted ones Xero hides."""
    records = org.data[collection]
    modified = org.modified[collection]
    if since is not None:
        chosen = [r for key, r in records.items() if modified.get(key, 0) >= since]
    else:
        chosen = list(records.values())
    status_field = ARCHIVABLE.get(collection)
    if status_field and collection != "Invoices" and not _flag(params, "includeArchived"):
        chosen = [r for r in chosen if r.get(status_field) != "ARCHIVED"]
    if collection == "BankTransfers" and not _flag(params, "includeDeleted"):
        chosen = [r for r in chosen if r.get("Status") != "DELETED"]
    return chosen


def _filtered(chosen: list[Record], collection: str, params: filters.Params) -> list[Record]:
    """The collection's documented filters (filters.py); 400 for the refused ones."""
    if "unitdp" in filters.HANDLED.get(collection, ()):
        # amounts are generated in cents, so four unit decimal places show the same values
        _int_param(params, "unitdp", 2)
    if collection == "Invoices" and _flag(params, "createdByMyApp"):
        return []  # every invoice of the demo company was entered in Xero, none by the app
    try:
        return filters.apply(chosen, collection, params)
    except filters.FilterError as exc:
        raise ApiError(400, "Validation", str(exc)) from None


def _page(
    chosen: list[Record], collection: str, params: Mapping[str, str]
) -> tuple[list[Record], dict[str, int] | None]:
    """One page of `chosen`; `pagination` where the collection takes `pageSize`."""
    page = _int_param(params, "page", 1)
    if page < 1:
        raise ApiError(400, "Validation", "page must be 1 or more")
    size = DEFAULT_PAGE_SIZE
    if collection in PAGE_SIZED:
        size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE)
        if size < 1:
            raise ApiError(400, "Validation", "pageSize must be 1 or more")
        size = min(size, MAX_PAGE_SIZE)
    items = chosen[(page - 1) * size : page * size]
    if collection not in PAGE_SIZED:
        return items, None
    pagination = {
        "page": page,
        "pageSize": size,
        "pageCount": math.ceil(len(chosen) / size),
        "itemCount": len(chosen),
    }
    return items, pagination


def summary_only(collection: str, params: Mapping[str, str]) -> bool:
    """Lighter records (no line items), where Xero offers them."""
    return collection in ("Contacts", "Invoices") and _flag(params, "summaryOnly")


def journals(org: Org, params: Mapping[str, str], if_modified_since: str | None) -> list[Record]:
    """Journals with JournalNumber > offset, 100 a call, in number order (cash basis on request)."""
    ledger = org.cash_journals if _flag(params, "paymentsOnly") else org.journals
    offset = max(0, _int_param(params, "offset", 0))
    since = parse_if_modified_since(if_modified_since)
    # numbers are 1..n in list order, so JournalNumber > offset starts at index `offset`
    if since is None:
        return ledger[offset : offset + JOURNALS_PER_CALL]
    out = []
    for journal in ledger[offset:]:
        if parse_msdate(journal["CreatedDateUTC"]) >= since:
            out.append(journal)
            if len(out) == JOURNALS_PER_CALL:
                break
    return out


def find(org: Org, collection: str, key: str) -> Record | None:
    """GET by id (and Invoices by number, as Xero allows)."""
    records = org.data[collection]
    if collection == "Journals":
        for ledger_record in org.journals:
            if ledger_record["JournalID"] == key or str(ledger_record["JournalNumber"]) == key:
                return ledger_record
        return None
    if key in records:
        return records[key]
    lowered = key.lower()
    for record_key, record in records.items():
        if str(record_key).lower() == lowered:
            return record
        if collection == "Invoices" and record.get("InvoiceNumber") == key:
            return record
    return None

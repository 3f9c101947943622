"""The general ledger: journals (accrual and cash basis), manual journals, accounts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_xero import access
from tap_xero.child import XeroChildStream
from tap_xero.client import TENANT_KEY, XeroStream
from tap_xero.reports import Accounts

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class JournalsStream(XeroStream):
    """Immutable ledger entries, append-only: `offset` past the last JournalNumber."""

    name = "journals"
    scopes = access.JOURNALS
    tier = "Advanced"  # GET /Journals since 2 March 2026
    collection = "Journals"
    id_field = "JournalID"
    paging = "offset"
    ordered = True
    replication_key = "JournalNumber"


class JournalLinesStream(XeroChildStream):
    name = "journal_lines"
    parent_type = JournalsStream
    lines_field = "JournalLines"
    id_field = "JournalLineID"


class CashJournalsStream(JournalsStream):
    """The same journals on a cash basis (`paymentsOnly=true`)."""

    name = "cash_journals"
    payments_only = True


class ManualJournalsStream(XeroStream):
    """Ordering manual journals misbehaves at Xero: no `order`, bookmark at the end."""

    name = "manual_journals"
    scopes = access.MANUAL_JOURNALS
    collection = "ManualJournals"
    id_field = "ManualJournalID"
    paging = "page_size"
    modified_since = True
    replication_key = "UpdatedDateUTC"


class ManualJournalLinesStream(XeroChildStream):
    """Manual journal lines carry no id: keyed by their position in the journal."""

    name = "manual_journal_lines"
    parent_type = ManualJournalsStream
    lines_field = "JournalLines"


class AccountsStream(XeroStream):
    """The chart of accounts, read whole (one call); archived and deleted ones by status.

    The report streams name each account's code and name from it: the whole chart read
    here serves them too, so /Accounts is read once per organisation per run.
    """

    name = "accounts"
    scopes = access.SETTINGS
    collection = "Accounts"
    id_field = "AccountID"

    @override
    def read(self, context: Context | None) -> Iterable[dict[str, Any]]:
        chart: list[dict[str, Any]] = []
        for record in super().read(context):
            # A copy of the lookup's fields: emitting drops deselected properties in place.
            chart.append({k: record.get(k) for k in ("AccountID", "Code", "Name")})
            yield record
        tenant = str((context or {}).get(TENANT_KEY, ""))
        self.xero_tap.reference_tables[(tenant, "Accounts")] = Accounts.from_records(chart)

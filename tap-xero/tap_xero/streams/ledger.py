"""The general ledger: journals (accrual and cash basis), manual journals, accounts."""

from __future__ import annotations

from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream


class JournalsStream(XeroStream):
    """Immutable ledger entries, append-only: `offset` past the last JournalNumber."""

    name = "journals"
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
    """The chart of accounts; archived and deleted accounts stay visible by status."""

    name = "accounts"
    collection = "Accounts"
    id_field = "AccountID"
    modified_since = True
    replication_key = "UpdatedDateUTC"

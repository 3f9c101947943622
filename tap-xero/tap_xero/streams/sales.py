"""Sales: invoices (and bills), credit notes, quotes, repeating invoices."""

from __future__ import annotations

from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream


class InvoicesStream(XeroStream):
    """Sales invoices and bills; deleted and voided ones stay visible by status."""

    name = "invoices"
    collection = "Invoices"
    id_field = "InvoiceID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"
    include_archived = True
    webhook_fetch = "IDs"


class InvoiceLineItemsStream(XeroChildStream):
    name = "invoice_line_items"
    parent_type = InvoicesStream
    lines_field = "LineItems"
    id_field = "LineItemID"


class CreditNotesStream(XeroStream):
    name = "credit_notes"
    collection = "CreditNotes"
    id_field = "CreditNoteID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"
    webhook_fetch = "path"  # the spec gives CreditNotes no `IDs` filter


class CreditNoteLineItemsStream(XeroChildStream):
    name = "credit_note_line_items"
    parent_type = CreditNotesStream
    lines_field = "LineItems"
    id_field = "LineItemID"


class QuotesStream(XeroStream):
    """Quotes page by 100 (no pageSize)."""

    name = "quotes"
    collection = "Quotes"
    id_field = "QuoteID"
    paging = "page"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class RepeatingInvoicesStream(XeroStream):
    """Templates: no If-Modified-Since, so read whole."""

    name = "repeating_invoices"
    collection = "RepeatingInvoices"
    id_field = "RepeatingInvoiceID"

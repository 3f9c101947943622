"""Banking and payments: bank transactions and transfers, payments of every kind."""

from __future__ import annotations

from tap_xero import access
from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream


class BankTransactionsStream(XeroStream):
    name = "bank_transactions"
    scopes = access.BANKING
    collection = "BankTransactions"
    id_field = "BankTransactionID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class BankTransactionLineItemsStream(XeroChildStream):
    name = "bank_transaction_line_items"
    parent_type = BankTransactionsStream
    lines_field = "LineItems"
    id_field = "LineItemID"


class BankTransfersStream(XeroStream):
    """Read whole each run, deleted ones included, closed by ACTIVATE_VERSION.

    Transfers have no UpdatedDateUTC, and deleting one leaves its CreatedDateUTC as it
    was, so no If-Modified-Since can see a deletion; the collection is small.
    """

    name = "bank_transfers"
    scopes = access.BANKING
    collection = "BankTransfers"
    id_field = "BankTransferID"
    include_deleted = True


class BatchPaymentsStream(XeroStream):
    name = "batch_payments"
    scopes = access.PAYMENTS
    collection = "BatchPayments"
    id_field = "BatchPaymentID"
    modified_since = True
    replication_key = "UpdatedDateUTC"


class PaymentsStream(XeroStream):
    name = "payments"
    scopes = access.PAYMENTS
    collection = "Payments"
    id_field = "PaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class OverpaymentsStream(XeroStream):
    name = "overpayments"
    scopes = access.PAYMENTS
    collection = "Overpayments"
    id_field = "OverpaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class PrepaymentsStream(XeroStream):
    name = "prepayments"
    scopes = access.PAYMENTS
    collection = "Prepayments"
    id_field = "PrepaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class LinkedTransactionsStream(XeroStream):
    """Links are hard-deleted, invisible to a poll: read whole each run."""

    name = "linked_transactions"
    scopes = access.INVOICES
    collection = "LinkedTransactions"
    id_field = "LinkedTransactionID"
    paging = "page"

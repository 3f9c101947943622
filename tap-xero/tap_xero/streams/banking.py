"""Banking and payments: bank transactions and transfers, payments of every kind."""

from __future__ import annotations

from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream


class BankTransactionsStream(XeroStream):
    name = "bank_transactions"
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
    """Transfers have no UpdatedDateUTC: incremental on CreatedDateUTC, deleted included."""

    name = "bank_transfers"
    collection = "BankTransfers"
    id_field = "BankTransferID"
    modified_since = True
    replication_key = "CreatedDateUTC"
    include_deleted = True


class BatchPaymentsStream(XeroStream):
    name = "batch_payments"
    collection = "BatchPayments"
    id_field = "BatchPaymentID"
    modified_since = True
    replication_key = "UpdatedDateUTC"


class PaymentsStream(XeroStream):
    name = "payments"
    collection = "Payments"
    id_field = "PaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class OverpaymentsStream(XeroStream):
    name = "overpayments"
    collection = "Overpayments"
    id_field = "OverpaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class PrepaymentsStream(XeroStream):
    name = "prepayments"
    collection = "Prepayments"
    id_field = "PrepaymentID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class LinkedTransactionsStream(XeroStream):
    """Links are hard-deleted, invisible to a poll: read whole each run."""

    name = "linked_transactions"
    collection = "LinkedTransactions"
    id_field = "LinkedTransactionID"
    paging = "page"

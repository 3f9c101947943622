"""Purchases: purchase orders, expense claims and their receipts."""

from __future__ import annotations

from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream


class PurchaseOrdersStream(XeroStream):
    name = "purchase_orders"
    collection = "PurchaseOrders"
    id_field = "PurchaseOrderID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"


class PurchaseOrderLineItemsStream(XeroChildStream):
    name = "purchase_order_line_items"
    parent_type = PurchaseOrdersStream
    lines_field = "LineItems"
    id_field = "LineItemID"


class ExpenseClaimsStream(XeroStream):
    name = "expense_claims"
    collection = "ExpenseClaims"
    id_field = "ExpenseClaimID"
    modified_since = True
    replication_key = "UpdatedDateUTC"


class ReceiptsStream(XeroStream):
    name = "receipts"
    collection = "Receipts"
    id_field = "ReceiptID"
    modified_since = True
    replication_key = "UpdatedDateUTC"

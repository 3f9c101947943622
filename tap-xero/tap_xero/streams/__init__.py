"""Every tap-xero stream, one module per resource family."""

from __future__ import annotations

from tap_xero.client import XeroChildStream, XeroStream
from tap_xero.streams.banking import (
    BankTransactionLineItemsStream,
    BankTransactionsStream,
    BankTransfersStream,
    BatchPaymentsStream,
    LinkedTransactionsStream,
    OverpaymentsStream,
    PaymentsStream,
    PrepaymentsStream,
)
from tap_xero.streams.contacts import ContactGroupsStream, ContactsStream
from tap_xero.streams.ledger import (
    AccountsStream,
    CashJournalsStream,
    JournalLinesStream,
    JournalsStream,
    ManualJournalLinesStream,
    ManualJournalsStream,
)
from tap_xero.streams.organisation import (
    BrandingThemesStream,
    BudgetsStream,
    CurrenciesStream,
    EmployeesStream,
    ItemsStream,
    OrganisationsStream,
    TaxRatesStream,
    TrackingCategoriesStream,
    UsersStream,
)
from tap_xero.streams.purchases import (
    ExpenseClaimsStream,
    PurchaseOrderLineItemsStream,
    PurchaseOrdersStream,
    ReceiptsStream,
)
from tap_xero.streams.sales import (
    CreditNoteLineItemsStream,
    CreditNotesStream,
    InvoiceLineItemsStream,
    InvoicesStream,
    QuotesStream,
    RepeatingInvoicesStream,
)

STREAM_TYPES: list[type[XeroStream] | type[XeroChildStream]] = [
    AccountsStream,
    BankTransactionsStream,
    BankTransactionLineItemsStream,
    BankTransfersStream,
    BatchPaymentsStream,
    BrandingThemesStream,
    BudgetsStream,
    CashJournalsStream,
    ContactGroupsStream,
    ContactsStream,
    CreditNotesStream,
    CreditNoteLineItemsStream,
    CurrenciesStream,
    EmployeesStream,
    ExpenseClaimsStream,
    InvoicesStream,
    InvoiceLineItemsStream,
    ItemsStream,
    JournalsStream,
    JournalLinesStream,
    LinkedTransactionsStream,
    ManualJournalsStream,
    ManualJournalLinesStream,
    OrganisationsStream,
    OverpaymentsStream,
    PaymentsStream,
    PrepaymentsStream,
    PurchaseOrdersStream,
    PurchaseOrderLineItemsStream,
    QuotesStream,
    ReceiptsStream,
    RepeatingInvoicesStream,
    TaxRatesStream,
    TrackingCategoriesStream,
    UsersStream,
]

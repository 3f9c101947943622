"""One Xero organisation as the sandbox holds it: its collections and its double-entry ledger.

Every posted document goes through `Org.post`, so the journals (and the reports computed
from them) always agree with the documents. Amounts are kept in cents internally.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from sandbox.xero.util import DAY_MS, Record, money, msdate, new_id, parse_msdate, split_cents

COLLECTIONS: tuple[str, ...] = (
    "Accounts",
    "BankTransactions",
    "BankTransfers",
    "BatchPayments",
    "BrandingThemes",
    "Budgets",
    "ContactGroups",
    "Contacts",
    "CreditNotes",
    "Currencies",
    "ExpenseClaims",
    "Invoices",
    "Items",
    "Journals",
    "LinkedTransactions",
    "ManualJournals",
    "Organisation",
    "Overpayments",
    "Payments",
    "Prepayments",
    "PurchaseOrders",
    "Quotes",
    "Receipts",
    "RepeatingInvoices",
    "TaxRates",
    "TrackingCategories",
    "Users",
)

ID_FIELD: dict[str, str] = {
    "Accounts": "AccountID",
    "BankTransactions": "BankTransactionID",
    "BankTransfers": "BankTransferID",
    "BatchPayments": "BatchPaymentID",
    "BrandingThemes": "BrandingThemeID",
    "Budgets": "BudgetID",
    "ContactGroups": "ContactGroupID",
    "Contacts": "ContactID",
    "CreditNotes": "CreditNoteID",
    "Currencies": "Code",
    "ExpenseClaims": "ExpenseClaimID",
    "Invoices": "InvoiceID",
    "Items": "ItemID",
    "Journals": "JournalID",
    "LinkedTransactions": "LinkedTransactionID",
    "ManualJournals": "ManualJournalID",
    "Organisation": "OrganisationID",
    "Overpayments": "OverpaymentID",
    "Payments": "PaymentID",
    "Prepayments": "PrepaymentID",
    "PurchaseOrders": "PurchaseOrderID",
    "Quotes": "QuoteID",
    "Receipts": "ReceiptID",
    "RepeatingInvoices": "RepeatingInvoiceID",
    "TaxRates": "TaxType",
    "TrackingCategories": "TrackingCategoryID",
    "Users": "UserID",
}

# The field whose time If-Modified-Since compares, where Xero honours the header.
MODIFIED_FIELD: dict[str, str] = {
    "Accounts": "UpdatedDateUTC",
    "BatchPayments": "UpdatedDateUTC",
    "BankTransactions": "UpdatedDateUTC",
    "BankTransfers": "CreatedDateUTC",
    "Contacts": "UpdatedDateUTC",
    "CreditNotes": "UpdatedDateUTC",
    "ExpenseClaims": "UpdatedDateUTC",
    "Invoices": "UpdatedDateUTC",
    "Items": "UpdatedDateUTC",
    "Journals": "CreatedDateUTC",
    "ManualJournals": "UpdatedDateUTC",
    "Overpayments": "UpdatedDateUTC",
    "Payments": "UpdatedDateUTC",
    "Prepayments": "UpdatedDateUTC",
    "PurchaseOrders": "UpdatedDateUTC",
    "Quotes": "UpdatedDateUTC",
    "Receipts": "UpdatedDateUTC",
    "Users": "UpdatedDateUTC",
}

ACCOUNT_CLASS: dict[str, str] = {
    "BANK": "ASSET",
    "CURRENT": "ASSET",
    "FIXED": "ASSET",
    "INVENTORY": "ASSET",
    "PREPAYMENT": "ASSET",
    "NONCURRENT": "ASSET",
    "CURRLIAB": "LIABILITY",
    "LIABILITY": "LIABILITY",
    "TERMLIAB": "LIABILITY",
    "EQUITY": "EQUITY",
    "REVENUE": "REVENUE",
    "SALES": "REVENUE",
    "OTHERINCOME": "REVENUE",
    "EXPENSE": "EXPENSE",
    "OVERHEADS": "EXPENSE",
    "DIRECTCOSTS": "EXPENSE",
    "DEPRECIATN": "EXPENSE",
}

BANK = "090"
SAVINGS = "091"
AR = "610"
AP = "800"
TAX = "820"
RETAINED = "960"
OWNER = "970"

# (code, name, type, system account)
CHART: tuple[tuple[str, str, str, str], ...] = (
    (BANK, "Business Bank Account", "BANK", ""),
    (SAVINGS, "Business Savings Account", "BANK", ""),
    ("200", "Sales", "REVENUE", ""),
    ("260", "Other Revenue", "REVENUE", ""),
    ("270", "Interest Income", "OTHERINCOME", ""),
    ("310", "Cost of Goods Sold", "DIRECTCOSTS", ""),
    ("400", "Advertising", "OVERHEADS", ""),
    ("404", "Bank Fees", "OVERHEADS", ""),
    ("412", "Consulting & Accounting", "EXPENSE", ""),
    ("420", "Entertainment", "EXPENSE", ""),
    ("429", "General Expenses", "EXPENSE", ""),
    ("433", "Insurance", "EXPENSE", ""),
    ("445", "Light, Power, Heating", "EXPENSE", ""),
    ("461", "Printing & Stationery", "EXPENSE", ""),
    ("469", "Rent", "OVERHEADS", ""),
    ("477", "Wages and Salaries", "EXPENSE", ""),
    ("489", "Telephone & Internet", "EXPENSE", ""),
    ("493", "Travel - National", "EXPENSE", ""),
    ("499", "Old Marketing Costs", "EXPENSE", ""),
    (AR, "Accounts Receivable", "CURRENT", "DEBTORS"),
    ("620", "Prepayments", "CURRENT", ""),
    ("630", "Inventory", "INVENTORY", ""),
    ("710", "Office Equipment", "FIXED", ""),
    ("720", "Computer Equipment", "FIXED", ""),
    (AP, "Accounts Payable", "CURRLIAB", "CREDITORS"),
    (TAX, "Sales Tax", "CURRLIAB", "GST"),
    ("840", "Historical Adjustment", "CURRLIAB", "HISTORICAL"),
    (RETAINED, "Retained Earnings", "EQUITY", "RETAINEDEARNINGS"),
    (OWNER, "Owner A Funds Introduced", "EQUITY", ""),
)
SALES_ACCOUNTS = ("200", "260")
EXPENSE_ACCOUNTS = ("310", "400", "404", "412", "420", "429", "433", "445", "461", "469", "489")

NO_OPTIONS: frozenset[str] = frozenset()

# (code, line amount in document currency, tax, description, tracking)
Line = tuple[str, int, int, str, list[Record]]


@dataclass
class Profile:
    """What differs between the generated organisations."""

    name: str
    version: str
    country: str
    currency: str
    timezone: str
    tax_rate: float
    tax_name: str


PROFILES: tuple[Profile, ...] = (
    Profile("Sandbox Trading Ltd", "NZ", "NZ", "NZD", "NEWZEALANDSTANDARDTIME", 0.15, "GST"),
    Profile("Sandbox Supplies Pty Ltd", "AU", "AU", "AUD", "AUSEASTERNSTANDARDTIME", 0.10, "GST"),
    Profile("Sandbox Services Ltd", "UK", "GB", "GBP", "GMTSTANDARDTIME", 0.20, "VAT"),
    Profile("Sandbox Works Inc", "US", "US", "USD", "EASTERNSTANDARDTIME", 0.0, "Sales Tax"),
)


@dataclass
class Posting:
    """A journal before numbering: numbers follow creation time, as Xero's do."""

    created_ms: int
    date_ms: int
    source_type: str
    source_id: str
    reference: str
    lines: list[Line]
    accrual: bool
    cash: bool


# PeriodLockDate binds every user but advisers; EndOfYearLockDate binds every user.
LOCK_FIELDS = ("PeriodLockDate", "EndOfYearLockDate")


@dataclass
class Org:
    """An organisation: its records by collection and its two ledgers (accrual and cash)."""

    tenant_id: str
    profile: Profile
    rng: random.Random
    standard_role: bool = False
    data: dict[str, dict[str, Record]] = field(default_factory=dict)
    modified: dict[str, dict[str, int]] = field(default_factory=dict)
    journals: list[Record] = field(default_factory=list)
    cash_journals: list[Record] = field(default_factory=list)
    # (journal date ms, account code, net cents, tracking option ids) per ledger, for reports
    postings: list[tuple[int, str, int, frozenset[str]]] = field(default_factory=list)
    cash_postings: list[tuple[int, str, int, frozenset[str]]] = field(default_factory=list)
    pending: list[Posting] = field(default_factory=list)
    accounts: dict[str, Record] = field(default_factory=dict)
    tax_types: dict[str, tuple[float, str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    # webhook events raised by mutations: (category, type, resource id)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    # base-currency amount on the control account (AR/AP) of each posted document
    control_base: dict[str, int] = field(default_factory=dict)
    # while generating, journals wait to be numbered in creation order
    generating: bool = False
    # serialised records by (collection, id): pages are joined from these, not re-encoded
    cache: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # changes after generation by (collection, id): (ms, Status after the change), for History
    history: dict[tuple[str, str], list[tuple[int, str | None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in COLLECTIONS:
            self.data.setdefault(name, {})
            self.modified.setdefault(name, {})

    @property
    def name(self) -> str:
        return self.profile.name

    # ---- records -------------------------------------------------------------------------
    def put(self, collection: str, record: Record, modified_ms: int | None = None) -> Record:
        key = record[ID_FIELD[collection]]
        self.data[collection][key] = record
        self.cache.pop((collection, key), None)
        if modified_ms is not None:
            self.touch(collection, key, modified_ms)
        return record

    def touch(self, collection: str, key: str, ms: int) -> None:
        """Bump the record's modified time (UpdatedDateUTC, or CreatedDateUTC where that is it)."""
        fieldname = MODIFIED_FIELD.get(collection, "UpdatedDateUTC")
        record = self.data[collection][key]
        if not self.generating:
            previous = self.modified[collection].get(key)
            changes = self.history.setdefault((collection, key), [])
            if not changes and previous is not None:
                changes.append((previous, None))  # as generated
            changes.append((ms, record.get("Status")))
        record[fieldname] = msdate(ms)
        self.modified[collection][key] = ms
        self.cache.pop((collection, key), None)

    def changed(self, collection: str, key: str) -> None:
        """A record changed without a new modified time (Xero leaves it; the JSON is stale)."""
        self.cache.pop((collection, key), None)

    def encode(self, collection: str, records: list[Record]) -> list[bytes]:
        """JSON of each record, from the cache where it is fresh."""
        key_field = "JournalID" if collection == "Journals" else ID_FIELD[collection]
        cache = self.cache
        out = []
        for record in records:
            cache_key = (collection, str(record[key_field]))
            encoded = cache.get(cache_key)
            if encoded is None:
                encoded = cache[cache_key] = json.dumps(record, separators=(",", ":")).encode()
            out.append(encoded)
        return out

    def next_number(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}-{n:05d}"

    def new_id(self) -> str:
        return new_id(self.rng)

    # ---- ledger --------------------------------------------------------------------------
    def post(
        self,
        created_ms: int,
        date_ms: int,
        source_type: str,
        source_id: str,
        reference: str,
        lines: list[Line],
        *,
        cash: bool,
        accrual: bool = True,
    ) -> None:
        """Record a balanced journal (in base-currency cents) on the accrual and/or cash ledger."""
        if not self.generating:
            self.check_open(date_ms)
        total = sum(line[1] for line in lines)
        if total != 0:
            msg = f"unbalanced journal for {source_type} {source_id}: {total}"
            raise ValueError(msg)
        posting = Posting(
            created_ms, date_ms, source_type, source_id, reference, lines, accrual, cash
        )
        if self.generating:
            self.pending.append(posting)
        else:
            self._write_both(posting)

    # ---- lock dates ------------------------------------------------------------------------
    def lock_ms(self) -> int | None:
        """The latest lock date that binds the sandbox's users (none is an adviser)."""
        org = next(iter(self.data["Organisation"].values()), {})
        dates = [parse_msdate(org[k]) for k in LOCK_FIELDS if org.get(k)]
        return max(dates) if dates else None

    def is_locked(self, date_ms: int) -> bool:
        lock = self.lock_ms()
        return lock is not None and date_ms < lock + DAY_MS

    def check_open(self, date_ms: int) -> None:
        """Xero refuses to add or edit a transaction dated on or before a lock date."""
        if self.is_locked(date_ms):
            msg = "the transaction is dated on or before the organisation's lock date"
            raise ValueError(msg)

    def set_lock_dates(self, dates: dict[str, int | None]) -> None:
        """Set (ms) or clear (None) `PeriodLockDate` / `EndOfYearLockDate`, shown only if set."""
        org = dict(next(iter(self.data["Organisation"].values())))
        for name, ms in dates.items():
            if ms is None:
                org.pop(name, None)
            else:
                org[name] = msdate(ms)
        self.put("Organisation", org)

    def _write_both(self, posting: Posting) -> None:
        if posting.accrual:
            self._write(posting, ledger_cash=False)
        if posting.cash:
            self._write(posting, ledger_cash=True)

    def finalize(self) -> None:
        """Number the generated journals in creation order."""
        self.pending.sort(key=lambda p: (p.created_ms, p.source_id))
        for posting in self.pending:
            self._write_both(posting)
        self.pending.clear()
        self.generating = False

    def event(self, category: str, kind: str, resource_id: str) -> None:
        """A webhook event for a change made after generation."""
        if not self.generating:
            self.events.append((category, kind, resource_id))

    def _write(self, posting: Posting, *, ledger_cash: bool) -> None:
        target = self.cash_journals if ledger_cash else self.journals
        postings = self.cash_postings if ledger_cash else self.postings
        source_type = posting.source_type
        journal_lines: list[Record] = []
        for code, net, tax, description, tracking in posting.lines:
            account = self.accounts[code]
            tax_type = "NONE" if tax == 0 else self.tax_type_for(account)
            journal_lines.append(
                {
                    "JournalLineID": self.new_id(),
                    "AccountID": account["AccountID"],
                    "AccountCode": code,
                    "AccountType": account["Type"],
                    "AccountName": account["Name"],
                    "Description": description,
                    "NetAmount": money(net),
                    "GrossAmount": money(net + tax),
                    "TaxAmount": money(tax),
                    "TaxType": tax_type,
                    "TaxName": self.tax_types[tax_type][1],
                    "TrackingCategories": tracking,
                }
            )
            options = frozenset(t["TrackingOptionID"] for t in tracking) if tracking else NO_OPTIONS
            postings.append((posting.date_ms, code, net, options))
        journal: Record = {
            "JournalID": self.new_id(),
            "JournalDate": msdate(posting.date_ms),
            "JournalNumber": len(target) + 1,
            "CreatedDateUTC": msdate(posting.created_ms),
            "Reference": posting.reference,
            "SourceID": posting.source_id,
            "SourceType": source_type,
            "JournalLines": journal_lines,
        }
        target.append(journal)
        if not ledger_cash:
            self.data["Journals"][journal["JournalID"]] = journal
            self.modified["Journals"][journal["JournalID"]] = posting.created_ms

    def tax_type_for(self, account: Record) -> str:
        return "OUTPUT" if account["Class"] == "REVENUE" else "INPUT"

    # ---- documents -----------------------------------------------------------------------
    def base(self, amount: int, rate: float) -> int:
        """Document-currency cents to base-currency cents."""
        return amount if rate == 1.0 else round(amount / rate)

    def document_lines(self, record: Record, sign: int) -> list[Line]:
        """Journal lines of a document's line items plus tax, in base currency, times `sign`."""
        rate = float(record.get("CurrencyRate", 1.0))
        lines: list[Line] = []
        tax_total = 0
        for item in record["LineItems"]:
            net = self.base(round(item["LineAmount"] * 100), rate)
            tax = self.base(round(item.get("TaxAmount", 0.0) * 100), rate)
            tracking = [
                {
                    "TrackingCategoryID": t["TrackingCategoryID"],
                    "TrackingOptionID": t["TrackingOptionID"],
                    "Name": t["Name"],
                    "Option": t["Option"],
                }
                for t in item.get("Tracking", [])
            ]
            lines.append(
                (item["AccountCode"], sign * net, sign * tax, item.get("Description", ""), tracking)
            )
            tax_total += tax
        if tax_total:
            lines.append((TAX, sign * tax_total, 0, "Tax", []))
        return lines

    def with_control(self, lines: list[Line], control: str, description: str) -> list[Line]:
        """Close the journal on the control account (AR, AP or bank) so it balances exactly."""
        rest = sum(line[1] for line in lines)
        return [*lines, (control, -rest, 0, description, [])]


def account_ref(account: Record) -> Record:
    return {"AccountID": account["AccountID"], "Code": account["Code"], "Name": account["Name"]}


def contact_ref(contact: Record) -> Record:
    return {"ContactID": contact["ContactID"], "Name": contact["Name"]}


def line_totals(lines: list[Record]) -> tuple[int, int]:
    """(sub total, total tax) in cents of a document's line items."""
    sub = sum(round(item["LineAmount"] * 100) for item in lines)
    tax = sum(round(item.get("TaxAmount", 0.0) * 100) for item in lines)
    return sub, tax


def cash_lines_for_payment(
    accrual: list[Line], control: str, paid_base: int, bank: str
) -> list[Line]:
    """Cash-basis journal of a payment: the document's income or expense lines pro rata."""
    income = [line for line in accrual if line[0] != control]
    weights = [line[1] for line in income]
    if not income or sum(weights) == 0:
        return [(bank, paid_base, 0, "Payment", []), (control, -paid_base, 0, "Payment", [])]
    parts = split_cents(-paid_base, [abs(w) for w in weights])
    scaled: list[Line] = [
        (code, part, 0, description, tracking)
        for (code, _net, _tax, description, tracking), part in zip(income, parts, strict=True)
    ]
    return [(bank, paid_base, 0, "Payment", []), *scaled]

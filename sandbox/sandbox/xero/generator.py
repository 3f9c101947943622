"""The demo company: organisations generated deterministically from a seed.

Everything is dated in the two years up to `ANCHOR`, a fixed day, so that the same seed
always gives the same records; the sandbox clock starts after it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from sandbox.xero import documents
from sandbox.xero.company import (
    ACCOUNT_CLASS,
    BANK,
    CHART,
    EXPENSE_ACCOUNTS,
    PROFILES,
    SALES_ACCOUNTS,
    SAVINGS,
    Org,
    Profile,
    account_ref,
    contact_ref,
)
from sandbox.xero.util import DAY_MS, Record, iso_of, ms_of, msdate, new_id

ANCHOR = date(2026, 10, 31)
HOUR_MS = 3_600_000

FIRST_NAMES = ("Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Isla", "Jack")
LAST_NAMES = ("Smith", "Brown", "Wilson", "Taylor", "Clark", "White", "Hall", "Young", "King")
COMPANY_WORDS = (
    "Acme",
    "Harbour",
    "Summit",
    "Kiwi",
    "Blue",
    "Northern",
    "Golden",
    "Rapid",
    "Urban",
    "Coastal",
    "Pioneer",
    "Silver",
    "Maple",
    "Cedar",
    "Alpine",
    "Metro",
    "Bright",
    "Swift",
    "Oak",
    "River",
)
COMPANY_KINDS = ("Traders", "Supplies", "Consulting", "Foods", "Logistics", "Design", "Media")
ITEMS = (
    ("WIDGET", "Widget", 1250),
    ("GADGET", "Gadget", 4500),
    ("CONSULT", "Consulting hour", 15000),
    ("SUPPORT", "Support plan", 9900),
    ("CABLE", "Cable", 799),
    ("DESK", "Standing desk", 65000),
    ("CHAIR", "Office chair", 29900),
    ("LAMP", "Desk lamp", 4900),
    ("PAPER", "Paper ream", 899),
    ("INK", "Ink cartridge", 3999),
    ("LAPTOP", "Laptop", 189900),
    ("MOUSE", "Mouse", 2500),
    ("TRAIN", "Training day", 120000),
    ("AUDIT", "Audit", 250000),
    ("HOST", "Hosting", 5900),
    ("DOMAIN", "Domain name", 1999),
    ("DESIGN", "Design hour", 11000),
    ("PRINT", "Printing", 1500),
    ("COFFEE", "Coffee beans", 2200),
    ("TEA", "Tea", 900),
)


@dataclass(frozen=True)
class Size:
    """How many of each document an organisation gets."""

    invoices: int
    contacts: int
    credit_notes: int
    bank_transactions: int
    manual_journals: int
    purchase_orders: int
    quotes: int
    days: int


SMALL = Size(250, 200, 100, 200, 12, 40, 30, 365)


def size_for(name: str, tenants: int) -> Size:
    if name == "small":
        return SMALL
    if name == "benchmark":
        invoices = -(-100_000 // tenants)
        return Size(invoices, 2000, invoices // 10, invoices // 5, 200, 1000, 500, 730)
    msg = f"unknown size {name!r} (small or benchmark)"
    raise ValueError(msg)


def generate(seed: int, size: str, tenants: int) -> list[Org]:
    """`tenants` organisations; the third (if any) is the Standard-role one."""
    orgs = []
    for index in range(tenants):
        rng = random.Random(seed * 7919 + index)
        profile = PROFILES[index % len(PROFILES)]
        if index >= len(PROFILES):
            profile = Profile(
                f"{profile.name} {index + 1}",
                profile.version,
                profile.country,
                profile.currency,
                profile.timezone,
                profile.tax_rate,
                profile.tax_name,
            )
        org = Org(tenant_id=new_id(rng), profile=profile, rng=rng, standard_role=index == 2)
        Builder(org, size_for(size, tenants)).build()
        orgs.append(org)
    return orgs


class Builder:
    """Fills one organisation: reference data first, then documents in date order."""

    def __init__(self, org: Org, size: Size) -> None:
        self.org = org
        self.rng = org.rng
        self.size = size
        self.end_ms = ms_of(ANCHOR)
        self.start_ms = self.end_ms - size.days * DAY_MS
        self.customers: list[Record] = []
        self.suppliers: list[Record] = []
        self.items: list[Record] = []
        self.tracking: list[Record] = []
        self.foreign = "USD" if org.profile.currency != "USD" else "EUR"

    def when(self, start_ms: int | None = None) -> int:
        """A random day between `start_ms` (or the start) and the anchor, at midnight."""
        low = (start_ms if start_ms is not None else self.start_ms) // DAY_MS
        return self.rng.randint(low, self.end_ms // DAY_MS) * DAY_MS

    def stamp(self, day_ms: int) -> int:
        """A time during the working day of `day_ms`, to the millisecond."""
        return day_ms + self.rng.randint(8 * HOUR_MS, 18 * HOUR_MS)

    def build(self) -> None:
        self.org.generating = True
        self.organisation()
        self.reference_data()
        self.contacts()
        documents.opening_balance(self.org, self.start_ms)
        self.invoices()
        self.credit_notes()
        self.bank_transactions()
        self.transfers()
        self.manual_journals()
        self.prepayments_and_overpayments()
        self.purchase_orders_and_quotes()
        self.expense_claims()
        self.repeating_and_linked()
        self.batch_payments()
        self.budgets()
        self.org.finalize()

    # ---- reference data --------------------------------------------------------------------
    def organisation(self) -> None:
        p = self.org.profile
        created = self.start_ms - 30 * DAY_MS
        self.org.put(
            "Organisation",
            {
                "OrganisationID": self.org.tenant_id,
                "APIKey": "",
                "Name": p.name,
                "LegalName": p.name,
                "PaysTax": p.tax_rate > 0,
                "Version": p.version,
                "OrganisationType": "COMPANY",
                "OrganisationEntityType": "COMPANY",
                "BaseCurrency": p.currency,
                "CountryCode": p.country,
                "IsDemoCompany": False,
                "OrganisationStatus": "ACTIVE",
                "FinancialYearEndDay": 31,
                "FinancialYearEndMonth": 3 if p.country in ("NZ", "GB") else 6,
                "SalesTaxBasis": "ACCRUALS" if p.country != "US" else "ACCRUAL",
                "SalesTaxPeriod": "TWOMONTHS" if p.country == "NZ" else "QUARTERLY1",
                "DefaultSalesTax": "Tax Exclusive",
                "DefaultPurchasesTax": "Tax Exclusive",
                "CreatedDateUTC": msdate(created),
                "Timezone": p.timezone,
                "ShortCode": "!" + self.org.tenant_id[:5],
                "Class": "STANDARD",
                "Edition": "BUSINESS",
                "LineOfBusiness": "Wholesale trade",
                "Addresses": [],
                "Phones": [],
                "ExternalLinks": [],
            },
        )

    def reference_data(self) -> None:
        org = self.org
        t0 = self.start_ms - 20 * DAY_MS
        p = org.profile
        rate = p.tax_rate * 100
        for tax_type, name, r, report in (
            ("OUTPUT", f"{p.tax_name} on Income", rate, "OUTPUT"),
            ("INPUT", f"{p.tax_name} on Expenses", rate, "INPUT"),
            ("NONE", "No Tax", 0.0, "NONE"),
            ("EXEMPTOUTPUT", "Zero Rated", 0.0, "EXEMPTOUTPUT"),
        ):
            org.tax_types[tax_type] = (r / 100, name)
            org.put(
                "TaxRates",
                {
                    "Name": name,
                    "TaxType": tax_type,
                    "ReportTaxType": report,
                    "CanApplyToAssets": True,
                    "CanApplyToEquity": True,
                    "CanApplyToExpenses": True,
                    "CanApplyToLiabilities": True,
                    "CanApplyToRevenue": True,
                    "DisplayTaxRate": r,
                    "EffectiveRate": r,
                    "Status": "ACTIVE",
                    "TaxComponents": [
                        {
                            "Name": p.tax_name,
                            "Rate": r,
                            "IsCompound": False,
                            "IsNonRecoverable": False,
                        }
                    ],
                },
            )
        for code, name, kind, system in CHART:
            account: Record = {
                "AccountID": org.new_id(),
                "Code": code,
                "Name": name,
                "Type": kind,
                "Status": "ARCHIVED" if code == "499" else "ACTIVE",
                "Class": ACCOUNT_CLASS[kind],
                "TaxType": "NONE"
                if kind in ("BANK", "EQUITY", "CURRLIAB", "CURRENT")
                else ("OUTPUT" if ACCOUNT_CLASS[kind] == "REVENUE" else "INPUT"),
                "EnablePaymentsToAccount": False,
                "ShowInExpenseClaims": kind in ("EXPENSE", "OVERHEADS"),
                "ReportingCode": ACCOUNT_CLASS[kind][:3],
                "ReportingCodeName": ACCOUNT_CLASS[kind].title(),
                "HasAttachments": False,
                "AddToWatchlist": False,
                "Description": name,
            }
            if system:
                account["SystemAccount"] = system
            if kind == "BANK":
                account["BankAccountNumber"] = f"12-3456-{self.rng.randint(1000000, 9999999)}-00"
                account["BankAccountType"] = "BANK"
                account["CurrencyCode"] = p.currency
                del account["Description"]
            org.accounts[code] = account
            org.put("Accounts", account, self.stamp(t0))
        for code, name in ((p.currency, "Base currency"), (self.foreign, "Foreign currency")):
            org.put("Currencies", {"Code": code, "Description": name})
        for i, theme in enumerate(("Standard", "Special Projects")):
            org.put(
                "BrandingThemes",
                {
                    "BrandingThemeID": org.new_id(),
                    "Name": theme,
                    "Type": "INVOICE",
                    "SortOrder": i,
                    "CreatedDateUTC": msdate(t0),
                },
            )
        for name, options, status in (
            ("Region", ("North", "South", "East", "West"), "ACTIVE"),
            ("Department", ("Sales", "Operations", "Admin"), "ACTIVE"),
            ("Old Projects", ("Apollo", "Gemini"), "ARCHIVED"),
        ):
            category_id = org.new_id()
            category: Record = {
                "TrackingCategoryID": category_id,
                "Name": name,
                "Status": status,
                "Options": [
                    {
                        "TrackingOptionID": org.new_id(),
                        "Name": option,
                        "Status": status,
                        "TrackingCategoryID": category_id,
                    }
                    for option in options
                ],
            }
            org.put("TrackingCategories", category)
            if status == "ACTIVE":
                self.tracking.append(category)
        for code, name, price in ITEMS:
            sale_account = "200" if code not in ("CONSULT", "TRAIN", "AUDIT") else "260"
            item = {
                "ItemID": org.new_id(),
                "Code": code,
                "Name": name,
                "Description": name,
                "PurchaseDescription": name,
                "IsSold": True,
                "IsPurchased": True,
                "IsTrackedAsInventory": False,
                "SalesDetails": {
                    "UnitPrice": price / 100,
                    "AccountCode": sale_account,
                    "TaxType": "OUTPUT",
                },
                "PurchaseDetails": {
                    "UnitPrice": round(price * 0.6) / 100,
                    "AccountCode": "310",
                    "TaxType": "INPUT",
                },
            }
            org.put("Items", item, self.stamp(t0))
            self.items.append(item)
        for i, role in enumerate(("FINANCIALADVISER", "STANDARD", "READONLY")):
            org.put(
                "Users",
                {
                    "UserID": org.new_id(),
                    "EmailAddress": f"{FIRST_NAMES[i].lower()}@example.com",
                    "FirstName": FIRST_NAMES[i],
                    "LastName": LAST_NAMES[i],
                    "IsSubscriber": i == 0,
                    "OrganisationRole": role,
                },
                self.stamp(t0),
            )

    def contacts(self) -> None:
        org = self.org
        groups: list[Record] = [
            {"ContactGroupID": org.new_id(), "Name": name, "Status": status, "Contacts": []}
            for name, status in (
                ("Key accounts", "ACTIVE"),
                ("Wholesale", "ACTIVE"),
                ("Old", "DELETED"),
            )
        ]
        for i in range(self.size.contacts):
            supplier = i % 5 in (1, 3)
            name = (
                f"{COMPANY_WORDS[i % len(COMPANY_WORDS)]} "
                f"{COMPANY_KINDS[(i // len(COMPANY_WORDS)) % len(COMPANY_KINDS)]} {i + 1}"
            )
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            last = LAST_NAMES[i % len(LAST_NAMES)]
            created = self.when() - 400 * DAY_MS
            contact: Record = {
                "ContactID": org.new_id(),
                "ContactNumber": f"C{i + 1:05d}",
                "AccountNumber": f"AC{i + 1:05d}",
                "ContactStatus": "ARCHIVED" if i % 97 == 96 else "ACTIVE",
                "Name": name,
                "FirstName": first,
                "LastName": last,
                "EmailAddress": f"{first.lower()}.{last.lower()}{i}@example.com",
                "BankAccountDetails": "",
                "Addresses": [
                    {
                        "AddressType": "POBOX",
                        "AddressLine1": f"PO Box {100 + i}",
                        "City": "Wellington",
                        "PostalCode": "6011",
                        "Country": org.profile.country,
                    },
                    {"AddressType": "STREET"},
                ],
                "Phones": [
                    {
                        "PhoneType": "DEFAULT",
                        "PhoneNumber": f"{5550000 + i}",
                        "PhoneAreaCode": "04",
                        "PhoneCountryCode": "64",
                    }
                ],
                "IsSupplier": supplier,
                "IsCustomer": not supplier,
                "DefaultCurrency": self.foreign if i % 13 == 12 else org.profile.currency,
                "ContactGroups": [],
                "ContactPersons": [],
                "HasAttachments": False,
                "HasValidationErrors": False,
            }
            if i < 10:
                group = groups[i % 2]
                contact["ContactGroups"] = [
                    {
                        "ContactGroupID": group["ContactGroupID"],
                        "Name": group["Name"],
                        "Status": "ACTIVE",
                    }
                ]
                group["Contacts"].append(contact_ref(contact))
            org.put("Contacts", contact, created)
            if contact["ContactStatus"] == "ACTIVE":
                (self.suppliers if supplier else self.customers).append(contact)
        for group in groups:
            org.put("ContactGroups", group)

    # ---- documents -------------------------------------------------------------------------
    def line_items(self, sales: bool, count: int, tax: bool = True) -> list[Record]:
        lines = []
        rate = self.org.profile.tax_rate if tax else 0.0
        for _ in range(count):
            item = self.items[self.rng.randrange(len(self.items))]
            details = item["SalesDetails"] if sales else item["PurchaseDetails"]
            quantity = self.rng.randint(1, 10)
            unit = round(details["UnitPrice"] * 100)
            amount = quantity * unit
            line: Record = {
                "LineItemID": self.org.new_id(),
                "Description": item["Name"],
                "Quantity": float(quantity),
                "UnitAmount": unit / 100,
                "ItemCode": item["Code"],
                "AccountCode": details["AccountCode"]
                if sales
                else self.rng.choice(EXPENSE_ACCOUNTS),
                "TaxType": ("OUTPUT" if sales else "INPUT") if rate else "NONE",
                "TaxAmount": round(amount * rate) / 100,
                "LineAmount": amount / 100,
                "Tracking": [],
            }
            line["AccountID"] = self.org.accounts[line["AccountCode"]]["AccountID"]
            if self.tracking and self.rng.random() < 0.5:
                category = self.tracking[0]
                option = category["Options"][self.rng.randrange(len(category["Options"]))]
                line["Tracking"] = [
                    {
                        "TrackingCategoryID": category["TrackingCategoryID"],
                        "TrackingOptionID": option["TrackingOptionID"],
                        "Name": category["Name"],
                        "Option": option["Name"],
                    }
                ]
            lines.append(line)
        return lines

    def invoices(self) -> None:
        org = self.org
        dates = sorted(self.when() for _ in range(self.size.invoices))
        for day in dates:
            sales = self.rng.random() < 0.6
            contact = self.rng.choice(self.customers if sales else self.suppliers)
            foreign = contact["DefaultCurrency"] != org.profile.currency
            roll = self.rng.random()
            status = (
                "DRAFT"
                if roll < 0.05
                else "SUBMITTED"
                if roll < 0.07
                else "DELETED"
                if roll < 0.10
                else "VOIDED"
                if roll < 0.13
                else "AUTHORISED"
            )
            created = self.stamp(day)
            invoice = documents.new_invoice(
                org,
                kind="ACCREC" if sales else "ACCPAY",
                contact=contact,
                date_ms=day,
                due_ms=day + 30 * DAY_MS,
                lines=self.line_items(sales, self.rng.randint(1, 3)),
                currency=contact["DefaultCurrency"],
                rate=round(self.rng.uniform(0.55, 0.65), 4) if foreign else 1.0,
                status="DRAFT"
                if status == "DELETED"
                else status
                if status != "VOIDED"
                else "AUTHORISED",
                created_ms=created,
            )
            if status == "DELETED":
                documents.delete_invoice(org, invoice, created + HOUR_MS)
            elif status == "VOIDED":
                documents.void_invoice(org, invoice, created + DAY_MS)
            elif status == "AUTHORISED":
                roll = self.rng.random()
                pay_day = min(day + self.rng.randint(5, 45) * DAY_MS, self.end_ms)
                if pay_day < self.end_ms and roll < 0.7:
                    documents.pay_invoice(
                        org, invoice, invoice["AmountDue"], pay_day, self.stamp(pay_day)
                    )
                elif pay_day < self.end_ms and roll < 0.8:
                    part = round(invoice["AmountDue"] * 0.4, 2)
                    documents.pay_invoice(org, invoice, part, pay_day, self.stamp(pay_day))

    def credit_notes(self) -> None:
        org = self.org
        invoices = [
            inv
            for inv in org.data["Invoices"].values()
            if inv["Status"] == "AUTHORISED" and inv["AmountDue"] > 0
        ]
        for i in range(self.size.credit_notes):
            sales = i % 3 != 2
            day = self.when()
            kind = "ACCRECCREDIT" if sales else "ACCPAYCREDIT"
            target = None
            candidates = [
                inv for inv in invoices[i::37] if inv["Type"] == ("ACCREC" if sales else "ACCPAY")
            ]
            if candidates and i % 2 == 0:
                target = candidates[0]
            contact = (
                org.data["Contacts"][target["Contact"]["ContactID"]]
                if target
                else self.rng.choice(self.customers if sales else self.suppliers)
            )
            note = documents.new_credit_note(
                org,
                kind=kind,
                contact=contact,
                date_ms=max(day, target_date(target)) if target else day,
                lines=self.line_items(sales, 1),
                currency=target["CurrencyCode"] if target else org.profile.currency,
                rate=float(target["CurrencyRate"]) if target else 1.0,
                created_ms=self.stamp(day),
                status="AUTHORISED" if i % 10 else "VOIDED" if i % 20 else "DRAFT",
            )
            if target is not None and note["Status"] == "AUTHORISED":
                amount = min(note["RemainingCredit"], target["AmountDue"])
                if amount > 0:
                    documents.allocate_credit(org, note, target, amount, self.stamp(day) + HOUR_MS)

    def bank_transactions(self) -> None:
        org = self.org
        for i in range(self.size.bank_transactions):
            receive = i % 3 == 0
            day = self.when()
            contact = self.rng.choice(self.customers if receive else self.suppliers)
            status = "DELETED" if i % 50 == 49 else "AUTHORISED"
            documents.new_bank_transaction(
                org,
                kind="RECEIVE" if receive else "SPEND",
                contact=contact,
                bank=org.accounts[BANK if i % 7 else SAVINGS],
                date_ms=day,
                lines=self.line_items(receive, self.rng.randint(1, 2)),
                created_ms=self.stamp(day),
                status=status,
            )

    def transfers(self) -> None:
        org = self.org
        for i in range(12):
            day = self.when()
            documents.new_transfer(
                org,
                org.accounts[BANK],
                org.accounts[SAVINGS],
                self.rng.randint(1000, 50000) * 100,
                day,
                self.stamp(day),
                status="DELETED" if i == 11 else "AUTHORISED",
            )

    def manual_journals(self) -> None:
        org = self.org
        for i in range(self.size.manual_journals):
            day = self.when()
            amount = self.rng.randint(100, 5000) * 100
            debit = self.rng.choice(EXPENSE_ACCOUNTS)
            status = "DRAFT" if i % 10 == 5 else "VOIDED" if i % 10 == 7 else "POSTED"
            documents.new_manual_journal(
                org,
                narration=f"Accrual {i + 1}",
                lines=[(debit, amount), ("840", -amount)],
                date_ms=day,
                created_ms=self.stamp(day),
                status=status,
                cash_basis=i % 2 == 0,
            )

    def prepayments_and_overpayments(self) -> None:
        org = self.org
        for i in range(5):
            day = self.when()
            documents.new_prepayment(
                org,
                "Prepayments",
                "RECEIVE-PREPAYMENT",
                self.customers[i],
                self.line_items(True, 1),
                day,
                self.stamp(day),
            )
        for i in range(3):
            day = self.when()
            documents.new_prepayment(
                org,
                "Overpayments",
                "RECEIVE-OVERPAYMENT",
                self.customers[-1 - i],
                self.line_items(True, 1, tax=False),
                day,
                self.stamp(day),
            )

    def purchase_orders_and_quotes(self) -> None:
        org = self.org
        statuses = ("DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED")
        for i in range(self.size.purchase_orders):
            day = self.when()
            lines = self.line_items(False, self.rng.randint(1, 3))
            sub, tax = documents.totals(lines)
            po: Record = {
                "PurchaseOrderID": org.new_id(),
                "PurchaseOrderNumber": org.next_number("PO"),
                "Reference": f"Order {i + 1}",
                "Contact": contact_ref(self.rng.choice(self.suppliers)),
                "Date": msdate(day),
                "DeliveryDate": msdate(day + 14 * DAY_MS),
                "LineAmountTypes": "Exclusive",
                "LineItems": lines,
                "CurrencyCode": org.profile.currency,
                "CurrencyRate": 1.0,
                "Status": statuses[i % len(statuses)],
                "SentToContact": i % 2 == 0,
                "SubTotal": sub,
                "TotalTax": tax,
                "Total": round(sub + tax, 2),
                "TotalDiscount": 0.0,
                "HasAttachments": False,
            }
            org.put("PurchaseOrders", po, self.stamp(day))
        quote_statuses = ("DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED", "DELETED")
        for i in range(self.size.quotes):
            day = self.when()
            lines = self.line_items(True, self.rng.randint(1, 2))
            for line in lines:
                line.pop("LineItemID")
            sub, tax = documents.totals(lines)
            quote: Record = {
                "QuoteID": org.new_id(),
                "QuoteNumber": org.next_number("QU"),
                "Reference": f"Quote {i + 1}",
                "Terms": "Valid for 30 days",
                "Contact": contact_ref(self.rng.choice(self.customers)),
                "LineItems": lines,
                "Date": msdate(day),
                "DateString": iso_of(day),
                "ExpiryDate": msdate(day + 30 * DAY_MS),
                "ExpiryDateString": iso_of(day + 30 * DAY_MS),
                "Status": quote_statuses[i % len(quote_statuses)],
                "CurrencyCode": org.profile.currency,
                "CurrencyRate": 1.0,
                "SubTotal": sub,
                "TotalTax": tax,
                "Total": round(sub + tax, 2),
                "TotalDiscount": 0.0,
                "Title": "Quote",
                "Summary": "",
                "LineAmountTypes": "EXCLUSIVE",
            }
            org.put("Quotes", quote, self.stamp(day))

    def expense_claims(self) -> None:
        org = self.org
        user = next(iter(org.data["Users"].values()))
        user_ref = {
            "UserID": user["UserID"],
            "FirstName": user["FirstName"],
            "LastName": user["LastName"],
        }
        for i in range(5):
            day = self.when()
            receipts = []
            for _ in range(2):
                lines = self.line_items(False, 1)
                sub, tax = documents.totals(lines)
                receipt: Record = {
                    "ReceiptID": org.new_id(),
                    "ReceiptNumber": str(len(org.data["Receipts"]) + 1),
                    "Date": msdate(day),
                    "Contact": contact_ref(self.rng.choice(self.suppliers)),
                    "LineItems": lines,
                    "User": user_ref,
                    "Reference": f"Receipt {len(org.data['Receipts']) + 1}",
                    "LineAmountTypes": "Exclusive",
                    "SubTotal": sub,
                    "TotalTax": tax,
                    "Total": round(sub + tax, 2),
                    "Status": "AUTHORISED",
                    "HasAttachments": False,
                }
                org.put("Receipts", receipt, self.stamp(day))
                receipts.append(receipt)
            documents.new_expense_claim(org, user_ref, receipts, day, self.stamp(day) + HOUR_MS, i)

    def repeating_and_linked(self) -> None:
        org = self.org
        for i in range(5):
            lines = self.line_items(True, 1)
            sub, tax = documents.totals(lines)
            day = self.when()
            org.put(
                "RepeatingInvoices",
                {
                    "RepeatingInvoiceID": (rid := org.new_id()),
                    "ID": rid,
                    "Type": "ACCREC",
                    "Contact": contact_ref(self.customers[i]),
                    "Schedule": {
                        "Period": 1,
                        "Unit": "MONTHLY",
                        "DueDate": 20,
                        "DueDateType": "OFFOLLOWINGMONTH",
                        "StartDate": msdate(day),
                        "NextScheduledDate": msdate(day + 30 * DAY_MS),
                    },
                    "LineItems": lines,
                    "LineAmountTypes": "Exclusive",
                    "Reference": f"Monthly {i + 1}",
                    "CurrencyCode": org.profile.currency,
                    "Status": "AUTHORISED" if i < 4 else "DRAFT",
                    "SubTotal": sub,
                    "TotalTax": tax,
                    "Total": round(sub + tax, 2),
                    "HasAttachments": False,
                    "ApprovedForSending": False,
                    "SendCopy": False,
                    "MarkAsSent": False,
                    "IncludePDF": False,
                },
            )
        bills = [inv for inv in org.data["Invoices"].values() if inv["Type"] == "ACCPAY"][:5]
        sales = [inv for inv in org.data["Invoices"].values() if inv["Type"] == "ACCREC"][:5]
        for bill, sale in zip(bills, sales, strict=False):
            org.put(
                "LinkedTransactions",
                {
                    "LinkedTransactionID": org.new_id(),
                    "SourceTransactionID": bill["InvoiceID"],
                    "SourceLineItemID": bill["LineItems"][0]["LineItemID"],
                    "ContactID": sale["Contact"]["ContactID"],
                    "TargetTransactionID": sale["InvoiceID"],
                    "TargetLineItemID": sale["LineItems"][0]["LineItemID"],
                    "Status": "BILLED",
                    "Type": "BILLABLEEXPENSE",
                    "SourceTransactionTypeCode": "ACCPAY",
                },
                org.modified["Invoices"][sale["InvoiceID"]],
            )

    def batch_payments(self) -> None:
        org = self.org
        payments = [
            p for p in org.data["Payments"].values() if p["PaymentType"] == "ACCPAYPAYMENT"
        ][:9]
        for i in range(0, len(payments) - 2, 3):
            group = payments[i : i + 3]
            batch_id = org.new_id()
            total = round(sum(p["Amount"] for p in group), 2)
            for p in group:
                p["BatchPaymentID"] = batch_id
            day = max(int(p["Date"][6:-7]) for p in group)
            org.put(
                "BatchPayments",
                {
                    "BatchPaymentID": batch_id,
                    "Account": account_ref(org.accounts[BANK]),
                    "Reference": f"Batch {i // 3 + 1}",
                    "Date": msdate(day),
                    "DateString": iso_of(day),
                    "Type": "PAYBATCH",
                    "Status": "AUTHORISED",
                    "TotalAmount": total,
                    "IsReconciled": False,
                    "Payments": [
                        {
                            "PaymentID": p["PaymentID"],
                            "Amount": p["Amount"],
                            "Invoice": p["Invoice"],
                        }
                        for p in group
                    ],
                },
                self.stamp(day),
            )

    def budgets(self) -> None:
        org = self.org
        first = date(ANCHOR.year, 1, 1)
        lines = []
        for code in ("200", "260", *EXPENSE_ACCOUNTS[:4]):
            account = org.accounts[code]
            amount = self.rng.randint(500, 5000) * (4 if code in SALES_ACCOUNTS else 1)
            lines.append(
                {
                    "AccountID": account["AccountID"],
                    "AccountCode": code,
                    "BudgetBalances": [
                        {"Period": msdate(ms_of(date(first.year, m, 1))), "Amount": float(amount)}
                        for m in range(1, 13)
                    ],
                }
            )
        org.put(
            "Budgets",
            {
                "BudgetID": org.new_id(),
                "Type": "OVERALL",
                "Description": "Overall Budget",
                "BudgetLines": lines,
                "Tracking": [],
            },
            self.stamp(self.start_ms),
        )


def target_date(invoice: Record) -> int:
    return int(invoice["Date"][6:-7])

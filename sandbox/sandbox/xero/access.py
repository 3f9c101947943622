"""What a connection may read: the app's tier (day limit, Journals) and the granted scopes.

Sources for every fact here are in docs/sandbox-xero.md ("Tiers and scopes"). In short:
Xero's OpenAPI spec names the broad scope of each GET; Xero's scopes page and the integrators'
notes on the 2026 change name the granular scopes that replace the broad ones; a call without
the scope it needs (or /Journals below Advanced) answers 401 `AuthorizationUnsuccessful`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TIERS: tuple[str, ...] = ("starter", "core", "plus", "advanced", "enterprise")
DAY_LIMIT = {"starter": 1000, "core": 5000, "plus": 5000, "advanced": 5000, "enterprise": 5000}
JOURNAL_TIERS = frozenset({"advanced", "enterprise"})
IDENTITY_SCOPES = frozenset({"offline_access", "openid", "profile", "email"})

# What `tap-xero auth login` asks for by app style (tap-xero/tap_xero/auth.py, BROAD_SCOPES and
# GRANULAR_SCOPES); tests/sandbox/xero/test_xero_access.py keeps the two in step.
BROAD_DEFAULT: tuple[str, ...] = (
    "offline_access",
    "accounting.transactions.read",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.journals.read",
    "accounting.reports.read",
    "accounting.budgets.read",
)
GRANULAR_DEFAULT: tuple[str, ...] = (
    "offline_access",
    "accounting.invoices.read",
    "accounting.payments.read",
    "accounting.banktransactions.read",
    "accounting.manualjournals.read",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.journals.read",
    "accounting.budgets.read",
    "accounting.reports.aged.read",
    "accounting.reports.balancesheet.read",
    "accounting.reports.banksummary.read",
    "accounting.reports.budgetsummary.read",
    "accounting.reports.executivesummary.read",
    "accounting.reports.profitandloss.read",
    "accounting.reports.trialbalance.read",
)

# Scope families (each also as `.read`) that open an endpoint: the granular one first, then the
# broad one it replaced (Xero's spec names the broad one; empty where there is none).
_INVOICES = ("accounting.invoices", "accounting.transactions")
_PAYMENTS = ("accounting.payments", "accounting.transactions")
_BANK = ("accounting.banktransactions", "accounting.transactions")
_MANUAL = ("accounting.manualjournals", "accounting.transactions")
_EXPENSES = ("accounting.classicexpenses", "accounting.transactions")
_SETTINGS = ("accounting.settings",)
_CONTACTS = ("accounting.contacts",)
COLLECTION_SCOPES: dict[str, tuple[str, ...]] = {
    "Accounts": _SETTINGS,
    "BankTransactions": _BANK,
    "BankTransfers": _BANK,
    "BatchPayments": _PAYMENTS,
    "BrandingThemes": _SETTINGS,
    "Budgets": ("accounting.budgets.read",),
    "ContactGroups": _CONTACTS,
    "Contacts": _CONTACTS,
    "CreditNotes": _INVOICES,
    "Currencies": _SETTINGS,
    "Employees": _SETTINGS,
    "ExpenseClaims": _EXPENSES,
    "Invoices": _INVOICES,
    "Items": ("accounting.settings", "accounting.invoices"),
    "Journals": ("accounting.journals.read",),
    "LinkedTransactions": _INVOICES,
    "ManualJournals": _MANUAL,
    "Organisation": _SETTINGS,
    "Overpayments": _PAYMENTS,
    "Payments": _PAYMENTS,
    "Prepayments": _PAYMENTS,
    "PurchaseOrders": _INVOICES,
    "Quotes": _INVOICES,
    "Receipts": _EXPENSES,
    "RepeatingInvoices": _INVOICES,
    "TaxRates": _SETTINGS,
    "TrackingCategories": _SETTINGS,
    "Users": _SETTINGS,
}
REPORT_FAMILY = {
    "AgedPayablesByContact": "aged",
    "AgedReceivablesByContact": "aged",
    "BalanceSheet": "balancesheet",
    "BankSummary": "banksummary",
    "BudgetSummary": "budgetsummary",
    "ExecutiveSummary": "executivesummary",
    "ProfitAndLoss": "profitandloss",
    "TrialBalance": "trialbalance",
    "GSTReport": "taxreports",
    "BASReport": "taxreports",
    "TenNinetyNine": "tenninetynine",
}
ATTACHMENT_SCOPES = ("accounting.attachments",)
BROAD_SCOPE_NAMES = frozenset(
    {"accounting.transactions", "accounting.transactions.read", "accounting.reports.read"}
)


def report_scopes(name: str) -> tuple[str, ...]:
    """The granular scope of a report's family, and the broad reports scope."""
    family = REPORT_FAMILY.get(name)
    granular = (f"accounting.reports.{family}.read",) if family else ()
    return (*granular, "accounting.reports.read")


def accepted(families: Iterable[str]) -> frozenset[str]:
    """Every scope name that opens an endpoint of these families (write and `.read`)."""
    out: set[str] = set()
    for family in families:
        out.add(family)
        if not family.endswith(".read"):
            out.add(family + ".read")
    return frozenset(out)


def _all_scopes() -> frozenset[str]:
    families = [f for fams in COLLECTION_SCOPES.values() for f in fams]
    families += [f for name in REPORT_FAMILY for f in report_scopes(name)]
    return accepted([*families, *ATTACHMENT_SCOPES, "accounting.transactions"]) | IDENTITY_SCOPES


KNOWN_SCOPES = _all_scopes()
GRANULAR_SCOPES = KNOWN_SCOPES - BROAD_SCOPE_NAMES


def parse_scopes(value: str | Iterable[str] | None) -> tuple[str, frozenset[str]]:
    """(app style, granted scopes) from `granular`, `broad` or a list of scope names.

    A list with a broad scope is an app created before March 2026 ("broad" style): such an app
    may also ask for granular scopes; a new app may not ask for broad ones.
    """
    if value is None or value == "granular":
        return "granular", frozenset(GRANULAR_DEFAULT)
    if value == "broad":
        return "broad", frozenset(BROAD_DEFAULT)
    names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    unknown = sorted(set(names) - KNOWN_SCOPES)
    if unknown:
        msg = f"unknown Xero scope(s) {', '.join(unknown)}; use granular, broad or scope names"
        raise ValueError(msg)
    style = "broad" if BROAD_SCOPE_NAMES & set(names) else "granular"
    return style, frozenset(names) | {"offline_access"}


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        msg = f"unknown tier {tier!r}; one of {', '.join(TIERS)}"
        raise ValueError(msg)
    return tier


@dataclass
class AppPlan:
    """The app's tier and scopes as Xero sees them, plus scopes withheld per organisation."""

    tier: str
    style: str
    granted: frozenset[str]
    withheld: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def create(cls, tier: str, scopes: str | Iterable[str] | None) -> AppPlan:
        style, granted = parse_scopes(scopes)
        return cls(check_tier(tier), style, granted)

    @property
    def allowed(self) -> frozenset[str]:
        """What the app may ask for at consent: a new app no broad scopes."""
        pool = KNOWN_SCOPES if self.style == "broad" else GRANULAR_SCOPES
        return pool | IDENTITY_SCOPES

    def grant(self, requested: Iterable[str] | None, *, custom: bool) -> frozenset[str]:
        """The scopes a token gets; ValueError names those the app may not have.

        Without a request, the app's scopes; a custom connection of a new app never gets
        journals (granular custom connections since 29 April 2026 leave them out).
        """
        no_journals = custom and self.style == "granular"
        if requested is None:
            return self.granted - {"accounting.journals.read"} if no_journals else self.granted
        wanted = frozenset(requested)
        allowed = self.allowed - {"accounting.journals.read"} if no_journals else self.allowed
        refused = sorted(wanted - allowed)
        if refused:
            raise ValueError(" ".join(refused))
        return wanted

    def refusal(
        self, tenant: str, scopes: frozenset[str], families: tuple[str, ...], journals: bool
    ) -> dict[str, Any] | None:
        """Xero's 401 body when the token lacks the scope (or the tier lacks Journals)."""
        held = scopes - self.withheld.get(tenant, frozenset())
        if held & accepted(families) and not (journals and self.tier not in JOURNAL_TIERS):
            return None
        return {
            "Type": None,
            "Title": "Unauthorized",
            "Status": 401,
            "Detail": "AuthorizationUnsuccessful",
            "Instance": str(uuid.uuid4()),
            "Extensions": {},
        }

    def update(self, body: dict[str, Any]) -> None:
        """`tier` and `withheld_scopes` {tenant: [scope, ...]} from a control call."""
        if "tier" in body:
            self.tier = check_tier(str(body["tier"]))
        if "withheld_scopes" in body:
            raw = body["withheld_scopes"]
            if not isinstance(raw, dict):
                msg = "withheld_scopes: expected {tenant id: [scope, ...]}"
                raise TypeError(msg)
            self.withheld = {str(t): frozenset(map(str, s)) for t, s in raw.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "day_limit": DAY_LIMIT[self.tier],
            "journals": self.tier in JOURNAL_TIERS,
            "style": self.style,
            "scopes": sorted(self.granted),
            "withheld_scopes": {t: sorted(s) for t, s in self.withheld.items()},
        }

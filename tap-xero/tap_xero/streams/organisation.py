"""The organisation and its small reference tables, most read whole each run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_xero import access
from tap_xero.client import TENANT_KEY, XeroStream

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class OrganisationsStream(XeroStream):
    """The organisation; the report streams read its lock date from here (no second call)."""

    name = "organisations"
    scopes = access.SETTINGS
    path = "/Organisation"
    collection = "Organisations"
    id_field = "OrganisationID"

    @override
    def read(self, context: Context | None) -> Iterable[dict[str, Any]]:
        tenant = str((context or {}).get(TENANT_KEY, ""))
        for record in super().read(context):
            # A copy: emitting drops deselected properties in place.
            self.xero_tap.reference_tables[(tenant, "Organisation")] = dict(record)
            yield record


class BrandingThemesStream(XeroStream):
    name = "branding_themes"
    scopes = access.SETTINGS
    collection = "BrandingThemes"
    id_field = "BrandingThemeID"


class BudgetsStream(XeroStream):
    name = "budgets"
    scopes = access.BUDGETS
    collection = "Budgets"
    id_field = "BudgetID"


class CurrenciesStream(XeroStream):
    name = "currencies"
    scopes = access.SETTINGS
    collection = "Currencies"
    id_field = "Code"


class ItemsStream(XeroStream):
    """Items are hard-deleted, invisible to If-Modified-Since: read whole each run."""

    name = "items"
    scopes = access.SETTINGS
    collection = "Items"
    id_field = "ItemID"


class TaxRatesStream(XeroStream):
    """Tax rates have no id: keyed by TaxType."""

    name = "tax_rates"
    scopes = access.SETTINGS
    collection = "TaxRates"
    id_field = "TaxType"


class TrackingCategoriesStream(XeroStream):
    """Tracking options are hard-deleted: read whole, archived categories included."""

    name = "tracking_categories"
    scopes = access.SETTINGS
    collection = "TrackingCategories"
    id_field = "TrackingCategoryID"
    include_archived = True


class UsersStream(XeroStream):
    name = "users"
    scopes = access.SETTINGS
    collection = "Users"
    id_field = "UserID"
    modified_since = True
    replication_key = "UpdatedDateUTC"

"""The organisation and its small reference tables, most read whole each run."""

from __future__ import annotations

from tap_xero import access
from tap_xero.client import XeroStream


class OrganisationsStream(XeroStream):
    name = "organisations"
    scopes = access.SETTINGS
    path = "/Organisation"
    collection = "Organisations"
    id_field = "OrganisationID"


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

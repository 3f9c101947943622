"""The organisation and its small reference tables, most read whole each run."""

from __future__ import annotations

from tap_xero.client import XeroStream


class OrganisationsStream(XeroStream):
    name = "organisations"
    path = "/Organisation"
    collection = "Organisations"
    id_field = "OrganisationID"


class BrandingThemesStream(XeroStream):
    name = "branding_themes"
    collection = "BrandingThemes"
    id_field = "BrandingThemeID"


class BudgetsStream(XeroStream):
    name = "budgets"
    collection = "Budgets"
    id_field = "BudgetID"


class CurrenciesStream(XeroStream):
    name = "currencies"
    collection = "Currencies"
    id_field = "Code"


class EmployeesStream(XeroStream):
    name = "employees"
    collection = "Employees"
    id_field = "EmployeeID"


class ItemsStream(XeroStream):
    """Items are hard-deleted, invisible to If-Modified-Since: read whole each run."""

    name = "items"
    collection = "Items"
    id_field = "ItemID"


class TaxRatesStream(XeroStream):
    """Tax rates have no id: keyed by TaxType."""

    name = "tax_rates"
    collection = "TaxRates"
    id_field = "TaxType"


class TrackingCategoriesStream(XeroStream):
    """Tracking options are hard-deleted: read whole, archived categories included."""

    name = "tracking_categories"
    collection = "TrackingCategories"
    id_field = "TrackingCategoryID"
    include_archived = True


class UsersStream(XeroStream):
    name = "users"
    collection = "Users"
    id_field = "UserID"
    modified_since = True
    replication_key = "UpdatedDateUTC"

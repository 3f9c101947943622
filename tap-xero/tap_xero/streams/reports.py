"""Financial reports as tidy streams: one row per value cell (see `tap_xero.reports`).

Each report stream is a `XeroStream`: the same partitions per organisation, limiter,
auth, retries and daily budget as every other stream. `read` plans one organisation's
report calls and sends each through the SDK's request path with its parameters in the
request context, so every hook reads the call it serves from its arguments.

Replication: INCREMENTAL on `period_end`. The first run reads back to `start_date`;
later runs re-read the months still open at the last run's bookmark plus
`report_closed_periods_to_refresh` closed months before them (late entries change them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from typing_extensions import override

from tap_xero.client import TENANT_KEY, XeroStream
from tap_xero.pagination import response_body
from tap_xero.reports import (
    ACCRUAL,
    CASH,
    REPORT_ROW_KEYS,
    REPORT_ROW_SCHEMA,
    Accounts,
    Call,
    balance_sheet_calls,
    budget_summary_calls,
    flatten,
    months_to_read,
    profit_and_loss_calls,
)
from tap_xero.reports import (
    monthly_calls as _monthly_calls,
)

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_xero.base import XeroTapBase

PARAMS_KEY = "params"  # in a request context: the query of one planned call
PATH_KEY = "path"  # in a request context: another endpoint (a reference table)
CONTACTS_PAGE_SIZE = 1000


class ReportStream(XeroStream):
    """A Xero report, flattened; subclasses say which report and how to plan its calls."""

    collection = "Reports"
    records_key = "Reports"
    id_field = "row_key"
    replication_key = "period_end"
    report: ClassVar[str]
    bases: ClassVar[tuple[str, ...]] = (ACCRUAL, CASH)

    @override
    def __init__(self, tap: XeroTapBase) -> None:
        super().__init__(tap)
        self._schema = REPORT_ROW_SCHEMA
        self._msdate_plan = {}
        self.primary_keys = REPORT_ROW_KEYS

    @property
    @override
    def path(self) -> str:  # type: ignore[override]
        return f"/Reports/{self.report}"

    # -- the plan -------------------------------------------------------------------

    def _today(self) -> date:
        return datetime.now(timezone.utc).date()

    def _start_date(self) -> date | None:
        raw = self.settings.start_date
        return date.fromisoformat(raw[:10]) if raw else None

    def _bookmark(self, context: Context | None) -> date | None:
        if not self.incremental:
            return None
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        if not value or state.get("replication_key") != self.replication_key:
            return None
        return date.fromisoformat(str(value)[:10])

    def months(self, context: Context | None) -> list[date]:
        """The months this run reads for one organisation."""
        closed = self.settings.report_closed_periods_to_refresh
        return months_to_read(self._start_date(), self._today(), self._bookmark(context), closed)

    def plan(self, context: Context | None) -> list[Call]:
        """The calls of one organisation; by default one `date` (month end) call a month."""
        return _monthly_calls(self.report, self.months(context), self.bases, span=False)

    # -- requests -------------------------------------------------------------------

    @override
    def read(self, context: Context | None) -> Iterable[dict[str, Any]]:
        tenant = str((context or {}).get(TENANT_KEY, ""))
        for call in self.plan(context):
            params = dict(call.params)
            if call.contact_id:
                params["contactId"] = call.contact_id
            for body in self.request_records({TENANT_KEY: tenant, PARAMS_KEY: params}):
                yield from flatten(
                    body,
                    call,
                    self.accounts(tenant),
                    tenant,
                    on_unknown_column=self.logger.warning,
                )

    @override
    def get_url(self, context: Context | None) -> str:
        path = (context or {}).get(PATH_KEY)
        return f"{self.url_base}{path}" if path else super().get_url(context)

    @override
    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return dict((context or {}).get(PARAMS_KEY) or {})

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        yield response_body(response)  # a whole report: `read` flattens it with its call

    def get_json(self, tenant: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One GET of another endpoint through the same request path (limiter, auth, retries)."""
        context = {TENANT_KEY: tenant, PATH_KEY: path, PARAMS_KEY: params}
        return next(iter(self.request_records(context)), {})

    def accounts(self, tenant: str) -> Accounts:
        """The chart of accounts of the organisation, read once a run for all reports."""
        cache = self.xero_tap.reference_tables
        key = (tenant, "Accounts")
        if key not in cache:
            body = self.get_json(tenant, "/Accounts", {})
            cache[key] = Accounts.from_records(body.get("Accounts") or [])
        accounts: Accounts = cache[key]
        return accounts


class ProfitAndLossStream(ReportStream):
    """Monthly profit and loss, accrual and cash basis, 13 months a call."""

    name = "profit_and_loss"
    report = "ProfitAndLoss"

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return profit_and_loss_calls(self.months(context), self.bases)


class BalanceSheetStream(ReportStream):
    """Month-end balance sheets, accrual and cash basis, 13 month ends a call."""

    name = "balance_sheet"
    report = "BalanceSheet"

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return balance_sheet_calls(self.months(context), self.bases)


class TrialBalanceStream(ReportStream):
    """Month-end trial balances, accrual and cash basis (no `periods`: a call a month)."""

    name = "trial_balance"
    report = "TrialBalance"


class BankSummaryStream(ReportStream):
    """Monthly bank summary: opening, received, spent, closing per bank account."""

    name = "bank_summary"
    report = "BankSummary"
    bases = (ACCRUAL,)  # no paymentsOnly: bank movements are cash already

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return _monthly_calls(self.report, self.months(context), self.bases, span=True)


class ExecutiveSummaryStream(ReportStream):
    """Monthly executive summary (cash, profitability, balance sheet lines)."""

    name = "executive_summary"
    report = "ExecutiveSummary"
    bases = (ACCRUAL,)


class BudgetSummaryStream(ReportStream):
    """The overall budget by account and month, from the first month read to a year ahead."""

    name = "budget_summary"
    report = "BudgetSummary"
    bases = (ACCRUAL,)

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return budget_summary_calls(self.months(context))


class AgedReportStream(ReportStream):
    """Aged receivables or payables by contact, as at today: one call per contact.

    Off by default (not selected in the catalog, and `aged_reports_enabled` must be
    true): an organisation with 2,000 customers spends 2,000 of its 5,000 daily calls.
    """

    selected_by_default = False
    bases = (ACCRUAL,)
    contact_flag: ClassVar[str]  # IsCustomer or IsSupplier

    def contacts(self, context: Context | None) -> list[str]:
        """Ids of the organisation's contacts that are customers (or suppliers)."""
        tenant = str((context or {}).get(TENANT_KEY, ""))
        out: list[str] = []
        page = 1
        while True:
            body = self.get_json(
                tenant,
                "/Contacts",
                {"page": page, "pageSize": CONTACTS_PAGE_SIZE, "summaryOnly": "true"},
            )
            records = body.get("Contacts") or []
            out += [str(c["ContactID"]) for c in records if c.get(self.contact_flag)]
            if len(records) < CONTACTS_PAGE_SIZE:
                return out
            page += 1

    @override
    def plan(self, context: Context | None) -> list[Call]:
        if not self.settings.aged_reports_enabled:
            self.logger.info("%s: skipped (aged_reports_enabled is false)", self.name)
            return []
        today = self._today()
        month = date(today.year, today.month, 1)
        return [
            Call(
                self.report,
                ACCRUAL,
                {"date": today.isoformat()},
                frozenset({month}),
                contact_id=contact,
                period=(today, today),
            )
            for contact in self.contacts(context)
        ]


class AgedReceivablesByContactStream(AgedReportStream):
    name = "aged_receivables_by_contact"
    report = "AgedReceivablesByContact"
    contact_flag = "IsCustomer"


class AgedPayablesByContactStream(AgedReportStream):
    name = "aged_payables_by_contact"
    report = "AgedPayablesByContact"
    contact_flag = "IsSupplier"

"""Financial reports as tidy streams: one row per value cell (see `tap_xero.reports`).

Each report stream is a `XeroStream`: the same partitions per organisation, limiter,
auth, retries and daily budget as every other stream. Its "pages" are the planned
report calls (`CallPaginator`), so the SDK's request loop drives them one by one.

Replication: INCREMENTAL on `period_end`. The first run reads back to `start_date`;
later runs re-read the months still open at the last run's bookmark plus
`report_closed_periods_to_refresh` closed months before them (late entries change them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar
from weakref import WeakKeyDictionary

import requests
from singer_sdk.pagination import BaseAPIPaginator
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

    from tap_xero.tap import TapXero

CLOSED_PERIODS_SETTING = "report_closed_periods_to_refresh"
DEFAULT_CLOSED_PERIODS = 3
AGED_SETTING = "aged_reports_enabled"
CONTACTS_PAGE_SIZE = 1000


class CallPaginator(BaseAPIPaginator[int]):
    """Walks a list of planned calls: token n is the n-th call (1-based)."""

    def __init__(self, count: int) -> None:
        super().__init__(start_value=1 if count else 0)
        self._count = count

    @property
    def finished(self) -> bool:
        return self._count == 0 or super().finished

    @override
    def get_next(self, response: requests.Response) -> int | None:
        following = self.current_value + 1
        return following if following <= self._count else None

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        return True  # a report without rows for one period says nothing of the next


class ReportStream(XeroStream):
    """A Xero report, flattened; subclasses say which report and how to plan its calls."""

    collection = "Reports"
    records_key = "Reports"
    id_field = "row_key"
    replication_key = "period_end"
    report: ClassVar[str]
    bases: ClassVar[tuple[str, ...]] = (ACCRUAL, CASH)

    # Lookups shared by the report streams of one run: tap -> tenant -> accounts.
    _accounts_cache: ClassVar[WeakKeyDictionary[TapXero, dict[str, Accounts]]] = WeakKeyDictionary()

    @override
    def __init__(self, tap: TapXero) -> None:
        super().__init__(tap)
        self._schema = REPORT_ROW_SCHEMA
        self._msdate_plan = {}
        self.primary_keys = REPORT_ROW_KEYS
        self._calls: list[Call] = []
        self._call: Call | None = None

    @property
    @override
    def path(self) -> str:  # type: ignore[override]
        return f"/Reports/{self.report}"

    # -- the plan -------------------------------------------------------------------

    def _today(self) -> date:
        return datetime.now(timezone.utc).date()

    def _start_date(self) -> date | None:
        raw = self.config.get("start_date")
        return date.fromisoformat(str(raw)[:10]) if raw else None

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
        closed = int(self.config.get(CLOSED_PERIODS_SETTING, DEFAULT_CLOSED_PERIODS))
        return months_to_read(self._start_date(), self._today(), self._bookmark(context), closed)

    def plan(self, context: Context | None) -> list[Call]:
        """The calls of one organisation; by default one `date` (month end) call a month."""
        return _monthly_calls(self.report, self.months(context), self.bases, span=False)

    # -- requests -------------------------------------------------------------------

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[Any]:
        self._calls = self.plan(self._partition)
        return CallPaginator(len(self._calls))

    @override
    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        self._call = self._calls[int(next_page_token) - 1]
        params = dict(self._call.params)
        if self._call.contact_id:
            params["contactId"] = self._call.contact_id
        return params

    def get_json(
        self, context: Context | None, path: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """One extra GET through the same machinery (limiter, auth, retries)."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.url_base}{path}", params=params
        )
        response = self.request_decorator(self._request)(prepared, context)
        return response_body(response)

    def accounts(self, context: Context | None) -> Accounts:
        """The chart of accounts of the organisation, read once a run for all reports."""
        tenant = str((context or {}).get(TENANT_KEY, ""))
        cache = self._accounts_cache.setdefault(self.xero_tap, {})
        if tenant not in cache:
            body = self.get_json(context, "/Accounts", {})
            cache[tenant] = Accounts.from_records(body.get("Accounts") or [])
        return cache[tenant]

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        assert self._call is not None
        tenant = str((self._partition or {}).get(TENANT_KEY, ""))
        yield from flatten(
            response_body(response),
            self._call,
            self.accounts(self._partition),
            tenant,
            on_unknown_column=self.logger.warning,
        )


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
        out: list[str] = []
        page = 1
        while True:
            body = self.get_json(
                context,
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
        if not self.config.get(AGED_SETTING, False):
            self.logger.info("%s: skipped (%s is false)", self.name, AGED_SETTING)
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


REPORT_STREAM_TYPES: list[type[ReportStream]] = [
    ProfitAndLossStream,
    BalanceSheetStream,
    TrialBalanceStream,
    BankSummaryStream,
    ExecutiveSummaryStream,
    BudgetSummaryStream,
    AgedReceivablesByContactStream,
    AgedPayablesByContactStream,
]

"""Financial reports as tidy streams: one row per value cell (see `tap_xero.reports`).

Each report stream is a `XeroStream`: the same partitions per organisation, limiter,
auth, retries and daily budget as every other stream. `read` plans one organisation's
report calls and sends each through the SDK's request path with its parameters in the
request context, so every hook reads the call it serves from its arguments.

Replication: INCREMENTAL on `period_end`. The first run reads back to `start_date`
(at most `report_history_months`). Later runs re-read only what late entries can have
changed: each run checks the months the organisation's end-of-year lock date leaves open
with the profit and loss and the month-end balance sheet (both bases, 13 months a call;
the same answers serve those two streams), and a stream re-reads from the first month
whose figures differ from what it saw when it last read them. When the check is refused
(scopes), the months open at the bookmark and `report_closed_periods_to_refresh` closed
months are re-read instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from typing_extensions import override

from tap_xero import access
from tap_xero.access import StreamRefusedError
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
    check_window,
    flatten,
    month_key,
    months_to_read,
    months_to_reread,
    period_digests,
    profit_and_loss_calls,
    unlocked_from,
)
from tap_xero.reports import (
    monthly_calls as _monthly_calls,
)
from tap_xero.schema import msdate_to_iso

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_xero.base import XeroTapBase

PARAMS_KEY = "params"  # in a request context: the query of one planned call
PATH_KEY = "path"  # in a request context: another endpoint (a reference table)
# The reference tables the reports read, and the scopes that open them.
REFERENCE_SCOPES = {
    "/Accounts": access.SETTINGS,
    "/Contacts": access.CONTACTS,
    "/Organisation": access.SETTINGS,
}
CONTACTS_PAGE_SIZE = 1000
NIL_ID = "00000000-0000-0000-0000-000000000000"
DIGESTS_KEY = "period_digests"  # in a partition's state: each month's check digest at the last read
# The lock date that binds every user, advisers included (PeriodLockDate spares advisers).
LOCK_FIELD = "EndOfYearLockDate"


@dataclass(frozen=True)
class LedgerCheck:
    """One organisation's check reports over a window: the answers and each month's digest."""

    window: tuple[date, ...]
    answers: tuple[tuple[Call, dict[str, Any]], ...]
    digests: dict[str, str]


def check_calls(months: list[date]) -> list[Call]:
    """The calls of the check: monthly profit and loss and month-end balance sheets."""
    bases = (ACCRUAL, CASH)
    return profit_and_loss_calls(months, bases) + balance_sheet_calls(months, bases)


class ReportStream(XeroStream):
    """A Xero report, flattened; subclasses say which report and how to plan its calls."""

    collection = "Reports"
    records_key = "Reports"
    id_field = "row_key"
    replication_key = "period_end"
    report: ClassVar[str]
    bases: ClassVar[tuple[str, ...]] = (ACCRUAL, CASH)
    # Whether the ledger check decides the months re-read (figures that follow the ledger).
    checked: ClassVar[bool] = True

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
        """The months this run reads for one organisation (see the module's docstring)."""
        bookmark = self._bookmark(context)
        before = self._digests(context)
        if not self.checked:
            return self._fallback_months(bookmark)
        if bookmark is None and before is None:
            return self._first_months()
        check = self.ledger_check(context)
        if check is None:
            return self._fallback_months(bookmark)
        return months_to_reread(list(check.window), check.digests, before or {})

    def _first_months(self) -> list[date]:
        return months_to_read(
            self._start_date(),
            self._today(),
            None,
            0,
            self.settings.report_history_months,
        )

    def _fallback_months(self, bookmark: date | None) -> list[date]:
        return months_to_read(
            self._start_date(),
            self._today(),
            bookmark,
            self.settings.report_closed_periods_to_refresh,
            self.settings.report_history_months,
        )

    def _digests(self, context: Context | None) -> dict[str, str] | None:
        stored = self.get_context_state(context).get(DIGESTS_KEY)
        return dict(stored) if isinstance(stored, dict) else None

    def _window(self, context: Context | None) -> list[date]:
        """The first run's months, or the months a later run checks."""
        if self._bookmark(context) is None and self._digests(context) is None:
            return self._first_months()
        tenant = str((context or {}).get(TENANT_KEY, ""))
        checked = [date.fromisoformat(f"{m}-01") for m in self._digests(context) or {}]
        return check_window(
            self._start_date(),
            self._today(),
            self.settings.report_history_months,
            self.lock_date(tenant),
            checked,
        )

    def ledger_check(self, context: Context | None) -> LedgerCheck | None:
        """The check of this run's window, read once per organisation for every report.

        None when the connection may not read the check reports: the caller falls back.
        """
        tenant = str((context or {}).get(TENANT_KEY, ""))
        window = self._window(context)
        key = (tenant, f"LedgerCheck:{month_key(window[0]) if window else '-'}")
        cache = self.xero_tap.reference_tables
        if key not in cache:
            cache[key] = self._read_check(tenant, window)
        check: LedgerCheck | None = cache[key]
        return check

    def _read_check(self, tenant: str, window: list[date]) -> LedgerCheck | None:
        answers = []
        try:
            for call in check_calls(window):
                body = self.get_json(tenant, f"/Reports/{call.report}", call.params)
                answers.append((call, body))
        except StreamRefusedError:
            self.logger.info(
                "Organisation %s: the report check (ProfitAndLoss, BalanceSheet) is refused; "
                "re-reading the open months and %d closed ones",
                tenant,
                self.settings.report_closed_periods_to_refresh,
            )
            return None
        rows = [r for call, body in answers for r in flatten(body, call, Accounts(), tenant)]
        return LedgerCheck(tuple(window), tuple(answers), period_digests(rows, window))

    def lock_date(self, tenant: str) -> date | None:
        """The organisation's end-of-year lock date (None: unset, or not readable)."""
        cache = self.xero_tap.reference_tables
        key = (tenant, "Organisation")
        if key not in cache:
            try:
                body = self.get_json(tenant, "/Organisation", {})
            except StreamRefusedError:
                body = {}
            cache[key] = (body.get("Organisations") or [{}])[0]
        value = msdate_to_iso(cache[key].get(LOCK_FIELD))
        return date.fromisoformat(value[:10]) if isinstance(value, str) and value else None

    def remember_digests(self, context: Context | None) -> None:
        """After a whole read: the digests of the months still open, for the next run.

        A month locked since is left out, so the next run checks it once more and no more.
        """
        check = self.ledger_check(context) if self.checked and self._window(context) else None
        if check is None:
            return
        opened = unlocked_from(self.lock_date(str((context or {}).get(TENANT_KEY, ""))))
        self.get_context_state(context)[DIGESTS_KEY] = {
            month: digest
            for month, digest in check.digests.items()
            if opened is None or month >= month_key(opened)
        }
        self.state_manager.is_flushed = False

    def plan(self, context: Context | None) -> list[Call]:
        """The calls of one organisation; by default one `date` (month end) call a month."""
        return _monthly_calls(self.report, self.months(context), self.bases, span=False)

    # -- requests -------------------------------------------------------------------

    @override
    def read(self, context: Context | None) -> Iterable[dict[str, Any]]:
        tenant = str((context or {}).get(TENANT_KEY, ""))
        for call, bodies in self.answers(context):
            for body in bodies:
                yield from flatten(
                    body,
                    call,
                    self.accounts(tenant),
                    tenant,
                    on_unknown_column=self.logger.warning,
                )
        self.remember_digests(context)

    def answers(self, context: Context | None) -> Iterable[tuple[Call, Iterable[dict[str, Any]]]]:
        """Each planned call with its answer, requested when it is read."""
        tenant = str((context or {}).get(TENANT_KEY, ""))
        for call in self.plan(context):
            params = dict(call.params)
            if call.contact_id:
                params["contactId"] = call.contact_id
            yield call, self.request_records({TENANT_KEY: tenant, PARAMS_KEY: params})

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

    @override
    def probe_params(self) -> dict[str, Any]:
        today = self._today().isoformat()
        # One date serves every report (extra parameters are ignored); aged reports need a
        # contact: the nil id answers without data, or with the refusal.
        return {"date": today, "fromDate": today, "toDate": today, "contactId": NIL_ID}

    @override
    def refusal_facts(self, endpoint: str) -> tuple[tuple[str, ...], str | None]:
        if endpoint in REFERENCE_SCOPES:
            return REFERENCE_SCOPES[endpoint], None
        return super().refusal_facts(endpoint)

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


class CheckReportStream(ReportStream):
    """A report of the check: reads the months wanted from the check's answers when it has them."""

    @override
    def answers(self, context: Context | None) -> Iterable[tuple[Call, Iterable[dict[str, Any]]]]:
        months = set(self.months(context))
        check = self.ledger_check(context) if months else None
        if check is None or not months <= set(check.window):
            yield from super().answers(context)
            return
        for call, body in check.answers:
            if call.report == self.report and call.months & months:
                yield dataclasses.replace(call, months=call.months & months), [body]


class ProfitAndLossStream(CheckReportStream):
    """Monthly profit and loss, accrual and cash basis, 13 months a call."""

    scopes = access.report_scopes("profitandloss")
    name = "profit_and_loss"
    report = "ProfitAndLoss"

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return profit_and_loss_calls(self.months(context), self.bases)


class BalanceSheetStream(CheckReportStream):
    """Month-end balance sheets, accrual and cash basis, 13 month ends a call."""

    scopes = access.report_scopes("balancesheet")
    name = "balance_sheet"
    report = "BalanceSheet"

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return balance_sheet_calls(self.months(context), self.bases)


class TrialBalanceStream(ReportStream):
    """Month-end trial balances, accrual and cash basis (no `periods`: a call a month)."""

    scopes = access.report_scopes("trialbalance")
    name = "trial_balance"
    report = "TrialBalance"


class BankSummaryStream(ReportStream):
    """Monthly bank summary: opening, received, spent, closing per bank account."""

    scopes = access.report_scopes("banksummary")
    name = "bank_summary"
    report = "BankSummary"
    bases = (ACCRUAL,)  # no paymentsOnly: bank movements are cash already

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return _monthly_calls(self.report, self.months(context), self.bases, span=True)


class ExecutiveSummaryStream(ReportStream):
    """Monthly executive summary (cash, profitability, balance sheet lines)."""

    scopes = access.report_scopes("executivesummary")
    name = "executive_summary"
    report = "ExecutiveSummary"
    bases = (ACCRUAL,)


class BudgetSummaryStream(ReportStream):
    """The overall budget by account and month, from the first month read to a year ahead."""

    scopes = access.report_scopes("budgetsummary")
    name = "budget_summary"
    report = "BudgetSummary"
    bases = (ACCRUAL,)
    checked = False  # budgets change apart from the ledger: the open and closed months

    @override
    def plan(self, context: Context | None) -> list[Call]:
        return budget_summary_calls(self.months(context))


class AgedReportStream(ReportStream):
    """Aged receivables or payables by contact, as at today: one call per contact.

    Off by default (not selected in the catalog, and `aged_reports_enabled` must be
    true): an organisation with 2,000 customers spends 2,000 of its 5,000 daily calls.
    """

    scopes = access.report_scopes("aged")
    selected_by_default = False
    bases = (ACCRUAL,)
    checked = False  # as at today, every run
    contact_flag: ClassVar[str]  # IsCustomer or IsSupplier

    def contacts(self, context: Context | None) -> list[str]:
        """Ids of the organisation's contacts that are customers (or suppliers)."""
        tenant = str((context or {}).get(TENANT_KEY, ""))
        return [str(c["ContactID"]) for c in self.contact_list(tenant) if c.get(self.contact_flag)]

    def contact_list(self, tenant: str) -> list[dict[str, Any]]:
        """The organisation's contacts (summary only), read once a run for both aged reports."""
        cache = self.xero_tap.reference_tables
        key = (tenant, "Contacts")
        if key not in cache:
            contacts: list[dict[str, Any]] = []
            page = 1
            while True:
                body = self.get_json(
                    tenant,
                    "/Contacts",
                    {"page": page, "pageSize": CONTACTS_PAGE_SIZE, "summaryOnly": "true"},
                )
                records = body.get("Contacts") or []
                contacts += [
                    {k: c.get(k) for k in ("ContactID", "IsCustomer", "IsSupplier")}
                    for c in records
                ]
                if len(records) < CONTACTS_PAGE_SIZE:
                    break
                page += 1
            cache[key] = contacts
        found: list[dict[str, Any]] = cache[key]
        return found

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

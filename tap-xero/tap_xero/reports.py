"""Xero's financial reports as tidy rows, and the plan of calls that reads them.

A report answers `Reports[0].Rows`: a Header row naming the columns, then Sections
holding Rows and SummaryRows of Cells. Flattening gives one row per value cell, with
its column's title from the header (and the period the title names, when it names one),
its section, its row label and, when a cell carries the `account` attribute, the
account. Nothing is inferred from a position except the pairing of a cell with the
header cell above it, which is what the header is for.

The plan: months from `start_date` (bounded by `report_history_months`) to today on a
first run; later runs re-read only the months late entries can have changed (see
`months_to_reread`), in as few calls as each report's `periods` parameter allows.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

ACCRUAL = "accrual"
CASH = "cash"
MAX_PERIODS = 12  # Xero's `periods`: up to 12 earlier periods beside the one asked for
_DATE_FORMATS = ("%d %b %y", "%d %B %Y", "%d %b %Y", "%Y-%m-%d")
_MONTH_FORMATS = ("%b-%y", "%b %Y", "%B %Y", "%b %y")
# Reports that state a position at a date rather than flows over a period.
AS_AT = frozenset(
    {"BalanceSheet", "TrialBalance", "AgedReceivablesByContact", "AgedPayablesByContact"}
)
_NUMBER = re.compile(r"^\(?-?[\d,]*\.?\d+\)?$")

# The Singer schema shared by every report stream.
REPORT_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "row_key": {"type": "string", "description": "Surrogate key of the cell (one column)."},
        "tenant_id": {"type": "string", "description": "Xero organisation (tenant) id."},
        "report": {"type": "string", "description": "Xero report, e.g. ProfitAndLoss."},
        "basis": {"type": "string", "description": "accrual, or cash (paymentsOnly=true)."},
        "period_start": {"type": ["string", "null"], "format": "date"},
        "period_end": {"type": ["string", "null"], "format": "date"},
        "contact_id": {"type": ["string", "null"], "description": "Aged reports only."},
        "section": {"type": ["string", "null"]},
        "row_type": {"type": ["string", "null"], "description": "Row or SummaryRow."},
        "row_title": {"type": ["string", "null"], "description": "The row's first cell."},
        "row_number": {"type": "integer", "description": "Position of the row in its section."},
        "account_id": {"type": ["string", "null"]},
        "account_code": {"type": ["string", "null"]},
        "account_name": {"type": ["string", "null"]},
        "column": {"type": ["string", "null"], "description": "The header cell's title."},
        "value": {"type": ["number", "null"], "description": "The cell as a number."},
        "value_text": {"type": ["string", "null"], "description": "The cell as Xero sent it."},
    },
}
REPORT_ROW_KEYS = ["row_key"]


# ---------------------------------------------------------------- dates


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def add_months(d: date, months: int) -> date:
    """The first day of the month `months` after `d`'s month."""
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def months_between(later: date, earlier: date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def parse_title_date(title: str) -> tuple[date, bool] | None:
    """A header title naming a date: (date, True) for a day, (month end, False) for a month."""
    text = title.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date(), True
        except ValueError:
            continue
    for fmt in _MONTH_FORMATS:
        try:
            return month_end(datetime.strptime(text, fmt).date()), False
        except ValueError:
            continue
    return None


def parse_number(text: Any) -> float | None:
    """`1,234.50` or `(12.00)` (negative) as a number; anything else None."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not _NUMBER.match(text.strip()):
        return None
    raw = text.strip().replace(",", "")
    negative = raw.startswith("(") and raw.endswith(")")
    value = float(raw.strip("()"))
    return -value if negative else value


# ---------------------------------------------------------------- the plan of calls


@dataclass(frozen=True)
class Call:
    """One report request, and the months (first days) whose columns it is read for."""

    report: str
    basis: str
    params: dict[str, str]
    months: frozenset[date]
    contact_id: str | None = None
    # The period of columns whose titles name none (e.g. Debit, Opening Balance).
    period: tuple[date, date] | None = None


def history_start(start: date | None, today: date, history_months: int | None) -> date:
    """The first month of report history: `start` (default a year back), within the bound."""
    last = month_start(today)
    first = month_start(start) if start is not None else add_months(last, -11)
    if history_months is not None:
        first = max(first, add_months(last, -(max(history_months, 1) - 1)))
    return first


def months_to_read(
    start: date | None,
    today: date,
    bookmark: date | None,
    closed_to_refresh: int,
    history_months: int | None = None,
) -> list[date]:
    """First days of the months to read, oldest first.

    First run: from `start` (default: a year back), but never more than `history_months`
    months up to this one. Later runs: the months still open at the last run (from its
    bookmark) and `closed_to_refresh` closed months before them, never before `start`.
    """
    last = month_start(today)
    first = history_start(start, today, history_months)
    if bookmark is not None:
        reopen = add_months(month_start(min(bookmark, today)), -max(closed_to_refresh, 0))
        first = max(first, reopen)
    first = min(first, last)
    return [add_months(first, n) for n in range(months_between(last, first) + 1)]


def unlocked_from(lock: date | None) -> date | None:
    """The first month a lock date leaves open (None: no lock).

    Xero refuses to add or edit a transaction dated on or before a lock date, so a month
    that ends on or before it cannot change; a lock inside a month leaves that month open.
    """
    if lock is None:
        return None
    return add_months(lock, 1) if lock >= month_end(lock) else month_start(lock)


def check_window(
    start: date | None,
    today: date,
    history_months: int,
    lock: date | None,
    checked_before: Iterable[date] = (),
) -> list[date]:
    """The months whose figures a later run checks, oldest first.

    Every month the lock date leaves open, within the report history; and, once more,
    any month the previous run checked that has been locked since (it may have changed
    between that run and the lock).
    """
    last = month_start(today)
    first = history_start(start, today, history_months)
    opened = unlocked_from(lock)
    if opened is not None:
        first = max(first, min([opened, *checked_before]))
    first = min(first, add_months(last, 1))
    return [add_months(first, n) for n in range(months_between(last, first) + 1)]


def month_key(month: date) -> str:
    return month.isoformat()[:7]


def period_digests(rows: Iterable[dict[str, Any]], months: list[date]) -> dict[str, str]:
    """A digest of each month's non-zero figures in the check reports' tidy rows.

    Zero cells are left out: whether a report shows an account with 0.00 in a month
    depends on the other months of the same call, not on that month's ledger.
    """
    lines: dict[str, list[str]] = defaultdict(list)
    fields = ("report", "basis", "section", "account_id", "row_title", "column", "value_text")
    for row in rows:
        if not row.get("period_end") or row.get("value") == 0 or not row.get("value_text"):
            continue
        lines[str(row["period_end"])[:7]].append("\x1f".join(str(row.get(k)) for k in fields))
    return {month_key(m): row_key(*sorted(lines.get(month_key(m), []))) for m in sorted(months)}


def months_to_reread(
    window: list[date], digests: dict[str, str], before: dict[str, str]
) -> list[date]:
    """The months to read again: from the first whose figures changed to this month.

    A change dated in a month moves that month's profit and loss or its month-end
    balance sheet (accrual or cash basis), and every later month's positions and
    year-to-date figures with it; a month the last run did not check counts as changed.
    """
    for index, month in enumerate(window):
        key = month_key(month)
        if before.get(key) != digests.get(key):
            return window[index:]
    return []


def _basis_params(basis: str) -> dict[str, str]:
    return {"paymentsOnly": "true"} if basis == CASH else {}


def profit_and_loss_calls(months: list[date], bases: tuple[str, ...]) -> list[Call]:
    """Monthly P&L: up to 13 months a call (a month and 12 earlier `periods`).

    Xero shifts the earlier periods by calendar months from `toDate`, keeping its day:
    a call anchored on a 31-day month keeps every earlier period a whole month (an
    anchor on 30 November would end October on the 30th). The anchor is therefore the
    latest month wanted, or the month after it when that one is shorter.
    """
    calls = []
    remaining = sorted(months, reverse=True)
    while remaining:
        latest = remaining[0]
        anchor = latest if month_end(latest).day == 31 else add_months(latest, 1)
        covered = {add_months(anchor, -k) for k in range(MAX_PERIODS + 1)}
        take = [m for m in remaining if m in covered]
        periods = months_between(anchor, min(take))
        params = {
            "fromDate": anchor.isoformat(),
            "toDate": month_end(anchor).isoformat(),
            "timeframe": "MONTH",
        }
        if periods:
            params["periods"] = str(periods)
        for basis in bases:
            calls.append(
                Call("ProfitAndLoss", basis, {**params, **_basis_params(basis)}, frozenset(take))
            )
        remaining = [m for m in remaining if m not in covered]
    return calls


def balance_sheet_calls(months: list[date], bases: tuple[str, ...]) -> list[Call]:
    """Month-end balance sheets: up to 13 month ends a call."""
    calls = []
    remaining = sorted(months, reverse=True)
    while remaining:
        take = remaining[: MAX_PERIODS + 1]
        params = {"date": month_end(take[0]).isoformat(), "timeframe": "MONTH"}
        if len(take) > 1:
            params["periods"] = str(months_between(take[0], take[-1]))
        for basis in bases:
            calls.append(
                Call("BalanceSheet", basis, {**params, **_basis_params(basis)}, frozenset(take))
            )
        remaining = remaining[len(take) :]
    return calls


def monthly_calls(
    report: str, months: list[date], bases: tuple[str, ...], *, span: bool
) -> list[Call]:
    """One call a month (reports without `periods`): `fromDate`/`toDate` or `date`."""
    calls = []
    for month in sorted(months, reverse=True):
        end = month_end(month)
        params = (
            {"fromDate": month.isoformat(), "toDate": end.isoformat()}
            if span
            else {"date": end.isoformat()}
        )
        period = (end, end) if report in AS_AT else (month, end)
        for basis in bases:
            calls.append(
                Call(
                    report,
                    basis,
                    {**params, **_basis_params(basis)},
                    frozenset({month}),
                    period=period,
                )
            )
    return calls


def budget_summary_calls(months: list[date], ahead: int = 12) -> list[Call]:
    """Budgets look ahead: the months read and `ahead` more, 12 monthly columns a call."""
    if not months:
        return []
    first = min(months)
    wanted = [add_months(first, n) for n in range(months_between(max(months), first) + ahead)]
    calls = []
    for i in range(0, len(wanted), MAX_PERIODS):
        take = wanted[i : i + MAX_PERIODS]
        # The spec's BudgetSummary `timeframe` is an integer: 1 (month), 3 (quarter), 12 (year).
        params = {"date": take[0].isoformat(), "periods": str(len(take)), "timeframe": "1"}
        calls.append(Call("BudgetSummary", ACCRUAL, params, frozenset(take)))
    return calls


# ---------------------------------------------------------------- flattening


@dataclass
class Accounts:
    """AccountID -> (Code, Name), for the code a report's account cell does not carry."""

    by_id: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Accounts:
        return cls({str(a["AccountID"]): (a.get("Code"), a.get("Name")) for a in records})


def _account_of(cells: list[dict[str, Any]]) -> str | None:
    for cell in cells:
        for attribute in cell.get("Attributes") or []:
            if str(attribute.get("Id", "")).lower() == "account" and attribute.get("Value"):
                return str(attribute["Value"])
    return None


def _column_period(title: str, call: Call) -> tuple[date, date] | None:
    """The period a column holds, or None when the call does not want its month."""
    named = parse_title_date(title)
    if named is None:
        if call.period is None:
            return None
        start, end = call.period
        return (start, end) if month_start(end) in call.months else None
    end, is_day = named
    if month_start(end) not in call.months:
        return None
    if call.report in AS_AT:
        return end, end  # a position at a date
    if not is_day and end != month_end(end):
        return None
    return month_start(end), end


def _walk(rows: list[dict[str, Any]], section: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in rows:
        if row.get("RowType") == "Section":
            yield from _walk(row.get("Rows") or [], str(row.get("Title") or ""))
        else:
            yield section, row


def row_key(*parts: Any) -> str:
    """A short, stable single-column key (Power BI relationships join one column)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - an identifier, not a secret


def _header_titles(rows: list[dict[str, Any]]) -> list[str]:
    """The column titles of the report's Header row ([] without one)."""
    for row in rows:
        if row.get("RowType") == "Header":
            return [str(c.get("Value") or "") for c in row.get("Cells") or []]
    return []


def _column_periods(
    titles: list[str], call: Call, on_unknown_column: Callable[[str], None] | None
) -> dict[int, tuple[date, date] | None]:
    """Column index -> the period it holds (None: not one this call wants)."""
    periods: dict[int, tuple[date, date] | None] = {}
    for index, title in enumerate(titles):
        if index:
            periods[index] = _column_period(title, call)
            if call.period is None and parse_title_date(title) is None and on_unknown_column:
                on_unknown_column(f"{call.report}: column {title!r} names no period; skipped")
    return periods


@dataclass(frozen=True)
class _Line:
    """One report row's identity: where it sits and which account it is about."""

    section: str
    row_type: Any
    label: str
    account_id: str | None
    code: str | None
    name: str | None
    number: int

    @property
    def identity(self) -> str:
        return self.account_id or self.label


def _line(section: str, row: dict[str, Any], accounts: Accounts, number: int) -> _Line:
    cells = row.get("Cells") or []
    label = str(cells[0].get("Value") or "")
    account_id = _account_of(cells)
    code, name = accounts.by_id.get(account_id, (None, None)) if account_id else (None, None)
    if account_id and name is None:
        name = label
    return _Line(section, row.get("RowType"), label, account_id, code, name, number)


def _cell_row(
    line: _Line, call: Call, tenant_id: str, title: str, period: tuple[date, date], raw: Any
) -> dict[str, Any]:
    """The tidy row of one value cell."""
    return {
        "row_key": row_key(
            tenant_id,
            call.report,
            call.basis,
            call.contact_id,
            period[0],
            period[1],
            line.section,
            line.identity,
            line.number,
            title,
        ),
        "tenant_id": tenant_id,
        "report": call.report,
        "basis": call.basis,
        "period_start": period[0].isoformat(),
        "period_end": period[1].isoformat(),
        "contact_id": call.contact_id,
        "section": line.section,
        "row_type": line.row_type,
        "row_title": line.label,
        "row_number": line.number,
        "account_id": line.account_id,
        "account_code": line.code,
        "account_name": line.name,
        "column": title,
        "value": parse_number(raw),
        "value_text": None if raw is None else str(raw),
    }


def flatten(
    body: dict[str, Any],
    call: Call,
    accounts: Accounts,
    tenant_id: str,
    on_unknown_column: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Tidy rows of one report answer (`{"Reports": [report]}` or the report itself)."""
    reports = body.get("Reports")
    report = reports[0] if isinstance(reports, list) and reports else body
    rows = report.get("Rows") or []
    titles = _header_titles(rows)
    periods = _column_periods(titles, call, on_unknown_column)
    seen: dict[tuple[str, str], int] = {}
    for section, row in _walk([r for r in rows if r.get("RowType") != "Header"], ""):
        cells = row.get("Cells") or []
        if not cells:
            continue
        line = _line(section, row, accounts, 0)
        number = seen.get((section, line.identity), 0)
        seen[(section, line.identity)] = number + 1
        line = dataclasses.replace(line, number=number)
        for index, cell in enumerate(cells[1:], start=1):
            if index >= len(titles):
                if on_unknown_column is not None:
                    on_unknown_column(f"{call.report}: cell {index} has no header")
                continue
            period = periods.get(index)
            if period is not None:
                yield _cell_row(line, call, tenant_id, titles[index], period, cell.get("Value"))

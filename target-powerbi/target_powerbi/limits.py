"""Power BI's push-dataset limits, enforced before a request is sent rather than after a 429.

Every window is measured from the moment an earlier request *finished* (a time
no earlier than the service saw it arrive), and a request still in flight counts
as inside every window, so the service's own count can never exceed a limit,
whatever the latency and whether it uses fixed or sliding windows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

MAX_ROWS_PER_POST = 10_000
# Power BI documents "about 16 MB" a request; stay a clear margin below it.
MAX_BODY_BYTES = 15 * 1024 * 1024
POSTS_PER_MINUTE = 120
POSTS_PER_HOUR_LARGE_TABLE = 120
LARGE_TABLE_ROWS = 250_000
ROWS_PER_HOUR = 1_000_000
MAX_PENDING = 5
MINUTE = 60.0
HOUR = 3600.0
# Added to each window so that a boundary inclusive on the service's side is still safe.
WINDOW_MARGIN = 1.0
LOG_WAIT_ABOVE = 5.0


class Clock(Protocol):
    """Time as the service measures it (seconds, monotonic); tests inject a fake one."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time: the service's windows are measured on it."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def format_duration(seconds: float) -> str:
    """12m30s, 1h02m, 4.2s: for log lines a person reads."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    msg = f"value of type {type(value).__name__} is not JSON serialisable"
    raise TypeError(msg)


def encode_row(row: Mapping[str, Any]) -> bytes:
    """The exact bytes a row takes in the request body (NaN and Infinity refused)."""
    return json.dumps(
        row, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode("utf-8")


_PREFIX = b'{"rows":['
_SUFFIX = b"]}"


def rows_body(encoded: Sequence[bytes]) -> bytes:
    """The request body of POST rows from rows already encoded by `encode_row`."""
    return _PREFIX + b",".join(encoded) + _SUFFIX


class RowTooLargeError(ValueError):
    """One row alone is larger than a request may be."""


def split_rows(
    encoded: Sequence[bytes],
    max_rows: int = MAX_ROWS_PER_POST,
    max_bytes: int = MAX_BODY_BYTES,
) -> list[tuple[int, int]]:
    """Cut encoded rows into [start, end) chunks of at most `max_rows` and `max_bytes` a body.

    Greedy, so the fewest requests: 10,000 rows are one POST, 10,001 are two.
    """
    chunks: list[tuple[int, int]] = []
    overhead = len(_PREFIX) + len(_SUFFIX)
    start, size = 0, overhead
    for index, row in enumerate(encoded):
        row_size = len(row) + (1 if index > start else 0)
        if overhead + len(row) > max_bytes:
            msg = f"row {index} alone is {len(row)} bytes, over the {max_bytes}-byte request limit"
            raise RowTooLargeError(msg)
        if index - start >= max_rows or size + row_size > max_bytes:
            chunks.append((start, index))
            start, size = index, overhead + len(row)
        else:
            size += row_size
    if start < len(encoded):
        chunks.append((start, len(encoded)))
    return chunks


@dataclass
class _Slot:
    rows: int
    done: float | None = None


@dataclass
class _DatasetWindow:
    slots: list[_Slot] = field(default_factory=list)
    pending: int = 0
    blocked_until: float = 0.0
    table_rows: dict[str, int] = field(default_factory=dict)


class PushLimiter:
    """Paces POST rows per dataset below every documented Power BI limit.

    Use `with limiter.post(dataset_id, table, rows):` around each POST rows attempt.
    """

    def __init__(
        self,
        clock: Clock,
        logger: logging.Logger,
        *,
        max_pending: int = MAX_PENDING,
        posts_per_minute: int = POSTS_PER_MINUTE,
        posts_per_hour_large: int = POSTS_PER_HOUR_LARGE_TABLE,
        large_table_rows: int = LARGE_TABLE_ROWS,
        rows_per_hour: int = ROWS_PER_HOUR,
    ) -> None:
        self.clock = clock
        self.logger = logger
        self.max_pending = max_pending
        self.posts_per_minute = posts_per_minute
        self.posts_per_hour_large = posts_per_hour_large
        self.large_table_rows = large_table_rows
        self.rows_per_hour = rows_per_hour
        self._cond = threading.Condition()
        self._datasets: dict[str, _DatasetWindow] = {}

    def _window(self, dataset_id: str) -> _DatasetWindow:
        return self._datasets.setdefault(dataset_id, _DatasetWindow())

    # table sizes: for the rule of 120 POSTs an hour on tables of 250,000 rows or more
    def note_table_rows(self, dataset_id: str, table: str, rows: int) -> None:
        """Tell the limiter how many rows a table already holds (the larger count wins)."""
        with self._cond:
            counts = self._window(dataset_id).table_rows
            counts[table] = max(counts.get(table, 0), rows)

    def table_emptied(self, dataset_id: str, table: str) -> None:
        with self._cond:
            self._window(dataset_id).table_rows[table] = 0

    def dataset_gone(self, dataset_id: str) -> None:
        """Forget a deleted dataset's table sizes (its request windows still apply)."""
        with self._cond:
            self._window(dataset_id).table_rows.clear()

    def table_rows(self, dataset_id: str, table: str) -> int:
        with self._cond:
            return self._window(dataset_id).table_rows.get(table, 0)

    def block(self, dataset_id: str, seconds: float) -> None:
        """Hold every POST to the dataset for `seconds` (a 429's Retry-After)."""
        with self._cond:
            window = self._window(dataset_id)
            window.blocked_until = max(window.blocked_until, self.clock.now() + seconds)

    @staticmethod
    def _free_at(
        slots: list[_Slot], now: float, span: float, weight: int, need: int
    ) -> float | None:
        """When slots inside `span` weigh at most `need` less; None if in-flight ones block."""
        recent = [s for s in slots if s.done is None or s.done > now - span]
        total = sum(s.rows if weight else 1 for s in recent)
        excess = total - need
        if excess <= 0:
            return 0.0
        done = sorted((s for s in recent if s.done is not None), key=lambda s: s.done or 0.0)
        freed = 0
        for slot in done:
            freed += slot.rows if weight else 1
            if freed >= excess:
                return (slot.done or 0.0) + span - now
        return None

    def _wait_needed(
        self, window: _DatasetWindow, now: float, rows: int, large: bool
    ) -> tuple[float | None, str]:
        if window.blocked_until > now:
            return window.blocked_until - now, "Power BI throttled the dataset: Retry-After"
        if window.pending >= self.max_pending:
            return None, f"at most {self.max_pending} requests pending per dataset"
        waits: list[tuple[float | None, str]] = [
            (
                self._free_at(
                    window.slots, now, MINUTE + WINDOW_MARGIN, 0, self.posts_per_minute - 1
                ),
                f"Power BI allows {self.posts_per_minute} POST rows a minute per dataset",
            ),
            (
                self._free_at(
                    window.slots, now, HOUR + WINDOW_MARGIN, 1, self.rows_per_hour - rows
                ),
                f"Power BI allows {self.rows_per_hour:,} rows an hour per dataset",
            ),
        ]
        if large:
            waits.append(
                (
                    self._free_at(
                        window.slots, now, HOUR + WINDOW_MARGIN, 0, self.posts_per_hour_large - 1
                    ),
                    f"Power BI allows {self.posts_per_hour_large} POST rows an hour once a table "
                    f"holds {self.large_table_rows:,} rows",
                )
            )
        blocked = [reason for wait, reason in waits if wait is None]
        if blocked:
            return None, blocked[0]
        wait, reason = max(((w or 0.0, r) for w, r in waits), key=lambda item: item[0])
        return wait, reason

    @contextmanager
    def post(self, dataset_id: str, table: str, rows: int) -> Iterator[None]:
        """Wait until a POST of `rows` rows is within every limit, then hold its slot."""
        if rows > self.rows_per_hour:
            msg = f"a POST of {rows} rows exceeds the hourly cap of {self.rows_per_hour}"
            raise ValueError(msg)
        with self._cond:
            window = self._window(dataset_id)
            while True:
                now = self.clock.now()
                window.slots = [
                    s for s in window.slots if s.done is None or s.done > now - HOUR * 2
                ]
                # Conservative: the service may apply the hourly rule to the whole dataset
                # once any table is large, and may count the table before or after the POST.
                large = (
                    window.table_rows.get(table, 0) + rows >= self.large_table_rows
                    or max(window.table_rows.values(), default=0) >= self.large_table_rows
                )
                wait, reason = self._wait_needed(window, now, rows, large)
                if wait is None:
                    self._cond.wait(timeout=1.0)
                    continue
                if wait <= 0:
                    break
                self._log_wait(dataset_id, table, rows, wait, reason)
                self._cond.release()
                try:
                    self.clock.sleep(wait)
                finally:
                    self._cond.acquire()
            slot = _Slot(rows=rows)
            window.slots.append(slot)
            window.pending += 1
            # Counted as soon as it is sent, so concurrent POSTs see the table's size grow.
            window.table_rows[table] = window.table_rows.get(table, 0) + rows
        try:
            yield
        finally:
            with self._cond:
                slot.done = self.clock.now()
                window.pending -= 1
                self._cond.notify_all()

    def _log_wait(self, dataset_id: str, table: str, rows: int, wait: float, reason: str) -> None:
        level = logging.INFO if wait >= LOG_WAIT_ABOVE else logging.DEBUG
        duration = format_duration(wait)
        self.logger.log(
            level,
            "Waiting %s before posting %d rows to table %s of dataset %s (%s)",
            duration,
            rows,
            table,
            dataset_id,
            reason,
        )

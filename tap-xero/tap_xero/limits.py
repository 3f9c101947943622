"""Xero's per-organisation limits, enforced on the client so that a normal run never sees 429.

One `OrgLimiter` per organisation, shared by every stream of the run (through
`RateLimiters`). It keeps three promises:

- at most `calls_per_minute` calls in any `window_seconds` (counted on the client), and
  none while `X-MinLimit-Remaining` says the server's fixed window is spent;
- at most `max_in_flight` calls at once;
- none, for any organisation, while `X-AppMinLimit-Remaining` says the app's minute
  across all organisations is spent;
- none once Xero's `X-DayLimit-Remaining` (the day's calls left, whatever the tier's
  limit: 1,000 on Starter, 5,000 above) falls to `daily_call_reserve`, so earlier runs of
  the same day and other apps count too; and at most `daily_call_budget` calls in this
  run when that cap is set. Past either it raises `DailyBudgetExhaustedError`, which the
  streams turn into a clean stop.

A 429 is not waited out here: the stream's retry policy (`tap_xero.retry`) waits exactly
`Retry-After` before the retry takes its next slot, so the two waits never add up.

Hand-written rather than a library limiter (e.g. `pyrate-limiter`): it paces by Xero's
own `X-...-Remaining` answers as well as by its client-side count, which no library does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tap_xero.settings import TapSettings

# Day limits per organisation by app tier (FACTS: Starter 1,000; Core and above 5,000).
DAY_LIMITS = (1000, 5000)


class DailyBudgetExhaustedError(Exception):
    """The organisation's daily call budget is spent: stop its streams, keep bookmarks."""


@dataclass(frozen=True)
class LimitSettings:
    """The knobs of every organisation's limiter (settings of the tap)."""

    calls_per_minute: int
    window_seconds: float
    max_in_flight: int
    daily_call_reserve: int
    daily_call_budget: int | None = None  # a cap per run; None: only the reserve bounds it

    @classmethod
    def from_settings(cls, settings: TapSettings) -> LimitSettings:
        return cls(
            calls_per_minute=settings.calls_per_minute,
            window_seconds=settings.rate_limit_window_seconds,
            max_in_flight=settings.max_in_flight,
            daily_call_reserve=settings.daily_call_reserve,
            daily_call_budget=settings.daily_call_budget,
        )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class AppGate:
    """Xero's app-wide minute (10,000 calls across every organisation), from its header.

    Shared by every organisation's limiter, so organisations read side by side stay within
    it together. Its count is Xero's last `X-AppMinLimit-Remaining` less every call sent
    since (by any organisation); at 0, no organisation calls until that window has
    certainly ended. Answers of concurrent calls arrive in any order, so a higher figure
    from Xero means a new window only once the current one has certainly ended.
    """

    def __init__(self, window_seconds: float, clock: Callable[[], float]) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._window_start: float | None = None
        self._pending = 0  # calls sent by any organisation, not answered yet

    def _wait_time(self, now: float) -> float:
        if self._remaining is None or self._remaining > 0:
            return 0.0
        start = self._window_start if self._window_start is not None else now
        return max(0.0, start + self.window_seconds - now)  # 0: that window has ended

    def wait_time(self, now: float) -> float:
        with self._lock:
            return self._wait_time(now)

    def reserve(self, now: float) -> float:
        """Count a call as sent if the app's minute has room (0.0); else the wait.

        Check and count in one step: organisations reserve concurrently, and two of them
        must never both take the app's last call.
        """
        with self._lock:
            wait = self._wait_time(now)
            if wait <= 0:
                self._pending += 1
                if self._remaining is not None:
                    self._remaining -= 1
            return wait

    def answered(self) -> None:
        with self._lock:
            self._pending -= 1

    def observe(self, remaining: int) -> None:
        with self._lock:
            now = self._clock()
            # The other calls in flight may be counted in that figure already, or not.
            others = max(0, self._pending - 1)
            if self._remaining is None or self._window_start is None:
                self._window_start = now  # the window began before this answer
                self._remaining = remaining - others
            elif remaining > self._remaining and now >= self._window_start + self.window_seconds:
                self._window_start = now  # a new window, begun before this answer
                self._remaining = remaining - others
            else:
                self._remaining = min(self._remaining, remaining)


class OrgLimiter:
    """Paces one organisation's calls; thread-safe.

    Calls are dated by when their answer arrived: Xero counts a call when it receives
    it, which is after we send it and before we hear back, so the arrival time is the
    safe side of both the sliding count and the server's window.
    """

    def __init__(
        self,
        settings: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        app: AppGate | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._app = app or AppGate(settings.window_seconds, clock)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)
        self._done: deque[float] = deque()  # answer times within the last window
        self._pending = 0  # sent, not answered yet
        self._min_remaining: int | None = None
        self._window_start: float | None = None  # latest moment the server window began
        self.calls = 0  # calls sent by this run
        self.day_remaining: int | None = None
        self._sent_since_day = 0  # calls sent after the answer that set day_remaining
        self.received_bytes = 0  # response bytes on the wire, this run
        self._spent = False  # Xero said the day is over (429 `day`)
        self._announced = False

    def announce_stop(self) -> bool:
        """True the first time only: say once per organisation that its day is over."""
        with self._lock:
            first = not self._announced
            self._announced = True
            return first

    @property
    def exhausted(self) -> bool:
        """No more calls today: Xero said so, its day is down to the reserve, or the cap is hit."""
        if self._spent:
            return True
        budget = self.settings.daily_call_budget
        if budget is not None and self.calls >= budget:
            return True
        left = self.day_left
        return left is not None and left <= self.settings.daily_call_reserve

    @property
    def day_left(self) -> int | None:
        """Calls left today by Xero's last answer, less the calls sent since (None: unknown)."""
        if self.day_remaining is None:
            return None
        return self.day_remaining - self._sent_since_day

    @property
    def day_limit(self) -> int | None:
        """The smallest tier day limit consistent with what Xero said (None: unknown)."""
        if self.day_remaining is None:
            return None
        return next((limit for limit in DAY_LIMITS if self.day_remaining < limit), None)

    def _wait_time(self, now: float) -> float:
        window = self.settings.window_seconds
        while self._done and self._done[0] <= now - window:
            self._done.popleft()
        wait = 0.0
        if len(self._done) + self._pending >= self.settings.calls_per_minute:
            # Full: the oldest answered call leaves the window first (or one in flight ends).
            wait = max(wait, self._done[0] + window - now if self._done else 0.01)
        if self._min_remaining is not None and self._min_remaining <= 0:
            start = self._window_start if self._window_start is not None else now
            wait = max(wait, start + window - now)
        return wait

    def _reserve(self) -> None:
        """Wait for room in the minute window, then count the call as sent."""
        while True:
            with self._lock:
                if self.exhausted:
                    raise DailyBudgetExhaustedError
                now = self._clock()
                wait = self._wait_time(now)
                if wait <= 0:
                    wait = self._app.reserve(now)  # the app-wide minute, counted if room
                if wait <= 0:
                    self._pending += 1
                    self.calls += 1
                    self._sent_since_day += 1
                    if self._min_remaining is not None:
                        self._min_remaining -= 1
                    return
            self._sleep(wait)

    def _answered(self) -> None:
        with self._lock:
            now = self._clock()
            self._pending -= 1
            self._app.answered()
            self._done.append(now)
            if self._window_start is None:
                self._window_start = now

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight slot for one call, paced by the minute window."""
        with self._slots:
            self._reserve()
            try:
                yield None
            finally:
                self._answered()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the server's view from the `X-...-Remaining` headers of an answer."""
        minute = _int_header(headers, "X-MinLimit-Remaining")
        day = _int_header(headers, "X-DayLimit-Remaining")
        app = _int_header(headers, "X-AppMinLimit-Remaining")
        if app is not None:
            self._app.observe(app)
        with self._lock:
            if minute is not None:
                self._observe_minute(minute)
            if day is not None:
                self.day_remaining = day
                # The other calls in flight may not be counted in it yet.
                self._sent_since_day = max(0, self._pending - 1)

    def _observe_minute(self, minute: int) -> None:
        """Learn `X-MinLimit-Remaining` (under the lock).

        Our count is Xero's last figure less every call sent since. Answers of pipelined
        calls arrive in any order, so a higher figure means a new window (begun before
        this answer) only once the current one has certainly ended; taking every higher
        figure for one would push the window's start to each answer and idle the end of
        every minute, or overrun it.
        """
        window = self.settings.window_seconds
        now = self._clock()
        others = max(0, self._pending - 1)  # in flight: counted in `minute` already, or not
        if self._min_remaining is None:
            self._min_remaining = minute - others
        elif minute > self._min_remaining and (
            self._window_start is None or now >= self._window_start + window
        ):
            self._window_start = now
            self._min_remaining = minute - others
        else:
            self._min_remaining = min(self._min_remaining, minute)

    def received(self, size: int) -> None:
        """Count the bytes of one answer (the run summary reports egress per organisation)."""
        with self._lock:
            self.received_bytes += size

    def exhaust(self) -> None:
        """Xero says the day's limit is spent (429 `day`): stop for today."""
        with self._lock:
            self._spent = True


class RateLimiters:
    """One limiter per organisation, created on first use, shared by all streams."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.app = AppGate(settings.window_seconds, time.monotonic)
        self._by_tenant: dict[str, OrgLimiter] = {}
        self._lock = threading.Lock()

    def for_tenant(self, tenant_id: str) -> OrgLimiter:
        with self._lock:
            if tenant_id not in self._by_tenant:
                self._by_tenant[tenant_id] = OrgLimiter(self.settings, app=self.app)
            return self._by_tenant[tenant_id]

    def items(self) -> list[tuple[str, OrgLimiter]]:
        with self._lock:
            return list(self._by_tenant.items())

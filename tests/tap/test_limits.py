"""The per-organisation limiter, on a fake clock: pacing, headers, Retry-After, budget."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import requests
from tap_xero.limits import (
    AppGate,
    DailyBudgetExhaustedError,
    LimitSettings,
    OrgLimiter,
    RateLimiters,
)
from tap_xero.retry import ReauthoriseError, RetryAfterError, RetryWaits
from tap_xero.settings import TapSettings, with_defaults

# The limiter's settings as the tap's schema defaults them (written once, in the schema).
DEFAULTS = LimitSettings.from_settings(TapSettings.from_config(with_defaults({})[0]))


def LimitSettings_(**kw) -> LimitSettings:  # noqa: N802
    return dataclasses.replace(DEFAULTS, **kw)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, **kw) -> OrgLimiter:
    return OrgLimiter(LimitSettings_(**kw), clock=clock, sleep=clock.sleep)


def call(lim: OrgLimiter, headers: dict[str, str] | None = None, took: float = 0.0) -> float:
    """One call taking `took` seconds on the limiter's fake clock; returns its send time."""
    clock = lim._clock
    assert isinstance(clock, FakeClock)
    with lim.slot():
        sent = clock.now
        clock.now += took
        lim.observe(headers or {})
    return sent


def test_sixty_calls_then_wait_for_the_oldest_to_leave_the_window():
    clock = FakeClock()
    lim = limiter(clock, calls_per_minute=60, window_seconds=60.0)
    for _ in range(60):
        call(lim)
        clock.now += 0.5
    assert clock.slept == []
    sent = call(lim)
    assert sent == pytest.approx(1060.0)  # first call at 1000 leaves the window at 1060
    assert sum(clock.slept) == pytest.approx(30.0)


def test_calls_are_dated_by_their_answer_not_their_sending():
    clock = FakeClock()
    lim = limiter(clock, calls_per_minute=2, window_seconds=60.0)
    call(lim, took=5.0)  # sent at 1000, Xero counted it somewhere in 1000..1005
    call(lim)
    assert call(lim) == pytest.approx(1065.0)


def test_server_says_minute_spent_waits_for_its_window_to_end():
    clock = FakeClock()
    lim = limiter(clock, calls_per_minute=60, window_seconds=60.0)
    # Another app spent most of the window: the server has 1 call left after ours.
    call(lim, {"X-MinLimit-Remaining": "1"})
    clock.now += 1
    call(lim, {"X-MinLimit-Remaining": "0"})
    clock.now += 1
    sent = call(lim, {"X-MinLimit-Remaining": "59"})
    assert sent == pytest.approx(1060.0)  # window began no later than the first call


def test_window_start_moves_when_the_server_window_restarts():
    clock = FakeClock()
    lim = limiter(clock, calls_per_minute=1000, window_seconds=60.0)
    call(lim, {"X-MinLimit-Remaining": "5"})
    clock.now = 1100.0
    call(lim, {"X-MinLimit-Remaining": "59"})  # went up: a new window began by 1100
    clock.now = 1101.0
    call(lim, {"X-MinLimit-Remaining": "0"})
    clock.now = 1102.0
    assert call(lim) == pytest.approx(1160.0)


def test_retry_after_is_waited_exactly_and_never_multiplied():
    response = requests.Response()
    response.status_code = 429
    waits = RetryWaits(backoff_seconds=1.0)
    storm = [RetryAfterError("429", response, wait=7.25, problem="minute") for _ in range(3)]
    assert [waits(exc) for exc in storm] == [7.25, 7.25, 7.25]
    assert waits(ReauthoriseError("401", response)) == 0.0


def test_daily_budget_counts_earlier_runs_through_the_day_header():
    clock = FakeClock()
    lim = limiter(clock, daily_call_reserve=500)
    call(lim, {"X-DayLimit-Remaining": "502"})  # 4498 spent today, by earlier runs too
    call(lim, {"X-DayLimit-Remaining": "501"})
    assert lim.day_left == 501
    call(lim, {"X-DayLimit-Remaining": "500"})
    with pytest.raises(DailyBudgetExhaustedError):
        call(lim)
    assert lim.exhausted


def test_a_starter_day_of_1000_calls_is_read_from_the_header_not_assumed():
    clock = FakeClock()
    lim = limiter(clock, daily_call_reserve=100)
    call(lim, {"X-DayLimit-Remaining": "999"})  # a Starter app: the day holds 1,000 calls
    assert lim.day_limit == 1000
    assert not lim.exhausted  # 5000 - 999 would have looked like 4,001 calls spent
    call(lim, {"X-DayLimit-Remaining": "101"})
    call(lim, {"X-DayLimit-Remaining": "100"})
    with pytest.raises(DailyBudgetExhaustedError):
        call(lim)


@pytest.mark.parametrize(
    "garbage", [{}, {"X-DayLimit-Remaining": "lots"}, {"X-DayLimit-Remaining": ""}]
)
def test_a_missing_or_garbage_day_header_is_tolerated(garbage):
    lim = limiter(FakeClock(), daily_call_reserve=100)
    for _ in range(3):
        call(lim, garbage)
    assert lim.day_left is None
    assert not lim.exhausted


def test_daily_budget_counts_own_calls_without_headers():
    clock = FakeClock()
    lim = limiter(clock, daily_call_budget=3)
    for _ in range(3):
        call(lim)
    with pytest.raises(DailyBudgetExhaustedError):
        call(lim)


def test_exhaust_after_a_day_429_stops_further_calls():
    lim = limiter(FakeClock())
    lim.exhaust()
    with pytest.raises(DailyBudgetExhaustedError):
        call(lim)


def test_at_most_max_in_flight_at_once():
    lim = OrgLimiter(LimitSettings_(max_in_flight=3, calls_per_minute=10_000))
    inside = 0
    peak = 0
    lock = threading.Lock()

    def work():
        nonlocal inside, peak
        with lim.slot():
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.02)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3
    assert lim.calls == 12


def test_one_limiter_per_organisation():
    limiters = RateLimiters(LimitSettings_())
    assert limiters.for_tenant("a") is limiters.for_tenant("a")
    assert limiters.for_tenant("a") is not limiters.for_tenant("b")


def test_the_app_wide_minute_holds_every_organisation():
    clock = FakeClock()
    settings = LimitSettings_(window_seconds=60.0)
    app = AppGate(60.0, clock)
    a = OrgLimiter(settings, clock=clock, sleep=clock.sleep, app=app)
    b = OrgLimiter(settings, clock=clock, sleep=clock.sleep, app=app)
    call(a, {"X-AppMinLimit-Remaining": "1"})  # the app's window began by 1000
    clock.now += 5
    call(a, {"X-AppMinLimit-Remaining": "0"})
    assert call(b) == pytest.approx(1060.0)  # another organisation waits for the app window


def test_registry_shares_one_app_gate():
    limiters = RateLimiters(LimitSettings_())
    assert limiters.for_tenant("a")._app is limiters.for_tenant("b")._app is limiters.app


def test_the_app_minute_counts_calls_still_in_flight():
    """Organisations side by side: Xero's count less the calls sent since, in any order."""
    clock = FakeClock()
    app = AppGate(60.0, clock)
    assert app.reserve(clock.now) == 0.0
    app.observe(3)  # Xero: 3 calls left in the app's minute (window began by 1000)
    app.answered()
    assert app.reserve(clock.now) == app.reserve(clock.now) == 0.0
    assert app.wait_time(clock.now) == 0.0  # one left after the two in flight
    assert app.reserve(clock.now) == 0.0
    assert app.reserve(clock.now) == pytest.approx(60.0)  # none left: until the window ends
    app.observe(2)  # a late answer of an earlier call: not a new window, the count stays
    assert app.wait_time(clock.now) == pytest.approx(60.0)
    clock.now += 60.0
    assert app.wait_time(clock.now) == 0.0  # that window has ended
    assert app.reserve(clock.now) == 0.0
    app.observe(9999)  # beyond every call in flight: a new window
    for _ in range(4):
        app.answered()
    assert app.wait_time(clock.now) == 0.0


def test_calls_of_many_organisations_never_exceed_the_app_minute_together():
    clock = FakeClock()
    settings = LimitSettings_(window_seconds=60.0)
    app = AppGate(60.0, clock)
    orgs = [OrgLimiter(settings, clock=clock, sleep=clock.sleep, app=app) for _ in range(4)]
    window_start, sent_in_window = clock.now, 0  # Xero's fixed window of 10 calls
    for index in range(40):
        with orgs[index % 4].slot():
            if clock.now >= window_start + 60.0:
                window_start, sent_in_window = clock.now, 0
            sent_in_window += 1
            assert sent_in_window <= 10
            orgs[index % 4].observe({"X-AppMinLimit-Remaining": str(10 - sent_in_window)})
    assert clock.now >= 1000.0 + 3 * 60.0  # four windows of ten

"""The limiter and the splitter at each of Power BI's edges, on a fake clock (no network)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading

import pytest
from target_powerbi.limits import (
    HOUR,
    MAX_BODY_BYTES,
    MINUTE,
    WINDOW_MARGIN,
    PushLimiter,
    RowTooLargeError,
    encode_row,
    format_duration,
    rows_body,
    split_rows,
)

from tests.target.scaled import ScaledClock


class FakeClock:
    """Service time that moves only when someone sleeps."""

    time_scale = 1.0

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> PushLimiter:
    return PushLimiter(clock, logging.getLogger("test-limits"))


def post(limiter: PushLimiter, rows: int = 1, table: str = "T", dataset: str = "d") -> None:
    with limiter.post(dataset, table, rows):
        pass


# ---------------------------------------------------------------- splitting
def encoded(n: int, width: int = 3) -> list[bytes]:
    """`n` rows of the same encoded size."""
    return [encode_row({"a": f"{i:06d}", "s": "x" * width}) for i in range(n)]


def test_exactly_10000_rows_is_one_post_and_10001_is_two() -> None:
    assert split_rows(encoded(10_000)) == [(0, 10_000)]
    assert split_rows(encoded(10_001)) == [(0, 10_000), (10_000, 10_001)]
    assert split_rows(encoded(25_000)) == [(0, 10_000), (10_000, 20_000), (20_000, 25_000)]
    assert split_rows([]) == []


def test_split_by_bytes_keeps_every_body_under_the_limit() -> None:
    rows = encoded(50, width=1000)
    limit = len(rows_body(rows[:7]))  # exactly seven rows fit
    chunks = split_rows(rows, max_rows=10_000, max_bytes=limit)
    assert chunks[0] == (0, 7)
    assert [b - a for a, b in chunks] == [7, 7, 7, 7, 7, 7, 7, 1]
    for a, b in chunks:
        assert len(rows_body(rows[a:b])) <= limit
    assert len(rows_body(rows[:8])) > limit


def test_body_is_valid_json_with_every_row() -> None:
    rows = [{"a": 1, "d": "2024-01-01T00:00:00Z"}, {"a": 2, "s": "é"}]
    body = json.loads(rows_body([encode_row(r) for r in rows]))
    assert body == {"rows": rows}


def test_a_row_bigger_than_a_request_is_refused() -> None:
    rows = [encode_row({"s": "x" * 100})]
    with pytest.raises(RowTooLargeError):
        split_rows(rows, max_bytes=50)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_row({"x": float("nan")})


def test_default_byte_limit_is_below_16_mb() -> None:
    assert MAX_BODY_BYTES < 16 * 1000 * 1000


# ---------------------------------------------------------------- POSTs a minute
def test_120_posts_a_minute_then_the_121st_waits_for_the_window(
    limiter: PushLimiter, clock: FakeClock
) -> None:
    passed = 0
    for _ in range(120):
        post(limiter)
        passed += 1
    assert clock.sleeps == []
    first_done = 1000.0
    post(limiter)
    passed += 1
    assert clock.sleeps == [pytest.approx(first_done + MINUTE + WINDOW_MARGIN - 1000.0)]
    assert passed == 121


def test_posts_spread_over_time_never_wait(limiter: PushLimiter, clock: FakeClock) -> None:
    for _ in range(300):
        post(limiter)
        clock.t += 0.6  # 100 a minute
    assert clock.sleeps == []


def test_minute_window_is_per_dataset(limiter: PushLimiter, clock: FakeClock) -> None:
    for _ in range(120):
        post(limiter, dataset="a")
    for _ in range(120):
        post(limiter, dataset="b")
    assert clock.sleeps == []


# ---------------------------------------------------------------- rows an hour
def test_a_million_rows_an_hour_then_waits_and_says_how_long(
    limiter: PushLimiter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(100):
        post(limiter, rows=10_000)
        clock.t += 1.0  # below 120 a minute
    assert clock.sleeps == []
    caplog.set_level(logging.INFO, logger="test-limits")
    post(limiter, rows=1)
    # the first POST (done at t=1000) must leave the hour before one more row fits
    assert clock.sleeps == [pytest.approx(1000.0 + HOUR + WINDOW_MARGIN - 1100.0)]
    message = caplog.records[-1].getMessage()
    assert "1,000,000 rows an hour" in message
    assert "58m21s" in message


def test_rows_of_posts_still_in_flight_count(limiter: PushLimiter, clock: FakeClock) -> None:
    started = threading.Event()
    release = threading.Event()

    def long_post() -> None:
        with limiter.post("d", "T", 999_999):
            started.set()
            release.wait(5)

    worker = threading.Thread(target=long_post)
    worker.start()
    assert started.wait(5)
    done = threading.Event()

    def second() -> None:
        post(limiter, rows=2)
        done.set()

    other = threading.Thread(target=second)
    other.start()
    assert not done.wait(0.3)  # blocked while the big POST is pending
    release.set()
    worker.join(5)
    other.join(5)
    assert done.is_set()
    assert clock.sleeps == [pytest.approx(HOUR + WINDOW_MARGIN)]


# ---------------------------------------------------------------- the 250,000-row rule
def test_tables_under_250000_rows_get_the_minute_rule_only(
    limiter: PushLimiter, clock: FakeClock
) -> None:
    limiter.note_table_rows("d", "T", 240_000)
    for _ in range(200):
        post(limiter, rows=1)
        clock.t += 0.6
    assert clock.sleeps == []


def test_120_posts_an_hour_once_a_table_holds_250000_rows(
    limiter: PushLimiter, clock: FakeClock
) -> None:
    limiter.note_table_rows("d", "Big", 250_000)
    for _ in range(120):
        post(limiter, table="Big")
        clock.t += 1.0
    assert clock.sleeps == []
    post(limiter, table="Small")  # the rule binds the whole dataset
    assert clock.sleeps == [pytest.approx(1000.0 + HOUR + WINDOW_MARGIN - 1120.0)]


def test_a_table_crossing_250000_rows_switches_to_the_hourly_rule(
    limiter: PushLimiter, clock: FakeClock
) -> None:
    for _ in range(24):
        post(limiter, rows=10_000)  # 240,000 rows, 24 POSTs
        clock.t += 1.0
    for _ in range(96):
        post(limiter, rows=100)  # 249,600 rows: 120 POSTs in the hour
        clock.t += 1.0
    assert clock.sleeps == []
    assert limiter.table_rows("d", "T") == 249_600
    post(limiter, rows=400)  # this one makes the table 250,000: the hourly rule
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] > MINUTE * 50


def test_emptying_a_table_lifts_the_hourly_rule(limiter: PushLimiter, clock: FakeClock) -> None:
    limiter.note_table_rows("d", "T", 300_000)
    limiter.table_emptied("d", "T")
    for _ in range(121):
        post(limiter)
        clock.t += 1.0
    assert clock.sleeps == []


# ---------------------------------------------------------------- pending and Retry-After
def test_at_most_five_posts_pending(limiter: PushLimiter) -> None:
    inside = 0
    most = 0
    lock = threading.Lock()
    gate = threading.Barrier(5, timeout=5)

    def worker() -> None:
        nonlocal inside, most
        with limiter.post("d", "T", 1):
            with lock:
                inside += 1
                most = max(most, inside)
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.wait()
            with lock:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 5


def test_retry_after_holds_the_dataset(limiter: PushLimiter, clock: FakeClock) -> None:
    limiter.block("d", 30.0)
    post(limiter, dataset="other")
    assert clock.sleeps == []
    post(limiter)
    assert clock.sleeps == [pytest.approx(30.0)]


def test_a_post_larger_than_the_hourly_cap_is_a_bug(limiter: PushLimiter) -> None:
    with pytest.raises(ValueError, match="hourly cap"):
        post(limiter, rows=1_000_001)


# ---------------------------------------------------------------- clock and wording
def test_scaled_clock_runs_faster() -> None:
    fast = ScaledClock(3600.0)
    start = fast.now()
    fast.sleep(36.0)  # 10 ms of real time
    assert 36.0 <= fast.now() - start < 3600.0
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)


def test_format_duration() -> None:
    assert format_duration(4.24) == "4.2s"
    assert format_duration(750) == "12m30s"
    assert format_duration(3720) == "1h02m"

"""The event store: positions, duplicates, pruning only what the caller confirms, durability."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from tap_xero.webhooks.store import (
    EventStore,
    InvalidPayloadError,
    PendingEvent,
    group_resource_ids,
)
from tap_xero.webhooks.trigger import DebouncedTrigger

from tests.tap.xero_helpers import last_position, wait_until

TENANT = "11111111-1111-1111-1111-111111111111"


def event(resource: str, *, when: str = "2026-11-20T10:00:00.000", kind: str = "UPDATE") -> dict:
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource}",
        "resourceId": resource,
        "eventDateUtc": when,
        "eventType": kind,
        "eventCategory": "INVOICE",
        "tenantId": TENANT,
        "tenantType": "ORGANISATION",
    }


def delivery(*events: dict, first: int = 1) -> dict:
    return {
        "events": list(events),
        "firstEventSequence": first,
        "lastEventSequence": first + max(len(events) - 1, 0),
        "entropy": "ABCDEFGHIJ",
    }


def test_positions_increase_and_pending_reads_after_a_position(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    assert store.add_delivery(delivery(event("a"), event("b"))) == 2
    assert store.add_delivery(delivery(event("c"), first=3)) == 1
    pending = store.pending(0)
    assert [e.resource_id for e in pending] == ["a", "b", "c"]
    positions = [e.position for e in pending]
    assert positions == sorted(positions) and len(set(positions)) == 3
    first = pending[0]
    assert first == PendingEvent(
        position=first.position,
        tenant_id=TENANT,
        category="INVOICE",
        resource_id="a",
        event_type="UPDATE",
        event_date="2026-11-20T10:00:00.000",
        resource_url="https://api.xero.com/api.xro/2.0/Invoices/a",
        tenant_type="ORGANISATION",
    )
    assert [e.resource_id for e in store.pending(positions[0])] == ["b", "c"]
    assert [e.resource_id for e in store.pending(0, limit=1)] == ["a"]
    # reading deletes nothing
    assert store.count() == 3
    assert store.pending(positions[-1]) == []


def test_a_retried_delivery_and_a_repeated_event_are_ignored(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    payload = delivery(event("a"), event("b"))
    assert store.add_delivery(payload) == 2
    assert store.add_delivery(payload) == 0
    # the same change inside another delivery is the same event; a later change is not
    later = event("a", when="2026-11-20T10:05:00.000")
    assert store.add_delivery(delivery(event("a"), later, first=7)) == 1
    assert store.count() == 3


def test_prune_removes_only_confirmed_positions_and_positions_are_never_reused(tmp_path):
    path = tmp_path / "events.sqlite"
    store = EventStore(path)
    store.add_delivery(delivery(event("a"), event("b"), event("c")))
    positions = [e.position for e in store.pending(0)]
    assert store.prune(positions[1]) == 2
    assert [e.resource_id for e in store.pending(0)] == ["c"]
    assert store.prune(positions[-1]) == 1
    store.close()
    reopened = EventStore(path)
    assert last_position(path) == positions[-1]
    reopened.add_delivery(delivery(event("d"), first=9))
    (fresh,) = reopened.pending(0)
    assert fresh.resource_id == "d"
    assert fresh.position > positions[-1]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"events": "nope"},
        {"firstEventSequence": 1},
        {"events": [{"resourceId": "a"}]},
        {"events": [{**event("a"), "tenantId": ""}]},
        {"events": [{**event("a"), "eventDateUtc": 5}]},
        {"events": [event("a"), "not an object"]},
        {"events": [event("a")], "firstEventSequence": "1"},
    ],
)
def test_a_malformed_delivery_stores_nothing(tmp_path, payload):
    store = EventStore(tmp_path / "events.sqlite")
    with pytest.raises(InvalidPayloadError):
        store.add_delivery(payload)
    assert store.count() == 0
    assert last_position(tmp_path / "events.sqlite") == 0


def test_a_delivery_is_committed_when_add_delivery_returns(tmp_path):
    path = tmp_path / "events.sqlite"
    store = EventStore(path)
    store.add_delivery(delivery(event("a")))
    # another connection (another process in production) sees it at once
    other = sqlite3.connect(path)
    assert other.execute("SELECT resource_id FROM events").fetchall() == [("a",)]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    (row,) = store._conn.execute("PRAGMA synchronous").fetchall()
    assert row[0] == 2  # FULL


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "events.sqlite"
    EventStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(RuntimeError, match="upgrade tap-xero"):
        EventStore(path)


def test_debounce_coalesces_a_burst_and_never_runs_twice_at_once():
    started = threading.Event()
    release = threading.Event()
    running = 0
    overlaps = []
    runs = []

    def runner(argv):
        nonlocal running
        running += 1
        overlaps.append(running)
        runs.append(list(argv))
        started.set()
        release.wait(5)
        running -= 1
        return 0

    trigger = DebouncedTrigger("meltano run xero-to-powerbi", debounce_seconds=0.1, runner=runner)
    try:
        for _ in range(50):
            trigger.notify()
        assert started.wait(3)
        # a burst while the run is going schedules exactly one more run, after it
        started.clear()
        for _ in range(20):
            trigger.notify()
        release.set()
        assert started.wait(3)
        wait_until(lambda: running == 0, 3, "the second run to end")
    finally:
        trigger.close()
    assert runs == [["meltano", "run", "xero-to-powerbi"]] * 2
    assert max(overlaps) == 1


def test_a_steady_stream_still_gets_a_run_within_max_wait():
    runs = []
    trigger = DebouncedTrigger(
        ["true"], debounce_seconds=0.5, max_wait_seconds=0.3, runner=lambda a: runs.append(a) or 0
    )
    try:
        notices = 0
        while not runs and notices < 100:  # a notice every 20 ms never leaves 0.5 s of quiet
            trigger.notify()
            notices += 1
            threading.Event().wait(0.02)
        assert runs, "max_wait_seconds did not force a run"
        assert notices < 100
    finally:
        trigger.close()


def test_pending_events_group_into_one_fetch_list_per_tenant_and_category(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    other = {**event("x"), "tenantId": "other", "eventCategory": "CONTACT"}
    store.add_delivery(
        delivery(event("a"), event("b"), event("a", when="2026-11-20T11:00:00.000"), other)
    )
    assert group_resource_ids(store.pending(0)) == {
        (TENANT, "INVOICE"): ["a", "b"],
        ("other", "CONTACT"): ["x"],
    }


def test_prune_also_forgets_delivery_records_older_than_a_week(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    store.add_delivery(delivery(event("a")))
    store.add_delivery(delivery(event("b"), first=2))
    store._conn.execute(
        "UPDATE deliveries SET received_at = '2020-01-01T00:00:00+00:00' WHERE first_sequence = 1"
    )
    assert store.prune(0) == 0
    rows = store._conn.execute("SELECT first_sequence, new_events FROM deliveries").fetchall()
    assert rows == [(2, 1)]
    assert store.count() == 2

"""Organisations read side by side (`max_parallel_organisations`), within every Xero limit.

Each run is a real `tap-xero` subprocess against a time-scaled sandbox with some latency,
so calls of several organisations (and several pages of one) are in flight at once.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.tap.xero_helpers import (
    TapRun,
    control,
    parse,
    run_tap,
    start_sandbox,
    tap_config,
    truth,
    wait_until,
    write_inputs,
)

SELECTED = {"contacts", "invoices", "invoice_line_items", "bank_transactions", "items"}
COLLECTIONS = {
    "contacts": "Contacts",
    "invoices": "Invoices",
    "bank_transactions": "BankTransactions",
    "items": "Items",
}
ID_FIELDS = {
    "contacts": "ContactID",
    "invoices": "InvoiceID",
    "bank_transactions": "BankTransactionID",
    "items": "ItemID",
}
PAGE_SIZE = 20  # many pages: pipelining and turns between organisations


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_singer_stream(messages: list[dict[str, Any]]) -> None:
    """Valid Singer: SCHEMA before RECORD, and no bookmark ahead of the records emitted.

    For every STATE, each organisation's bookmark of each stream is at most the highest
    replication value that organisation's records of that stream had reached by then.
    """
    schemas: set[str] = set()
    keys: dict[str, str] = {}
    emitted: dict[tuple[str, str], datetime] = {}
    for message in messages:
        kind = message["type"]
        if kind == "SCHEMA":
            schemas.add(message["stream"])
            keys[message["stream"]] = (message.get("bookmark_properties") or [""])[0]
        elif kind == "RECORD":
            stream = message["stream"]
            assert stream in schemas, f"RECORD of {stream} before its SCHEMA"
            key = keys.get(stream)
            value = message["record"].get(key) if key else None
            if isinstance(value, str):
                tenant = message["record"]["tenant_id"]
                seen = emitted.get((stream, tenant))
                instant = _instant(value)
                emitted[(stream, tenant)] = instant if seen is None else max(seen, instant)
        elif kind == "STATE":
            for stream, entry in message["value"].get("bookmarks", {}).items():
                for partition in entry.get("partitions", []):
                    mark = partition.get("replication_key_value")
                    if not isinstance(mark, str):
                        continue
                    tenant = partition["context"]["tenant_id"]
                    reached = emitted.get((stream, tenant))
                    assert reached is not None and _instant(mark) <= reached, (
                        f"{stream} bookmark {mark} of {tenant} is ahead of its records"
                    )


def runs_by_tenant(run: TapRun, stream: str) -> int:
    """How many times the stream's records switch organisation (1 block each: no switch)."""
    tenants = [r["tenant_id"] for r in run.records[stream]]
    return sum(1 for a, b in itertools.pairwise(tenants) if a != b)


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("parallel")
    sbx = start_sandbox(seed=5, tenants=3)
    try:
        control(sbx, "faults", {"latency_ms": 15})
        config = tap_config(sbx, tmp_path, page_size=PAGE_SIZE, max_parallel_organisations=3)
        run = run_tap(tmp_path, config, selected=SELECTED, timeout=120)
        stats = control(sbx, "stats")
        expected = {
            (stream, tenant): truth(sbx, tenant, collection)
            for stream, collection in COLLECTIONS.items()
            for tenant in config["tenant_ids"]
        }
        yield run, stats, expected, config
    finally:
        sbx.stop()


def test_every_organisation_lands_whole_when_read_side_by_side(side_by_side):
    run, stats, expected, _ = side_by_side
    assert run.returncode == 0, run.stderr[-3000:]
    for (stream, tenant), rows in expected.items():
        got = [r for r in run.records[stream] if r["tenant_id"] == tenant]
        ids = [r[ID_FIELDS[stream]] for r in got]
        assert len(got) == len(rows), (stream, tenant)
        assert len(set(ids)) == len(ids), (stream, tenant)  # nothing doubled
    assert sum(1 for m in run.messages if m["type"] == "RECORD") > 0
    assert set(stats["methods"]) == {"GET"}


def test_organisations_overlap_within_their_own_limits(side_by_side):
    run, stats, _, config = side_by_side
    # Several organisations' calls were in flight at once, none beyond Xero's 5 each,
    # and no call was refused.
    assert stats["max_in_flight"] > max(stats["max_in_flight_by_tenant"].values())
    assert all(n <= 5 for n in stats["max_in_flight_by_tenant"].values())
    assert max(stats["max_in_flight_by_tenant"].values()) >= 2  # pages pipelined
    assert not stats["rate_limited"]
    assert runs_by_tenant(run, "contacts") > len(config["tenant_ids"]) - 1  # interleaved


def test_messages_stay_valid_singer_and_bookmarks_stay_each_organisations(side_by_side):
    run, _, _, config = side_by_side
    for line in run.stdout.splitlines():
        json.loads(line)  # every line whole
    check_singer_stream(run.messages)
    final = run.states[-1]["bookmarks"]
    for stream in ("contacts", "invoices", "bank_transactions"):
        partitions = final[stream]["partitions"]
        assert sorted(p["context"]["tenant_id"] for p in partitions) == sorted(config["tenant_ids"])
        for partition in partitions:
            tenant = partition["context"]["tenant_id"]
            newest = max(
                _instant(r["UpdatedDateUTC"])
                for r in run.records[stream]
                if r["tenant_id"] == tenant
            )
            assert _instant(partition["replication_key_value"]) == newest


def test_one_at_a_time_reads_each_organisation_in_turn(tmp_path: Path):
    sbx = start_sandbox(seed=5, tenants=2)
    try:
        config = tap_config(sbx, tmp_path, page_size=PAGE_SIZE, max_parallel_organisations=1)
        run = run_tap(tmp_path, config, selected={"contacts", "invoices"}, timeout=120)
    finally:
        sbx.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    assert runs_by_tenant(run, "contacts") == 1
    assert runs_by_tenant(run, "invoices") == 1
    check_singer_stream(run.messages)


def calls_of(stats: dict[str, Any], tenant: str) -> int:
    return sum(sum(m.values()) for m in stats["calls"].get(tenant, {}).values())


def test_an_organisation_revoked_mid_run_fails_alone(tmp_path: Path):
    sbx = start_sandbox(seed=6, tenants=2)
    try:
        control(sbx, "faults", {"latency_ms": 20})
        config = tap_config(sbx, tmp_path, page_size=10, max_parallel_organisations=2)
        kept, revoked = config["tenant_ids"]
        args = write_inputs(tmp_path, config, SELECTED, None, "revoke")
        out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
        with out.open("w") as sink, err.open("w") as errors:
            proc = subprocess.Popen(args, stdout=sink, stderr=errors, text=True)
            try:
                wait_until(lambda: calls_of(control(sbx, "stats"), revoked) >= 15, 60, "calls")
                del sbx.service.identity.connections[revoked]  # disconnected in Xero
                revoked_at = calls_of(control(sbx, "stats"), revoked)
                proc.wait(timeout=120)
            finally:
                proc.kill()  # no-op once it ended; a hung run must not outlive the test
        stdout, stderr = out.read_text(), err.read_text()
        stats = control(sbx, "stats")
        expected = {s: truth(sbx, kept, c) for s, c in COLLECTIONS.items()}
    finally:
        sbx.stop()
    run = TapRun(proc.returncode, stdout, stderr, parse(stdout))
    assert run.returncode == 1
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("tap-xero: error: 1 of 2 organisations failed (1 read")
    assert revoked in error and "AuthenticationUnsuccessful" in error
    assert "Traceback" not in stderr
    # The other organisation was read whole.
    for stream, rows in expected.items():
        assert len([r for r in run.records[stream] if r["tenant_id"] == kept]) == len(rows)
    # The revoked one stopped at once: at most the calls in flight after the first 403.
    assert calls_of(stats, revoked) <= revoked_at + 6
    assert "Items" not in stats["calls"][revoked]  # its later streams were skipped
    check_singer_stream(run.messages)
    # No full-table ACTIVATE_VERSION, which would drop the revoked organisation's rows.
    assert not [m for m in run.messages if m["type"] == "ACTIVATE_VERSION"]
    final = run.states[-1]["bookmarks"]
    kept_marks = [p for p in final["invoices"]["partitions"] if p["context"]["tenant_id"] == kept]
    assert kept_marks and kept_marks[0].get("replication_key_value")


def test_app_minute_reached_with_several_organisations_in_flight(tmp_path: Path):
    sbx = start_sandbox(seed=7, tenants=3)
    try:
        # The app's minute (10,000 in Xero) made small enough for 3 organisations to hit it.
        control(sbx, "faults", {"latency_ms": 10, "limits": {"app_minute": 40}})
        config = tap_config(sbx, tmp_path, page_size=10, max_parallel_organisations=3)
        started = time.monotonic()
        run = run_tap(tmp_path, config, selected={"contacts", "invoices"}, timeout=180)
        seconds = time.monotonic() - started
        stats = control(sbx, "stats")
        expected = {
            (s, t): truth(sbx, t, c)
            for s, c in (("contacts", "Contacts"), ("invoices", "Invoices"))
            for t in config["tenant_ids"]
        }
    finally:
        sbx.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    for (stream, tenant), rows in expected.items():
        assert len([r for r in run.records[stream] if r["tenant_id"] == tenant]) == len(rows)
    calls = sum(calls_of(stats, t) for t in config["tenant_ids"])
    assert calls > 3 * 40  # the app's minute was spent more than three times over
    assert stats["max_in_flight"] > max(stats["max_in_flight_by_tenant"].values())
    assert sum(stats["rate_limited"].values()) == 0, stats["rate_limited"]
    minutes = seconds / 1.0  # the sandbox's minute lasts one real second
    assert calls / minutes <= 40 * 1.5  # paced by the app's minute, not the organisations'
    check_singer_stream(run.messages)
    by_partition: dict[str, int] = defaultdict(int)
    for record in run.records["contacts"]:
        by_partition[record["tenant_id"]] += 1
    assert len(by_partition) == 3

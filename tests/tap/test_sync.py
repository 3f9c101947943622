"""A full run over loopback against a two-organisation sandbox: what lands, and what it cost."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from tap_xero.child import XeroChildStream
from tap_xero.streams import ENDPOINT_STREAM_TYPES, STREAM_TYPES
from tap_xero.tap import TapXero

from tests.tap.xero_helpers import TapRun, control, run_tap, start_sandbox, tap_config, truth

STREAMS = {s.name: s for s in STREAM_TYPES}
PAGE_SIZE = 100
# Derived from the stream classes (the registry of endpoint facts): stream -> endpoint.
TOP_LEVEL = {
    s.name: s.path.strip("/")
    for s in ENDPOINT_STREAM_TYPES
    if not s.payments_only  # cash journals: the same endpoint, counted beside journals
}
CHILDREN = {
    c.name: (c.parent_type.name, c.lines_field)
    for c in STREAM_TYPES
    if issubclass(c, XeroChildStream)
}
PAGE_SIZED = {s.path.strip("/") for s in ENDPOINT_STREAM_TYPES if s.paging == "page_size"}
FIXED_PAGES = {s.path.strip("/") for s in ENDPOINT_STREAM_TYPES if s.paging == "page"}
OFFSET_PAGES = {s.path.strip("/") for s in ENDPOINT_STREAM_TYPES if s.paging == "offset"}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("full")
    sbx = start_sandbox(seed=3, tenants=2)
    try:
        config = tap_config(sbx, tmp_path, page_size=PAGE_SIZE)
        run = run_tap(tmp_path, config, selected=set(STREAMS))  # reports: their own tests
        stats = control(sbx, "stats")
        tenants = config["tenant_ids"]
        expected = {
            (stream, tenant): truth(sbx, tenant, collection)
            for stream, collection in TOP_LEVEL.items()
            for tenant in tenants
        }
        cash = {t: truth(sbx, t, "Journals", paymentsOnly="true") for t in tenants}
        yield run, stats, expected, cash, config, tmp_path
    finally:
        sbx.stop()


def test_run_succeeds_for_every_organisation(full):
    run, _, _, _, config, _ = full
    assert run.returncode == 0, run.stderr[-3000:]
    for stream, records in run.records.items():
        tenants = Counter(r["tenant_id"] for r in records)
        assert set(tenants) == set(config["tenant_ids"]), stream


def test_every_record_of_every_collection_lands(full):
    run, _, expected, cash, config, _ = full
    records = run.records
    for (stream, tenant), rows in expected.items():
        id_field = STREAMS[stream].id_field
        got = [r[id_field] for r in records[stream] if r["tenant_id"] == tenant]
        assert sorted(got) == sorted(r[id_field] for r in rows), (stream, tenant)
    for tenant in config["tenant_ids"]:
        got = [r for r in records["cash_journals"] if r["tenant_id"] == tenant]
        assert len(got) == len(cash[tenant])


def test_deleted_voided_and_archived_records_are_included(full):
    run, _, _, _, _, _ = full
    statuses = {r["Status"] for r in run.records["invoices"]}
    assert {"DELETED", "VOIDED"} & statuses, statuses
    assert "ARCHIVED" in {r.get("ContactStatus") for r in run.records["contacts"]}
    assert "DELETED" in {r.get("Status") for r in run.records["bank_transfers"]}


def test_child_streams_carry_every_line_with_parent_key_and_tenant(full):
    run, _, expected, _, config, _ = full
    records = run.records
    for child, (parent, field) in CHILDREN.items():
        parent_key = STREAMS[parent].id_field
        want = Counter()
        for tenant in config["tenant_ids"]:
            for row in expected[(parent, tenant)]:
                want[(tenant, row[parent_key])] += len(row.get(field) or [])
        got = Counter((r["tenant_id"], r[parent_key]) for r in records[child])
        assert got == +want, child


def test_primary_keys_are_unique_across_organisations(full):
    run, _, _, _, config, _ = full
    tap = TapXero(config=config, validate_config=False)
    for name, rows in run.records.items():
        if name not in STREAMS:
            continue  # report streams (streams/reports.py) key their rows their own way
        keys = tap.streams[name].primary_keys
        assert keys[0] == "tenant_id", name
        seen = Counter(tuple(r[k] for k in keys) for r in rows)
        assert max(seen.values()) == 1, name


def test_dates_are_iso_8601_utc(full):
    run, _, _, _, _, _ = full
    assert "/Date(" not in run.stdout
    invoice = run.records["invoices"][0]
    assert invoice["UpdatedDateUTC"].endswith("+00:00")
    assert invoice["Date"].endswith("+00:00")


def test_only_get_no_429_at_most_five_in_flight(full):
    _, stats, _, _, _, _ = full
    assert set(stats["methods"]) == {"GET"}
    assert not stats["rate_limited"]
    assert "429" not in stats["statuses"]
    # Xero's 5 in flight is per organisation (organisations are read side by side).
    assert all(1 <= n <= 5 for n in stats["max_in_flight_by_tenant"].values())


def fewest_calls(collection: str, count: int) -> int:
    if collection in PAGE_SIZED:
        return max(1, math.ceil(count / PAGE_SIZE))
    if collection in FIXED_PAGES or collection in OFFSET_PAGES:
        return count // 100 + 1  # no page count given: a short page is the only end signal
    return 1


def test_api_calls_are_the_fewest_possible(full):
    _, stats, expected, cash, config, _ = full
    for tenant in config["tenant_ids"]:
        want = Counter()
        for (stream, t), rows in expected.items():
            if t == tenant:
                want[TOP_LEVEL[stream]] += fewest_calls(TOP_LEVEL[stream], len(rows))
        want["Journals"] += fewest_calls("Journals", len(cash[tenant]))
        got = {
            endpoint: sum(methods.values()) for endpoint, methods in stats["calls"][tenant].items()
        }
        assert got == dict(want)


def test_no_secret_in_any_log_line(full):
    run, _, _, _, config, tmp_path = full
    stored = json.loads((tmp_path / "tokens.json").read_text())
    secrets = [config["client_secret"], config["refresh_token"], config["webhook_key"]]
    secrets += [
        v for v in json.dumps(stored).split('"') if len(v) >= 20 and v not in config.values()
    ]
    assert len(secrets) >= 4
    for secret in secrets:
        assert secret not in run.stderr
        assert secret not in run.stdout


def test_state_has_a_bookmark_per_organisation(full):
    run: TapRun = full[0]
    config = full[4]
    final = run.states[-1]["bookmarks"]
    for stream in ("invoices", "journals"):
        partitions = final[stream]["partitions"]
        assert {p["context"]["tenant_id"] for p in partitions} == set(config["tenant_ids"])
        assert all(p.get("replication_key_value") for p in partitions)

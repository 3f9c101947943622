"""Webhooks end to end on the sandboxes: a mutation, its webhook, a triggered run, the rows.

Both sandboxes run in this process; `tap-xero webhooks serve` runs as a process whose
debounced trigger runs the pipeline (tap-xero piped into target-powerbi, the state kept
in a file the way Meltano keeps it: the target's last STATE line). The triggered run's
Accounting API calls come from the sandbox's request log: one incremental poll a stream
and organisation, plus the fetches by id of what changed, whatever the size of the data.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox
from tap_xero.client import WEBHOOK_IDS_PER_CALL
from tap_xero.tap import TapXero
from tap_xero.webhooks.consume import WEBHOOK_POSITION_KEY, partition_state
from tap_xero.webhooks.store import EventStore

from tests.e2e.pipeline import Pipeline, Sandboxes

BIN = Path(sys.executable).parent
TIME_SCALE = 60.0
SELECTED = {"invoices", "invoice_line_items", "contacts", "credit_notes", "credit_note_line_items"}
ENDPOINTS = {"invoices": "Invoices", "contacts": "Contacts", "credit_notes": "CreditNotes"}
CATEGORY_ENDPOINTS = {"INVOICE": "Invoices", "CONTACT": "Contacts", "CREDITNOTE": "CreditNotes"}
DATASET = "XeroWebhooks"

REFRESH = """\
set -eu
set -o pipefail
cd "$(dirname "$0")"
"{tap}" --config tap.json --catalog catalog.json --state state.json \\
  | "{target}" --config target.json > target-out.jsonl 2>> target.log
# Meltano keeps the target's last STATE line; so does this script.
tail -n 1 target-out.jsonl > state.next
if [ -s state.next ]; then mv state.next state.json; fi
echo done >> runs.log
"""


class World:
    """The sandboxes, the pipeline's files, and helpers to read both sides."""

    destination = "push"  # the target's destination, as `tests.e2e.pipeline.Sandboxes` says

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.xero = XeroSandbox(
            seed=23, tenants=2, time_scale=TIME_SCALE, tier="advanced", scopes="broad"
        ).start()
        self.powerbi = PowerBISandbox(time_scale=TIME_SCALE).start()
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = self.powerbi.ca_bundle
        self.store_path = workdir / "events.sqlite"
        self.tap_config = {
            **self.xero.config,
            "token_store_path": str(workdir / "xero-tokens.json"),
            "rate_limit_window_seconds": 60.0 / TIME_SCALE,
            "retry_backoff_seconds": 0.05,
            "page_size": 100,
            "webhook_event_store_path": str(self.store_path),
        }
        (workdir / "tap.json").write_text(json.dumps(self.tap_config))
        target_config = {
            **self.powerbi.config,
            "dataset_name": DATASET,
            "store_path": str(workdir / "powerbi.sqlite3"),
            "audit_log_path": str(workdir / "powerbi-audit.jsonl"),
        }
        (workdir / "target.json").write_text(json.dumps(target_config))
        catalog = TapXero(config=self.tap_config, validate_config=False).catalog_dict
        for entry in catalog["streams"]:
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["selected"] = entry["tap_stream_id"] in SELECTED
        (workdir / "catalog.json").write_text(json.dumps(catalog))
        (workdir / "state.json").write_text("{}")
        script = REFRESH.format(tap=BIN / "tap-xero", target=BIN / "target-powerbi")
        (workdir / "refresh.sh").write_text(script)

    def stop(self) -> None:
        self.xero.stop()
        self.powerbi.stop()

    @property
    def tenants(self) -> list[str]:
        return list(self.xero.config["tenant_ids"])

    @property
    def ready(self) -> dict[str, Any]:
        """What `sandbox up` prints: all tests/e2e/pipeline.py's Pipeline needs."""
        return {"xero": self.xero.config, "powerbi": self.powerbi.config}

    def refresh(self) -> None:
        """One pipeline run, as the trigger starts it."""
        done = subprocess.run(
            ["bash", str(self.workdir / "refresh.sh")], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def runs(self) -> int:
        log = self.workdir / "runs.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.workdir / "state.json").read_text()))

    def xero_post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(f"{self.xero.url}/_sandbox/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def xero_get(self, path: str) -> Any:
        response = self.http.get(f"{self.xero.url}/_sandbox/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def requests_log(self) -> list[dict[str, Any]]:
        return list(self.xero_get("stats")["requests"])

    def rows(self, table: str) -> list[dict[str, Any]]:
        base = f"{self.powerbi.url}/_sandbox"
        datasets = self.http.get(f"{base}/datasets", timeout=30).json()["datasets"]
        (dataset,) = [d for d in datasets if d["name"] == DATASET]
        url = f"{base}/datasets/{dataset['id']}/tables/{table}/rows"
        response = self.http.get(url, timeout=30)
        response.raise_for_status()
        return list(response.json()["rows"])


def wait_until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("webhooks-e2e"))
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def receiver(world: World) -> Iterator[str]:
    """`tap-xero webhooks serve`, triggering the pipeline half a second after a burst."""
    process = subprocess.Popen(
        [
            str(BIN / "tap-xero"),
            "--config",
            str(world.workdir / "tap.json"),
            "webhooks",
            "serve",
            "--port",
            "0",
            "--debounce-seconds",
            "0.5",
            "--trigger-command",
            f"bash {world.workdir / 'refresh.sh'}",
        ],
        stdout=subprocess.PIPE,
        stderr=(world.workdir / "receiver.log").open("w"),
        text=True,
        cwd=world.workdir,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield str(ready["url"]) + "/xero/webhooks"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def story(world: World, receiver: str) -> dict[str, Any]:
    world.refresh()  # the scheduled baseline run
    baseline_calls = len(world.requests_log())
    one, two = world.tenants
    # Changes while the receiver is not yet subscribed queue up in the sandbox, so they go
    # out as one signed delivery: one burst, one triggered run.
    changes = [
        world.xero_post("mutate", {"tenant_id": one, "action": "edit"}),
        world.xero_post("mutate", {"tenant_id": one, "action": "add_contact"}),
        world.xero_post("mutate", {"tenant_id": two, "action": "pay"}),
        world.xero_post("mutate", {"tenant_id": two, "action": "add_credit_note"}),
    ]
    seen = len(world.requests_log())
    subscribed = world.xero_post(
        "webhooks",
        {"receiver_url": receiver, "intent_to_receive": True, "deliver": True},
    )
    wait_until(lambda: world.runs() >= 2, 45, "the triggered run")
    triggered = world.requests_log()[seen:]
    return {
        "baseline_calls": baseline_calls,
        "changes": [r for change in changes for r in change["results"]],
        "subscribed": subscribed,
        "triggered": triggered,
    }


def test_the_subscription_passes_intent_to_receive_and_the_delivery_is_stored(world, story):
    assert story["subscribed"]["intent_to_receive"]["ok"], story["subscribed"]
    assert story["subscribed"]["pending"] == 0
    assert story["subscribed"]["failures"] == 0
    # Exactly one run was triggered by the burst.
    time.sleep(1.0)
    assert world.runs() == 2


def test_changed_rows_are_in_power_bi(world, story):
    one, two = world.tenants
    changed: dict[str, set[str]] = {}
    for result in story["changes"]:
        changed.setdefault(result["collection"], set()).add(result["id"])
    truth = {
        (tenant, collection): {
            r[f"{collection[:-1]}ID"]: r
            for r in world.xero_get(f"truth/{tenant}/{collection}")[collection]
        }
        for tenant in (one, two)
        for collection in ENDPOINTS.values()
    }
    for stream, collection in ENDPOINTS.items():
        key = f"{collection[:-1]}ID"
        rows = {(r["tenant_id"], r[key]): r for r in world.rows(stream)}
        for record_id in changed.get(collection, set()):
            tenant = one if record_id in truth[(one, collection)] else two
            source = truth[(tenant, collection)][record_id]
            row = rows[(tenant, record_id)]
            for field in ("Status", "Reference", "AmountDue", "Name", "ContactStatus"):
                if field in source:
                    assert row.get(field) == source[field], (collection, field)
    assert changed.keys() >= {"Invoices", "Contacts", "CreditNotes"}


def test_the_triggered_run_calls_in_proportion_to_the_changes(world, story):
    calls = Counter(
        (r["tenant"], r["endpoint"]) for r in story["triggered"] if r["endpoint"] != "connections"
    )
    assert {r["method"] for r in story["triggered"]} == {"GET"}
    # What the webhooks named, by organisation and endpoint.
    with EventStore(world.store_path) as store:
        named: dict[tuple[str, str], set[str]] = {}
        for event in store.pending(0):
            endpoint = CATEGORY_ENDPOINTS.get(event.category)
            if endpoint:
                named.setdefault((event.tenant_id, endpoint), set()).add(event.resource_id)
    assert named, "the triggered run's events were pruned before its STATE came back"
    expected: Counter[tuple[str, str]] = Counter()
    for tenant in world.tenants:
        for endpoint in ENDPOINTS.values():
            ids = named.get((tenant, endpoint), set())
            per_call = 1 if endpoint == "CreditNotes" else WEBHOOK_IDS_PER_CALL
            expected[(tenant, endpoint)] = 1 + math.ceil(len(ids) / per_call)
    assert calls == expected
    # The baseline read every page of the same data; the triggered run did not.
    assert sum(calls.values()) < story["baseline_calls"]


def test_the_triggered_runs_state_covers_the_events(world, story):
    with EventStore(world.store_path) as store:
        # Not last_position(): a duplicate the receiver ignored may have used up a number.
        last = max(event.position for event in store.pending(0))
    state = world.state()
    for stream in ENDPOINTS:
        for tenant in world.tenants:
            assert partition_state(state, stream, tenant)[WEBHOOK_POSITION_KEY] == last


def test_the_meltano_job_the_receiver_triggers_consumes_the_events(world, story, tmp_path):
    """`meltano run xero-webhook-refresh` (the sandbox environment's trigger command) on the
    same store: tap-xero--webhooks inherits the store setting, fetches what the events name,
    and Meltano saves the covering positions in the job's own state."""
    with EventStore(world.store_path) as store:
        events = store.pending(0)
    assert events
    pipeline = Pipeline(
        cast(Sandboxes, world),
        tmp_path,
        TAP_XERO_WEBHOOK_EVENT_STORE_PATH=str(world.store_path),
        # The same connection as the world's runs: its token chain, rotated by them (a fresh
        # store seeded with the first refresh token only works within Xero's grace period).
        TAP_XERO_TOKEN_STORE_PATH=str(world.workdir / "xero-tokens.json"),
        TAP_XERO_PAGE_SIZE="100",
    )
    seen = len(world.requests_log())
    done = pipeline.run("xero-webhook-refresh")
    assert done.returncode == 0, done.stderr[-3000:]
    state = pipeline.saved_state("sandbox:tap-xero--webhooks-to-target-powerbi")
    assert state is not None
    last = max(event.position for event in events)
    for stream in ENDPOINTS:
        for tenant in world.tenants:
            assert partition_state(state, stream, tenant)[WEBHOOK_POSITION_KEY] == last
    # Only the streams webhooks name were read, and the named records by id among them.
    calls = Counter(r["endpoint"] for r in world.requests_log()[seen:])
    calls.pop("connections", None)
    assert set(calls) == set(ENDPOINTS.values())
    credit_notes = {e.resource_id for e in events if e.category == "CREDITNOTE"}
    # Its first run polls every page; each named credit note costs one GET more.
    assert calls["CreditNotes"] >= len(world.tenants) + len(credit_notes)

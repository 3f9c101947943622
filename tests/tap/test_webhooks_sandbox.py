"""The receiver against the Xero sandbox's webhooks: intent to receive, deliveries, retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox.server import BackgroundServer
from sandbox.xero import XeroSandbox
from tap_xero.webhooks.app import create_app
from tap_xero.webhooks.store import EventStore

KEY = "sandbox-hook-key-4f7a9a430d5f3c1f"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[XeroSandbox]:
    with XeroSandbox(seed=7, size="small", tenants=2, tier="advanced", scopes="broad") as sbx:
        yield sbx


def control(sbx: XeroSandbox, **body) -> dict:
    response = httpx.post(sbx.url + "/_sandbox/webhooks", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, EventStore]]:
    store = EventStore(tmp_path / "events.sqlite")
    with BackgroundServer(create_app(store, KEY)) as server:
        yield server.base_url + "/xero/webhooks", store
    store.close()


def test_the_sandbox_intent_to_receive_check_passes(sandbox, receiver):
    url, store = receiver
    report = control(sandbox, receiver_url=url, key=KEY, intent_to_receive=True, deliver=False)
    check = report["intent_to_receive"]
    assert check["ok"], check
    assert {c["signature"] for c in check["checks"]} == {"good", "bad"}
    assert store.count() == 0


def test_the_check_fails_against_a_receiver_with_another_key(sandbox, tmp_path):
    with (
        EventStore(tmp_path / "other.sqlite") as store,
        BackgroundServer(create_app(store, "some-other-key")) as server,
    ):
        report = control(
            sandbox, receiver_url=server.base_url, key=KEY, intent_to_receive=True, deliver=False
        )
    assert report["intent_to_receive"]["ok"] is False


def test_mutations_are_delivered_stored_once_and_retried_after_a_refusal(
    sandbox, receiver, monkeypatch
):
    url, store = receiver
    tenant = sandbox.config["tenant_ids"][1]
    real_add = store.add_delivery
    calls = {"n": 0}

    def flaky(payload):
        calls["n"] += 1
        if calls["n"] == 1:  # the disk fails: nothing stored, 503
            raise OSError("disk unavailable")
        stored = real_add(payload)
        if calls["n"] == 2:  # stored, but the answer is lost: Xero will send it again
            raise OSError("connection reset")
        return stored

    monkeypatch.setattr(store, "add_delivery", flaky)
    changed = []
    for action in ("add_contact", "add_invoice", "add_credit_note"):
        response = httpx.post(
            sandbox.url + "/_sandbox/mutate", json={"tenant_id": tenant, "action": action}
        )
        response.raise_for_status()
        changed += [r["id"] for r in response.json()["results"]]
    control(sandbox, receiver_url=url, key=KEY, deliver=False)  # one batch of the three
    wait_until(lambda: control(sandbox, deliver=False)["failures"] == 1)
    assert store.count() == 0
    # the sandbox retries with decreasing frequency: 10 s, then 30 s (sandbox time)
    httpx.post(sandbox.url + "/_sandbox/clock", json={"advance_seconds": 11}).raise_for_status()
    wait_until(lambda: control(sandbox, deliver=False)["failures"] == 2)
    assert store.count() == len(changed)
    httpx.post(sandbox.url + "/_sandbox/clock", json={"advance_seconds": 31}).raise_for_status()
    wait_until(lambda: control(sandbox, deliver=False)["pending"] == 0)
    status = control(sandbox, deliver=False)
    attempts = status["attempts"][-3:]
    assert [a["status"] for a in attempts] == [503, 503, 200]
    assert len({(a["firstEventSequence"], a["lastEventSequence"]) for a in attempts}) == 1
    # the replayed delivery added nothing: each change is stored exactly once
    events = store.pending(0)
    assert sorted(e.resource_id for e in events) == sorted(changed)
    assert {e.tenant_id for e in events} == {tenant}
    assert {e.category for e in events} == {"INVOICE", "CONTACT", "CREDITNOTE"}
    assert calls["n"] == 3

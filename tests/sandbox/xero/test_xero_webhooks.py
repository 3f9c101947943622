"""Webhooks over loopback: signed batches with sequence numbers, retries, intent to receive."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandbox.server import BackgroundServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .conftest import Client


class Receiver:
    """A webhook receiver that checks signatures, and can be told to fail or to be sloppy."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.batches: list[dict[str, Any]] = []
        self.fail = 0
        self.sloppy = False
        self.server = BackgroundServer(
            Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        )

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        expected = base64.b64encode(hmac.new(self.key.encode(), body, hashlib.sha256).digest())
        good = hmac.compare_digest(expected.decode(), request.headers.get("x-xero-signature", ""))
        if not good and not self.sloppy:
            return Response(status_code=401)
        if self.fail > 0:
            self.fail -= 1
            return Response(status_code=500)
        payload = json.loads(body)
        if payload["events"]:
            self.batches.append(payload)
        return Response(status_code=200)

    @property
    def url(self) -> str:
        return self.server.base_url + "/hook"


@pytest.fixture
def receiver(client: Client) -> Iterator[Receiver]:
    r = Receiver(client.config["webhook_key"])
    r.server.start()
    yield r
    r.server.stop()


def wait_for(condition: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_intent_to_receive(client: Client, receiver: Receiver) -> None:
    body = {
        "receiver_url": receiver.url,
        "key": client.config["webhook_key"],
        "intent_to_receive": True,
    }
    good = client.control("webhooks", body)["intent_to_receive"]
    assert good["ok"] is True
    assert [c["status"] for c in good["checks"]] == [200, 401, 200, 401]
    receiver.sloppy = True
    bad = client.control("webhooks", {"intent_to_receive": True})["intent_to_receive"]
    assert bad["ok"] is False


def test_signed_batches_with_sequences(client: Client, receiver: Receiver) -> None:
    tenant = client.config["tenant_ids"][0]
    client.control("webhooks", {"receiver_url": receiver.url, "key": client.config["webhook_key"]})
    client.control("mutate", {"tenant_id": tenant, "action": "add_invoice"})
    client.control("mutate", {"tenant_id": tenant, "action": "add_contact"})
    wait_for(lambda: sum(len(b["events"]) for b in receiver.batches) == 2)
    client.control("mutate", {"tenant_id": tenant, "action": "add_credit_note"})
    wait_for(lambda: sum(len(b["events"]) for b in receiver.batches) == 3)
    events = [e for b in receiver.batches for e in b["events"]]
    assert [e["eventCategory"] for e in events] == ["INVOICE", "CONTACT", "CREDITNOTE"]
    assert {e["eventType"] for e in events} == {"CREATE"}
    assert all(e["tenantId"] == tenant and e["tenantType"] == "ORGANISATION" for e in events)
    assert events[0]["resourceUrl"].endswith("/Invoices/" + events[0]["resourceId"])
    sequences = [(b["firstEventSequence"], b["lastEventSequence"]) for b in receiver.batches]
    assert sequences[0][0] == 1 and sequences[-1][1] == 3
    assert all(len(b["entropy"]) == 20 and b["entropy"].isupper() for b in receiver.batches)
    assert events[2]["data"] == {"Type": "ACCRECCREDIT", "Status": "AUTHORISED"}
    assert "data" not in events[0]


def test_failed_deliveries_are_retried_less_and_less_often(
    client: Client, receiver: Receiver
) -> None:
    tenant = client.config["tenant_ids"][0]
    receiver.fail = 2
    client.control("webhooks", {"receiver_url": receiver.url, "key": client.config["webhook_key"]})
    client.control("mutate", {"tenant_id": tenant, "action": "edit"})
    wait_for(lambda: client.control("webhooks")["failures"] == 1)
    state = client.control("webhooks")
    assert 0 < state["next_attempt_in"] <= 10
    client.control("clock", {"advance_seconds": 11})
    wait_for(lambda: client.control("webhooks")["failures"] == 2)
    assert 10 < client.control("webhooks")["next_attempt_in"] <= 30
    client.control("clock", {"advance_seconds": 31})
    wait_for(lambda: receiver.batches != [])
    state = client.control("webhooks")
    assert state["pending"] == 0 and state["delivered"] == 1
    assert [a["status"] for a in state["attempts"]] == [500, 500, 200]
    assert receiver.batches[0]["events"][0]["eventType"] == "UPDATE"


def test_cli_prints_a_ready_line() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.cli",
            "xero",
            "--port",
            "0",
            "--seed",
            "5",
            "--tenants",
            "2",
            "--time-scale",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        config = json.loads(proc.stdout.readline())
        assert set(config) == {
            "api_url",
            "identity_url",
            "connections_url",
            "client_id",
            "client_secret",
            "refresh_token",
            "tenant_ids",
            "webhook_key",
        }
        assert len(config["tenant_ids"]) == 2
        answer = httpx.post(
            config["identity_url"] + "/connect/token",
            auth=(config["client_id"], config["client_secret"]),
            data={"grant_type": "refresh_token", "refresh_token": config["refresh_token"]},
        )
        assert answer.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)

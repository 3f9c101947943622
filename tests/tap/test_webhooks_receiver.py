"""The webhook receiver over real loopback HTTP: Xero's signature rules, refusals, durability."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox.server import BackgroundServer
from tap_xero.webhooks.app import create_app
from tap_xero.webhooks.signature import sign
from tap_xero.webhooks.store import EventStore
from tap_xero.webhooks.trigger import DebouncedTrigger

from tests.tap.xero_helpers import wait_until

KEY = "wh-key-Zq9Vb7Xr2Lm4Np6Ks8Jt0Hg3Fd5Sa1"
BIN = Path(sys.executable).parent
TENANT = "22222222-2222-2222-2222-222222222222"


def event(resource: str, when: str = "2026-11-20T10:00:00.000") -> dict:
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Contacts/{resource}",
        "resourceId": resource,
        "eventDateUtc": when,
        "eventType": "UPDATE",
        "eventCategory": "CONTACT",
        "tenantId": TENANT,
        "tenantType": "ORGANISATION",
    }


def body_of(*events: dict, first: int = 1) -> bytes:
    payload = {
        "events": list(events),
        "firstEventSequence": first,
        "lastEventSequence": first + max(len(events) - 1, 0),
        "entropy": "QWERTYUIOP",
    }
    return json.dumps(payload).encode()


def post(url: str, body: bytes, key: str | None = KEY, **headers: str) -> httpx.Response:
    if key is not None:
        headers["x-xero-signature"] = sign(body, key)
    return httpx.post(url, content=body, headers=headers, timeout=5)


class Receiver:
    def __init__(self, tmp_path: Path, **kwargs) -> None:
        self.store = EventStore(tmp_path / "events.sqlite")
        self.server = BackgroundServer(create_app(self.store, KEY, **kwargs)).start()
        self.url = self.server.base_url + "/webhooks/xero"

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path, max_body_bytes=4096)
    yield r
    r.close()


def test_intent_to_receive_good_and_bad_signatures(receiver: Receiver):
    empty = body_of()
    good = post(receiver.url, empty)
    assert (good.status_code, good.content) == (200, b"")
    for response in (
        post(receiver.url, empty, key="not-the-key"),
        post(receiver.url, empty, key=None),
        post(receiver.url, empty, key=None, **{"x-xero-signature": ""}),
        post(receiver.url, empty, key=None, **{"x-xero-signature": "bm90IGEgc2lnbmF0dXJl"}),
    ):
        assert (response.status_code, response.content) == (401, b"")
    assert receiver.store.count() == 0


def test_a_signed_delivery_is_stored_before_the_200(receiver: Receiver, tmp_path: Path):
    started = time.perf_counter()
    response = post(receiver.url, body_of(event("c1"), event("c2")))
    elapsed = time.perf_counter() - started
    assert (response.status_code, response.content) == (200, b"")
    assert elapsed < 1.0  # Xero allows 5 s
    # a separate reader (the tap) sees both the moment the 200 is back
    with EventStore(tmp_path / "events.sqlite") as reader:
        assert [(e.category, e.resource_id) for e in reader.pending(0)] == [
            ("CONTACT", "c1"),
            ("CONTACT", "c2"),
        ]


def test_forged_deliveries_are_refused_and_nothing_is_stored(receiver: Receiver):
    body = body_of(event("c1"))
    assert post(receiver.url, body, key="forger").status_code == 401
    assert post(receiver.url, body, key=None).status_code == 401
    # a body altered after signing
    signature = sign(body, KEY)
    tampered = body.replace(b"c1", b"c9")
    response = httpx.post(receiver.url, content=tampered, headers={"x-xero-signature": signature})
    assert (response.status_code, response.content) == (401, b"")
    assert receiver.store.count() == 0


def test_a_replayed_delivery_is_acknowledged_and_ignored(receiver: Receiver):
    body = body_of(event("c1"), event("c2"))
    assert post(receiver.url, body).status_code == 200
    assert post(receiver.url, body).status_code == 200
    assert receiver.store.count() == 2
    # the same event again in a later delivery with other sequence numbers: still one
    assert post(receiver.url, body_of(event("c2"), first=40)).status_code == 200
    assert receiver.store.count() == 2


def test_oversized_deliveries_are_refused_unread(receiver: Receiver):
    big = body_of(*[event(f"c{i}") for i in range(40)])
    assert len(big) > 4096
    response = post(receiver.url, big)
    assert (response.status_code, response.content) == (413, b"")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = httpx.post(
        receiver.url, content=chunks(), headers={"x-xero-signature": sign(big, KEY)}
    )
    assert streamed.status_code == 413
    assert receiver.store.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"events": {}}',
        json.dumps({"events": [{"resourceId": "c1"}]}).encode(),
        json.dumps({"events": [event("c1"), {**event("c2"), "tenantId": None}]}).encode(),
    ],
)
def test_malformed_signed_deliveries_are_refused_and_nothing_is_stored(receiver, body):
    response = post(receiver.url, body)
    assert (response.status_code, response.content) == (400, b"")
    assert receiver.store.count() == 0


def test_a_store_failure_is_never_acknowledged(receiver: Receiver, monkeypatch):
    def broken(payload):
        raise OSError("disk full")

    monkeypatch.setattr(receiver.store, "add_delivery", broken)
    response = post(receiver.url, body_of(event("c1")))
    assert response.status_code == 503  # Xero retries it


def test_a_burst_of_deliveries_triggers_one_run(tmp_path: Path):
    runs: list[list[str]] = []
    trigger = DebouncedTrigger(
        ["meltano", "run", "xero-to-powerbi"],
        debounce_seconds=1.0,  # far above the gap between two deliveries, even on a busy CI
        runner=lambda argv: runs.append(list(argv)) or 0,
    )
    r = Receiver(tmp_path, trigger=trigger)
    try:
        with httpx.Client(timeout=5) as client:
            for i in range(25):
                body = body_of(event(f"c{i}"), first=i + 1)
                response = client.post(
                    r.url, content=body, headers={"x-xero-signature": sign(body, KEY)}
                )
                assert response.status_code == 200
        wait_until(lambda: len(runs) >= 1, 10, "the triggered run")
        assert runs == [["meltano", "run", "xero-to-powerbi"]]
        # a duplicate and an empty delivery store nothing new and schedule nothing
        assert post(r.url, body_of(event("c3"), first=3)).status_code == 200
        assert post(r.url, body_of()).status_code == 200
        time.sleep(2.5)  # well past the debounce: a scheduled run would have started
        assert len(runs) == 1
        # a delivery with new events schedules its run
        assert post(r.url, body_of(event("c99"), first=99)).status_code == 200
        wait_until(lambda: len(runs) == 2, 10, "the second run")
        time.sleep(1.5)
        assert len(runs) == 2
    finally:
        trigger.close()
        r.close()
    assert r.store.path.exists()


def test_no_key_or_signature_is_logged(receiver: Receiver, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    body = body_of(event("c1"))
    post(receiver.url, body)
    post(receiver.url, body, key="forger")
    post(receiver.url, b"{bad", key=KEY)
    post(receiver.url, body_of())
    captured = capfd.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert "webhook refused" in caplog.text  # the logging works, and says why
    for secret in (KEY, sign(body, KEY), sign(body, "forger")):
        assert secret not in everything


def start_cli(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"webhook_key": KEY, "client_id": "x", "client_secret": "y"}))
    process = subprocess.Popen(
        [
            str(BIN / "tap-xero"),
            "--config",
            str(config),
            "webhooks",
            "serve",
            "--port",
            "0",
            "--event-store",
            str(tmp_path / "events.sqlite"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return process, json.loads(line)["url"]


def test_serve_command_durable_across_a_kill_and_debounced_trigger(tmp_path: Path):
    marker = tmp_path / "runs.txt"
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, time\n"
        f"open({str(marker)!r}, 'a').write('start\\n')\n"
        "time.sleep(0.3)\n"
        f"open({str(marker)!r}, 'a').write('end\\n')\n"
    )
    command = f"{sys.executable} {script}"
    process, url = start_cli(tmp_path, "--trigger-command", command, "--debounce-seconds", "0.2")
    try:
        assert post(url, body_of()).status_code == 200  # intent to receive
        assert post(url, body_of(), key="bad").status_code == 401
        with httpx.Client(timeout=5) as client:
            for i in range(10):
                body = body_of(event(f"k{i}"), first=i + 1)
                client.post(url, content=body, headers={"x-xero-signature": sign(body, KEY)})
        deadline = time.monotonic() + 10
        while not (marker.exists() and "end" in marker.read_text()):
            assert time.monotonic() < deadline, "the trigger command never ran"
            time.sleep(0.05)
        # kill -9 the moment an acknowledgement is back: the event must be on disk
        assert post(url, body_of(event("last")), key=KEY).status_code == 200
        process.send_signal(signal.SIGKILL)
        process.wait(5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    with EventStore(tmp_path / "events.sqlite") as store:
        assert {e.resource_id for e in store.pending(0)} == {f"k{i}" for i in range(10)} | {"last"}
    assert marker.read_text().startswith("start\nend\n")
    assert process.stderr is not None
    assert KEY not in process.stderr.read()


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ({"client_id": "x"}, [], "webhook_key is not set"),
        ({"webhook_key": KEY}, [], "webhook_event_store_path is not set"),
        ({"webhook_key": KEY}, ["--trigger-command", "'unclosed"], "webhook_trigger_command"),
        ({"webhook_key": KEY, "webhook_max_body_bytes": "lots"}, [], "must be numbers"),
        ({"webhook_key": KEY}, ["--port", "BUSY"], "cannot listen"),
    ],
)
def test_serve_errors_say_what_to_do(tmp_path: Path, config, options, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_XERO_")}
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    options = [str(busy.getsockname()[1]) if o == "BUSY" else o for o in options]
    if "--port" not in options:
        options += ["--port", "0"]
    if message != "webhook_event_store_path is not set":
        options += ["--event-store", str(tmp_path / "events.sqlite")]
    try:
        result = subprocess.run(
            [str(BIN / "tap-xero"), "--config", str(path), "webhooks", "serve", *options],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    finally:
        busy.close()
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout


def test_the_store_works_without_the_webhooks_extra():
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "sys.modules['uvicorn'] = None\n"
        "from tap_xero.webhooks.store import EventStore\n"
        "from tap_xero.webhooks.serve import webhooks_main\n"
        "sys.exit(webhooks_main(['serve']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'tap-xero[webhooks]'" in result.stderr

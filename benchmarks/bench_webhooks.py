"""Benchmark: a burst of 10,000 signed webhook events against `tap-xero webhooks serve`.

Every delivery must be acknowledged with 200 well within Xero's 5 seconds (the 99th
percentile answer time is reported), the burst must fit in a minute, and every event must
be in the store afterwards (none lost). Each delivery carries one event, the worst case:
one SQLite transaction (WAL, synchronous=FULL) per event. The receiver runs in its own
process, as in production, so the load generator does not share its interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tap_xero.webhooks.signature import sign
from tap_xero.webhooks.store import EventStore

EVENTS = 10_000
CONCURRENCY = 32
KEY = "bench-webhook-key-0123456789abcdef"
XERO_DEADLINE = 5.0
BIN = Path(sys.executable).parent


def delivery(sequence: int, tenant: str) -> bytes:
    resource = str(uuid.UUID(int=sequence))
    return json.dumps(
        {
            "events": [
                {
                    "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource}",
                    "resourceId": resource,
                    "eventDateUtc": "2026-11-20T10:00:00.000",
                    "eventType": "UPDATE",
                    "eventCategory": "INVOICE",
                    "tenantId": tenant,
                    "tenantType": "ORGANISATION",
                }
            ],
            "firstEventSequence": sequence,
            "lastEventSequence": sequence,
            "entropy": uuid.uuid4().hex[:20].upper(),
        }
    ).encode()


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def burst(url: str) -> Burst:
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    signed = [
        (body, sign(body, KEY)) for body in (delivery(i + 1, tenants[i % 3]) for i in range(EVENTS))
    ]
    result = Burst()
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in signed:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                body, signature = queue.get_nowait()
                headers = {"x-xero-signature": signature, "content-type": "application/json"}
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.TransportError as exc:
                    result.errors.append(type(exc).__name__)
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        result.seconds = time.perf_counter() - started
    return result


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux), to show where the time goes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_burst_of_10000_events_is_acknowledged_in_time_and_stored(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"webhook_key": KEY}))
    store_path = tmp_path / "events.sqlite"
    log = tmp_path / "receiver.log"
    with log.open("w") as log_file:
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
                str(store_path),
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = json.loads(process.stdout.readline())["url"] + "/webhooks/xero"
            idle_cpu = cpu_seconds(process.pid)
            client_started = time.process_time()
            result = asyncio.run(burst(url))
            client_cpu = time.process_time() - client_started
            busy_cpu = cpu_seconds(process.pid)
        finally:
            process.terminate()
            process.wait(10)
    with EventStore(store_path) as store:
        stored = store.count()
    ordered = sorted(result.latencies) or [float("inf")]
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)]
    server_cpu = None if idle_cpu is None or busy_cpu is None else busy_cpu - idle_cpu
    report = {
        "benchmark": "webhooks burst (one event a delivery)",
        "deliveries": EVENTS,
        "concurrency": CONCURRENCY,
        "seconds": round(result.seconds, 2),
        "deliveries_per_second": round(EVENTS / result.seconds),
        "acknowledged_200": result.statuses.count(200),
        "transport_errors": len(result.errors),
        "stored": stored,
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "p99_share_of_xero_5s": f"{p99 / XERO_DEADLINE:.1%}",
        "receiver_cpu_ms_per_delivery": None
        if server_cpu is None
        else round(server_cpu / EVENTS * 1000, 2),
        "client_cpu_ms_per_delivery": round(client_cpu / EVENTS * 1000, 2),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print("\n" + json.dumps(report))
    assert not result.errors, f"transport errors: {sorted(set(result.errors))}; see {log}"
    assert result.statuses.count(200) == EVENTS, "some deliveries were not acknowledged"
    assert stored == EVENTS, "some acknowledged events are not in the store"
    assert result.seconds < 60, "the burst did not fit in a minute"
    assert p99 < XERO_DEADLINE

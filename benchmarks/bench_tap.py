"""tap-xero benchmarks against the Xero sandbox, reported as ratios (`make bench`).

- API calls used against the fewest possible (1000-record pages, no wasted call);
- throughput against the rate-limit ceiling (60 calls a minute per organisation) under a
  time-scaled sandbox, with the number of 429s (should be 0);
- records a second with every limit off, against reading the same pages raw;
- peak memory (max RSS) on the small company and on the benchmark company (100,000
  invoices): the ratio should stay near 1, memory must not grow with the data.

`BENCH_TAP_SIZE` (default `benchmark`) sets the large company's size.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from sandbox.xero import XeroSandbox
from tap_xero.tap import TapXero

LARGE = os.environ.get("BENCH_TAP_SIZE", "benchmark")
SELECTED = {"invoices", "invoice_line_items", "contacts", "credit_notes", "payments"}
COLLECTIONS = {"invoices": "Invoices", "contacts": "Contacts", "credit_notes": "CreditNotes",
               "payments": "Payments"}  # fmt: skip
NO_LIMITS = {"minute": 10**9, "day": 10**9, "concurrent": 1000, "app_minute": 10**9}
# Runs the tap in-process and reports its peak memory on stderr when it exits. VmHWM, not
# ru_maxrss: the latter counts the parent's pages the child had between fork and exec.
LAUNCHER = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM'):\n"
    "            sys.stderr.write('MAXRSS_KB %s\\n' % line.split()[1])\n"
    "atexit.register(_peak)\n"
    "from tap_xero.tap import TapXero\n"
    "sys.argv = ['tap-xero', *sys.argv[1:]]\n"
    "TapXero.cli()\n"
)
RESULTS: dict[str, str] = {}


def start(size: str, time_scale: float, tenants: int = 1) -> XeroSandbox:
    return XeroSandbox(
        seed=1,
        size=size,
        tenants=tenants,
        time_scale=time_scale,
        access_token_lifetime=1800.0 * time_scale,
        tier="advanced",  # issue 13: the tap reads /Journals until it skips forbidden streams
        scopes="broad",
    ).start()


def config_for(sbx: XeroSandbox, tmp: Path, **extra: Any) -> dict[str, Any]:
    config = dict(sbx.config)
    config.update(
        token_store_path=str(tmp / "tokens.json"),
        rate_limit_window_seconds=60.0 / sbx.service.clock.time_scale,
    )
    config.update(extra)
    return config


def catalog(config: dict[str, Any], selected: set[str]) -> dict[str, Any]:
    cat = TapXero(config=config, validate_config=False).catalog_dict
    for entry in cat["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in selected
    return cat


def run_tap(config: dict[str, Any], selected: set[str], tmp: Path) -> dict[str, Any]:
    """One tap run with stdout to a file; records per stream, seconds, peak memory."""
    (tmp / "config.json").write_text(json.dumps(config))
    (tmp / "catalog.json").write_text(json.dumps(catalog(config, selected)))
    out = tmp / "out.jsonl"
    started = time.monotonic()
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, "--config", str(tmp / "config.json"),
             "--catalog", str(tmp / "catalog.json")],
            stdout=sink, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    records: Counter[str] = Counter()
    with out.open() as lines:
        for line in lines:
            if line.startswith('{"type":"RECORD"') or '"type": "RECORD"' in line[:30]:
                records[json.loads(line)["stream"]] += 1
    rss = int(re.findall(r"MAXRSS_KB (\d+)", done.stderr)[-1])
    return {"records": records, "seconds": seconds, "rss_kb": rss, "stderr": done.stderr}


def report(name: str, line: str) -> None:
    RESULTS[name] = line
    sys.stdout.write(f"\n[bench_tap] {name}: {line}\n")


def test_bench_tap_calls_records_per_second_and_memory() -> None:
    with tempfile.TemporaryDirectory() as small_dir, tempfile.TemporaryDirectory() as big_dir:
        small = start("small", 60.0)
        try:
            requests.post(f"{small.url}/_sandbox/faults", json={"limits": NO_LIMITS}, timeout=10)
            config = config_for(small, Path(small_dir), calls_per_minute=10**9,
                                daily_call_budget=10**9)  # fmt: skip
            small_run = run_tap(config, SELECTED, Path(small_dir))
        finally:
            small.stop()

        big = start(LARGE, 60.0)
        try:
            requests.post(f"{big.url}/_sandbox/faults", json={"limits": NO_LIMITS}, timeout=10)
            config = config_for(big, Path(big_dir), calls_per_minute=10**9,
                                daily_call_budget=10**9)  # fmt: skip
            big_run = run_tap(config, SELECTED, Path(big_dir))
            stats = requests.get(f"{big.url}/_sandbox/stats", timeout=10).json()
            tenant = config["tenant_ids"][0]
            counts = {
                stream: len(
                    requests.get(f"{big.url}/_sandbox/truth/{tenant}/{coll}", timeout=60).json()[
                        coll
                    ]
                )
                for stream, coll in COLLECTIONS.items()
            }
            # The same pages read raw, without the tap: the floor of the tap's cost.
            custom = big.custom_connection(tenant)
            token = requests.post(
                f"{big.url}/connect/token",
                data={"grant_type": "client_credentials"},
                auth=(custom["client_id"], custom["client_secret"]),
                timeout=10,
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": tenant,
                       "Accept": "application/json"}  # fmt: skip
            raw_started = time.monotonic()
            raw_records = 0
            session = requests.Session()
            for coll in COLLECTIONS.values():
                page = 1
                while True:
                    body = session.get(f"{config['api_url']}/{coll}",
                                       params={"page": page, "pageSize": 1000},
                                       headers=headers, timeout=60).json()  # fmt: skip
                    raw_records += len(body[coll])
                    if page >= body["pagination"]["pageCount"]:
                        break
                    page += 1
            raw_seconds = time.monotonic() - raw_started
        finally:
            big.stop()

    calls = sum(sum(m.values()) for e, m in stats["calls"][tenant].items())
    fewest = sum(max(1, math.ceil(n / 1000)) for n in counts.values())
    report("api calls / fewest possible", f"{calls / fewest:.2f} ({calls} calls, {fewest} fewest)")
    assert calls == fewest

    top = sum(big_run["records"][s] for s in COLLECTIONS)
    assert top == sum(counts.values())
    total = sum(big_run["records"].values())
    rate = total / big_run["seconds"]
    raw_rate = raw_records / raw_seconds
    report(
        "records/s with limits off",
        f"{rate:,.0f} records/s ({total:,} records with line items, {big_run['seconds']:.1f} s); "
        f"top-level records/s vs raw page reads: {top / big_run['seconds'] / raw_rate:.2f}",
    )
    ratio = big_run["rss_kb"] / small_run["rss_kb"]
    small_top = sum(small_run["records"][s] for s in COLLECTIONS)
    report(
        "peak memory large / small",
        f"{ratio:.2f} ({big_run['rss_kb'] / 1024:.0f} MiB at {top:,} top-level records, "
        f"{small_run['rss_kb'] / 1024:.0f} MiB at {small_top:,})",
    )
    assert ratio < 1.5


def _log_time(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


# A Xero call is assumed to take about a second (an assumption, not a documented figure:
# Xero publishes no latency); the sandbox's latency fault plays it, time-scaled.
CALL_SECONDS = 1.0
# One call per record; 650 calls fill 10 minute windows and most of an 11th, so a tap at
# the ceiling scores near 1.0 (200 calls, as before, could score at most 200/240 = 0.83).
THROUGHPUT_STREAMS = {"contacts", "invoices", "bank_transactions"}


def ceiling_ratio(stderr: str, time_scale: float) -> tuple[int, float, int]:
    """(calls, Xero minutes they spanned, the most calls Xero's fixed windows allow then)."""
    stamps = [_log_time(line) for line in stderr.splitlines() if "http_request_duration" in line]
    minutes = (stamps[-1] - stamps[0]) * time_scale / 60.0
    # Xero's windows are fixed: a span of m minutes touches at most floor(m) + 1 of them.
    return len(stamps), minutes, 60 * (math.floor(minutes) + 1)


def throughput_run(time_scale: float, max_in_flight: int, tmp: Path) -> dict[str, Any]:
    sbx = start("small", time_scale)
    try:
        latency_ms = CALL_SECONDS * 1000 / time_scale
        requests.post(f"{sbx.url}/_sandbox/faults", json={"latency_ms": latency_ms}, timeout=10)
        config = config_for(sbx, tmp, page_size=1, max_in_flight=max_in_flight)
        result = run_tap(config, THROUGHPUT_STREAMS, tmp)
        stats = requests.get(f"{sbx.url}/_sandbox/stats", timeout=10).json()
    finally:
        sbx.stop()
    calls, minutes, ceiling = ceiling_ratio(result["stderr"], time_scale)
    return {
        "calls": calls,
        "minutes": minutes,
        "ceiling": ceiling,
        "ratio": calls / ceiling,
        "throttled": sum(stats["rate_limited"].values()),
        "in_flight": max(stats["max_in_flight_by_tenant"].values()),
    }


def test_bench_tap_throughput_against_the_rate_limit_ceiling() -> None:
    """One organisation: pages asked up to 5 at once, against one at a time (the baseline)."""
    time_scale = 30.0  # a Xero minute in 2 real seconds
    runs = {}
    for in_flight in (1, 5):
        with tempfile.TemporaryDirectory() as tmp:
            runs[in_flight] = throughput_run(time_scale, in_flight, Path(tmp))
    for in_flight, run in runs.items():
        report(
            f"throughput / rate-limit ceiling, {in_flight} in flight",
            f"{run['ratio']:.2f} ({run['calls']} calls in {run['minutes']:.2f} Xero minutes, "
            f"ceiling {run['ceiling']}; {run['calls'] / run['minutes']:.1f} a minute; "
            f"{run['throttled']} x 429; at most {run['in_flight']} in flight)",
        )
    base, piped = runs[1], runs[5]
    report(
        "pipelined / one page at a time",
        f"{base['minutes'] / piped['minutes']:.2f}x faster ({CALL_SECONDS:.1f} s a call assumed)",
    )
    assert piped["throttled"] == 0
    assert piped["calls"] <= piped["ceiling"]
    assert piped["ratio"] > base["ratio"]

"""Many organisations in one run: side by side against one at a time (`make bench`).

For 8 and 32 organisations on the time-scaled sandbox, the same run reads them first with
`max_parallel_organisations=1` (the baseline: one organisation after another, as before
issue 15) and then all side by side, and reports:

- the speed-up (baseline seconds / side-by-side seconds);
- calls a Xero minute per organisation against its ceiling (60), and for the app against
  Xero's app-wide ceiling (10,000 a minute), with the number of 429s (should be 0).

Each organisation needs 65 calls (two minute windows), so each one's own minute limit
binds; a call is assumed to take about a second (see bench_tap's CALL_SECONDS). The time
scale shrinks with the count so that N organisations at 60 calls a Xero minute stay
within what one Python process can send on a shared 2-core machine (about 80 calls a
real second): time scaling shortens the waits, not the tap's own work, and a faster
scale would measure the CPU instead of the limits. `BENCH_ORGS` (default `8,32`) sets
the organisation counts.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from bench_tap import CALL_SECONDS, _log_time, report, run_tap
from sandbox.xero import XeroSandbox

COUNTS = [int(n) for n in os.environ.get("BENCH_ORGS", "8,32").split(",")]
CALLS_A_SECOND = 80.0  # what the side-by-side run may need at most, in real seconds
STREAMS = {"contacts", "invoices", "bank_transactions"}
PAGE_SIZE = 10  # 20 + 25 + 20 = 65 calls per organisation of the small company
APP_CEILING = 10_000  # calls a minute across every organisation of the app
ORG_CEILING = 60


def one_run(sbx: XeroSandbox, tmp: Path, parallel: int, time_scale: float) -> dict[str, Any]:
    """One tap run over every organisation; seconds, calls and their Xero minutes."""
    requests.post(f"{sbx.url}/_sandbox/reset", timeout=60)
    requests.post(
        f"{sbx.url}/_sandbox/faults",
        json={"latency_ms": CALL_SECONDS * 1000 / time_scale},
        timeout=10,
    )
    config = dict(sbx.config)
    config.update(
        token_store_path=str(tmp / f"tokens-{parallel}.json"),
        rate_limit_window_seconds=60.0 / time_scale,
        page_size=PAGE_SIZE,
        max_parallel_organisations=parallel,
    )
    started = time.monotonic()
    result = run_tap(config, STREAMS, tmp)
    seconds = time.monotonic() - started
    stats = requests.get(f"{sbx.url}/_sandbox/stats", timeout=10).json()
    stamps = [
        _log_time(line) for line in result["stderr"].splitlines() if "http_request_duration" in line
    ]
    minutes = (stamps[-1] - stamps[0]) * time_scale / 60.0
    tenants = [t for t in stats["calls"] if t]
    return {
        "seconds": seconds,
        "calls": len(stamps),
        "minutes": minutes,
        "tenants": len(tenants),
        "throttled": sum(stats["rate_limited"].values()),
        "records": sum(result["records"].values()),
    }


def test_bench_organisations_side_by_side() -> None:
    for count in COUNTS:
        time_scale = CALLS_A_SECOND / count  # count x 60 calls a Xero minute
        sbx = XeroSandbox(
            seed=1,
            size="small",
            tenants=count,
            time_scale=time_scale,
            access_token_lifetime=1800.0 * time_scale,
            tier="advanced",
            scopes="broad",
        ).start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                base = one_run(sbx, Path(tmp), 1, time_scale)
                side = one_run(sbx, Path(tmp), count, time_scale)
        finally:
            sbx.stop()
        assert base["records"] == side["records"] > 0
        assert base["tenants"] == side["tenants"] == count
        per_org = side["calls"] / count / side["minutes"]
        app = side["calls"] / side["minutes"]
        report(
            f"{count} organisations: side by side / one at a time",
            f"{base['seconds'] / side['seconds']:.1f}x faster ({base['seconds']:.1f} s -> "
            f"{side['seconds']:.1f} s with the tap's start-up, {side['calls']} calls; "
            f"calls spanned {base['minutes']:.1f} -> {side['minutes']:.1f} Xero minutes: "
            f"{base['minutes'] / side['minutes']:.1f}x; time scale {time_scale:g})",
        )
        report(
            f"{count} organisations: calls a minute / ceilings",
            f"{per_org:.1f} per organisation ({per_org / ORG_CEILING:.2f} of {ORG_CEILING}); "
            f"{app:.0f} for the app ({app / APP_CEILING:.3f} of {APP_CEILING:,}); one at a "
            f"time: {base['calls'] / base['minutes']:.1f} a minute; "
            f"{side['throttled']} and {base['throttled']} x 429",
        )
        assert side["throttled"] == base["throttled"] == 0
        assert side["seconds"] < base["seconds"]

"""Rows pushed by an incremental run against a full reload, on the Xero sandbox's company.

tap-xero reads the Xero sandbox into target-powerbi (Power BI sandbox); then a day of
changes is made (`POST /_sandbox/mutate`, random actions: payments, voids, edits, new
invoices and contacts, deletions) and the clock moved a day; the incremental run (with
the first run's STATE) pushes what changed. A tool that reloads everything pushes the
full row count again each run: the ratio is what the hourly row cap makes matter.

`BENCH_XERO_SIZE` (default `benchmark`, 100,000 invoices; `small` for a quick look) and
`BENCH_XERO_CHANGES` (default 200 actions) set the company and the day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox

BIN = Path(sys.executable).parent
SIZE = os.environ.get("BENCH_XERO_SIZE", "benchmark")
CHANGES = int(os.environ.get("BENCH_XERO_CHANGES", "200"))
SCALE = 60.0
SCALED_TARGET = Path(__file__).resolve().parents[1] / "tests" / "target" / "scaled.py"


def session(ca_bundle: str | None = None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    if ca_bundle:
        http.verify = ca_bundle
    return http


def pipeline(tmp: Path, state: Path | None) -> tuple[str, float]:
    args = [str(BIN / "tap-xero"), "--config", str(tmp / "tap.json")]
    if state is not None:
        args += ["--state", str(state)]
    start = time.perf_counter()
    with (tmp / "tap.err").open("w") as err:
        tap = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        # target-powerbi on a clock SCALE times faster, as the sandboxes run
        target = subprocess.run(
            [sys.executable, str(SCALED_TARGET), "--config", str(tmp / "target.json")],
            stdin=tap.stdout,
            env={**os.environ, "SCALED_TARGET_TIME_SCALE": str(SCALE)},
            capture_output=True,
            text=True,
            check=False,
        )
        tap.wait()
    assert tap.returncode == 0, (tmp / "tap.err").read_text()[-3000:]
    assert target.returncode == 0, target.stderr[-3000:]
    lines = target.stdout.strip().splitlines()
    return (lines[-1] if lines else "{}"), time.perf_counter() - start


@pytest.mark.timeout(3600)
def test_bench_incremental_day_against_full_reload(tmp_path: Path) -> None:
    with (
        XeroSandbox(
            size=SIZE, tenants=1, time_scale=SCALE, tier="advanced", scopes="broad"
        ) as xero,
        PowerBISandbox(time_scale=SCALE) as powerbi,
    ):
        tap_config = {k: v for k, v in xero.config.items() if k != "webhook_key"}
        tap_config["token_store_path"] = str(tmp_path / "tokens.json")
        tap_config["rate_limit_window_seconds"] = 60 / SCALE  # the sandbox's minute, scaled
        (tmp_path / "tap.json").write_text(json.dumps(tap_config))
        target_config = {
            **powerbi.config,
            "dataset_name": "Xero",
            "store_path": str(tmp_path / "store.sqlite3"),
            "child_table_depth": 0,  # tap-xero sends line items as streams of their own
            "parallelism": 5,
        }
        (tmp_path / "target.json").write_text(json.dumps(target_config))
        pbi = session(powerbi.ca_bundle)

        def posted() -> int:
            return int(pbi.get(f"{powerbi.url}/_sandbox/stats").json()["rows_posted"])

        state, full_seconds = pipeline(tmp_path, None)
        full = posted()
        (tmp_path / "state.json").write_text(state)

        xapi = session()  # the Xero sandbox's control API on plain loopback HTTP
        (tenant,) = xero.config["tenant_ids"]
        answer = xapi.post(
            f"{xero.url}/_sandbox/mutate",
            json={"tenant_id": tenant, "action": "random", "count": CHANGES},
        ).json()
        xapi.post(f"{xero.url}/_sandbox/clock", json={"advance_seconds": 86_400})

        _, day_seconds = pipeline(tmp_path, tmp_path / "state.json")
        day = posted() - full
        stats = pbi.get(f"{powerbi.url}/_sandbox/stats").json()
        deletes = sum(stats["requests"].get("DeleteRowsInGroup", {}).values())
        results = {
            "company": SIZE,
            "changes_applied": len(answer["results"]),
            "full_load_rows": full,
            "incremental_rows": day,
            "incremental_vs_full_reload": round(day / full, 4),
            "tables_reloaded": deletes,
            "full_seconds": round(full_seconds, 1),
            "incremental_seconds": round(day_seconds, 1),
            "throttled": stats["throttled"],
        }
        print("\nbench_target_xero " + json.dumps(results, indent=2))
        assert stats["throttled"] == 0
        assert day < full

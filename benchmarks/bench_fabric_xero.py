"""Rows landed by an incremental day against the full load: Fabric (open mirroring) beside push.

The same tap output goes to both destinations: tap-xero reads the Xero sandbox (the full
load), a day of changes is made (`POST /_sandbox/mutate`, random actions: payments,
voids, edits, new invoices and contacts, deletions) and the clock moved a day, then
tap-xero reads again from the first STATE (the day). Each of the two recordings is fed
to target-powerbi twice, in the same run: `destination: push` (Power BI sandbox; a
changed or removed row reloads its whole table) and `destination: fabric` (Fabric
sandbox; changed rows land as upserts, removed ones as deletes). The figures are rows
sent to each service; the baseline is each destination's own full load.

`BENCH_XERO_SIZE` (default `small`; `benchmark` is 100,000 invoices) and
`BENCH_XERO_CHANGES` (default 200 actions) set the company and the day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox.fabric import FabricSandbox
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox

BIN = Path(sys.executable).parent
SIZE = os.environ.get("BENCH_XERO_SIZE", "small")
CHANGES = int(os.environ.get("BENCH_XERO_CHANGES", "200"))
SCALE = 60.0
SCALED_TARGET = Path(__file__).resolve().parents[1] / "tests" / "target" / "scaled.py"


def session(ca_bundle: str | None = None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    if ca_bundle:
        http.verify = ca_bundle
    return http


def tap(tmp: Path, out: Path, state: Path | None) -> str:
    """tap-xero into a file; its last STATE."""
    args = [str(BIN / "tap-xero"), "--config", str(tmp / "tap.json")]
    if state is not None:
        args += ["--state", str(state)]
    with out.open("w") as stdout, (tmp / "tap.err").open("w") as err:
        done = subprocess.run(args, stdout=stdout, stderr=err, check=False)
    assert done.returncode == 0, (tmp / "tap.err").read_text()[-3000:]
    states = [line for line in out.read_text().splitlines() if '"type": "STATE"' in line]
    return json.dumps(json.loads(states[-1])["value"]) if states else "{}"


def target(config: Path, records: Path) -> float:
    """target-powerbi (on a clock SCALE times faster, as the sandboxes run); seconds."""
    start = time.perf_counter()
    with records.open() as stdin:
        done = subprocess.run(
            [sys.executable, str(SCALED_TARGET), "--config", str(config)],
            stdin=stdin,
            env={**os.environ, "SCALED_TARGET_TIME_SCALE": str(SCALE)},
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - start


def records(path: Path) -> int:
    return sum(json.loads(line)["type"] == "RECORD" for line in path.read_text().splitlines())


@pytest.mark.timeout(3600)
def test_bench_fabric_incremental_day_beside_push(tmp_path: Path) -> None:
    with (
        XeroSandbox(
            size=SIZE, tenants=1, time_scale=SCALE, tier="advanced", scopes="broad"
        ) as xero,
        PowerBISandbox(time_scale=SCALE) as powerbi,
        FabricSandbox(time_scale=SCALE) as fabric,
    ):
        tap_config = {k: v for k, v in xero.config.items() if k != "webhook_key"}
        tap_config["token_store_path"] = str(tmp_path / "tokens.json")
        tap_config["rate_limit_window_seconds"] = 60 / SCALE
        (tmp_path / "tap.json").write_text(json.dumps(tap_config))
        common = {"dataset_name": "Xero", "child_table_depth": 0, "parallelism": 5}
        configs = {
            "push": {**powerbi.config, **common, "store_path": str(tmp_path / "push.sqlite3")},
            "fabric": {
                **fabric.config,
                **common,
                "destination": "fabric",
                "store_path": str(tmp_path / "fabric.sqlite3"),
            },
        }
        for name, config in configs.items():
            (tmp_path / f"{name}.json").write_text(json.dumps(config))
        pbi, fab = session(powerbi.ca_bundle), session(fabric.ca_bundle)

        def sent() -> dict[str, int]:
            return {
                "push": int(pbi.get(f"{powerbi.url}/_sandbox/stats").json()["rows_posted"]),
                "fabric": int(fab.get(f"{fabric.url}/_sandbox/stats").json()["rows_landed"]),
            }

        state = tap(tmp_path, tmp_path / "full.singer", None)
        (tmp_path / "state.json").write_text(state)
        xapi = session()
        (tenant,) = xero.config["tenant_ids"]
        answer = xapi.post(
            f"{xero.url}/_sandbox/mutate",
            json={"tenant_id": tenant, "action": "random", "count": CHANGES},
        ).json()
        xapi.post(f"{xero.url}/_sandbox/clock", json={"advance_seconds": 86_400})
        tap(tmp_path, tmp_path / "day.singer", tmp_path / "state.json")

        seconds: dict[str, dict[str, float]] = {}
        for name in configs:
            seconds[name] = {"full": target(tmp_path / f"{name}.json", tmp_path / "full.singer")}
        full = sent()
        full_lines = len((tmp_path / "fabric.audit.jsonl").read_text().splitlines())
        for name in configs:
            seconds[name]["day"] = target(tmp_path / f"{name}.json", tmp_path / "day.singer")
        day = {name: n - full[name] for name, n in sent().items()}
        by_table: dict[str, int] = {}
        audit = (tmp_path / "fabric.audit.jsonl").read_text().splitlines()
        for entry in map(json.loads, audit[full_lines:]):
            if entry["operation"] == "publish_file":
                table = str(entry["table"]).split("/")[0]
                by_table[table] = by_table.get(table, 0) + int(entry["rows"])
        fabric_stats: dict[str, Any] = fab.get(f"{fabric.url}/_sandbox/stats").json()
        results = {
            "company": SIZE,
            "changes_applied": len(answer["results"]),
            "day_records_from_tap": records(tmp_path / "day.singer"),
            "full_load_rows": full,
            "incremental_rows": day,
            "incremental_vs_full": {n: round(day[n] / full[n], 4) for n in full},
            "fabric_day_vs_push_day": round(day["fabric"] / max(day["push"], 1), 4),
            "fabric_day_rows_by_table": dict(sorted(by_table.items())),
            "seconds": {n: {k: round(v, 1) for k, v in s.items()} for n, s in seconds.items()},
            "fabric_files_refused": fabric_stats["files"]["refused"],
        }
        print("\nbench_fabric_xero " + json.dumps(results, indent=2))
        assert fabric_stats["files"]["refused"] == 0
        assert full["fabric"] == full["push"]  # the same rows, once each, on the full load
        assert day["fabric"] < day["push"]

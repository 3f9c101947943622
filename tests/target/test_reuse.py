"""Reuse: a third-party tap from the registry (tap-jsonl) through `meltano run` into the target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.pipeline import meltano_system_dir
from tests.target.conftest import DATA, PowerBI, by_key

ROOT = Path(__file__).resolve().parents[2]
MELTANO = str(Path(sys.executable).parent / "meltano")


@pytest.mark.e2e
def test_meltano_runs_a_third_party_tap_into_power_bi(powerbi: PowerBI, tmp_path: Path) -> None:
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if not (ROOT / ".meltano" / "extractors" / "tap-jsonl").is_dir():
        subprocess.run(
            [MELTANO, "install", "extractor", "tap-jsonl"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    env.update(
        {
            "TAP_JSONL_PATH": str(DATA / "reuse" / "*.jsonl"),
            "TAP_JSONL_STREAM_NAME": "customers",
            "TAP_JSONL_PRIMARY_KEYS": '["id"]',
            "TARGET_POWERBI_DATASET_NAME": "Reuse",
            "TARGET_POWERBI_STORE_PATH": str(tmp_path / "store.sqlite3"),
            "TARGET_POWERBI_AUDIT_LOG_PATH": str(tmp_path / "audit.jsonl"),
            "MELTANO_SYS_DIR_ROOT": str(meltano_system_dir(tmp_path)),
        }
    )
    for key, value in powerbi.sandbox.config.items():
        env[f"TARGET_POWERBI_{key.upper()}"] = str(value)
    result = subprocess.run(
        [
            MELTANO,
            "run",
            "--full-refresh",
            "--state-id-suffix",
            tmp_path.name,
            "tap-jsonl",
            "target-powerbi",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    dataset = powerbi.dataset("Reuse")
    (table,) = [t for t in dataset["tables"] if t["name"] == "customers"]
    columns = {c["name"]: c["dataType"] for c in table["columns"]}
    # tap-jsonl infers `address` as an object without properties: a JSON string column
    assert (columns["id"], columns["balance"], columns["address"]) == ("Int64", "Double", "String")
    assert columns["_sdc_last_modified"] == "DateTime"
    rows = by_key(powerbi.rows("customers", "Reuse"), "id")
    source = [
        json.loads(line) for line in (DATA / "reuse" / "customers.jsonl").read_text().splitlines()
    ]
    landed = {k[0]: (r["name"], json.loads(r["address"])["city"]) for k, r in rows.items()}
    assert landed == {s["id"]: (s["name"], s["address"]["city"]) for s in source}
    assert powerbi.config["client_secret"] not in result.stderr

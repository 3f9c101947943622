"""Reuse: Meltano runs tap-xero into a third-party Singer target (target-jsonl, from PyPI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.pipeline import meltano_system_dir
from tests.tap.xero_helpers import start_sandbox, tap_config, truth

ROOT = Path(__file__).resolve().parents[2]
MELTANO = Path(sys.executable).parent / "meltano"


def meltano_env(config: dict, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_XERO", "TARGET_"))}
    for key, value in config.items():
        if key == "retry_backoff_seconds":
            continue  # an integer setting in Meltano; the default is fine here
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        env[f"TAP_XERO_{key.upper()}"] = (
            json.dumps(value) if isinstance(value, list) else str(value)
        )
    env["TAP_XERO__SELECT"] = json.dumps(["invoices.*", "invoice_line_items.*", "contacts.*"])
    env["TARGET_JSONL_DESTINATION_PATH"] = str(out)
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


@pytest.mark.timeout(240)
def test_meltano_runs_tap_xero_into_target_jsonl(tmp_path):
    if not (ROOT / ".meltano" / "loaders" / "target-jsonl").exists():
        subprocess.run(
            [str(MELTANO), "install", "--plugin-type", "loader", "target-jsonl"],
            cwd=ROOT, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
    sbx = start_sandbox(seed=13, tenants=2)
    try:
        config = tap_config(sbx, tmp_path, page_size=100)
        out = tmp_path / "out"
        out.mkdir()
        env = meltano_env(config, out)
        env["MELTANO_SYS_DIR_ROOT"] = str(meltano_system_dir(tmp_path))
        done = subprocess.run(
            [str(MELTANO), "run", "--full-refresh", "--no-state-update", "tap-xero",
             "target-jsonl"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=200, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        landed = {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
                  for p in out.glob("*.jsonl")}  # fmt: skip
        assert set(landed) == {"invoices", "invoice_line_items", "contacts"}
        for tenant in config["tenant_ids"]:
            want = {r["InvoiceID"]: r for r in truth(sbx, tenant, "Invoices")}
            got = {r["InvoiceID"]: r for r in landed["invoices"] if r["tenant_id"] == tenant}
            assert set(got) == set(want)
            some = next(iter(got))
            assert got[some]["Total"] == want[some]["Total"]
            assert got[some]["UpdatedDateUTC"].endswith("+00:00")  # ISO-8601, not /Date()/
            lines = sum(len(r.get("LineItems") or []) for r in want.values())
            assert sum(1 for r in landed["invoice_line_items"] if r["tenant_id"] == tenant) == lines
            contacts = truth(sbx, tenant, "Contacts")
            assert sum(1 for r in landed["contacts"] if r["tenant_id"] == tenant) == len(contacts)
        for secret in (config["client_secret"], config["refresh_token"]):
            assert secret not in done.stderr
    finally:
        sbx.stop()

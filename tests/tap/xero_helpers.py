"""Running tap-xero against a Xero sandbox over loopback, and reading what it said."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sandbox.xero import XeroSandbox
from tap_xero.tap import TapXero

TAP = str(Path(sys.executable).parent / "tap-xero")
TIME_SCALE = 60.0  # a Xero minute lasts one real second


def start_sandbox(**kw: Any) -> XeroSandbox:
    """A time-scaled sandbox whose access tokens still last 30 real minutes."""
    kw.setdefault("time_scale", TIME_SCALE)
    kw.setdefault("access_token_lifetime", 1800.0 * kw["time_scale"])
    kw.setdefault("tier", "advanced")  # issue 13: "starter" once the tap skips forbidden streams
    kw.setdefault("scopes", "broad")  # issue 13: "granular" once the tap asks for every scope
    return XeroSandbox(**kw).start()


def tap_config(sbx: XeroSandbox, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config = dict(sbx.config)
    config.update(
        token_store_path=str(tmp_path / "tokens.json"),
        rate_limit_window_seconds=60.0 / sbx.service.clock.time_scale,
        retry_backoff_seconds=0.05,
    )
    config.update(overrides)
    return config


def catalog_for(config: dict[str, Any], selected: set[str]) -> dict[str, Any]:
    """The tap's catalog with only `selected` streams (and all their fields) selected."""
    catalog = TapXero(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in selected
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = chosen
    return catalog


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in self.messages:
            if m["type"] == "RECORD":
                out[m["stream"]].append(m["record"])
        return out

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]


def parse(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def write_inputs(
    tmp_path: Path,
    config: dict[str, Any],
    selected: set[str] | None,
    state: dict[str, Any] | None,
    tag: str,
    catalog: dict[str, Any] | None = None,
) -> list[str]:
    config_path = tmp_path / f"config-{tag}.json"
    config_path.write_text(json.dumps(config))
    args = [TAP, "--config", str(config_path)]
    if selected is not None or catalog is not None:
        catalog = catalog if catalog is not None else catalog_for(config, selected or set())
        catalog_path = tmp_path / f"catalog-{tag}.json"
        catalog_path.write_text(json.dumps(catalog))
        args += ["--catalog", str(catalog_path)]
    if state is not None:
        state_path = tmp_path / f"state-{tag}.json"
        state_path.write_text(json.dumps(state))
        args += ["--state", str(state_path)]
    return args


def run_tap(
    tmp_path: Path,
    config: dict[str, Any],
    *,
    selected: set[str] | None = None,
    state: dict[str, Any] | None = None,
    tag: str = "run",
    timeout: float = 60,
    catalog: dict[str, Any] | None = None,
) -> TapRun:
    """Run `tap-xero` as a subprocess, as Meltano would."""
    args = write_inputs(tmp_path, config, selected, state, tag, catalog)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    return TapRun(done.returncode, done.stdout, done.stderr, parse(done.stdout))


def control(sbx: XeroSandbox, path: str, body: dict[str, Any] | None = None) -> Any:
    """The sandbox's control API: GET without a body, POST with one."""
    url = f"{sbx.url}/_sandbox/{path}"
    response = requests.post(url, json=body, timeout=10) if body is not None else None
    if response is None:
        response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def truth(sbx: XeroSandbox, tenant: str, collection: str, **params: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{sbx.url}/_sandbox/truth/{tenant}/{collection}", params=params, timeout=10
    )
    response.raise_for_status()
    records: list[dict[str, Any]] = response.json()[collection]
    return records


def api_calls(stats: dict[str, Any], endpoint: str | None = None) -> int:
    """Accounting API calls in the sandbox's stats, for one endpoint or all."""
    total = 0
    for tenant, endpoints in stats["calls"].items():
        if not tenant:
            continue
        for name, methods in endpoints.items():
            if name == "connections" or (endpoint is not None and name != endpoint):
                continue
            total += sum(methods.values())
    return total


def last_position(store_path: Any) -> int:
    """The highest position a webhook event store ever handed out, read from its file."""
    import sqlite3

    with sqlite3.connect(str(store_path)) as conn:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def wait_until(predicate: Any, timeout: float, what: str = "the condition") -> None:
    """Poll `predicate` until true; fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)

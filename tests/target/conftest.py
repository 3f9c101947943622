"""Fixtures for target-powerbi tests: one Power BI sandbox over loopback TLS, and a runner.

The target runs as a subprocess fed a `.singer` file, as Meltano runs it, so a
test can kill it anywhere (`TARGET_POWERBI_TEST_KILL_AT`) and run it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox.powerbi import PowerBISandbox

DATA = Path(__file__).parent / "data"
TARGET = str(Path(sys.executable).parent / "target-powerbi")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class PowerBI:
    """The sandbox's control API, and a target config pointing at it."""

    def __init__(self, sandbox: PowerBISandbox, workdir: Path) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = sandbox.ca_bundle
        self.config: dict[str, Any] = {
            **sandbox.config,
            "dataset_name": "Finance",
            "store_path": str(workdir / "store.sqlite3"),
            "audit_log_path": str(workdir / "audit.jsonl"),
        }

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.sandbox.url}/_sandbox{path}", json=body)
        response.raise_for_status()
        return response.json()

    def datasets(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "/datasets")["datasets"])

    def dataset(self, name: str = "Finance") -> dict[str, Any]:
        (found,) = [d for d in self.datasets() if d["name"] == name]
        return found

    def rows(self, table: str, name: str = "Finance") -> list[dict[str, Any]]:
        dataset_id = self.dataset(name)["id"]
        return list(self.control("GET", f"/datasets/{dataset_id}/tables/{table}/rows")["rows"])

    def stats(self) -> dict[str, Any]:
        return dict(self.control("GET", "/stats"))

    def faults(self, **body: Any) -> None:
        self.control("POST", "/faults", body)

    def run(
        self,
        singer: str | Path,
        *,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> Run:
        """Run target-powerbi on a `.singer` file (a name in tests/target/data or a path)."""
        path = Path(singer) if Path(singer).is_absolute() else DATA / f"{singer}.singer"
        conf = self.workdir / "config.json"
        conf.write_text(json.dumps({**self.config, **(config or {})}))
        full_env = {**os.environ, **(env or {})}
        full_env.pop("TARGET_POWERBI_TEST_KILL_AT", None)
        full_env.update(env or {})
        proc = subprocess.run(
            [TARGET, "--config", str(conf), "--input", str(path)],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=120,
            cwd=self.workdir,
        )
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            msg = f"target-powerbi failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            raise AssertionError(msg)
        return run


@pytest.fixture(scope="session")
def powerbi_sandbox() -> Iterator[PowerBISandbox]:
    with PowerBISandbox() as sandbox:
        yield sandbox


@pytest.fixture
def powerbi(powerbi_sandbox: PowerBISandbox, tmp_path: Path) -> PowerBI:
    control = PowerBI(powerbi_sandbox, tmp_path)
    control.control("POST", "/reset")
    return control


def write_singer(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def by_key(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    """Rows by key, failing on a duplicate (nothing doubled)."""
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        assert key not in out, f"duplicate row for {key}: {row}"
        out[key] = row
    return out

"""Fixtures for target-powerbi tests: one Power BI sandbox over loopback TLS, and a runner.

The target runs as a subprocess fed a `.singer` file, as Meltano runs it, so a
test can kill it from outside (`Kill`: at a log line, while a proxy stalls a
request, or as its first STATE comes out) and run it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from sandbox.powerbi import PowerBISandbox

from tests.target import scaled
from tests.target.stall import StallingProxy

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
        time_scale: float | None = None,
        kill: Kill | None = None,
    ) -> Run:
        """Run target-powerbi on a `.singer` file (a name in tests/target/data or a path).

        `time_scale`: run it on a clock that many times faster (tests/target/scaled.py);
        `kill`: SIGKILL it from outside when the condition is met.
        """
        path = Path(singer) if Path(singer).is_absolute() else DATA / f"{singer}.singer"
        conf = self.workdir / "config.json"
        conf.write_text(json.dumps({**self.config, **(config or {})}))
        full_env = {**os.environ, **(env or {})}
        command = [TARGET]
        if time_scale is not None:
            command = scaled.command()
            full_env[scaled.SCALE_ENV] = str(time_scale)
        command += ["--config", str(conf)]
        lines = path.read_text().splitlines(keepends=True)
        if kill is None or kill.input_lines is None:
            command += ["--input", str(path)]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if kill is not None and kill.input_lines else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=self.workdir,
        )
        run = _watch(proc, kill, lines)
        if check and run.returncode != 0:
            msg = f"target-powerbi failed ({run.returncode}):\n{run.stderr[-4000:]}"
            raise AssertionError(msg)
        return run


@dataclass
class Kill:
    """When a test SIGKILLs the target, as a power cut would."""

    # only the first N lines of the input, stdin then kept open (the target waits for more)
    input_lines: int | None = None
    # after this many stderr lines containing `log_text`
    log_text: str | None = None
    log_count: int = 1
    # while this proxy holds a request
    proxy: StallingProxy | None = None
    # as the first STATE comes out on stdout (dropped: it never reaches the orchestrator)
    at_first_state: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def due(self, stderr: list[str]) -> bool:
        if self.done.is_set():
            return True
        if self.proxy is not None and self.proxy.held.is_set():
            return True
        if self.log_text is not None:
            return sum(self.log_text in line for line in list(stderr)) >= self.log_count
        return False


def _pump(stream: IO[str], into: list[str], on_line: Any = None) -> None:
    for line in stream:
        if on_line is not None and on_line(line):
            continue
        into.append(line)


def _watch(proc: subprocess.Popen[str], kill: Kill | None, lines: list[str]) -> Run:
    """Feed, read and (when `kill` says so) SIGKILL the target; its Run."""
    out: list[str] = []
    err: list[str] = []

    def first_state(line: str) -> bool:
        if kill is None or not kill.at_first_state or not line.strip():
            return False
        kill.done.set()
        proc.send_signal(signal.SIGKILL)
        return True

    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out, first_state), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if kill is not None and kill.input_lines and proc.stdin is not None:
        proc.stdin.write("".join(lines[: kill.input_lines]))
        proc.stdin.flush()
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        if kill is not None and kill.due(err):
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("target-powerbi took over 120 s")
        time.sleep(0.01)
    proc.wait()
    for reader in readers:
        reader.join(10)
    if proc.stdin is not None:
        proc.stdin.close()
    return Run(proc.returncode, "".join(out), "".join(err))


@pytest.fixture(scope="session")
def powerbi_sandbox() -> Iterator[PowerBISandbox]:
    with PowerBISandbox() as sandbox:
        yield sandbox


@pytest.fixture
def proxy(powerbi_sandbox: PowerBISandbox) -> Iterator[StallingProxy]:
    """A stalling proxy in front of the sandbox."""
    stalling = StallingProxy(powerbi_sandbox.url, powerbi_sandbox.ca_bundle)
    yield stalling
    stalling.close()


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

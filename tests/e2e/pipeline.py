"""The real `meltano run` on the two sandboxes, isolated per test, and what landed where.

Each `Pipeline` has its own Meltano system directory (its own `meltano.db`, hence its
own state, and its own `run/` directory for the generated config and catalog files,
so concurrent Meltano runs elsewhere cannot clobber them), while the installed plugin
environments are shared through symlinks. Token store, target store and audit log
live in the same work directory. The sandboxes' settings reach the plugins exactly as
in `make demo`: as TAP_XERO_* / TARGET_POWERBI_* variables made from their ready lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox

ROOT = Path(__file__).resolve().parents[2]
MELTANO = str(ROOT / ".venv" / "bin" / "meltano")
DATASET = "Xero"


def load_demo() -> ModuleType:
    """scripts/demo.py as a module: the tests use its mapping from ready lines to settings."""
    spec = importlib.util.spec_from_file_location("xero_powerbi_demo", ROOT / "scripts/demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_demo()


def meltano_system_dir(workdir: Path) -> Path:
    """`workdir/meltano`, a Meltano system directory of its own (MELTANO_SYS_DIR_ROOT): its
    own meltano.db and run/ files, the installed plugins shared through symlinks.

    Every test that runs `meltano` uses one: tests run in parallel (pytest-xdist), and two
    Meltano runs on the repository's .meltano/ would share one SQLite database and write
    their plugins' generated config to the same run/ paths.
    """
    sysdir = workdir / "meltano"
    (sysdir / "run").mkdir(parents=True, exist_ok=True)
    for kind in ("extractors", "loaders"):
        link = sysdir / kind
        if not link.exists():
            link.symlink_to(ROOT / ".meltano" / kind, target_is_directory=True)
    return sysdir


class Sandboxes:
    """Both sandboxes in this process (threads), time-scaled, with their control APIs."""

    destination = "push"  # the target's destination (tests.e2e.fabric: "fabric")

    def __init__(self, *, seed: int, tenants: int = 2) -> None:
        time_scale = demo.TIME_SCALE  # what the `sandbox` environment expects
        # Access tokens last 30 sandbox minutes = 30 real seconds at scale 60: runs refresh.
        self.xero = XeroSandbox(
            seed=seed, tenants=tenants, time_scale=time_scale, tier="advanced", scopes="broad"
        ).start()
        self.powerbi = PowerBISandbox(time_scale=time_scale).start()
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE must not override verify
        self.http.verify = self.powerbi.ca_bundle

    def stop(self) -> None:
        # A kept-alive connection holds a server's graceful shutdown for its full second.
        self.http.close()
        self.xero.stop()
        self.powerbi.stop()

    @property
    def ready(self) -> dict[str, Any]:
        """What `sandbox up` prints."""
        return {"xero": self.xero.config, "powerbi": self.powerbi.config}

    @property
    def tenants(self) -> list[str]:
        return list(self.xero.config["tenant_ids"])

    # Xero control API
    def xero_get(self, path: str, **params: str) -> Any:
        response = self.http.get(f"{self.xero.url}/_sandbox/{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def xero_post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(f"{self.xero.url}/_sandbox/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def truth(self, tenant: str, endpoint: str, **params: str) -> list[dict[str, Any]]:
        """Every record of an endpoint (`Invoices`, `Organisation`), deleted ones included."""
        (records,) = self.xero_get(f"truth/{tenant}/{endpoint}", **params).values()
        return list(records)

    def api_calls(self) -> int:
        return int(demo.api_calls(self.xero_get("stats")))

    # Power BI control API
    def powerbi_get(self, path: str, **params: str) -> Any:
        response = self.http.get(f"{self.powerbi.url}/_sandbox/{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def dataset(self, name: str = DATASET) -> dict[str, Any]:
        (found,) = [d for d in self.powerbi_get("datasets")["datasets"] if d["name"] == name]
        return dict(found)

    def tables(self, name: str = DATASET) -> dict[str, list[dict[str, Any]]]:
        """Every table of the dataset with all its rows."""
        dataset = self.dataset(name)
        out: dict[str, list[dict[str, Any]]] = {}
        for table in dataset["tables"]:
            rows = self.powerbi_get(f"datasets/{dataset['id']}/tables/{table['name']}/rows")
            assert rows["syntheticRows"] == 0
            out[table["name"]] = list(rows["rows"])
        return out


@dataclass
class Run:
    returncode: int
    stderr: str
    seconds: float
    killed: bool = False


class Pipeline:
    """`meltano run` from the repository root with its own state, stores and run directory."""

    def __init__(self, sandboxes: Sandboxes, workdir: Path, **settings: str) -> None:
        self.sandboxes = sandboxes
        self.workdir = workdir
        sysdir = meltano_system_dir(workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
        env = {k: v for k, v in env.items() if not k.startswith("MELTANO_")}
        env.update(demo.sandbox_env(sandboxes.ready, sandboxes.destination))
        env.update(
            MELTANO_SYS_DIR_ROOT=str(sysdir),
            MELTANO_ENVIRONMENT="sandbox",
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            TAP_XERO_TOKEN_STORE_PATH=str(workdir / "xero-tokens.json"),
            TAP_XERO_WEBHOOK_EVENT_STORE_PATH=str(workdir / "xero-webhooks.sqlite"),
            TARGET_POWERBI_STORE_PATH=str(workdir / "powerbi.sqlite3"),
            TARGET_POWERBI_AUDIT_LOG_PATH=str(self.audit_log),
            TARGET_JSONL_DESTINATION_PATH=str(workdir / "jsonl"),
        )
        env.update(settings)
        self.env = env
        self.runs = 0
        self.pid = 0  # Meltano's process (and session) of the current run

    def saved_state(self, state_id: str = "sandbox:tap-xero-to-target-powerbi") -> Any:
        """The state Meltano holds for the job, None when there is none."""
        database = self.workdir / "meltano" / "meltano.db"
        with contextlib.closing(sqlite3.connect(database)) as db:
            found = db.execute(
                "SELECT partial_state, completed_state FROM state WHERE state_id = ?", (state_id,)
            ).fetchone()
        if found is None:
            return None
        merged = {**json.loads(found[1] or "{}"), **json.loads(found[0] or "{}")}
        return merged.get("singer_state") or None

    @property
    def audit_log(self) -> Path:
        return self.workdir / "powerbi-audit.jsonl"

    @property
    def token_store(self) -> dict[str, Any]:
        return dict(json.loads((self.workdir / "xero-tokens.json").read_text()))

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def run(
        self,
        *args: str,
        kill_when: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> Run:
        """`meltano run ARGS` (default: the job); SIGKILL its whole process group when
        `kill_when()` turns true, as a power cut would."""
        command = [MELTANO, "run", *(args or ("xero-to-powerbi",))]
        self.runs += 1
        log = self.workdir / f"meltano-{self.runs}.log"
        started = time.monotonic()
        with log.open("w") as err:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            self.pid = process.pid
            killed = False
            try:
                while process.poll() is None:
                    if time.monotonic() - started > timeout:
                        raise TimeoutError(f"meltano run took over {timeout} s")
                    if kill_when is not None and not killed and kill_when():
                        os.killpg(process.pid, signal.SIGKILL)
                        killed = True
                    time.sleep(0.02)
            finally:
                if process.poll() is None or killed:
                    _kill_group(process.pid)
                process.wait()
        return Run(process.returncode, log.read_text(), time.monotonic() - started, killed)


def _kill_group(pgid: int) -> None:
    """Nothing of a killed pipeline may live on (the tap or target of a killed Meltano)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def by_tenant(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row["tenant_id"]].append(row)
    return out

"""What the Dagster deployment takes from the Meltano project, and one `meltano run` per
organisation.

Everything here shells out to Meltano (`meltano run`, `meltano invoke tap-xero auth
tenants`) rather than importing the plugins: the deployment drives the project exactly as
a person or cron would, with the project's settings, environments and state backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MELTANO_YML = ROOT / "meltano.yml"

# Xero's published limits (developer.xero.com, "OAuth 2.0 API limits"): each
# organisation 60 calls a minute, an app 10,000 a minute across all of them. One
# partition reads one organisation, so the app-wide minute allows this many in flight.
APP_CALLS_PER_MINUTE = 10_000
ORGANISATION_CALLS_PER_MINUTE = 60
APP_WIDE_ORGANISATIONS = APP_CALLS_PER_MINUTE // ORGANISATION_CALLS_PER_MINUTE

STOP_GRACE_SECONDS = 30

# What a failed run's log says when running it again cannot help: the connection or a
# setting must be fixed first (tap-xero's and Meltano's one-line errors). Anything else
# (a network failure, Xero or Power BI down past the plugins' own retries) is retried.
NOT_RETRYABLE = (
    "auth login",  # tap-xero: re-authorise (revoked, expired, disconnected, not granted)
    "HTTP 403",  # tap-xero: a role or connection refused
    "invalid_grant",
    "error: setting ",  # tap-xero: a bad setting
    "fix it in the",  # a bad setting, either plugin
    "not granted",
)


class MeltanoRunError(Exception):
    """A `meltano run` that failed; `retryable` says whether running it again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class MeltanoSchedule:
    """One entry of `meltano.yml`'s `schedules:`."""

    name: str
    cron: str
    job: str


def meltano_schedules(meltano_yml: Path = MELTANO_YML) -> list[MeltanoSchedule]:
    """The project's job schedules, so their times are written once (in meltano.yml)."""
    project = yaml.safe_load(meltano_yml.read_text(encoding="utf-8")) or {}
    out = []
    for entry in project.get("schedules") or []:
        if not isinstance(entry, dict) or not entry.get("job") or not entry.get("interval"):
            msg = f"{meltano_yml}: schedule {entry!r} needs a job and a cron interval"
            raise ValueError(msg)
        out.append(MeltanoSchedule(str(entry["name"]), str(entry["interval"]), str(entry["job"])))
    return out


def organisation_env(tenant_id: str, store_dir: Path, dataset_prefix: str) -> dict[str, str]:
    """Settings (as Meltano variables) that confine one run to one organisation.

    The tap reads only `tenant_id`. The target writes its own dataset and store: a run
    closes each full-table stream with ACTIVATE_VERSION, which makes target-powerbi drop
    every row of the table its run did not write, other organisations' rows included, so
    organisations running apart must not share a dataset or a store.
    """
    return {
        "TAP_XERO_TENANT_IDS": json.dumps([tenant_id]),
        "TARGET_POWERBI_DATASET_NAME": f"{dataset_prefix} {tenant_id}",
        "TARGET_POWERBI_STORE_PATH": str(store_dir / f"{tenant_id}.sqlite3"),
        "TARGET_POWERBI_AUDIT_LOG_PATH": str(store_dir / f"{tenant_id}.audit.jsonl"),
    }


def granted_organisations(connections: Sequence[Mapping[str, Any]]) -> list[str]:
    """Tenant ids of the organisations in `tap-xero auth tenants --format json` output."""
    return sorted(
        str(c["tenantId"])
        for c in connections
        if c.get("tenantType", "ORGANISATION") == "ORGANISATION" and c.get("tenantId")
    )


@dataclass(frozen=True)
class RunResult:
    """A successful `meltano run`: how long it took and where its log is."""

    seconds: float
    log: Path


@dataclass(frozen=True)
class Meltano:
    """The Meltano project the deployment runs: its directory and executable."""

    project_dir: Path
    executable: str = "meltano"
    timeout_seconds: float = 6 * 3600
    list_timeout_seconds: float = 55

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}

    def organisations(self) -> list[str]:
        """The tap's `tenant_ids` setting when set, else every organisation the stored token
        grants (`tap-xero auth tenants`)."""
        deadline = time.monotonic() + self.list_timeout_seconds
        # --format json of the active environment; sensitive values come out redacted.
        config = self._json(["config", "print", "tap-xero", "--format", "json"], deadline)
        configured = config.get("tenant_ids") if isinstance(config, dict) else None
        if configured:
            return sorted(str(tenant) for tenant in configured)
        tenants = ["invoke", "tap-xero", "auth", "tenants", "--format", "json"]
        connections = self._json(tenants, deadline)
        if not isinstance(connections, list):
            msg = "`meltano invoke tap-xero auth tenants` printed no list of organisations"
            raise MeltanoRunError(msg, retryable=False)
        return granted_organisations(connections)

    def _json(self, args: list[str], deadline: float) -> Any:
        """What `meltano ARGS` prints as JSON, within the time left before `deadline`."""
        what = f"`meltano {' '.join(args)}`"
        try:
            done = subprocess.run(
                [self.executable, *args],
                cwd=self.project_dir,
                env=self._env({}),
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
        except subprocess.TimeoutExpired:
            msg = f"{what} and the calls before it took over {self.list_timeout_seconds:.0f} s"
            raise MeltanoRunError(msg, retryable=True) from None
        if done.returncode != 0:
            raise MeltanoRunError(
                f"{what} failed: {_last_error(done.stderr)}", retryable=_retryable(done.stderr)
            )
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise MeltanoRunError(f"{what} printed no JSON", retryable=False) from None

    def run(
        self, job: str, state_id_suffix: str, env: Mapping[str, str], log_dir: Path
    ) -> RunResult:
        """`meltano run --state-id-suffix SUFFIX JOB`, its output in a file under `log_dir`.

        The output goes to a file, not to memory: a first full load logs for hours.
        """
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [self.executable, "run", "--state-id-suffix", state_id_suffix, job]
        started = time.monotonic()
        with tempfile.NamedTemporaryFile(
            "w+", dir=log_dir, prefix=f"{state_id_suffix}-", suffix=".log", delete=False
        ) as log:
            process = subprocess.Popen(
                command,
                cwd=self.project_dir,
                env=self._env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the tap and target go with it
            )
            try:
                code = process.wait(timeout=self.timeout_seconds)
            except subprocess.TimeoutExpired:
                msg = f"`meltano run` of {state_id_suffix} ran over {self.timeout_seconds:.0f} s"
                raise MeltanoRunError(msg, retryable=True) from None
            finally:
                _stop(process)  # after a timeout or Dagster's termination of the run
            log.seek(0)
            text = log.read()
        if code != 0:
            raise MeltanoRunError(
                f"`meltano run` of {state_id_suffix} failed (exit {code}): "
                f"{_last_error(text)} (log: {log.name})",
                retryable=_retryable(text),
            )
        return RunResult(time.monotonic() - started, Path(log.name))


def _stop(process: subprocess.Popen[Any]) -> None:
    """End a run still going, and the plugins it started: a stopped run leaves no process.

    Meltano gets SIGTERM and a grace period to stop its plugins; then its whole group
    gets SIGKILL. The next run converges (the target reloads what was in flight).
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _retryable(log: str) -> bool:
    return not any(marker in log for marker in NOT_RETRYABLE)


def _last_error(log: str) -> str:
    """The line that says what went wrong: a plugin's one-line error, else Meltano's last."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for marker in (": error: ", "error"):
        for line in reversed(lines):
            if marker in line.lower():
                return line[-500:]
    return lines[-1][-500:] if lines else "no output"

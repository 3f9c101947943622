"""`make demo`: Xero to Power BI through `meltano run`, on the two local sandboxes.

Starts `sandbox up`, points the `sandbox` Meltano environment at it, runs the job
`xero-to-powerbi` from scratch, prints what landed, moves the Xero sandbox through a
day of business, runs the job again (incrementally) and prints what changed, then
stops the sandboxes - also on Ctrl-C or failure. It ends with the address of the report
target-powerbi deployed, in the Power BI sandbox's viewer (plain HTTP on loopback). With
`--fabric` the target loads the Fabric sandbox instead (`destination: fabric`: an open
mirrored database in OneLake, only the changed rows landed). Exit status 0 only if all
went well.

The sandboxes pick free ports and make their credentials at start, so their settings
reach the plugins the standard Meltano way: as TAP_XERO_* and TARGET_POWERBI_*
environment variables made from the ready line (`sandbox_env`), which win over
`meltano.yml`. Everything the `sandbox` environment writes (token store, target store,
audit log) lives under `.meltano/sandbox/`, emptied first so every demo starts fresh.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB = "xero-to-powerbi"
ENVIRONMENT = "sandbox"
TIME_SCALE = 60.0  # the `sandbox` environment's rate_limit_window_seconds and time_scale
# The Xero app the demo plays (`sandbox up --tier/--scopes`). Issue 13: flip to "starter" and
# "granular" once tap-xero skips the streams a Starter connection may not read.
DEFAULT_TIER = "starter"  # the tier a typical user's app has (1,000 calls a day, no Journals)
DEFAULT_SCOPES = "granular"  # apps created since March 2026
WORKDIR = ROOT / ".meltano" / "sandbox"  # where the `sandbox` environment keeps its files
SCREENSHOTS = Path("output") / "report-screenshots"  # written by the report viewer test
ENV_FILE = WORKDIR / "sandbox.env"  # TAP_XERO_* / TARGET_POWERBI_* of the running sandboxes
# A day of business in each organisation: what the second run has to pick up.
DAY_OF_BUSINESS = (
    "add_invoice",
    "add_invoice",
    "add_invoice",
    "pay",
    "part_pay",
    "void",
    "edit",
    "add_credit_note",
    "add_contact",
    "archive_contact",
    "delete_item",
)


class DemoError(Exception):
    """The demo cannot go on; the message says why and where to look."""


def sandbox_env(
    ready: Mapping[str, Mapping[str, Any]], destination: str = "push"
) -> dict[str, str]:
    """Meltano's environment variables for both plugins, from `sandbox up`'s ready line.

    Each key of a sandbox's line is a setting of its plugin. The settings that follow
    the time scale (the tap's rate-limit window, the target's clock) are in the
    `sandbox` environment of meltano.yml, for TIME_SCALE. With ``destination`` fabric
    the target gets the Fabric sandbox's line instead of the Power BI sandbox's.
    """
    env: dict[str, str] = {}
    target: Mapping[str, Any] = ready["powerbi"]
    if destination == "fabric":
        target = {**ready["fabric"], "destination": "fabric"}
    for prefix, config in (("TAP_XERO", ready["xero"]), ("TARGET_POWERBI", target)):
        for key, value in config.items():
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            env[f"{prefix}_{key.upper()}"] = text
    return env


def write_env_file(env: Mapping[str, str]) -> None:
    """The sandboxes' settings as a shell/.env file (0600), for Meltano runs by hand."""
    ENV_FILE.touch(mode=0o600)
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    ENV_FILE.write_text("\n".join(lines) + "\n")


def egress_bytes(stats: Mapping[str, Any]) -> int:
    """Bytes of Accounting API answers the Xero sandbox sent, as on the wire (gzip counted)."""
    return sum(int(n) for tenant, n in stats.get("egress_bytes", {}).items() if tenant)


def not_read(log: Path) -> list[str]:
    """What tap-xero's run summary says the connection could not read (tier or scope), and why."""
    marker = "Run summary: not read: "
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return sorted({line.split(marker, 1)[1].strip() for line in lines if marker in line})


def api_calls(stats: Mapping[str, Any]) -> int:
    """Accounting API calls in the Xero sandbox's stats (not tokens or /connections)."""
    total = 0
    for tenant, endpoints in stats["calls"].items():
        if not tenant:
            continue
        for endpoint, methods in endpoints.items():
            if endpoint != "connections":
                total += sum(methods.values())
    return total


class SandboxProcess:
    """`sandbox up` as a child process: its ready line, its control APIs, and its end."""

    def __init__(
        self,
        *,
        seed: int,
        tenants: int,
        time_scale: float,
        tier: str = DEFAULT_TIER,
        scopes: str = DEFAULT_SCOPES,
        fabric: bool = False,
    ) -> None:
        self.time_scale = time_scale
        self.destination = "fabric" if fabric else "push"
        self.log = WORKDIR / "sandbox.log"
        self._log = self.log.open("w")  # uvicorn's warnings; a pipe unread could fill up
        self.process = subprocess.Popen(
            [
                str(BIN / "sandbox"),
                "up",
                f"--seed={seed}",
                f"--tenants={tenants}",
                f"--time-scale={time_scale:g}",
                f"--tier={tier}",
                f"--scopes={scopes}",
                *(["--fabric"] if fabric else []),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.ready: dict[str, dict[str, Any]] = {}
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE must not override verify below

    def wait_ready(self, timeout: float = 60) -> None:
        """Read the ready line, then wait until both sandboxes answer."""
        assert self.process.stdout is not None
        line = _read_line(self.process.stdout, timeout)
        if not line:
            raise DemoError(f"`sandbox up` did not start:\n{self.log.read_text()[-2000:]}")
        self.ready = json.loads(line)
        self.http.verify = self.ready["powerbi"]["ca_bundle"]
        deadline = time.monotonic() + timeout
        for url in (self.xero_url + "/_sandbox/clock", self.powerbi_url + "/_sandbox/clock"):
            while True:
                try:
                    self.http.get(url, timeout=5).raise_for_status()
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise DemoError(f"the sandbox at {url} does not answer") from None
                    time.sleep(0.2)

    @property
    def xero_url(self) -> str:
        return str(self.ready["xero"]["identity_url"])

    @property
    def powerbi_url(self) -> str:
        return str(self.ready["powerbi"]["authority_url"])

    def xero(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.xero_url}/_sandbox/{path}"
        response = self.http.request("POST" if body is not None else "GET", url, json=body)
        response.raise_for_status()
        return response.json()

    def powerbi(self, path: str) -> Any:
        response = self.http.get(f"{self.powerbi_url}/_sandbox/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    @property
    def target_url(self) -> str:
        """The sandbox the target writes to (Power BI, or Fabric with --fabric)."""
        if self.destination == "fabric":
            return str(self.ready["fabric"]["authority_url"])
        return self.powerbi_url

    def fabric(self, path: str) -> Any:
        url = f"{self.ready['fabric']['authority_url']}/_sandbox/{path}"
        response = self.http.get(url, timeout=60, verify=self.ready["fabric"]["ca_bundle"])
        response.raise_for_status()
        return response.json()

    def rows_sent(self) -> int:
        """Rows posted to Power BI, or landed in OneLake (upserts and deletes)."""
        if self.destination == "fabric":
            return int(self.fabric("stats")["rows_landed"])
        return int(self.powerbi("stats")["rows_posted"])

    def table_rows(self) -> dict[str, int]:
        """Row count of every table of every dataset, as the viewer shows them."""
        if self.destination == "fabric":
            return {t["table"]: int(t["rowCount"]) for t in self.fabric("tables")["tables"]}
        counts: dict[str, int] = {}
        for dataset in self.powerbi("datasets")["datasets"]:
            for table in dataset["tables"]:
                counts[table["name"]] = int(table["rowCount"])
        return counts

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from a pipe, or "" after `timeout` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def run_job(
    sandboxes: SandboxProcess, env: dict[str, str], label: str, *extra: str
) -> tuple[float, Path]:
    """`meltano run [extra] xero-to-powerbi`, with a progress line until it ends."""
    log = WORKDIR / f"{label.replace(' ', '-')}.log"
    calls_before = api_calls(sandboxes.xero("stats"))
    rows_before = sandboxes.rows_sent()
    started = time.monotonic()
    with log.open("w") as err:
        process = subprocess.Popen(
            [str(BIN / "meltano"), "run", *extra, JOB],
            cwd=ROOT,
            env=env,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
        shown = (-1, -1)
        try:
            while process.poll() is None:
                time.sleep(1)
                calls = api_calls(sandboxes.xero("stats")) - calls_before
                rows = sandboxes.rows_sent() - rows_before
                elapsed = time.monotonic() - started
                if sys.stdout.isatty() or (calls, rows) != shown:
                    _status(
                        f"  {label}: {elapsed:5.1f} s, {calls} Xero API calls, {rows} rows sent"
                    )
                    shown = (calls, rows)
        except BaseException:
            process.terminate()
            process.wait()
            raise
    _status("")
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise DemoError(f"`meltano run {JOB}` failed (exit {process.returncode}); {log}:\n{tail}")
    return time.monotonic() - started, log


def _status(text: str) -> None:
    """A progress line rewritten in place on a terminal, printed plainly elsewhere."""
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K" + text)
        sys.stdout.flush()
    elif text:
        print(text, flush=True)


def print_tables(counts: dict[str, int], before: dict[str, int] | None = None) -> None:
    width = max(len(name) for name in counts)
    for name in sorted(counts):
        line = f"    {name:<{width}}  {counts[name]:>7,}"
        if before is not None:
            delta = counts[name] - before.get(name, 0)
            line += f"  ({delta:+,})" if delta else ""
        print(line)


def reloads(audit_log: Path, since_line: int) -> list[str]:
    """Tables the target emptied and reloaded (a changed row) after a given audit line."""
    if not audit_log.exists():
        return []
    names: set[str] = set()
    for line in audit_log.read_text().splitlines()[since_line:]:
        entry = json.loads(line)
        if entry.get("operation") == "delete_rows" and entry.get("table"):
            names.add(str(entry["table"]))
    return sorted(names)


def business_day(sandboxes: SandboxProcess) -> list[str]:
    """A day passes in every organisation: the clock moves on, documents change."""
    sandboxes.xero("clock", {"advance_seconds": 86_400})
    done: list[str] = []
    for tenant in sandboxes.ready["xero"]["tenant_ids"]:
        for action in DAY_OF_BUSINESS:
            sandboxes.xero("clock", {"advance_seconds": 300})  # a change every five minutes
            result = sandboxes.xero("mutate", {"tenant_id": tenant, "action": action})
            done.extend(f"{r['action']} {r['collection']}" for r in result["results"])
    return done


def deployed_report(sandboxes: SandboxProcess) -> dict[str, Any] | None:
    """The report target-powerbi deployed beside the dataset (`report_file`), if any."""
    reports = sandboxes.powerbi("reports")["reports"]
    return dict(reports[0]) if reports else None


def finish(args: argparse.Namespace, sandboxes: SandboxProcess) -> None:
    """Where to look now: the Fabric tables, or the report target-powerbi deployed."""
    print("Logs, the target's store and its audit log are in .meltano/sandbox/.")
    if args.fabric:
        ending = f"The tables in the Fabric sandbox's viewer: {sandboxes.target_url}/"
        first_page = None
    else:
        viewer = str(sandboxes.ready["powerbi"]["viewer_url"])
        report = deployed_report(sandboxes)
        print(f"The raw tables in the Power BI sandbox's viewer: {viewer}tables")
        print(f"Screenshots of every report page (tests/e2e/test_report_viewer.py): {SCREENSHOTS}/")
        if report is None:
            raise DemoError("target-powerbi deployed no report: see its warning in the run logs")
        address = f"{viewer}reports/{report['id']}"
        ending = f"The report in the viewer: {address}"
        page = report.get("landingPage") or "cash"
        first_page = f"A finance user opens first: {address}/pages/{page} (cash: money in and out)"
    if args.keep:
        env_file = ENV_FILE.relative_to(ROOT)
        print(f"To run Meltano on them from another shell: set -a; . {env_file}; set +a")
        print(f"  .venv/bin/meltano run {JOB}")
        print(ending)
        if first_page:
            print(first_page)
        with contextlib.suppress(KeyboardInterrupt, EOFError):
            input("The sandboxes stay up: press Enter (or Ctrl-C) to stop them. ")
    else:
        print("(the viewer lives while the sandboxes do: `make demo ARGS=--keep` keeps them)")
        print(ending)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="demo company seed")
    parser.add_argument("--tenants", type=int, default=2, help="organisations in the Xero sandbox")
    parser.add_argument(
        "--tier",
        default=DEFAULT_TIER,
        help="the Xero app's tier: starter, core, plus, advanced or enterprise",
    )
    parser.add_argument(
        "--scopes",
        default=DEFAULT_SCOPES,
        help="scopes granted: granular, broad or scope names (see `sandbox xero --help`)",
    )
    parser.add_argument(
        "--fabric",
        action="store_true",
        help="load into the Fabric sandbox (destination: fabric, open mirroring) instead of "
        "Power BI push datasets",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the sandboxes (and the viewer) up at the end until Enter or Ctrl-C",
    )
    args = parser.parse_args(argv)
    # SIGTERM as Ctrl-C: the sandboxes and a running pipeline are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    print(
        f"Starting the Xero ({args.tier} tier, {args.scopes} scopes) and Power BI sandboxes "
        f"(time x{TIME_SCALE:g}) ...",
        flush=True,
    )
    sandboxes = SandboxProcess(
        seed=args.seed,
        tenants=args.tenants,
        time_scale=TIME_SCALE,
        tier=args.tier,
        scopes=args.scopes,
        fabric=args.fabric,
    )
    try:
        sandboxes.wait_ready()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
        env.update(sandbox_env(sandboxes.ready, sandboxes.destination))
        env.update(MELTANO_ENVIRONMENT=ENVIRONMENT, MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
        write_env_file(sandbox_env(sandboxes.ready, sandboxes.destination))
        tenants = sandboxes.ready["xero"]["tenant_ids"]
        print(f"  Xero:     {sandboxes.xero_url} ({len(tenants)} organisations)")
        print(f"  Power BI: {sandboxes.powerbi_url}")
        if args.fabric:
            print(f"  Fabric:   {sandboxes.target_url} (destination: fabric)")

        print(f"\n1. meltano run --full-refresh {JOB} (environment '{ENVIRONMENT}')", flush=True)
        seconds, first_log = run_job(sandboxes, env, "first run", "--force", "--full-refresh")
        first_stats = sandboxes.xero("stats")
        first_calls = api_calls(first_stats)
        first_egress = egress_bytes(first_stats)
        counts = sandboxes.table_rows()
        print(
            f"  done in {seconds:.1f} s: {len(counts)} tables, {sum(counts.values()):,} rows, "
            f"{first_calls} Xero API calls, {first_egress / 1024:,.0f} KiB from Xero"
        )
        print_tables(counts)
        refused = not_read(first_log)
        if refused:
            print(f"  not readable as a '{args.tier}' app with '{args.scopes}' scopes:")
            for line in refused:
                print(f"    {line}")

        audit_log = WORKDIR / "powerbi-audit.jsonl"
        audit_lines = len(audit_log.read_text().splitlines()) if audit_log.exists() else 0
        print("\n2. A day of business in every organisation:", flush=True)
        done = business_day(sandboxes)
        kinds = sorted(set(done))
        print("  " + ", ".join(f"{done.count(k)} x {k}" for k in kinds))

        print(f"\n3. meltano run {JOB} (incremental: from the saved state)", flush=True)
        rows_before = sandboxes.rows_sent()
        seconds, _ = run_job(sandboxes, env, "second run", "--force")
        second_stats = sandboxes.xero("stats")
        calls = api_calls(second_stats) - first_calls
        egress = egress_bytes(second_stats) - first_egress
        pushed = sandboxes.rows_sent() - rows_before
        after = sandboxes.table_rows()
        print(
            f"  done in {seconds:.1f} s: {calls} Xero API calls "
            f"({calls / max(first_calls, 1):.0%} of the first run), {egress / 1024:,.0f} KiB "
            f"from Xero, {pushed:,} rows "
            + ("landed (upserts and deletes)" if args.fabric else "pushed")
        )
        changed = {name: n for name, n in after.items() if n != counts.get(name)}
        print("  tables whose row count changed:" if changed else "  no row count changed")
        if changed:
            print_tables(changed, counts)
        reloaded = reloads(audit_log, audit_lines)
        if reloaded:
            print("  reloaded for changed or removed rows: " + ", ".join(reloaded))

        finish(args, sandboxes)
        return 0
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        print("Stopping the sandboxes.", flush=True)
        sandboxes.stop()


if __name__ == "__main__":
    sys.exit(main())

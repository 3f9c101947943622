"""Bytes received from Xero, per record and per run, full and incremental (`make bench`).

One Xero sandbox (Advanced tier, broad scopes, so every tap may read every endpoint; limits
off, clock 60x) serves, in turn, each tap variant below: a full run; then two days, each
followed by an incremental run of every variant from its own STATE: a day of business
dated today (payments, new invoices and credit notes, edits, new contacts), then a day with
back-dated changes too (`action: random`: its voids reverse invoices of any month). The
clock moves a day after each day of changes. The sandbox's `/_sandbox/stats` counts the
bytes of response bodies as sent (`egress_bytes`, gzip when the client asked for it) and
the calls, per organisation; the differences around each run are its cost.

Variants:
- `now`: tap-xero as it is, default streams and settings (asks for gzip, as `requests` does);
- `now_identity`: the same, asking for no compression (what a Xero that never compresses
  would send; whether Xero compresses is not documented, see docs/sandbox-xero.md);
- `baseline`: tap-xero as of `BENCH_EGRESS_BASELINE_REF` (default 051ea11, before the report
  rule of issue 13: reports re-read the open months and 3 closed ones every run), asking for
  no compression, as the 2025 project and sandbox ran: the ratios are against this one;
- `singer_io`: singer-io's tap-xero (PyPI `tap-xero`, `BENCH_EGRESS_SINGER_IO_VERSION`), every
  stream selected, in a throwaway venv (`BENCH_EGRESS_SINGER_IO_PYTHON`, or one made under
  the temporary directory, with `six`, which 2.6.0 imports without declaring); its URLs are
  Xero's own, so a launcher points them here. It asks for no compression: it prepares its
  requests outside its session, so `requests`' default Accept-Encoding never reaches them.

`BENCH_EGRESS_SIZE` (default `small`) and `BENCH_EGRESS_CHANGES` (default 200) set the
company and the day. The default is the small company because the benchmark company
(100,000 invoices) takes hours here: its journals alone, which every variant reads 100 a
call on the Advanced tier, are thousands of calls a full run, four full runs on 2 cores.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import requests
from sandbox.xero import XeroSandbox

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZE = os.environ.get("BENCH_EGRESS_SIZE", "small")
CHANGES = int(os.environ.get("BENCH_EGRESS_CHANGES", "200"))
BASELINE_REF = os.environ.get(
    "BENCH_EGRESS_BASELINE_REF", "051ea1147f599a9b44d99a6504e924b0d9397270"
)
SINGER_IO_VERSION = os.environ.get("BENCH_EGRESS_SINGER_IO_VERSION", "2.6.0")
SCALE = 60.0
START_DATE = "2000-01-01T00:00:00Z"
NO_LIMITS = {"minute": 10**9, "day": 10**9, "concurrent": 1000, "app_minute": 10**9}
TOKEN_URL = "https://identity.xero.com/connect/token"

# tap-xero asking for no compression: `requests` puts gzip in every session's headers.
IDENTITY_LAUNCHER = (
    "import sys, requests.sessions, requests.utils\n"
    "_default = requests.utils.default_headers\n"
    "def _identity():\n"
    "    headers = _default()\n"
    "    headers['Accept-Encoding'] = 'identity'\n"
    "    return headers\n"
    "requests.sessions.default_headers = _identity\n"
    "from tap_xero.tap import TapXero\n"
    "sys.argv = ['tap-xero', *sys.argv[1:]]\n"
    "TapXero.cli()\n"
)
# singer-io's tap-xero with Xero's URLs pointed at the sandbox (argv: api url, identity url).
SINGER_IO_LAUNCHER = (
    "import sys, requests\n"
    "api, identity = sys.argv[1], sys.argv[2]\n"
    "sys.argv = ['tap-xero', *sys.argv[3:]]\n"
    "import tap_xero, tap_xero.client as client\n"
    "client.BASE_URL = api\n"
    "_post = requests.Session.post\n"
    "def _post_here(self, url, *args, **kwargs):\n"
    f"    url = identity + '/connect/token' if url == {TOKEN_URL!r} else url\n"
    "    return _post(self, url, *args, **kwargs)\n"
    "requests.Session.post = _post_here\n"
    "tap_xero.main()\n"
)


def counts(sbx: XeroSandbox, tenant: str) -> tuple[int, int]:
    """(egress bytes, API calls) of one organisation so far."""
    stats = requests.get(f"{sbx.url}/_sandbox/stats", timeout=30).json()
    calls = sum(sum(m.values()) for m in stats["calls"].get(tenant, {}).values())
    return int(stats["egress_bytes"].get(tenant, 0)), calls


def singer_messages(stdout: str) -> tuple[int, dict[str, Any] | None]:
    """(RECORD messages, the last STATE's value) of a Singer tap's output."""
    records, state = 0, None
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("type") == "RECORD":
            records += 1
        elif message.get("type") == "STATE":
            state = message["value"]
    return records, state


class Variant:
    """One tap: how to run it, and its STATE between the full and the incremental run."""

    def __init__(self, name: str, tmp: Path, args: list[str], config: dict[str, Any]) -> None:
        self.name, self.dir, self.args, self.config = name, tmp / name, args, config
        self.dir.mkdir()
        self.state: dict[str, Any] | None = None

    def run(self, sbx: XeroSandbox, tenant: str, run: str) -> dict[str, Any]:
        config_path = self.dir / "config.json"
        if not config_path.exists():  # singer-io writes its rotated refresh token back here
            config_path.write_text(json.dumps(self.config))
        args = [*self.args, "--config", str(config_path)]
        if (self.dir / "catalog.json").exists():
            args += ["--catalog", str(self.dir / "catalog.json")]
        if self.state is not None:
            (self.dir / "state.json").write_text(json.dumps(self.state))
            args += ["--state", str(self.dir / "state.json")]
        before = counts(sbx, tenant)
        done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=self.dir)
        (self.dir / f"{run}.err").write_text(done.stderr)
        assert done.returncode == 0, f"{self.name} {run}: {done.stderr[-3000:]}"
        after = counts(sbx, tenant)
        records, state = singer_messages(done.stdout)
        self.state = state if state is not None else self.state
        egress, calls = after[0] - before[0], after[1] - before[1]
        return {
            "records": records,
            "calls": calls,
            "egress_bytes": egress,
            "bytes_per_record": round(egress / max(records, 1), 1),
        }


def baseline_package(tmp: Path) -> Path | None:
    """tap-xero's package as of BASELINE_REF, unpacked (None when the ref is unknown)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", BASELINE_REF, "tap-xero/tap_xero"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp / "baseline-src", filter="data")
    return tmp / "baseline-src" / "tap-xero"


def singer_io_python(tmp: Path) -> tuple[str | None, str]:
    """A Python with singer-io's tap-xero, or None and why not."""
    given = os.environ.get("BENCH_EGRESS_SINGER_IO_PYTHON")
    if given:
        return given, f"tap-xero {SINGER_IO_VERSION} from {given}"
    venv = tmp / "singer-io-venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, check=False
    )
    python = venv / "bin" / "python"
    if made.returncode == 0:
        made = subprocess.run(
            # 2.6.0 imports `six` without declaring it.
            [str(python), "-m", "pip", "install", "-q", f"tap-xero=={SINGER_IO_VERSION}", "six"],
            capture_output=True,
            text=True,
            check=False,
        )
    if made.returncode != 0:
        return None, f"singer-io's tap-xero could not be installed: {made.stderr!s:.300}"
    return str(python), f"tap-xero {SINGER_IO_VERSION} (PyPI, singer-io)"


def singer_io_catalog(variant: Variant) -> None:
    """Discover singer-io's streams (one token refresh, one call) and select them all."""
    config_path = variant.dir / "config.json"
    config_path.write_text(json.dumps(variant.config))
    done = subprocess.run(
        [*variant.args, "--config", str(config_path), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        cwd=variant.dir,
    )
    catalog = json.loads(done.stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    (variant.dir / "catalog.json").write_text(json.dumps(catalog))


def test_bench_egress_per_record_and_per_run() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sbx = XeroSandbox(
            seed=1,
            size=SIZE,
            tenants=1,
            time_scale=SCALE,
            access_token_lifetime=1800.0 * SCALE,
            tier="advanced",
            scopes="broad",
        ).start()
        try:
            requests.post(f"{sbx.url}/_sandbox/faults", json={"limits": NO_LIMITS}, timeout=10)
            (tenant,) = sbx.config["tenant_ids"]
            results = measure(sbx, tenant, tmp)
        finally:
            sbx.stop()
    print("\nbench_egress " + json.dumps(results, indent=2))
    now, base = results["runs"]["now"], results["runs"].get("baseline")
    assert now["incremental_today"]["records"] > 0
    if base is not None:
        assert now["incremental_today"]["egress_bytes"] < base["incremental_today"]["egress_bytes"]


def variants(sbx: XeroSandbox, tmp: Path) -> tuple[list[Variant], dict[str, str]]:
    notes: dict[str, str] = {}
    ours = {
        **sbx.config,
        "start_date": START_DATE,
        "rate_limit_window_seconds": 60.0 / SCALE,
        "calls_per_minute": 10**9,
    }
    made = [
        Variant("now", tmp, [str(BIN / "tap-xero")], {**ours, "token_store_path": "tokens.json"}),
        Variant(
            "now_identity",
            tmp,
            [sys.executable, "-c", IDENTITY_LAUNCHER],
            {**ours, "token_store_path": "tokens.json"},
        ),
    ]
    package = baseline_package(tmp)
    if package is None:
        notes["baseline"] = f"not run: {BASELINE_REF} is not in this repository"
    else:
        base = Variant(
            "baseline",
            tmp,
            ["env", f"PYTHONPATH={package}", sys.executable, "-c", IDENTITY_LAUNCHER],
            {**ours, "token_store_path": "tokens.json"},
        )
        made.append(base)
        notes["baseline"] = f"tap-xero at {BASELINE_REF[:7]}, no compression"
    python, notes["singer_io"] = singer_io_python(tmp)
    if python is not None:
        # Its own refresh token, so the rotations of the others do not retire it.
        token = secrets.token_urlsafe(32)
        service = sbx.service
        service.identity.add_refresh_token(token, service.plan.grant(None, custom=False))
        singer = Variant(
            "singer_io",
            tmp,
            [python, "-c", SINGER_IO_LAUNCHER, sbx.config["api_url"], sbx.config["identity_url"]],
            {
                "client_id": sbx.config["client_id"],
                "client_secret": sbx.config["client_secret"],
                "refresh_token": token,
                "tenant_id": sbx.config["tenant_ids"][0],
                "start_date": START_DATE,
            },
        )
        singer_io_catalog(singer)
        made.append(singer)
    return made, notes


# A day of business dated today: payments, new invoices and credit notes, edits, contacts.
TODAY_ACTIONS = ("pay", "part_pay", "add_invoice", "add_credit_note", "edit", "add_contact")


def business_day(sbx: XeroSandbox, tenant: str, back_dated: bool) -> int:
    """A day of changes, then the clock a day on; the number of changes applied.

    Back-dated: the sandbox's random actions, whose voids reverse invoices of any month.
    """
    applied = 0
    if back_dated:
        answer = requests.post(
            f"{sbx.url}/_sandbox/mutate",
            json={"tenant_id": tenant, "action": "random", "count": CHANGES},
            timeout=120,
        )
        applied = len(answer.json()["results"])
    else:
        for n in range(CHANGES):
            answer = requests.post(
                f"{sbx.url}/_sandbox/mutate",
                json={"tenant_id": tenant, "action": TODAY_ACTIONS[n % len(TODAY_ACTIONS)]},
                timeout=30,
            )
            applied += answer.status_code == 200
    requests.post(f"{sbx.url}/_sandbox/clock", json={"advance_seconds": 86_400}, timeout=10)
    return applied


def measure(sbx: XeroSandbox, tenant: str, tmp: Path) -> dict[str, Any]:
    made, notes = variants(sbx, tmp)
    runs: dict[str, dict[str, Any]] = {v.name: {} for v in made}
    for variant in made:
        runs[variant.name]["full"] = variant.run(sbx, tenant, "full")
    applied = {}
    for day, back_dated in (("incremental_today", False), ("incremental_back_dated", True)):
        applied[day] = business_day(sbx, tenant, back_dated)
        for variant in made:
            runs[variant.name][day] = variant.run(sbx, tenant, day)
    ratios: dict[str, dict[str, float]] = {}
    for reference in ("baseline", "singer_io"):
        if reference not in runs:
            continue
        for name in ("now", "now_identity"):
            for run in ("full", *applied):
                ours, theirs = runs[name][run], runs[reference][run]
                ratios[f"{name}_vs_{reference}_{run}"] = {
                    "egress_bytes": round(ours["egress_bytes"] / max(theirs["egress_bytes"], 1), 3),
                    "calls": round(ours["calls"] / max(theirs["calls"], 1), 3),
                    "bytes_per_record": round(
                        ours["bytes_per_record"] / max(theirs["bytes_per_record"], 1), 3
                    ),
                }
    return {
        "company": SIZE,
        "changes_applied": applied,
        "notes": notes,
        "runs": runs,
        "ratios": ratios,
    }

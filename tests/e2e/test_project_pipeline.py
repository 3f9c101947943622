"""The Meltano project's pipeline blocks: job, schedules, environments, state backend."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT: dict[str, Any] = yaml.safe_load((ROOT / "meltano.yml").read_text())
WORKING_DAY_STARTS = 7  # o'clock: the nightly run must be done before


def hours(cron: str) -> set[int]:
    """The hours a `M H * * *` cron line fires (numbers, ranges, steps and lists)."""
    minute, hour, *rest = cron.split()
    assert minute.isdigit() and rest == ["*", "*", "*"], cron
    out: set[int] = set()
    for part in hour.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 23
        elif "-" in span:
            first, last = (int(x) for x in span.split("-"))
        else:
            first = last = int(span)
        out.update(range(first, last + 1, int(step or 1)))
    return out


def environment(name: str) -> dict[str, Any]:
    (found,) = [e for e in PROJECT["environments"] if e["name"] == name]
    return dict(found)


def plugin_config(env: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    plugins = env.get("config", {}).get("plugins", {}).get(kind, [])
    return next((dict(p.get("config") or {}) for p in plugins if p["name"] == name), {})


def test_the_job_runs_the_tap_into_the_target() -> None:
    (job,) = [j for j in PROJECT["jobs"] if j["name"] == "xero-to-powerbi"]
    assert job["tasks"] == ["tap-xero target-powerbi"]


def test_a_nightly_run_before_the_working_day_and_a_refresh_every_four_hours() -> None:
    schedules = {s["name"]: s for s in PROJECT["schedules"]}
    nightly_run, refresh_run = (
        schedules["xero-to-powerbi-nightly"],
        schedules["xero-to-powerbi-every-4-hours"],
    )
    assert nightly_run["job"] == refresh_run["job"] == "xero-to-powerbi"
    nightly, refresh = hours(nightly_run["interval"]), hours(refresh_run["interval"])
    (night,) = nightly
    assert night + 3 <= WORKING_DAY_STARTS  # three hours of margin for a big first run
    gaps = {b - a for a, b in pairwise(sorted(refresh))}
    assert len(refresh) >= 4 and gaps == {4}
    # never two runs of the same job (and state) at once: 4 hours after the nightly one
    assert min(refresh) - night >= 4 and not refresh & nightly


def test_sandbox_is_the_default_environment_and_keeps_its_files_together() -> None:
    assert PROJECT["default_environment"] == "sandbox"
    sandbox = environment("sandbox")
    paths = [
        plugin_config(sandbox, "extractors", "tap-xero")["token_store_path"],
        plugin_config(sandbox, "loaders", "target-powerbi")["store_path"],
        plugin_config(sandbox, "loaders", "target-powerbi")["audit_log_path"],
    ]
    assert all(p.startswith(".meltano/sandbox/") for p in paths)  # under .gitignore's .meltano/
    # the time scale the demo starts `sandbox up` with (the target paces on the real clock)
    assert plugin_config(sandbox, "extractors", "tap-xero")["rate_limit_window_seconds"] == 1
    assert "time_scale" not in plugin_config(sandbox, "loaders", "target-powerbi")


def test_no_secret_is_committed_in_any_environment() -> None:
    sensitive = {
        (kind, plugin["name"]): {s["name"] for s in plugin["settings"] if s.get("sensitive")}
        for kind, plugins in PROJECT["plugins"].items()
        for plugin in plugins
        if plugin.get("settings")
    }
    for env in PROJECT["environments"]:
        for kind, plugins in env.get("config", {}).get("plugins", {}).items():
            for plugin in plugins:
                secrets = sensitive.get((kind, plugin["name"]), set())
                assert not secrets & set(plugin.get("config") or {}), (env["name"], plugin)
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".env", ".secrets/", ".target-powerbi/", ".meltano/"} <= set(ignored)
    prod = environment("prod")
    assert plugin_config(prod, "extractors", "tap-xero")["token_store_path"].startswith(".secrets/")


def test_state_stays_in_the_default_backend_unless_switched() -> None:
    assert PROJECT["state_backend"]["uri"] == "systemdb"
    text = (ROOT / "meltano.yml").read_text()
    assert "MELTANO_STATE_BACKEND_URI=s3://" in text  # the documented switch

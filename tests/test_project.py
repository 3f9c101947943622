"""The Meltano project and the two plugins agree on settings and capabilities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.pipeline import meltano_system_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGINS = {"tap-xero": "extractors", "target-powerbi": "loaders"}


def about(executable: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(BIN / executable), "--about", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def declared(plugin: str) -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (entry,) = [p for p in project["plugins"][PLUGINS[plugin]] if p["name"] == plugin]
    return entry


@pytest.mark.parametrize("plugin", PLUGINS)
def test_meltano_declares_every_setting_the_plugin_accepts(plugin: str) -> None:
    schema = about(plugin)["settings"]["properties"]
    entry = declared(plugin)
    names = {s["name"] for s in entry["settings"]}
    builtin = {
        "stream_maps",
        "stream_map_config",
        "faker_config",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "flattening_separator",
        "batch_config",
        "add_record_metadata",
        "load_method",
        "validate_records",
        "batch_size_rows",
        "process_activate_version_messages",
        "hard_delete",
    }
    missing = set(schema) - builtin - names
    assert not missing, f"meltano.yml lacks settings of {plugin}: {sorted(missing)}"
    unknown = names - set(schema)
    assert not unknown, f"meltano.yml declares settings {plugin} does not know: {sorted(unknown)}"


@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_secret_is_sensitive_in_meltano(plugin: str) -> None:
    schema = about(plugin)["settings"]["properties"]
    secrets = {name for name, spec in schema.items() if spec.get("secret")}
    assert secrets, f"{plugin} declares no secret at all"
    sensitive = {s["name"] for s in declared(plugin)["settings"] if s.get("sensitive")}
    assert secrets == sensitive


@pytest.mark.parametrize("plugin", PLUGINS)
def test_declared_capabilities_are_real(plugin: str) -> None:
    real = set(about(plugin)["capabilities"])
    claimed = set(declared(plugin)["capabilities"])
    assert claimed <= real, f"{plugin} claims {sorted(claimed - real)}"


def test_meltano_invokes_the_tap(tmp_path: Path) -> None:
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env["MELTANO_SYS_DIR_ROOT"] = str(meltano_system_dir(tmp_path))
    result = subprocess.run(
        [str(BIN / "meltano"), "invoke", "tap-xero", "--about", "--format=json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["name"] == "tap-xero"


def test_packages_do_not_import_each_other() -> None:
    offenders = []
    for package, forbidden in {
        "tap-xero/tap_xero": ("target_powerbi", "sandbox"),
        "target-powerbi/target_powerbi": ("tap_xero", "sandbox"),
        "sandbox/sandbox": ("tap_xero", "target_powerbi"),
    }.items():
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")) and any(
                    stripped.split()[1].split(".")[0] == name for name in forbidden
                ):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert not offenders, offenders

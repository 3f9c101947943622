"""`sandbox fabric` and `sandbox up --fabric` print ready lines that are target configs."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import Fabric, parquet

READY_KEYS = {
    "authority_url",
    "tenant_id",
    "client_id",
    "client_secret",
    "workspace_id",
    "ca_bundle",
    "onelake_url",
    "fabric_api_url",
    "viewer_url",
}


def ready_line(*args: str) -> tuple[subprocess.Popen[str], dict]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def test_sandbox_fabric_prints_one_ready_line_and_serves():
    process, config = ready_line("fabric", "--port", "0", "--time-scale", "10")
    try:
        assert set(config) == READY_KEYS
        assert config["onelake_url"].endswith("/onelake")
        assert config["fabric_api_url"].endswith("/v1")
        fabric = Fabric(_Remote(config))  # type: ignore[arg-type]
        db = fabric.create_database()
        fabric.write_metadata(db, "T", {"keyColumns": ["id"]})
        fabric.publish(db, "T", 1, parquet([{"id": 1}]))
        assert fabric.tables()["dbo.T"]["rowCount"] == 1
        page = fabric.session.get(config["viewer_url"])
        assert page.status_code == 200
        assert "dbo.T: 1 rows" in page.text
        clock = fabric.control("GET", "/clock").json()
        assert clock["time_scale"] == 10.0
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_sandbox_up_starts_fabric_when_asked():
    process, ready = ready_line("up", "--fabric", "--port", "0")
    try:
        assert set(ready) == {"xero", "powerbi", "fabric"}
        assert set(ready["fabric"]) == READY_KEYS
        assert ready["fabric"]["authority_url"] != ready["powerbi"]["authority_url"]
    finally:
        process.terminate()
        process.wait(timeout=15)


class _Remote:
    """What `Fabric` needs of a sandbox, for one running in another process."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.url = config["authority_url"]

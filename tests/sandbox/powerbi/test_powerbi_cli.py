"""`sandbox powerbi` prints one JSON ready line that works as target-powerbi's config."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from sandbox.powerbi import cli

from .conftest import SCOPE, msal_app, session_for


def test_cli_prints_ready_line_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", "powerbi", "--port", "0", "--time-scale", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        config = json.loads(process.stdout.readline())
        assert set(config) == {
            "api_url",
            "authority_url",
            "tenant_id",
            "client_id",
            "client_secret",
            "workspace_id",
            "ca_bundle",
            "viewer_url",
        }
        session = session_for(config)
        assert session.get(config["viewer_url"]).status_code == 200
        clock = session.get(config["authority_url"] + "/_sandbox/clock").json()
        assert clock["time_scale"] == 10.0
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_start_reads_options_with_defaults_from_another_parser() -> None:
    servers, info = cli.start(argparse.Namespace(port=0))  # `sandbox up` passes xero's args
    try:
        assert info["api_url"].startswith("https://127.0.0.1:")
        assert len(servers) == 2  # the API on TLS, the viewer on plain HTTP (loopback)
        assert info["viewer_url"].startswith("http://127.0.0.1:")

        session = session_for(info)
        app = msal_app(info, info["client_id"], info["client_secret"], session)
        token = app.acquire_token_for_client(scopes=[SCOPE])["access_token"]
        response = session.get(
            f"{info['api_url']}/groups/{info['workspace_id']}/datasets",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
    finally:
        for server in servers:
            server.stop()

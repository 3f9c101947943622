"""Command-line entry of the powerbi sandbox: `sandbox powerbi [--port P] [--time-scale F]`."""

from __future__ import annotations

import argparse
from typing import Any

from sandbox.powerbi.sandbox import PowerBISandbox
from sandbox.server import BackgroundServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sandbox powerbi` (`sandbox up` passes the xero parser's args instead)."""
    parser.add_argument("--port", type=int, default=0, help="TLS port (0 picks a free one)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="sandbox seconds per real second (windows, Retry-After, token lifetimes)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=3600.0,
        help="access token lifetime in sandbox seconds (default 3600)",
    )


def start(args: argparse.Namespace) -> tuple[list[BackgroundServer], dict[str, Any]]:
    """Start the servers; return them and the ready line (a plugin config)."""
    sandbox = PowerBISandbox(
        time_scale=float(getattr(args, "time_scale", 1.0) or 1.0),
        port=int(getattr(args, "port", 0) or 0),
        token_lifetime_seconds=float(getattr(args, "token_lifetime", 3600.0) or 3600.0),
    ).start()
    assert sandbox.server is not None
    assert sandbox.viewer_server is not None
    return [sandbox.server, sandbox.viewer_server], sandbox.config

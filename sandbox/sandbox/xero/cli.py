"""Command-line entry of the xero sandbox: `sandbox xero`."""

from __future__ import annotations

import argparse
from typing import Any

from sandbox.server import BackgroundServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sandbox xero` (also used by `sandbox up`)."""


def start(args: argparse.Namespace) -> tuple[list[BackgroundServer], dict[str, Any]]:
    """Start the servers; return them and the ready line (a plugin config)."""
    msg = "the xero sandbox is not built yet"
    raise SystemExit(msg)

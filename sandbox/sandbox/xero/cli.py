"""Command-line entry of the xero sandbox: `sandbox xero`."""

from __future__ import annotations

import argparse
from typing import Any

from sandbox.server import BackgroundServer
from sandbox.xero import XeroSandbox
from sandbox.xero.access import TIERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sandbox xero` (also used by `sandbox up`)."""
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated demo company")
    parser.add_argument(
        "--size", choices=("small", "benchmark"), default="small", help="size of the demo company"
    )
    parser.add_argument("--tenants", type=int, default=2, help="number of organisations")
    parser.add_argument(
        "--tier",
        choices=TIERS,
        default="starter",
        help="the app's Xero tier: day limit (starter 1,000, others 5,000), Journals (advanced up)",
    )
    parser.add_argument(
        "--scopes",
        default="granular",
        help="scopes granted: 'granular' (app created since March 2026), 'broad' (older app), "
        "or scope names separated by spaces or commas (default: what tap-xero asks for)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="run the sandbox clock this many times faster (limits, Retry-After, token lifetimes)",
    )


def start(args: argparse.Namespace) -> tuple[list[BackgroundServer], dict[str, Any]]:
    """Start the servers; return them and the ready line (a plugin config)."""
    sandbox = XeroSandbox(
        seed=args.seed,
        size=args.size,
        tenants=args.tenants,
        time_scale=args.time_scale,
        port=args.port,
        tier=args.tier,
        scopes=args.scopes,
    ).start()
    return [sandbox.server], sandbox.config

"""`sandbox xero | powerbi | fabric | up`: start the local emulators, print their config lines."""

from __future__ import annotations

import argparse
import sys

from sandbox import server
from sandbox.fabric import cli as fabric_cli
from sandbox.powerbi import cli as powerbi_cli
from sandbox.xero import cli as xero_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandbox", description="Local emulators of the Xero API, Power BI and Fabric."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    xero_cli.add_arguments(
        sub.add_parser("xero", help="Xero Accounting API, identity service and webhooks")
    )
    powerbi_cli.add_arguments(
        sub.add_parser("powerbi", help="Power BI push datasets and the Entra ID token service")
    )
    fabric_cli.add_arguments(
        sub.add_parser("fabric", help="Fabric open mirroring: OneLake, Fabric REST, Entra ID")
    )
    up = sub.add_parser(
        "up",
        help="the sandboxes; prints {'xero': {...}, 'powerbi': {...}} (and 'fabric' with --fabric)",
    )
    xero_cli.add_arguments(up)
    up.add_argument(
        "--fabric", action="store_true", help="start the Fabric sandbox too (key 'fabric')"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        servers = _start(args)
    except ValueError as exc:  # a bad --tier/--scopes value: one line, exit 2
        parser.error(str(exc))
    server.serve_forever(servers)
    return 0


def _start(args: argparse.Namespace) -> list[server.BackgroundServer]:
    """Start the chosen sandboxes and print their ready line."""
    if args.command == "xero":
        servers, info = xero_cli.start(args)
        server.print_ready_line(info)
    elif args.command == "powerbi":
        servers, info = powerbi_cli.start(args)
        server.print_ready_line(info)
    elif args.command == "fabric":
        servers, info = fabric_cli.start(args)
        server.print_ready_line(info)
    else:
        xero_servers, xero_info = xero_cli.start(args)
        args.port = 0
        powerbi_servers, powerbi_info = powerbi_cli.start(args)
        servers = xero_servers + powerbi_servers
        ready = {"xero": xero_info, "powerbi": powerbi_info}
        if args.fabric:
            fabric_servers, ready["fabric"] = fabric_cli.start(args)
            servers += fabric_servers
        server.print_ready_line(ready)
    return servers


if __name__ == "__main__":
    sys.exit(main())

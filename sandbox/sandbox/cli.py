"""`sandbox xero | powerbi | up`: start the local emulators and print their config lines."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandbox", description="Local emulators of the Xero API and of Power BI."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("xero", help="Xero Accounting API, identity service and webhooks")
    sub.add_parser("powerbi", help="Power BI push datasets and the Entra ID token service")
    sub.add_parser("up", help="both sandboxes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.stderr.write(
        f"sandbox {args.command}: not built yet (issues 3 and 4 build the emulators)\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())

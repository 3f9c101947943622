"""The `tap-xero` console entry: `tap-xero auth ...`, otherwise the Singer SDK's tap CLI.

`meltano invoke tap-xero auth login` runs `tap-xero --config FILE auth login`, so the
SDK's leading file options are accepted before the subcommand too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tap_xero.auth import XeroAuthError, XeroTokenManager, describe_connections, login
from tap_xero.settings import SettingsError, load_config
from tap_xero.tap import TapXero

SUBCOMMANDS = ("auth", "webhooks")
_LEADING_FILE_OPTIONS = ("--config", "--catalog", "--properties", "--state")


def _split_leading_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(config files, rest) when a subcommand follows the SDK's file options; else ([], argv)."""
    configs: list[str] = []
    index = 0
    while index < len(argv) and argv[index] in _LEADING_FILE_OPTIONS:
        if index + 1 >= len(argv):
            return [], list(argv)
        if argv[index] == "--config":
            configs.append(argv[index + 1])
        index += 2
    return configs, list(argv[index:])


def _auth_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap-xero auth", description="Authorise tap-xero with Xero and inspect the grant."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        action="append",
        default=[],
        help="tap config JSON file (repeatable; settings also come from TAP_XERO_* variables)",
    )
    log_in = sub.add_parser(
        "login",
        parents=[common],
        help="authorise in a browser (code + PKCE), store the tokens, list organisations",
    )
    log_in.add_argument(
        "--scope-style", choices=["broad", "granular"], help="overrides scope_style"
    )
    log_in.add_argument(
        "--redirect-uri", help="overrides redirect_uri (http://localhost:PORT/path)"
    )
    log_in.add_argument(
        "--no-browser", action="store_true", help="print the URL instead of opening a browser"
    )
    log_in.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for consent")
    tenants = sub.add_parser(
        "tenants", parents=[common], help="list the organisations the stored token grants"
    )
    tenants.add_argument("--format", choices=["text", "json"], default="text")
    return parser


def auth_main(
    argv: Sequence[str],
    *,
    extra_configs: Sequence[str] = (),
    opener: Callable[[str], object] | None = None,
) -> int:
    """`tap-xero auth login|tenants`; returns the exit status. `opener` is for tests."""
    args = _auth_parser().parse_args(list(argv))
    logger = logging.getLogger("tap-xero.auth")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        config = load_config([*extra_configs, *args.config])
        if args.command == "login":
            return _login(args, config, logger, opener)
        manager = XeroTokenManager(config, logger)
        connections = manager.connections()
    except (XeroAuthError, SettingsError) as exc:
        sys.stderr.write(f"tap-xero auth {args.command}: error: {exc}\n")
        return 1
    if args.format == "json":
        sys.stdout.write(json.dumps(connections, indent=2) + "\n")
    else:
        sys.stdout.write(f"Organisations granted ({manager.mode}):\n")
        for line in describe_connections(connections):
            sys.stdout.write(f"  {line}\n")
    return 0


def _login(
    args: argparse.Namespace,
    config: dict[str, Any],
    logger: logging.Logger,
    opener: Callable[[str], object] | None,
) -> int:
    if args.scope_style:
        config["scope_style"] = args.scope_style
        config.pop("scopes", None)
    if args.redirect_uri:
        config["redirect_uri"] = args.redirect_uri

    def show(url: str) -> object:
        sys.stderr.write(f"Open this address in a browser to authorise tap-xero:\n  {url}\n")
        sys.stderr.flush()
        if opener is not None:
            return opener(url)
        if not args.no_browser:
            import webbrowser

            return webbrowser.open(url)
        return None

    result = login(config, logger, opener=show, timeout=args.timeout)
    out = sys.stdout
    out.write(f"Authorised. Tokens stored in {result.store_path} (mode 0600).\n")
    out.write(f"Scopes: {result.scope}\n")
    out.write("Organisations granted:\n")
    for line in describe_connections(result.connections):
        out.write(f"  {line}\n")
    granted = {str(c.get("tenantId")) for c in result.connections}
    missing = [t for t in config.get("tenant_ids") or [] if t not in granted]
    if missing:
        out.write(
            f"Warning: tenant_ids lists {', '.join(missing)}, not granted by this login: "
            "log in again and tick them, or remove them from tenant_ids.\n"
        )
    out.write(
        "tap-xero reads every one by default; set tenant_ids to narrow it. The stored "
        "refresh token takes precedence over refresh_token in the config from now on.\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `tap-xero`."""
    args = list(sys.argv[1:] if argv is None else argv)
    configs, rest = _split_leading_options(args)
    if rest and rest[0] == "auth":
        sys.exit(auth_main(rest[1:], extra_configs=configs))
    if rest and rest[0] == "webhooks":
        from tap_xero.webhooks.serve import webhooks_main

        sys.exit(webhooks_main(rest[1:], extra_configs=configs))
    if argv is None:
        TapXero.cli()
    else:
        TapXero.cli.main(args=args)


if __name__ == "__main__":
    main()

"""The `tap-xero` console entry: `tap-xero auth ...`, otherwise the Singer SDK's tap CLI.

`meltano invoke tap-xero auth login` runs `tap-xero --config FILE auth login`, so the
SDK's leading file options are accepted before the subcommand too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_xero.auth import XeroAuthError, XeroTokenManager, describe_connections, login
from tap_xero.check import check_organisation, report
from tap_xero.settings import SettingsError, load_config, with_defaults
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


def _leading_value(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of a leading SDK file option (e.g. Meltano's `--catalog FILE`), if given."""
    found = None
    index = 0
    while index + 1 < len(argv) and argv[index] in _LEADING_FILE_OPTIONS:
        if argv[index] in names:
            found = argv[index + 1]
        index += 2
    return found


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
    check = sub.add_parser(
        "check",
        parents=[common],
        help=(
            "per organisation: which selected streams the connection can read (and why not), "
            "the calls left today and the day limit; one call per endpoint"
        ),
    )
    check.add_argument("--catalog", help="Singer catalog whose selected streams to check")
    return parser


def auth_main(
    argv: Sequence[str],
    *,
    extra_configs: Sequence[str] = (),
    extra_catalog: str | None = None,
    opener: Callable[[str], object] | None = None,
) -> int:
    """`tap-xero auth login|tenants|check`; returns the exit status. `opener` is for tests."""
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
        if args.command == "check":
            return _check(config, args.catalog or extra_catalog)
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


def _check(config: dict[str, Any], catalog_path: str | None) -> int:
    """Print what each organisation lets the selected streams read; 1 when nothing at all."""
    catalog = None
    if catalog_path:
        try:
            catalog = json.loads(Path(catalog_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"cannot read the catalog {catalog_path}: {exc.__class__.__name__}"
            raise XeroAuthError(msg) from None
    tap = TapXero(config=config, catalog=catalog, validate_config=False)
    results = [check_organisation(tap, tenant) for tenant in tap.tenant_ids]
    for line in report(results):
        sys.stdout.write(line + "\n")
    if not any(org.readable for org in results):
        sys.stderr.write(
            "tap-xero auth check: nothing selected can be read: grant the scopes above "
            "(run `tap-xero auth login` again) or change the app's tier\n"
        )
        return 1
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
        catalog = _leading_value(args, ("--catalog", "--properties"))
        sys.exit(auth_main(rest[1:], extra_configs=configs, extra_catalog=catalog))
    if rest and rest[0] == "webhooks":
        from tap_xero.webhooks.serve import webhooks_main

        sys.exit(webhooks_main(rest[1:], extra_configs=configs))
    if not _debug():
        problem = _config_problem(args)
        if problem is not None:
            _fail(
                f"setting {problem}; fix it in the tap's config (meltano config tap-xero set ...)"
            )
    try:
        TapXero.cli.main(args=args, prog_name="tap-xero")
    except Exception as exc:
        if _debug():
            raise
        _fail(_one_line(exc))


def _debug() -> bool:
    """Tracebacks only at debug level (TAP_XERO_LOGLEVEL or LOGLEVEL)."""
    level = os.environ.get("TAP_XERO_LOGLEVEL") or os.environ.get("LOGLEVEL") or ""
    return level.upper() == "DEBUG"


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"tap-xero: error: {message}\n")
    sys.exit(1)


def _config_problem(argv: Sequence[str]) -> str | None:
    """The first bad setting of the config files on the command line (None: all fine)."""
    if "--about" in argv or "--help" in argv or "--version" in argv:
        return None
    paths = [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == "--config"]
    if not paths:
        return None
    try:
        config = load_config(paths) if "ENV" in paths else _files(paths)
    except SettingsError as exc:
        return str(exc)
    _, errors = with_defaults(config)
    return errors[0] if errors else None


def _files(paths: Sequence[str]) -> dict[str, Any]:
    """The config files merged (no environment: the SDK reads it only for `--config ENV`)."""
    config: dict[str, Any] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"cannot read the config file {path}: {exc.__class__.__name__}"
            raise SettingsError(msg) from None
        if isinstance(data, dict):
            config.update(data)
    return config


def _one_line(exc: BaseException) -> str:
    """What went wrong and what to do, on one line, for any error that ends a run."""
    if isinstance(exc, requests.RequestException):
        url = getattr(exc.request, "url", None) or "Xero"
        host = urllib.parse.urlsplit(str(url)).netloc or str(url)
        return (
            f"cannot reach {host} ({type(exc).__name__}) after every retry: check api_url "
            "and the network (proxy, DNS, firewall); the next run carries on from the state"
        )
    if isinstance(exc, RetriableAPIError):
        return f"Xero kept failing ({' '.join(str(exc).split())}); the next run carries on"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (XeroAuthError, SettingsError, FatalAPIError)):
        return text
    return f"{type(exc).__name__}: {text} (run with TAP_XERO_LOGLEVEL=DEBUG for the traceback)"


if __name__ == "__main__":
    main()

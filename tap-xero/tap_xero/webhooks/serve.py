"""`tap-xero webhooks serve`: run the receiver with uvicorn, settings from the tap's config.

The webhook key comes only from the config file or `TAP_XERO_WEBHOOK_KEY`, never from the
command line, where other users could read it. The receiver speaks plain HTTP on loopback
by default: in production put a TLS-terminating reverse proxy in front (docs/webhooks.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any

from tap_xero.settings import SettingsError, TapSettings, load_config, with_defaults

SETTINGS = (
    "webhook_key",
    "webhook_event_store_path",
    "webhook_host",
    "webhook_port",
    "webhook_trigger_command",
    "webhook_debounce_seconds",
    "webhook_max_body_bytes",
)

logger = logging.getLogger("tap_xero.webhooks")


class WebhookConfigError(ValueError):
    """A setting of the receiver is missing or wrong."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap-xero webhooks",
        description="Receive Xero webhooks, store their events, trigger a run.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the receiver (settings: webhook_* of the tap; options override them)",
    )
    serve.add_argument("--config", action="append", default=[], help="tap config JSON file")
    serve.add_argument("--host", help="address to listen on (webhook_host)")
    serve.add_argument("--port", type=int, help="port; 0 picks a free one (webhook_port)")
    serve.add_argument("--event-store", help="SQLite file (webhook_event_store_path)")
    serve.add_argument("--trigger-command", help="command to run after events (quoted)")
    serve.add_argument("--debounce-seconds", type=float, help="quiet time before a run")
    serve.add_argument("--max-body-bytes", type=int, help="largest delivery accepted")
    return parser


def resolve_settings(config: dict[str, Any], args: argparse.Namespace) -> TapSettings:
    """The tap's settings, then command-line options; checked against the settings schema."""
    overrides = {
        "webhook_host": args.host,
        "webhook_port": args.port,
        "webhook_event_store_path": args.event_store,
        "webhook_trigger_command": args.trigger_command,
        "webhook_debounce_seconds": args.debounce_seconds,
        "webhook_max_body_bytes": args.max_body_bytes,
    }
    merged = {**config, **{name: value for name, value in overrides.items() if value is not None}}
    if not merged.get("webhook_key"):
        msg = (
            "webhook_key is not set: copy the 'Webhooks key' of your Xero app into the tap's "
            "webhook_key setting (meltano config tap-xero set webhook_key) or TAP_XERO_WEBHOOK_KEY"
        )
        raise WebhookConfigError(msg)
    if not merged.get("webhook_event_store_path"):
        msg = (
            "webhook_event_store_path is not set: choose the SQLite file the receiver writes "
            "and the tap reads (the same setting for both), or pass --event-store"
        )
        raise WebhookConfigError(msg)
    filled, errors = with_defaults(merged)
    try:
        settings = TapSettings.from_config(filled)
    except SettingsError:
        msg = "webhook_port, webhook_max_body_bytes and webhook_debounce_seconds must be numbers"
        raise WebhookConfigError(msg) from None
    mine = [e for e in errors if e.startswith(SETTINGS)]
    if mine:  # a range of the settings schema (`minimum`/`maximum`)
        raise WebhookConfigError(mine[0])
    return settings


def _configure_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def webhooks_main(argv: Sequence[str], *, extra_configs: Sequence[str] = ()) -> int:
    """`tap-xero webhooks serve ...`; returns the exit status."""
    args = _parser().parse_args(list(argv))
    _configure_logging()
    try:
        import uvicorn

        from tap_xero.webhooks.app import create_app
    except ImportError:
        sys.stderr.write(
            "tap-xero webhooks: the receiver needs the 'webhooks' extra: "
            "pip install 'tap-xero[webhooks]'\n"
        )
        return 2
    from tap_xero.webhooks.store import EventStore
    from tap_xero.webhooks.trigger import DebouncedTrigger

    try:
        settings = resolve_settings(load_config([*extra_configs, *args.config]), args)
        store = EventStore(str(settings.webhook_event_store_path))
    except Exception as exc:
        sys.stderr.write(f"tap-xero webhooks serve: error: {exc}\n")
        return 1
    host = settings.webhook_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.webhook_port))
        sock.listen(2048)  # connections queue from now on, before the ready line
    except OSError as exc:
        sys.stderr.write(f"tap-xero webhooks serve: error: cannot listen: {exc.strerror}\n")
        sock.close()
        store.close()
        return 1
    trigger = None
    if settings.webhook_trigger_command:
        try:
            trigger = DebouncedTrigger(
                settings.webhook_trigger_command,
                debounce_seconds=settings.webhook_debounce_seconds,
            )
        except ValueError as exc:  # an empty or badly quoted command
            sys.stderr.write(f"tap-xero webhooks serve: error: webhook_trigger_command: {exc}\n")
            sock.close()
            store.close()
            return 1
    app = create_app(
        store,
        str(settings.webhook_key),
        max_body_bytes=settings.webhook_max_body_bytes,
        trigger=trigger,
    )
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}" if family == socket.AF_INET else f"http://[{host}]:{port}"
    sys.stdout.write(json.dumps({"url": url, "event_store": str(store.path)}) + "\n")
    sys.stdout.flush()
    logger.info("receiving Xero webhooks on %s, storing events in %s", url, store.path)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if trigger is not None:
            trigger.close()
        store.close()
    return 0

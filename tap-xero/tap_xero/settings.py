"""The tap's settings: their JSON Schema (the one place defaults are written) and a typed view.

The SDK fills the schema's defaults into the config before anything reads it (its config
validator sets them), so `TapSettings.from_config` reads every value as given and never
repeats a default. `load_settings` does the same for the `auth` and `webhooks` commands,
which run outside the SDK's CLI: the SDK's own environment parsing, then config files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR, extend_validator_with_defaults

ENV_PREFIX = "TAP_XERO_"
XERO_API_URL = "https://api.xero.com/api.xro/2.0"
XERO_IDENTITY_URL = "https://identity.xero.com"
XERO_CONNECTIONS_URL = "https://api.xero.com/connections"

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "client_id",
        th.StringType,
        required=True,
        title="Client ID",
        description="Client id of the Xero app (OAuth 2.0 app or custom connection).",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        required=True,
        secret=True,
        title="Client secret",
        description="Client secret of the Xero app.",
    ),
    th.Property(
        "refresh_token",
        th.StringType,
        secret=True,
        title="Refresh token",
        description=(
            "Seed refresh token of an OAuth 2.0 app (from `tap-xero auth login`). "
            "Leave empty for a custom connection (client credentials)."
        ),
    ),
    th.Property(
        "token_store_path",
        th.StringType,
        default=".secrets/xero-tokens.json",
        title="Token store path",
        description=(
            "File where the rotated refresh token is persisted (atomically, mode 0600) "
            "before it is used. Keep it on durable storage."
        ),
    ),
    th.Property(
        "token_store_url",
        th.StringType,
        secret=True,
        title="Token store URL",
        description=(
            "Where the rotated refresh token is kept: a file path (as token_store_path, "
            "for runs on one machine) or a postgresql:// URL (runs of one connection on "
            "several machines; rotation under a row lock). Empty: token_store_path."
        ),
    ),
    th.Property(
        "tenant_ids",
        th.ArrayType(th.StringType),
        title="Tenant IDs",
        description="Organisations to read. Default: every organisation the token grants.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Earliest UpdatedDateUTC to read on the first run.",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=1000),
        default=1000,
        title="Page size",
        description="Records per page where Xero pages (1-1000). 1000 uses the fewest calls.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=XERO_API_URL,
        title="API URL",
        description="Base URL of the Accounting API (the sandbox's for local runs).",
    ),
    th.Property(
        "identity_url",
        th.StringType,
        default=XERO_IDENTITY_URL,
        title="Identity URL",
        description="Base URL of Xero's identity service (token endpoint).",
    ),
    th.Property(
        "connections_url",
        th.StringType,
        default=XERO_CONNECTIONS_URL,
        title="Connections URL",
        description="URL listing the organisations a token grants.",
    ),
    th.Property(
        "scope_style",
        th.StringType,
        default="granular",
        allowed_values=["granular", "broad"],
        title="Scope style",
        description=(
            "Read-only scopes `tap-xero auth login` asks for: 'granular' (required for "
            "apps created after March 2026) or 'broad' (older apps, until September 2027)."
        ),
    ),
    th.Property(
        "scopes",
        th.ArrayType(th.StringType),
        title="Scopes",
        description="Read-only scopes for `tap-xero auth login`; overrides scope_style.",
    ),
    th.Property(
        "redirect_uri",
        th.StringType,
        default="http://localhost:8765/callback",
        title="Redirect URI",
        description=(
            "Localhost redirect URI registered on the Xero app, where `tap-xero auth login` "
            "listens for the authorization code."
        ),
    ),
    th.Property(
        "daily_call_reserve",
        th.IntegerType(minimum=0),
        default=100,
        title="Daily call reserve",
        description=(
            "Calls a day per organisation left for other apps: the run stops an organisation "
            "cleanly (bookmarks saved, the next run carries on) once Xero's "
            "X-DayLimit-Remaining falls to this (Starter tier: 1,000 calls a day, others 5,000)."
        ),
    ),
    th.Property(
        "daily_call_budget",
        th.IntegerType(minimum=0),
        title="Daily call budget",
        description=(
            "At most this many calls per organisation in one run (optional cap; the day "
            "itself is bounded by daily_call_reserve). The run stops cleanly when it is spent."
        ),
    ),
    th.Property(
        "calls_per_minute",
        th.IntegerType(minimum=1),
        default=60,
        title="Calls per minute",
        description="Calls per organisation per minute window (Xero: 60).",
    ),
    th.Property(
        "max_in_flight",
        th.IntegerType(minimum=1),
        default=5,
        title="Max calls in flight",
        description="Concurrent calls per organisation (Xero: 5).",
    ),
    th.Property(
        "max_parallel_organisations",
        th.IntegerType(minimum=1),
        default=4,
        title="Max parallel organisations",
        description=(
            "Organisations read at once, each within its own limits and all within the "
            "app's 10,000 calls a minute (1: one after another)."
        ),
    ),
    th.Property(
        "rate_limit_window_seconds",
        th.NumberType(exclusive_minimum=0),
        default=60,
        title="Rate limit window (seconds)",
        description=(
            "Real seconds in Xero's minute window. Lower it only for a time-scaled sandbox "
            "(60 / time scale)."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=5,
        title="Max retries",
        description="Retries of a call after a 5xx, timeout, dropped connection or 429.",
    ),
    th.Property(
        "retry_backoff_seconds",
        th.NumberType(minimum=0),
        default=1.0,
        title="Retry backoff (seconds)",
        description="Base of the exponential backoff (full jitter, capped at 60 s).",
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(exclusive_minimum=0),
        default=60,
        title="Request timeout (seconds)",
        description="Seconds to wait for Xero's answer to one call before retrying it.",
    ),
    th.Property(
        "on_forbidden_stream",
        th.StringType,
        default="skip",
        allowed_values=["skip", "fail"],
        title="On forbidden stream",
        description=(
            "What to do when Xero refuses a stream to an organisation for the app's tier or "
            "a missing scope (HTTP 401 insufficient_scope or 403, e.g. journals below the "
            "Advanced tier): 'skip' it "
            "with one warning while the other streams go on, or 'fail' the run."
        ),
    ),
    th.Property(
        "emit_activate_version_messages",
        th.BooleanType,
        default=True,
        title="Emit ACTIVATE_VERSION messages",
        description=(
            "Close each full-table read with ACTIVATE_VERSION, so the target drops rows "
            "deleted in Xero (never sent when a spent budget left a table unread)."
        ),
    ),
    th.Property(
        "webhook_key",
        th.StringType,
        secret=True,
        title="Webhook key",
        description="Signing key of the Xero app's webhooks (to verify deliveries).",
    ),
    th.Property(
        "webhook_event_store_path",
        th.StringType,
        title="Webhook event store path",
        description=(
            "SQLite file where `tap-xero webhooks serve` stores Xero's webhook events. "
            "Leave empty to run without webhooks (polling only)."
        ),
    ),
    th.Property(
        "webhook_host",
        th.StringType,
        default="127.0.0.1",
        title="Webhook host",
        description="Address the webhook receiver listens on (behind a TLS proxy).",
    ),
    th.Property(
        "webhook_port",
        th.IntegerType(minimum=0, maximum=65535),
        default=8089,
        title="Webhook port",
        description="Port the webhook receiver listens on (0 picks a free one).",
    ),
    th.Property(
        "webhook_trigger_command",
        th.StringType,
        title="Webhook trigger command",
        description=(
            "Command the receiver runs after new events, debounced, one run at a time "
            "(e.g. `meltano run xero-to-powerbi`). Empty: store events only."
        ),
    ),
    th.Property(
        "webhook_debounce_seconds",
        th.NumberType(minimum=0),
        default=5,
        title="Webhook debounce (seconds)",
        description="Quiet time after the last event before the trigger command starts.",
    ),
    th.Property(
        "webhook_max_body_bytes",
        th.IntegerType(minimum=1024),
        default=1048576,
        title="Webhook max body (bytes)",
        description="Largest webhook delivery accepted; larger ones get 413, unstored.",
    ),
    th.Property(
        "report_history_months",
        th.IntegerType(minimum=1),
        default=24,
        title="Report history (months)",
        description=(
            "Months of report history the first run reads, this month included (never "
            "before start_date), and the most a later run checks for late entries. 24 months "
            "of the demo company's reports cost about 110 calls per organisation, well inside "
            "a Starter app's 1,000-call day."
        ),
    ),
    th.Property(
        "webhook_body_timeout_seconds",
        th.NumberType(exclusive_minimum=0),
        default=5,
        title="Webhook body timeout (seconds)",
        description=(
            "Time a delivery's body may take to arrive; a slower one gets 408 and its "
            "connection is closed (Xero itself gives up after 5 s)."
        ),
    ),
    th.Property(
        "report_closed_periods_to_refresh",
        th.IntegerType(minimum=0),
        default=3,
        title="Report closed periods to refresh",
        description=(
            "Only when the report check (ProfitAndLoss and BalanceSheet) is refused: closed "
            "months read again each run besides the open ones. Otherwise a run re-reads from "
            "the first month whose figures changed, never a month locked for all users."
        ),
    ),
    th.Property(
        "aged_reports_enabled",
        th.BooleanType,
        default=False,
        title="Aged reports enabled",
        description=(
            "Read aged receivables and payables by contact when those streams are "
            "selected: one call per contact a run."
        ),
    ),
).to_dict()

_DefaultsValidator = extend_validator_with_defaults(DEFAULT_JSONSCHEMA_VALIDATOR)


def default(name: str) -> Any:
    """A setting's default, as the schema states it (for code handed a partial mapping)."""
    return CONFIG_SCHEMA["properties"][name]["default"]


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names it and the fix."""


def _strings(value: Any) -> tuple[str, ...]:
    """A list setting as a tuple, blanks dropped (an empty env variable means unset)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(item).strip() for item in items if str(item).strip())


@dataclass(frozen=True)
class TapSettings:
    """Every setting of the tap, typed; built once per run from the validated config."""

    client_id: str | None
    client_secret: str | None
    refresh_token: str | None
    token_store_path: str
    token_store_url: str | None
    tenant_ids: tuple[str, ...]
    start_date: str | None
    page_size: int
    api_url: str
    identity_url: str
    connections_url: str
    scope_style: str
    scopes: tuple[str, ...]
    redirect_uri: str
    daily_call_reserve: int
    daily_call_budget: int | None
    calls_per_minute: int
    max_in_flight: int
    max_parallel_organisations: int
    rate_limit_window_seconds: float
    max_retries: int
    retry_backoff_seconds: float
    request_timeout: float
    on_forbidden_stream: str
    emit_activate_version_messages: bool
    webhook_key: str | None
    webhook_event_store_path: str | None
    webhook_host: str
    webhook_port: int
    webhook_trigger_command: str | None
    webhook_debounce_seconds: float
    webhook_max_body_bytes: int
    report_history_months: int
    webhook_body_timeout_seconds: float
    report_closed_periods_to_refresh: int
    aged_reports_enabled: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TapSettings:
        """The typed view of a config whose schema defaults are filled in (by the SDK)."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = config.get(item.name)
            kind = str(item.type)
            if kind.startswith("tuple"):
                values[item.name] = _strings(raw)
            elif raw is None or raw == "":
                values[item.name] = None
            elif kind in ("int", "float", "int | None"):
                values[item.name] = _number(item.name, raw, float if kind == "float" else int)
            elif kind == "bool":
                values[item.name] = raw if isinstance(raw, bool) else str(raw).lower() == "true"
            else:
                values[item.name] = str(raw)
        problems = url_errors(config)
        if problems:
            raise SettingsError(problems[0])
        return cls(**values)

    @property
    def identity(self) -> Mapping[str, Any]:
        """The settings the OAuth code reads, as a mapping (it also serves `auth login`)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "token_store_path": self.token_store_path,
            "token_store_url": self.token_store_url,
            "identity_url": self.identity_url,
            "connections_url": self.connections_url,
            "scope_style": self.scope_style,
            "scopes": list(self.scopes),
            "redirect_uri": self.redirect_uri,
        }


def _number(name: str, raw: Any, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        msg = f"{name} must be a number, not {raw!r}"
        raise SettingsError(msg) from None


URL_SETTINGS = ("api_url", "identity_url", "connections_url")
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def url_errors(config: Mapping[str, Any]) -> list[str]:
    """Xero URLs that would carry tokens in the clear: http:// is for a local sandbox only."""
    errors = []
    for name in URL_SETTINGS:
        url = urlsplit(str(config.get(name) or ""))
        if url.scheme == "http" and url.hostname not in LOOPBACK:
            errors.append(f"{name}: {url.geturl()} is http:// on another host; use https://")
        elif url.scheme not in ("http", "https", ""):
            errors.append(f"{name}: {url.geturl()} is not an http(s) URL")
    return errors


def with_defaults(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config with the schema's defaults filled in, and its validation errors."""
    filled = dict(config)
    validator = _DefaultsValidator(CONFIG_SCHEMA)
    errors = [
        f"{'.'.join(str(p) for p in error.path) or 'config'}: {error.message}"
        for error in validator.iter_errors(filled)
    ]
    return filled, errors + url_errors(filled)


def load_config(paths: Sequence[str]) -> dict[str, Any]:
    """Settings for commands outside the SDK's CLI: `TAP_XERO_*` variables, then files.

    Environment variables are parsed by the SDK (as for `--config ENV`); a config file
    given on the command line wins over them, then the schema's defaults fill the rest.
    """
    config: dict[str, Any] = parse_environment_config(CONFIG_SCHEMA, ENV_PREFIX)
    for path in paths:
        if path == "ENV":
            continue
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"cannot read the config file {path}: {exc.__class__.__name__}"
            raise SettingsError(msg) from None
        if not isinstance(data, dict):
            msg = f"the config file {path} is not a JSON object"
            raise SettingsError(msg)
        config.update(data)
    filled, _errors = with_defaults(config)
    return filled

"""tap-xero: the Tap class and its settings."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from typing_extensions import override

from tap_xero.auth import XeroBearerAuth, XeroTokenManager
from tap_xero.client import XeroStream
from tap_xero.connections import granted_tenants
from tap_xero.limits import LimitSettings, RateLimiters
from tap_xero.streams import STREAM_TYPES
from tap_xero.streams.reports import REPORT_STREAM_TYPES
from tap_xero.webhooks.consume import WebhookConsumer

XERO_API_URL = "https://api.xero.com/api.xro/2.0"
XERO_IDENTITY_URL = "https://identity.xero.com"
XERO_CONNECTIONS_URL = "https://api.xero.com/connections"


class TapXero(Tap):
    """Streams every Xero Accounting entity for one or many organisations."""

    name = "tap-xero"

    config_jsonschema = th.PropertiesList(
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
            th.IntegerType,
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
            "daily_call_budget",
            th.IntegerType,
            default=4500,
            title="Daily call budget",
            description=(
                "Calls a day per organisation this tap may spend (Xero allows 5,000 across all "
                "apps). When it is spent the run stops cleanly, bookmarks saved, and the next "
                "run carries on."
            ),
        ),
        th.Property(
            "calls_per_minute",
            th.IntegerType,
            default=60,
            title="Calls per minute",
            description="Calls per organisation per minute window (Xero: 60).",
        ),
        th.Property(
            "max_in_flight",
            th.IntegerType,
            default=5,
            title="Max calls in flight",
            description="Concurrent calls per organisation (Xero: 5).",
        ),
        th.Property(
            "rate_limit_window_seconds",
            th.NumberType,
            default=60,
            title="Rate limit window (seconds)",
            description=(
                "Real seconds in Xero's minute window. Lower it only for a time-scaled sandbox "
                "(60 / time scale)."
            ),
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=5,
            title="Max retries",
            description="Retries of a call after a 5xx, timeout, dropped connection or 429.",
        ),
        th.Property(
            "retry_backoff_seconds",
            th.NumberType,
            default=1.0,
            title="Retry backoff (seconds)",
            description="Base of the exponential backoff (full jitter, capped at 60 s).",
        ),
        th.Property(
            "request_timeout",
            th.IntegerType,
            default=60,
            title="Request timeout (seconds)",
            description="Seconds to wait for Xero's answer to one call before retrying it.",
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
            th.IntegerType,
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
            th.NumberType,
            default=5,
            title="Webhook debounce (seconds)",
            description="Quiet time after the last event before the trigger command starts.",
        ),
        th.Property(
            "webhook_max_body_bytes",
            th.IntegerType,
            default=1048576,
            title="Webhook max body (bytes)",
            description="Largest webhook delivery accepted; larger ones get 413, unstored.",
        ),
        th.Property(
            "report_closed_periods_to_refresh",
            th.IntegerType,
            default=3,
            title="Report closed periods to refresh",
            description=(
                "Closed months the report streams read again on each run, besides the months "
                "still open at the last run (late entries change them)."
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

    @cached_property
    def token_manager(self) -> XeroTokenManager:
        """One token manager per run, shared by every stream (refreshes are rotations)."""
        return XeroTokenManager(self.config, self.logger)

    @cached_property
    def bearer_auth(self) -> XeroBearerAuth:
        return XeroBearerAuth(self.token_manager)

    @cached_property
    def limiters(self) -> RateLimiters:
        """One limiter per organisation, shared by every stream."""
        return RateLimiters(
            LimitSettings(
                calls_per_minute=int(self.config.get("calls_per_minute", 60)),
                window_seconds=float(self.config.get("rate_limit_window_seconds", 60)),
                max_in_flight=int(self.config.get("max_in_flight", 5)),
                daily_call_budget=int(self.config.get("daily_call_budget", 4500)),
            )
        )

    @cached_property
    def organisations(self) -> list[dict[str, Any]]:
        """The organisations to read: `tenant_ids`, checked against `/connections`."""
        return granted_tenants(self.token_manager, self.config.get("tenant_ids") or None)

    @property
    def tenant_ids(self) -> list[str]:
        return [str(org["tenantId"]) for org in self.organisations]

    @cached_property
    def webhook_consumer(self) -> WebhookConsumer | None:
        """The event store when `webhook_event_store_path` is set, pruned to the incoming state.

        Opened by the first consuming stream before it records any position (streams run
        one after another), so the positions it prunes to are the ones that came back
        through the target, never ones this run is still emitting.
        """
        path = self.config.get("webhook_event_store_path")
        if not path:
            return None
        consuming = [
            s.name
            for s in self.streams.values()
            if isinstance(s, XeroStream) and s.webhook_fetch and s.selected
        ]
        return WebhookConsumer.open(path, self.state, consuming, self.tenant_ids, self.logger)

    @override
    def discover_streams(self) -> list[Stream]:
        return [stream_type(self) for stream_type in [*STREAM_TYPES, *REPORT_STREAM_TYPES]]


if __name__ == "__main__":
    TapXero.cli()

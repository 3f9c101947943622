"""What every stream of a run shares, on the Tap class: settings, tokens, limiters, organisations.

The streams need these run-wide resources but not the list of streams, so they live on
this base class, which imports no stream: `client` (the streams' base) imports this
module, and only `tap` (which lists the streams) imports `streams`. No import circle.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from singer_sdk import Tap

from tap_xero.auth import XeroBearerAuth, XeroTokenManager
from tap_xero.connections import granted_tenants
from tap_xero.limits import LimitSettings, RateLimiters
from tap_xero.settings import CONFIG_SCHEMA, TapSettings
from tap_xero.webhooks.consume import WebhookConsumer


class XeroTapBase(Tap):
    """The run-wide resources of tap-xero; `TapXero` adds the streams."""

    name = "tap-xero"
    config_jsonschema = CONFIG_SCHEMA

    @cached_property
    def settings(self) -> TapSettings:
        """The settings, parsed once (the SDK has filled in the schema's defaults)."""
        return TapSettings.from_config(self.config)

    @cached_property
    def token_manager(self) -> XeroTokenManager:
        """One token manager per run, shared by every stream (refreshes are rotations)."""
        return XeroTokenManager(self.settings.identity, self.logger)

    @cached_property
    def bearer_auth(self) -> XeroBearerAuth:
        return XeroBearerAuth(self.token_manager)

    @cached_property
    def limiters(self) -> RateLimiters:
        """One limiter per organisation, shared by every stream."""
        return RateLimiters(LimitSettings.from_settings(self.settings))

    @cached_property
    def organisations(self) -> list[dict[str, Any]]:
        """The organisations to read: `tenant_ids`, checked against `/connections`."""
        return granted_tenants(self.token_manager, self.settings.tenant_ids or None)

    @cached_property
    def reference_tables(self) -> dict[tuple[str, str], Any]:
        """(organisation, table) -> what a stream derived from it, read once per run."""
        return {}

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
        path = self.settings.webhook_event_store_path
        if not path:
            return None
        consuming = [
            s.name
            for s in self.streams.values()
            if getattr(s, "webhook_fetch", None) and s.selected
        ]
        return WebhookConsumer.open(path, self.state, consuming, self.tenant_ids, self.logger)

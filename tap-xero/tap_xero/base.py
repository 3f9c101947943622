"""What every stream of a run shares, on the Tap class: settings, tokens, limiters, organisations.

The streams need these run-wide resources but not the list of streams, so they live on
this base class, which imports no stream: `client` (the streams' base) imports this
module, and only `tap` (which lists the streams) imports `streams`. No import circle.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from singer_sdk import Tap
from singer_sdk.exceptions import FatalAPIError

from tap_xero.access import Refusal
from tap_xero.auth import XeroBearerAuth, XeroTokenManager
from tap_xero.connections import granted_tenants, organisation_label
from tap_xero.limits import LimitSettings, RateLimiters
from tap_xero.settings import CONFIG_SCHEMA, TapSettings
from tap_xero.webhooks.consume import WebhookConsumer


class Turn:
    """Whose turn it is to run the stream code of a run: one organisation's thread at a time.

    Organisations are read side by side, but the SDK's stream objects, the run's state
    and stdout are shared and not thread-safe. So a thread holds the turn while it builds
    requests, processes records and writes messages, and lets go of it only while it
    waits on Xero (its limiter, the call, a retry's wait). Every Singer message is then
    written whole, and a STATE is written only between whole records of every
    organisation (each bookmark moves after its record is written). Hand-written: it is
    a lock plus "does this thread hold it", which `threading` has no public form of.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()

    def _holding(self) -> bool:
        return bool(getattr(self._local, "held", False))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Run stream code: wait for the turn, keep it until done."""
        with self._lock:
            self._local.held = True
            try:
                yield None
            finally:
                self._local.held = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Wait on Xero: let the others run meanwhile (a no-op for a thread without the turn)."""
        if not self._holding():
            yield None
            return
        self._local.held = False
        self._lock.release()
        try:
            yield None
        finally:
            self._lock.acquire()
            self._local.held = True


@dataclass(frozen=True)
class OrganisationFailure:
    """An organisation that failed in this run (its other streams were skipped)."""

    tenant: str
    label: str
    stream: str
    error: Exception

    def line(self) -> str:
        text = " ".join(str(self.error).split()) or type(self.error).__name__
        return f"organisation {self.label} failed in {self.stream}: {text}"


class OrganisationsFailedError(FatalAPIError):
    """Some organisations failed; the others were read and their bookmarks saved."""


class XeroTapBase(Tap):
    """The run-wide resources of tap-xero; `TapXero` adds the streams."""

    name = "tap-xero"
    config_jsonschema = CONFIG_SCHEMA
    _run_started = False  # start_run has written the SCHEMAs
    _streams_logged = 0  # streams whose costs sync_all has logged

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
    def refusals(self) -> list[Refusal]:
        """Streams the connection may not read, per organisation, met during this run."""
        return []

    @cached_property
    def turn(self) -> Turn:
        """The turn the organisations' threads take to run stream code (see `Turn`)."""
        return Turn()

    @cached_property
    def failures(self) -> dict[str, OrganisationFailure]:
        """Organisations that failed in this run, by tenant id (the first failure of each)."""
        return {}

    def organisation_failed(self, tenant: str, stream: str, error: Exception) -> None:
        """Record that `tenant` failed: its other streams are skipped, the others go on."""
        failure = OrganisationFailure(
            tenant, organisation_label(tenant, self.organisations), stream, error
        )
        self.failures.setdefault(tenant, failure)
        self.logger.error(
            "%s. Its other streams are skipped; the other organisations go on.", failure.line()
        )

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

    def start_run(self) -> None:
        """Once, as the first stream starts: every selected stream's SCHEMA before any record.

        A target learns every table first, even one that a spent budget or a refusal leaves
        without records. (`Tap.sync_all` is final; the first stream's `get_records` calls
        this before it reads anything.)
        """
        if self._run_started:
            return
        self._run_started = True
        for stream in self.streams.values():
            if stream.selected:
                # Private: the SDK writes a stream's SCHEMA only when the stream starts.
                stream._write_schema_message()

    def stream_costs_logged(self) -> None:
        """`Tap.sync_all` logs every stream's costs last: after the last one, the run summary."""
        self._streams_logged += 1
        if self._streams_logged == len(self.streams):
            self.log_summary()

    def log_summary(self) -> None:
        """Calls and bytes received per organisation, and the streams it could not read."""
        for tenant, limiter in self.limiters.items():
            if not tenant:
                continue
            left = limiter.day_left
            day = "day limit unknown" if left is None else f"{left} calls left today"
            if limiter.exhausted:
                day += " (stopped early: daily budget spent; the next run carries on)"
            self.logger.info(
                "Run summary for organisation %s: %d calls, %d bytes received (%.1f KiB); %s",
                organisation_label(tenant, self.organisations),
                limiter.calls,
                limiter.received_bytes,
                limiter.received_bytes / 1024,
                day,
            )
        for refusal in self.refusals:
            self.logger.warning("Run summary: not read: %s", refusal.line())
        for failure in self.failures.values():
            self.logger.error("Run summary: %s", failure.line())
        self.raise_failures()

    def raise_failures(self) -> None:
        """End the run non-zero, saying which organisations failed (the others were read).

        A run of one organisation fails with that organisation's own error, as it always did.
        """
        failures = list(self.failures.values())
        if not failures:
            return
        if len(self.organisations) == 1:
            raise failures[0].error
        read = len(self.organisations) - len(failures)
        msg = (
            f"{len(failures)} of {len(self.organisations)} organisations failed ({read} read, "
            "their bookmarks saved): " + "; ".join(f.line() for f in failures)
        )
        raise OrganisationsFailedError(msg)

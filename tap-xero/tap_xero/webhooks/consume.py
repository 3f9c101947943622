"""How the tap consumes the webhook event store: what to fetch, and what may be pruned.

The position a stream has covered for an organisation lives in the STATE of its webhook
partition (context `{"tenant_id": ..., "webhook": true}`, key `webhook_position`).
Meltano hands a STATE back only after the target emitted it, so the positions in the
*incoming* state are the confirmed ones: the store is pruned to the lowest of them across
the consuming streams, never further. Reading deletes nothing, so a crash anywhere before
the STATE comes back replays the same events on the next run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tap_xero.webhooks.store import CATEGORY_STREAMS, EventStore, PendingEvent

WEBHOOK_POSITION_KEY = "webhook_position"
STREAM_CATEGORIES = {stream: category for category, stream in CATEGORY_STREAMS.items()}

# Xero names records by GUID; anything else would only make Xero refuse the whole batch.
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class PendingFetch:
    """The records one stream must fetch for one organisation, and the position that covers."""

    resource_ids: list[str]
    position: int  # every event up to here naming this stream's records is in `resource_ids`


def position_of(partition_state: Mapping[str, Any] | None) -> int:
    """The webhook position a stream's partition state records (0: none yet)."""
    value = (partition_state or {}).get(WEBHOOK_POSITION_KEY)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


WEBHOOK_CONTEXT_KEY = "webhook"


def partition_state(state: Mapping[str, Any], stream: str, tenant_id: str) -> dict[str, Any]:
    """One organisation's webhook partition of a stream in a tap STATE ({} when absent).

    A STATE written before webhook partitions existed kept the position in the
    organisation's only partition: that one is read then.
    """
    stream_state = (state.get("bookmarks") or {}).get(stream) or {}
    mine = [
        partition
        for partition in stream_state.get("partitions") or []
        if (partition.get("context") or {}).get("tenant_id") == tenant_id
    ]
    for partition in mine:
        if (partition.get("context") or {}).get(WEBHOOK_CONTEXT_KEY):
            found: dict[str, Any] = partition
            return found
    legacy = [p for p in mine if WEBHOOK_POSITION_KEY in p]
    return dict(legacy[0]) if legacy else {}


def confirmed_position(
    state: Mapping[str, Any], streams: Iterable[str], tenant_ids: Iterable[str]
) -> int:
    """The lowest position every consuming stream confirmed for every organisation read."""
    tenants = list(tenant_ids)
    positions = [
        position_of(partition_state(state, stream, tenant))
        for stream in streams
        for tenant in tenants
    ]
    return min(positions) if positions else 0


def batched(ids: Sequence[str], size: int) -> list[list[str]]:
    """`ids` in consecutive batches of at most `size`."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), max(1, size))]


class WebhookConsumer:
    """The tap's read side of the event store for one run."""

    def __init__(self, store: EventStore, logger: logging.Logger) -> None:
        self.store = store
        self.logger = logger

    @classmethod
    def open(
        cls,
        path: str | Path,
        state: Mapping[str, Any],
        streams: Sequence[str],
        tenant_ids: Sequence[str],
        logger: logging.Logger,
    ) -> WebhookConsumer:
        """Open the store and prune what the incoming STATE confirms, before any stream runs."""
        consumer = cls(EventStore(path), logger)
        if streams:
            confirmed = confirmed_position(state, streams, tenant_ids)
            if confirmed > 0:
                pruned = consumer.store.prune(confirmed)
                logger.info(
                    "Webhook events up to position %d confirmed by the state: %d pruned",
                    confirmed,
                    pruned,
                )
        return consumer

    def pending_for(self, stream: str, tenant_id: str, after: int) -> PendingFetch:
        """Distinct ids of `stream`'s records named by events after `after`, for one tenant.

        The position returned is the highest one read, whatever its category or tenant:
        every event up to it that names this stream's records is covered, so events of
        categories the tap does not map never hold pruning back.
        """
        category = STREAM_CATEGORIES.get(stream)
        events = self.store.pending(after)
        if category is None or not events:
            return PendingFetch([], after)
        mine: list[PendingEvent] = [
            e for e in events if e.tenant_id == tenant_id and e.category == category
        ]
        ids: dict[str, None] = {}
        for event in mine:
            if _GUID.match(event.resource_id):
                ids[event.resource_id.lower()] = None
            else:
                self.logger.warning(
                    "Ignoring webhook event %d: resource id is not a Xero id", event.position
                )
        return PendingFetch(list(ids), max(e.position for e in events))

    def close(self) -> None:
        self.store.close()

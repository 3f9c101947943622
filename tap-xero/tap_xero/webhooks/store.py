"""The durable event store shared by the webhook receiver (writer) and the tap (reader).

Every stored event gets a position from a monotonically increasing counter that is
never reused, even after pruning. The tap emits the events after a position it keeps in
its STATE and records the highest position it emitted; an event counts as done only when
that STATE has come back through the target, and only then may the caller prune it. Reads
never delete anything, so a crash anywhere replays events rather than losing them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

# jsonschema ships no type stubs (types-jsonschema is not a dependency of the repo).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

SCHEMA_VERSION = 1
DELIVERY_LOG_DAYS = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    tenant_type TEXT,
    category TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource_url TEXT,
    event_type TEXT NOT NULL,
    event_date TEXT NOT NULL,
    first_sequence INTEGER,
    last_sequence INTEGER,
    received_at TEXT NOT NULL,
    UNIQUE (tenant_id, resource_id, event_date, event_type, category)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_sequence INTEGER,
    last_sequence INTEGER,
    events INTEGER NOT NULL,
    new_events INTEGER NOT NULL,
    received_at TEXT NOT NULL
);
"""


# Xero's webhook categories and the tap streams whose records they name.
CATEGORY_STREAMS = {"INVOICE": "invoices", "CONTACT": "contacts", "CREDITNOTE": "credit_notes"}


class InvalidPayloadError(ValueError):
    """A delivery that is not Xero's webhook shape; nothing of it is stored."""


@dataclass(frozen=True)
class PendingEvent:
    """One stored event: which record of which organisation changed, and how."""

    position: int
    tenant_id: str
    category: str
    resource_id: str
    event_type: str
    event_date: str
    resource_url: str | None = None
    tenant_type: str | None = None


def group_resource_ids(events: Sequence[PendingEvent]) -> dict[tuple[str, str], list[str]]:
    """(tenant id, category) -> distinct resource ids in position order: one fetch list each."""
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for event in events:
        groups.setdefault((event.tenant_id, event.category), {})[event.resource_id] = None
    return {key: list(ids) for key, ids in groups.items()}


@cache
def _payload_validator() -> Draft202012Validator:
    text = (resources.files("tap_xero.webhooks") / "payload.schema.json").read_text("utf-8")
    return Draft202012Validator(json.loads(text))


def validate_payload(payload: Any) -> list[dict[str, Any]]:
    """The events of a webhook payload, or InvalidPayloadError when its shape is wrong.

    Checked against `payload.schema.json` (Xero's WebhookEvent) with jsonschema.
    """
    error = best_match(_payload_validator().iter_errors(payload))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "payload"
        msg = f"{where}: {error.message}"
        raise InvalidPayloadError(msg)
    return [dict(event) for event in payload["events"]]


class EventStore:
    """SQLite (WAL, synchronous=FULL): a delivery is on disk when add_delivery returns."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                msg = (
                    f"the event store {self.path} has schema version {version}, newer than "
                    f"this tap-xero understands ({SCHEMA_VERSION}): upgrade tap-xero"
                )
                raise RuntimeError(msg)
            if version == SCHEMA_VERSION:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def add_delivery(self, payload: Mapping[str, Any]) -> int:
        """Store a delivery's events in one transaction; returns how many were new.

        A retried delivery (or an event already seen in another one) is ignored by its
        identity: tenant, resource, event date, type and category.
        """
        events = validate_payload(payload)
        first = payload.get("firstEventSequence")
        last = payload.get("lastEventSequence")
        now = datetime.now(timezone.utc).isoformat()
        rows = [
            (
                event["tenantId"],
                event.get("tenantType"),
                event["eventCategory"],
                event["resourceId"],
                event.get("resourceUrl"),
                event["eventType"],
                event["eventDateUtc"],
                first,
                last,
                now,
            )
            for event in events
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO events (tenant_id, tenant_type, category, resource_id,"
                    " resource_url, event_type, event_date, first_sequence, last_sequence,"
                    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                new = self._conn.total_changes - before
                self._conn.execute(
                    "INSERT INTO deliveries (first_sequence, last_sequence, events, new_events,"
                    " received_at) VALUES (?, ?, ?, ?, ?)",
                    (first, last, len(rows), new, now),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return new

    def pending(self, after_position: int = 0, *, limit: int | None = None) -> list[PendingEvent]:
        """Events after `after_position`, oldest first; reading deletes nothing."""
        sql = (
            "SELECT position, tenant_id, category, resource_id, event_type, event_date,"
            " resource_url, tenant_type FROM events WHERE position > ? ORDER BY position"
        )
        params: Sequence[Any] = (after_position,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (after_position, limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [PendingEvent(*row) for row in rows]

    def count(self) -> int:
        """Events currently stored."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def prune(self, up_to_position: int) -> int:
        """Delete the events at or below a position the caller confirms done; returns how many.

        Delivery records (kept for diagnosis only) older than DELIVERY_LOG_DAYS go too.
        """
        horizon = (datetime.now(timezone.utc) - timedelta(days=DELIVERY_LOG_DAYS)).isoformat()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "DELETE FROM events WHERE position <= ?", (up_to_position,)
                )
                self._conn.execute("DELETE FROM deliveries WHERE received_at < ?", (horizon,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

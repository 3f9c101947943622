"""Xero's webhooks: signed event batches with sequence numbers, retried with decreasing
frequency for up to 24 hours, and the intent-to-receive check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from sandbox.clock import SandboxClock
from sandbox.xero.company import Org

# Sandbox seconds between attempts after the n-th failure: decreasing frequency.
RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
GIVE_UP_AFTER = 24 * 3600.0
RESOURCE_PATHS = {"INVOICE": "Invoices", "CONTACT": "Contacts", "CREDITNOTE": "CreditNotes"}
INTENT_TIMEOUT = 5.0


def sign(body: bytes, key: str) -> str:
    """x-xero-signature: base64(HMAC-SHA256(raw body, webhook key))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Webhooks:
    clock: SandboxClock
    api_url: str = ""
    receiver_url: str | None = None
    key: str = ""
    sequence: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    first_failure: float | None = None
    next_attempt: float = 0.0
    disabled: bool = False
    delivered: int = 0

    def collect(self, orgs: list[Org]) -> None:
        """Move the organisations' new events into the queue, numbering them."""
        for org in orgs:
            for category, kind, resource_id in org.events:
                self.sequence += 1
                when = datetime.fromtimestamp(self.clock.timestamp(), tz=timezone.utc)
                event: dict[str, Any] = {
                    "resourceUrl": f"{self.api_url}/{RESOURCE_PATHS[category]}/{resource_id}",
                    "resourceId": resource_id,
                    "tenantId": org.tenant_id,
                    "tenantType": "ORGANISATION",
                    "eventCategory": category,
                    "eventType": kind,
                    "eventDateUtc": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                }
                note = org.data["CreditNotes"].get(resource_id)
                if category == "CREDITNOTE" and note is not None:
                    # credit note events carry a little of the record, as Xero's do
                    event["data"] = {"Type": note["Type"], "Status": note["Status"]}
                event["_sequence"] = self.sequence
                self.pending.append(event)
            org.events.clear()

    def payload(self, events: list[dict[str, Any]]) -> bytes:
        body = {
            "events": [{k: v for k, v in e.items() if k != "_sequence"} for e in events],
            "firstEventSequence": events[0]["_sequence"] if events else 0,
            "lastEventSequence": events[-1]["_sequence"] if events else 0,
            "entropy": "".join(secrets.choice(string.ascii_uppercase) for _ in range(20)),
        }
        return json.dumps(body).encode()

    def due(self) -> bool:
        return (
            bool(self.pending)
            and self.receiver_url is not None
            and not self.disabled
            and self.clock.timestamp() >= self.next_attempt
        )

    async def deliver(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        """One attempt at the pending batch; on failure the next attempt waits longer."""
        if not self.pending or self.receiver_url is None or self.disabled:
            return None
        batch = list(self.pending)
        body = self.payload(batch)
        started = self.clock.timestamp()
        status: int | None = None
        error = ""
        try:
            response = await client.post(
                self.receiver_url,
                content=body,
                headers={
                    "x-xero-signature": sign(body, self.key),
                    "Content-Type": "application/json",
                },
                timeout=INTENT_TIMEOUT,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        attempt = {
            "firstEventSequence": batch[0]["_sequence"],
            "lastEventSequence": batch[-1]["_sequence"],
            "events": len(batch),
            "status": status,
            "error": error,
            "at": started,
        }
        self.attempts.append(attempt)
        if status is not None and 200 <= status < 300:
            del self.pending[: len(batch)]
            self.delivered += len(batch)
            self.failures = 0
            self.first_failure = None
            self.next_attempt = 0.0
        else:
            if self.first_failure is None:
                self.first_failure = started
            delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
            self.failures += 1
            self.next_attempt = started + delay
            if started - self.first_failure >= GIVE_UP_AFTER:
                self.disabled = True
        return attempt

    async def intent_to_receive(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """Xero's check: 200 to correctly signed empty batches, 401 to mis-signed ones, in 5 s,
        with an empty body."""
        if self.receiver_url is None:
            return {"ok": False, "checks": [], "error": "no receiver_url"}
        checks = []
        for good in (True, False, True, False):
            body = self.payload([])
            signature = sign(body, self.key) if good else sign(body, self.key + "-wrong")
            expected = 200 if good else 401
            real_start = time.monotonic()
            check: dict[str, Any] = {"signature": "good" if good else "bad", "expected": expected}
            try:
                response = await client.post(
                    self.receiver_url,
                    content=body,
                    headers={"x-xero-signature": signature, "Content-Type": "application/json"},
                    timeout=INTENT_TIMEOUT,
                )
                check["status"] = response.status_code
                check["empty_body"] = response.content == b""
            except httpx.HTTPError as exc:
                check["status"] = None
                check["error"] = type(exc).__name__
                check["empty_body"] = False
            check["seconds"] = round(time.monotonic() - real_start, 3)
            check["ok"] = (
                check["status"] == expected
                and check["empty_body"]
                and check["seconds"] < INTENT_TIMEOUT
            )
            checks.append(check)
        return {"ok": all(c["ok"] for c in checks), "checks": checks}

    def as_json(self) -> dict[str, Any]:
        return {
            "receiver_url": self.receiver_url,
            "pending": len(self.pending),
            "delivered": self.delivered,
            "failures": self.failures,
            "disabled": self.disabled,
            "next_attempt_in": max(0.0, self.next_attempt - self.clock.timestamp())
            if self.pending
            else 0.0,
            "attempts": self.attempts,
        }

"""The ASGI receiver: verify Xero's signature, store the events durably, then answer 200.

Xero's rules: 200 with an empty body to a correctly signed payload, 401 with an empty body
to any other, within 5 seconds; its intent-to-receive check sends both kinds with an
empty `events` list. A delivery is on disk (in a committed SQLite transaction, shared with
the deliveries that arrived alongside it) before the 200, so an acknowledged event is never
lost; anything refused is not stored, and Xero retries it.

A body that does not arrive in full within `body_timeout` seconds (a stalled or trickling
client) gets 408 with `Connection: close` (RFC 9110, 15.5.9): uvicorn then closes the
connection, so a slow client cannot hold the receiver. A body nested deeper than the JSON
parser allows gets 400, like any other malformed body.
"""

from __future__ import annotations

import json
import logging

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tap_xero.webhooks.batching import GroupCommit
from tap_xero.webhooks.signature import verify
from tap_xero.webhooks.store import Delivery, EventStore, InvalidPayloadError
from tap_xero.webhooks.trigger import DebouncedTrigger

logger = logging.getLogger("tap_xero.webhooks")

DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_BODY_TIMEOUT_SECONDS = 5.0  # Xero gives up after 5 s: waiting longer serves no one
SIGNATURE_HEADER = "x-xero-signature"


class _TooLargeError(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    """The raw body, or _TooLargeError as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLargeError
    return bytes(body)


def _parse(body: bytes) -> Delivery | None:
    """The delivery of a signed body, or None (logged) when it is not Xero's shape."""
    try:
        return Delivery.of(json.loads(body))
    except RecursionError:  # e.g. [[[[...]]]]: the parser's own depth guard
        logger.warning("webhook refused: signed but malformed (JSON nested too deep)")
    except (ValueError, InvalidPayloadError) as exc:
        reason = str(exc)[:200] if isinstance(exc, InvalidPayloadError) else "not JSON"
        logger.warning("webhook refused: signed but malformed (%s)", reason)
    return None


def create_app(
    store: EventStore,
    key: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    trigger: DebouncedTrigger | None = None,
) -> Starlette:
    """The receiver: POST on any path (so a proxy may map any URL), GET /healthz."""
    if not key:
        msg = "a webhook key is required (the 'Webhooks key' of the Xero app)"
        raise ValueError(msg)
    writer = GroupCommit(store)

    async def receive(request: Request) -> Response:
        try:
            with anyio.fail_after(body_timeout):
                body = await _read_capped(request, max_body_bytes)
        except _TooLargeError:
            logger.warning("webhook refused: body over %d bytes", max_body_bytes)
            return Response(status_code=413)
        except TimeoutError:
            logger.warning("webhook refused: body not received within %g s", body_timeout)
            return Response(status_code=408, headers={"connection": "close"})
        if not verify(body, request.headers.get(SIGNATURE_HEADER), key):
            logger.warning("webhook refused: missing or wrong signature")
            return Response(status_code=401)
        delivery = _parse(body)
        if delivery is None:
            return Response(status_code=400)
        if not delivery.events:
            logger.info("webhook: signed delivery with no events (intent to receive)")
            return Response(status_code=200)
        try:
            new = await writer.add(delivery)
        except Exception as exc:
            logger.error("webhook not stored (Xero will retry): %s", type(exc).__name__)
            return Response(status_code=503)
        logger.info(
            "webhook: %d events, %d new (sequence %s-%s)",
            len(delivery.events),
            new,
            delivery.first_sequence,
            delivery.last_sequence,
        )
        if new and trigger is not None:
            trigger.notify()
        return Response(status_code=200)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{path:path}", receive, methods=["POST"]),
        ]
    )

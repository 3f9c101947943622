"""The ASGI receiver: verify Xero's signature, store the events durably, then answer 200.

Xero's rules: 200 with an empty body to a correctly signed payload, 401 with an empty body
to any other, within 5 seconds; its intent-to-receive check sends both kinds with an
empty `events` list. A delivery is on disk (one SQLite transaction) before the 200, so an
acknowledged event is never lost; anything refused is not stored, and Xero retries it.
"""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tap_xero.webhooks.signature import verify
from tap_xero.webhooks.store import EventStore, InvalidPayloadError, validate_payload
from tap_xero.webhooks.trigger import DebouncedTrigger

logger = logging.getLogger("tap_xero.webhooks")

DEFAULT_MAX_BODY_BYTES = 1_048_576
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


def create_app(
    store: EventStore,
    key: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    trigger: DebouncedTrigger | None = None,
) -> Starlette:
    """The receiver: POST on any path (so a proxy may map any URL), GET /healthz."""
    if not key:
        msg = "a webhook key is required (the 'Webhooks key' of the Xero app)"
        raise ValueError(msg)

    async def receive(request: Request) -> Response:
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLargeError:
            logger.warning("webhook refused: body over %d bytes", max_body_bytes)
            return Response(status_code=413)
        if not verify(body, request.headers.get(SIGNATURE_HEADER), key):
            logger.warning("webhook refused: missing or wrong signature")
            return Response(status_code=401)
        try:
            payload = json.loads(body)
            validate_payload(payload)
        except (ValueError, InvalidPayloadError) as exc:
            reason = exc if isinstance(exc, InvalidPayloadError) else "not JSON"
            logger.warning("webhook refused: signed but malformed (%s)", reason)
            return Response(status_code=400)
        if not payload["events"]:
            logger.info("webhook: signed delivery with no events (intent to receive)")
            return Response(status_code=200)
        try:
            new = await run_in_threadpool(store.add_delivery, payload)
        except Exception as exc:
            logger.error("webhook not stored (Xero will retry): %s", type(exc).__name__)
            return Response(status_code=503)
        logger.info(
            "webhook: %d events, %d new (sequence %s-%s)",
            len(payload["events"]),
            new,
            payload.get("firstEventSequence"),
            payload.get("lastEventSequence"),
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

"""Response helpers shared by the Xero sandbox's route modules."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox.xero.state import Stats


class DroppedResponse(Response):
    """Starts a response and never finishes it: the server closes the connection mid-answer.

    A first piece of the body goes out too, so that the compression middleware (which holds
    the start back until the body begins) lets the broken answer through.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"4096"),
                    (b"content-type", b"application/json; charset=utf-8"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"Id":"', "more_body": True})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def status_response(
    stats: Stats, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """An API answer that the stats count by status."""
    stats.statuses[status] += 1
    return json_response(body, status, headers)


def splice(envelope: dict[str, Any], key: str, records: list[bytes]) -> bytes:
    """The envelope's JSON with the already encoded records as its `key` array."""
    head = json.dumps(envelope, separators=(",", ":")).encode()[:-1]
    return head + b',"' + key.encode() + b'":[' + b",".join(records) + b"]}"


async def read_body(request: Request) -> dict[str, Any]:
    """A control call's JSON object body ({} when empty)."""
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        msg = "expected a JSON object"
        raise ValueError(msg)
    return data

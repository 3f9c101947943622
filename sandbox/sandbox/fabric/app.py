"""The one Starlette app: Entra (the Power BI sandbox's), OneLake DFS, Fabric REST, control."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.fabric import control, dfs, rest
from sandbox.fabric.state import FabricState
from sandbox.powerbi import entra


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "EntityNotFound", 405: "MethodNotAllowed"}.get(status, "InternalServerError")
    message = f"{request.method} {request.url.path} is not an operation of the sandbox"
    return JSONResponse({"errorCode": code, "message": message}, status_code=status)


class DropConnections:
    """ASGI middleware for the dropped-connection fault: headers sent, then the socket closes.

    With `drop_after_apply` the request is served first (its effect stays) and only the answer
    is lost, the case a client cannot tell from a request that never arrived.
    """

    def __init__(self, app: ASGIApp, state: FabricState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or str(scope["path"]).startswith("/_sandbox")
            or not self.state.should_drop()
        ):
            await self.app(scope, receive, send)
            return
        if self.state.drops.drop_after_apply:

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
        self.state.record("DroppedConnection", 0)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1024"), (b"content-type", b"application/json")],
            }
        )
        # Returning with the body unfinished makes uvicorn close the connection.
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


def build_app(state: FabricState) -> ASGIApp:
    app = Starlette(
        routes=[
            *control.routes(state),
            *rest.routes(state),
            *dfs.routes(state),
            *entra.routes(state),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    return DropConnections(app, state)

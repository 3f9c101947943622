"""The one Starlette app: Entra (the Power BI sandbox's), OneLake DFS, Fabric REST, control."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from sandbox.fabric import control, dfs, rest
from sandbox.fabric.state import FabricState
from sandbox.powerbi import entra


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "EntityNotFound", 405: "MethodNotAllowed"}.get(status, "InternalServerError")
    message = f"{request.method} {request.url.path} is not an operation of the sandbox"
    return JSONResponse({"errorCode": code, "message": message}, status_code=status)


def build_app(state: FabricState) -> ASGIApp:
    return Starlette(
        routes=[
            *control.routes(state),
            *rest.routes(state),
            *dfs.routes(state),
            *entra.routes(state),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
    )

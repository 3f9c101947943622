"""The one Starlette app: Entra token service, push dataset API, control API, viewer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.powerbi import (
    api,
    control,
    entra,
    reports_api,
    viewer,
    workspace_dashboards,
    workspace_reports,
)
from sandbox.powerbi.state import PowerBIState


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Power BI's error shape too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "ItemNotFound", 405: "MethodNotAllowed"}.get(status, "InternalServerError")
    message = f"{request.method} {request.url.path} is not an operation of the sandbox"
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def build_viewer_app(state: PowerBIState) -> Starlette:
    """The viewer alone, for plain HTTP on loopback (a browser opens it without the CA)."""
    return Starlette(routes=viewer.routes(state))


def build_app(state: PowerBIState) -> Starlette:
    return Starlette(
        routes=[
            *workspace_reports.routes(state),
            *workspace_dashboards.routes(state),
            *viewer.routes(state),
            *control.routes(state),
            *api.routes(state),
            *entra.routes(state),
            *reports_api.routes(state),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
    )

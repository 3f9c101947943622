"""The one Starlette app: Entra token service, push dataset API, control API, viewer."""

from __future__ import annotations

from starlette.applications import Starlette

from sandbox.powerbi import api, control, entra
from sandbox.powerbi.state import PowerBIState


def build_app(state: PowerBIState) -> Starlette:
    return Starlette(routes=[*control.routes(state), *api.routes(state), *entra.routes(state)])

"""The Xero sandbox's HTTP face: identity, connections, the Accounting API and the control API,
all in one Starlette app on one port. Each concern's handlers live in their own module:

- identity_routes: /connect/authorize, /connect/token, /connections
- api_routes: /api.xro/2.0/... (the gate and the collection answers; report_routes for reports)
- control_routes: /_sandbox/... and the webhook delivery loop
"""

from __future__ import annotations

from starlette.applications import Starlette

from sandbox.xero import api_routes, control_routes, identity_routes
from sandbox.xero.service import API_PREFIX, XeroService

__all__ = ["API_PREFIX", "XeroService", "build_app"]


def build_app(service: XeroService) -> Starlette:
    app = Starlette(
        routes=[*identity_routes.ROUTES, *api_routes.ROUTES, *control_routes.ROUTES],
        lifespan=control_routes.lifespan,
    )
    app.state.service = service
    return app

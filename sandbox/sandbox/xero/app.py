"""The Xero sandbox's HTTP face: identity, connections, the Accounting API and the control API,
all in one Starlette app on one port. Each concern's handlers live in their own module:

- identity_routes: /connect/authorize, /connect/token, /connections
- api_routes: /api.xro/2.0/... (the gate and the collection answers; report_routes for reports,
  subresources for History and Attachments; access for tiers and scopes)
- control_routes: /_sandbox/... and the webhook delivery loop
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.xero import api_routes, control_routes, identity_routes
from sandbox.xero.service import API_PREFIX, XeroService

__all__ = ["API_PREFIX", "XeroService", "build_app"]

# zlib's default level: what a server's gzip filter typically uses (docs/sandbox-xero.md)
GZIP_LEVEL = 6


class EgressCounter:
    """Counts the body bytes of Accounting API answers per organisation, as they leave the
    server (after compression): Xero's egress quotas count what is downloaded.

    A plain ASGI middleware, because it must see the bytes the gzip middleware produced.
    """

    def __init__(self, app: ASGIApp, service: XeroService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        tenant = Headers(scope=scope).get("xero-tenant-id", "")

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.service.stats.egress_bytes[tenant] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting_send)


def build_app(service: XeroService) -> Starlette:
    app = Starlette(
        routes=[*identity_routes.ROUTES, *api_routes.ROUTES, *control_routes.ROUTES],
        lifespan=control_routes.lifespan,
        middleware=[
            Middleware(EgressCounter, service=service),
            Middleware(GZipMiddleware, compresslevel=GZIP_LEVEL),
        ],
    )
    app.state.service = service
    return app

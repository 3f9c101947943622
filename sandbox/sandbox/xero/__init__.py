"""Xero sandbox: a local emulator of Xero's Accounting API, identity service and webhooks.

with XeroSandbox(seed=1, size="small", tenants=2) as sbx:
    sbx.config  # the ready line: api_url, identity_url, client_id, refresh_token, ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typing_extensions import override

from sandbox.server import BackgroundServer, Startable
from sandbox.xero.app import XeroService, build_app


class XeroSandbox(Startable):
    """A running Xero sandbox on 127.0.0.1 (port 0: a free one), served from a thread."""

    def __init__(
        self,
        seed: int = 1,
        size: str = "small",
        tenants: int = 2,
        time_scale: float = 1.0,
        port: int = 0,
        access_token_lifetime: float = 1800.0,
        refresh_grace_seconds: float = 1800.0,
        tier: str = "starter",
        scopes: str | Iterable[str] | None = None,
    ) -> None:
        """`tier`: starter | core | plus | advanced | enterprise (day limit, Journals).
        `scopes`: the scopes the connection was granted: "granular" (an app created since
        March 2026; the default), "broad" (an older app) or a list of scope names."""
        if tenants < 1:
            msg = "tenants must be 1 or more"
            raise ValueError(msg)
        self.service = XeroService(
            seed=seed,
            size=size,
            tenants=tenants,
            time_scale=time_scale,
            access_token_lifetime=access_token_lifetime,
            refresh_grace_seconds=refresh_grace_seconds,
            tier=tier,
            scopes=scopes,
        )
        self.server = BackgroundServer(build_app(self.service), port=port)

    @override
    def start(self) -> XeroSandbox:
        self.server.start()
        self.service.set_base_url(self.server.base_url)
        return self

    @override
    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def config(self) -> dict[str, Any]:
        """The ready line: api_url, identity_url, connections_url, client_id, client_secret,
        refresh_token, tenant_ids, webhook_key."""
        return self.service.config

    def custom_connection(self, tenant_id: str) -> dict[str, str]:
        """client_id, client_secret, tenant_id of a custom connection bound to one organisation."""
        return self.service.custom_connection(tenant_id)


__all__ = ["XeroSandbox"]

"""`PowerBISandbox`: the whole emulator on one loopback TLS port, trusted through a local CA."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from sandbox.clock import SandboxClock
from sandbox.powerbi.app import build_app, build_viewer_app
from sandbox.powerbi.limits import Limits
from sandbox.powerbi.state import PowerBIState
from sandbox.server import BackgroundServer, Startable
from sandbox.tls import TLSServer, tls_server


class PowerBISandbox(Startable):
    """Power BI push datasets and Entra ID; times and lifetimes are in sandbox seconds."""

    def __init__(
        self,
        time_scale: float = 1.0,
        port: int = 0,
        token_lifetime_seconds: float = 3600.0,
        limits: Limits | None = None,
    ) -> None:
        self.clock = SandboxClock(time_scale=time_scale)
        self.state = PowerBIState(
            self.clock, token_lifetime_seconds=token_lifetime_seconds, limits=limits
        )
        self.app = build_app(self.state)
        self._port = port
        self.server: TLSServer | None = None
        # the viewer again on plain HTTP, loopback only: a browser opens it without the CA
        self.viewer_server: BackgroundServer | None = None
        self.ca_bundle = ""

    @override
    def start(self) -> PowerBISandbox:
        self.server, self.ca_bundle = tls_server(self.app, self._port, "powerbi-sandbox-")
        self.server.start()
        self.viewer_server = BackgroundServer(build_viewer_app(self.state)).start()
        return self

    @override
    def stop(self) -> None:
        if self.viewer_server is not None:
            self.viewer_server.stop()
            self.viewer_server = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        if self.server is None:
            msg = "the sandbox is not started"
            raise RuntimeError(msg)
        return self.server.base_url

    @property
    def config(self) -> dict[str, Any]:
        """The ready line: also target-powerbi's config, as it stands (plus a dataset name)."""
        state = self.state
        return {
            "api_url": f"{self.url}/v1.0/myorg",
            "authority_url": self.url,
            "tenant_id": state.tenant_id,
            "client_id": state.member.client_id,
            "client_secret": state.member.client_secret,
            "workspace_id": state.workspace_id,
            "ca_bundle": self.ca_bundle,
            "viewer_url": self.viewer_url,
        }

    @property
    def viewer_url(self) -> str:
        """The viewer over plain HTTP on 127.0.0.1 (the API stays on TLS)."""
        if self.viewer_server is None:
            msg = "the sandbox is not started"
            raise RuntimeError(msg)
        return f"{self.viewer_server.base_url}/"

    def outsider(self) -> dict[str, str]:
        """Credentials of a registered principal that is not a member of the workspace."""
        return {
            "client_id": self.state.outsider.client_id,
            "client_secret": self.state.outsider.client_secret,
        }

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (windows, token lifetimes)."""
        self.clock.advance(seconds)

"""`FabricSandbox`: Fabric open mirroring on one loopback TLS port, trusted through a local CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typing_extensions import override

from sandbox.clock import SandboxClock
from sandbox.fabric.app import build_app
from sandbox.fabric.state import FabricState
from sandbox.server import Startable
from sandbox.tls import TLSServer, tls_server


class FabricSandbox(Startable):
    """Entra, OneLake (DFS), Fabric REST and the replicator; times are in sandbox seconds."""

    def __init__(
        self,
        time_scale: float = 1.0,
        port: int = 0,
        token_lifetime_seconds: float = 3600.0,
        data_dir: Path | None = None,
    ) -> None:
        self.clock = SandboxClock(time_scale=time_scale)
        self.state = FabricState(
            self.clock, token_lifetime_seconds=token_lifetime_seconds, data_dir=data_dir
        )
        self.app = build_app(self.state)
        self._port = port
        self.server: TLSServer | None = None
        self.ca_bundle = ""

    @override
    def start(self) -> FabricSandbox:
        self.server, self.ca_bundle = tls_server(self.app, self._port, "fabric-sandbox-")
        self.server.start()
        self.state.onelake_url = self.onelake_url
        return self

    @override
    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.state.close()

    @property
    def url(self) -> str:
        if self.server is None:
            msg = "the sandbox is not started"
            raise RuntimeError(msg)
        return self.server.base_url

    @property
    def onelake_url(self) -> str:
        """The DataLakeServiceClient account URL (https://onelake.dfs.fabric.microsoft.com)."""
        return f"{self.url}/onelake"

    @property
    def fabric_api_url(self) -> str:
        """Fabric REST's base (https://api.fabric.microsoft.com/v1)."""
        return f"{self.url}/v1"

    @property
    def config(self) -> dict[str, Any]:
        """The ready line: with `destination: fabric` and a `dataset_name`, a target config.

        Each key is a target-powerbi setting, meaning what it means for the Power BI sandbox.
        """
        state = self.state
        return {
            "authority_url": self.url,
            "tenant_id": state.tenant_id,
            "client_id": state.member.client_id,
            "client_secret": state.member.client_secret,
            "workspace_id": state.workspace_id,
            "ca_bundle": self.ca_bundle,
            "onelake_url": self.onelake_url,
            "fabric_api_url": self.fabric_api_url,
            "viewer_url": f"{self.url}/",
        }

    def outsider(self) -> dict[str, str]:
        """Credentials of a registered principal that is not a member of the workspace."""
        return {
            "client_id": self.state.outsider.client_id,
            "client_secret": self.state.outsider.client_secret,
        }

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (token lifetimes)."""
        self.clock.advance(seconds)

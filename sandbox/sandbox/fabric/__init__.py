"""Microsoft Fabric open mirroring (OneLake DFS, Fabric REST, Entra), emulated on one TLS port."""

from __future__ import annotations

from sandbox.fabric.sandbox import FabricSandbox

__all__ = ["FabricSandbox"]

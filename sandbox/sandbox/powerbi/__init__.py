"""Power BI push datasets and the Entra ID token service, emulated on one loopback TLS port."""

from __future__ import annotations

from sandbox.powerbi.sandbox import PowerBISandbox

__all__ = ["PowerBISandbox"]

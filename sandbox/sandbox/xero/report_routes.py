"""GET /Reports/{name}: the report body inside Xero's envelope (reports.py computes it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from sandbox.xero import queries, reports
from sandbox.xero.company import Org


def report_answer(
    org: Org, parts: list[str], request: Request, envelope: dict[str, Any], now_ms: int
) -> bytes:
    """The body of a successful report GET; 404 without a name, 403 for the Standard role."""
    if len(parts) < 2:
        raise queries.ApiError(404, "Not Found", "report name missing")
    if org.standard_role:
        raise queries.ApiError(403, "Forbidden", "the Standard role cannot run reports")
    report = reports.run(org, parts[1], request.query_params, now_ms)
    envelope["Reports"] = [report]
    return json.dumps(envelope, separators=(",", ":")).encode()

"""GET /Reports/{name}: the report body inside Xero's envelope (reports.py computes it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from sandbox.xero import filters, queries, reports
from sandbox.xero.company import Org

# Report parameters the spec documents that the sandbox's reports do not compute: refused, so
# that a client never takes an unfiltered report for a filtered one.
REFUSED = {
    "BalanceSheet": ("trackingOptionID1", "trackingOptionID2"),
    "AgedPayablesByContact": ("fromDate", "toDate"),
    "AgedReceivablesByContact": ("fromDate", "toDate"),
}


def report_answer(
    org: Org, parts: list[str], request: Request, envelope: dict[str, Any], now_ms: int
) -> bytes:
    """The body of a successful report GET; 404 without a name, 403 for the Standard role."""
    if len(parts) < 2:
        raise queries.ApiError(404, "Not Found", "report name missing")
    if org.standard_role:
        raise queries.ApiError(403, "Forbidden", "the Standard role cannot run reports")
    params = filters.Params(request.query_params)
    for name in REFUSED.get(parts[1], ()):
        if params.get(name):
            raise queries.ApiError(400, "Validation", f"the sandbox does not emulate {name}")
    if params.get("standardLayout", "true").lower() == "false":
        raise queries.ApiError(400, "Validation", "the sandbox has only the standard layout")
    report = reports.run(org, parts[1], params, now_ms)
    envelope["Reports"] = [report]
    return json.dumps(envelope, separators=(",", ":")).encode()

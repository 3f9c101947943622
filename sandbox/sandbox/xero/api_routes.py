"""The Accounting API under /api.xro/2.0/: the gate every call passes (token, organisation,
rate limits, faults, in-flight count, scope and tier) and the answers to collection, record
and sub-resource GETs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.xero import access, filters, queries, subresources
from sandbox.xero.company import COLLECTIONS, Org
from sandbox.xero.identity_routes import bearer
from sandbox.xero.report_routes import report_answer
from sandbox.xero.responses import DroppedResponse, splice, status_response
from sandbox.xero.service import API_PREFIX, XeroService, service_of
from sandbox.xero.util import msdate

# `/Organisations` (plural) answers as `/Organisation` does (docs/sandbox-xero.md cites why)
COLLECTION_BY_LOWER = {name.lower(): name for name in COLLECTIONS} | {
    "organisations": "Organisation"
}
XML_ANSWER = (
    b'<?xml version="1.0" encoding="utf-8"?><Response><Status>OK</Status>'
    b"<!-- Xero answers XML unless the request sends Accept: application/json; "
    b"the sandbox serves records as JSON only --></Response>"
)
UNAUTHORIZED = {
    "Type": None,
    "Title": "Unauthorized",
    "Status": 401,
    "Detail": "TokenExpired or TokenInvalid",
}
FORBIDDEN = {
    "Type": None,
    "Title": "Forbidden",
    "Status": 403,
    "Detail": "AuthenticationUnsuccessful",
}
TOO_MANY = {"Title": "Too Many Requests", "Status": 429}


def endpoint_name(parts: list[str]) -> str:
    """The name the stats count a call under: the collection, or Reports/{name}."""
    endpoint = COLLECTION_BY_LOWER.get(parts[0].lower(), parts[0])
    if endpoint == "Reports" and len(parts) > 1:
        endpoint = f"Reports/{parts[1]}"
    return endpoint


async def api(request: Request) -> Response:
    """Every Accounting API call: refused at the gate, or answered by `_serve`."""
    service = service_of(request)
    parts = request.path_params["path"].strip("/").split("/")
    tenant_header = request.headers.get("xero-tenant-id", "")
    stats = service.stats
    stats.record(request.method, endpoint_name(parts), tenant_header)
    access = bearer(service, request)
    if access is None:
        return status_response(
            stats, 401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    granted = service.identity.granted(access)
    tenant = tenant_header or (access.tenant or "")
    if not tenant or tenant not in granted or tenant not in service.by_tenant:
        return status_response(stats, 403, FORBIDDEN)
    refusal = _rate_limited(service, tenant, access.client_id)
    if refusal is not None:
        return refusal
    limit_headers = service.limiter.headers(tenant, access.client_id)
    with _in_flight(service, tenant):
        return await _serve(service, request, service.by_tenant[tenant], parts, limit_headers)


def _rate_limited(service: XeroService, tenant: str, client_id: str) -> Response | None:
    """429 when a 429 storm is injected or a limit is spent; else the call is counted."""
    limiter = service.limiter
    faults = service.faults
    problem: str | None = "minute"
    wait = 60.0
    if faults.storm_429 > 0:
        faults.storm_429 -= 1
    else:
        problem, wait = limiter.admit(tenant, client_id)
    if problem is None:
        return None
    service.stats.rate_limited[problem] += 1
    headers = limiter.headers(tenant, client_id) | {
        "X-Rate-Limit-Problem": problem,
        "Retry-After": limiter.retry_after(wait),
    }
    return status_response(service.stats, 429, TOO_MANY, headers)


@contextmanager
def _in_flight(service: XeroService, tenant: str) -> Iterator[None]:
    """Count the call in flight (per organisation and in all) while it is served."""
    limiter = service.limiter
    stats = service.stats
    limiter.in_flight[tenant] += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    stats.max_in_flight_by_tenant[tenant] = max(
        stats.max_in_flight_by_tenant.get(tenant, 0), limiter.in_flight[tenant]
    )
    try:
        yield
    finally:
        limiter.in_flight[tenant] -= 1
        stats.in_flight -= 1


def _injected_fault(service: XeroService, limit_headers: dict[str, str]) -> Response | None:
    """A dropped connection or a server error, when the faults ask for one."""
    faults = service.faults
    stats = service.stats
    if faults.drop_next > 0 or (faults.drop_rate and service.fault_rng.random() < faults.drop_rate):
        faults.drop_next = max(0, faults.drop_next - 1)
        stats.statuses[0] += 1
        return DroppedResponse()
    status = None
    if faults.fail_next:
        status = int(faults.fail_next.pop(0))
    elif faults.error_rate and service.fault_rng.random() < faults.error_rate:
        status = service.fault_rng.choice(faults.error_statuses)
    if status is None:
        return None
    return status_response(
        stats, status, {"Title": "Server error", "Status": status}, limit_headers
    )


async def _serve(
    service: XeroService,
    request: Request,
    org: Org,
    parts: list[str],
    limit_headers: dict[str, str],
) -> Response:
    """A call past the gate: injected latency and faults, then the answer."""
    stats = service.stats
    if service.faults.latency_ms > 0:
        await asyncio.sleep(service.faults.latency_ms / 1000)
    fault = _injected_fault(service, limit_headers)
    if fault is not None:
        return fault
    if request.method != "GET":
        return status_response(
            stats,
            405,
            {
                "Title": "Method Not Allowed",
                "Status": 405,
                "Detail": "the sandbox API is read-only: use POST /_sandbox/mutate",
            },
            limit_headers,
        )
    refusal = _unauthorised(service, request, org.tenant_id, parts)
    if refusal is not None:
        headers = limit_headers | {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
        return status_response(stats, 401, refusal, headers)
    try:
        content = answer(service, org, parts, request)
    except queries.ApiError as exc:
        return status_response(stats, exc.status, exc.body, limit_headers)
    stats.statuses[200] += 1
    if "application/json" not in request.headers.get("accept", ""):
        # Xero answers XML unless asked for JSON; the sandbox only says so
        return Response(XML_ANSWER, 200, limit_headers, media_type="text/xml")
    return Response(content, 200, limit_headers, media_type="application/json")


def required_scopes(parts: list[str]) -> tuple[tuple[str, ...], bool] | None:
    """The scope families a path needs and whether it is Journals (None: no such endpoint)."""
    if parts[0].lower() == "reports":
        return access.report_scopes(parts[1] if len(parts) > 1 else ""), False
    collection = COLLECTION_BY_LOWER.get(parts[0].lower())
    if collection is None:
        return None
    sub = parts[2].lower() if len(parts) > 2 else ""
    if sub == "attachments":
        return access.ATTACHMENT_SCOPES, False
    return access.COLLECTION_SCOPES[collection], collection == "Journals"


def _unauthorised(
    service: XeroService, request: Request, tenant: str, parts: list[str]
) -> dict[str, Any] | None:
    """Xero's 401 body when the token lacks the path's scope or the tier lacks Journals."""
    needed = required_scopes(parts)
    access_token = bearer(service, request)
    if needed is None or access_token is None:
        return None
    families, journals = needed
    return service.plan.refusal(tenant, access_token.scopes, families, journals)


def answer(service: XeroService, org: Org, parts: list[str], request: Request) -> bytes:
    """The body of a successful GET: Xero's envelope around the records."""
    name = parts[0].lower()
    envelope: dict[str, Any] = {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": "Xero Sandbox",
        "DateTimeUTC": msdate(service.now_ms()).replace("+0000", ""),
    }
    if name == "reports":
        return report_answer(org, parts, request, envelope, service.now_ms())
    collection = COLLECTION_BY_LOWER.get(name)
    if collection is None:
        raise queries.ApiError(404, "Not Found", f"no such endpoint: {parts[0]}")
    key = queries.ENVELOPE_KEY[collection]
    if len(parts) > 1:
        record = queries.find(org, collection, parts[1])
        if record is None:
            raise queries.ApiError(404, "Not Found", "The resource cannot be found")
        if len(parts) > 2:
            body = envelope | subresources.answer(org, collection, record, parts[2:])
            return json.dumps(body, separators=(",", ":")).encode()
        return splice(envelope, key, org.encode(collection, [record]))
    records, pagination = queries.select(
        org, collection, request.query_params, request.headers.get("if-modified-since")
    )
    if pagination is not None:
        envelope["pagination"] = pagination
    if queries.summary_only(collection, filters.Params(request.query_params)):
        encoded = [json.dumps(r, separators=(",", ":")).encode() for r in records]
    else:
        encoded = org.encode(collection, records)
    return splice(envelope, key, encoded)


ROUTES = [
    Route(API_PREFIX + "/{path:path}", api, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]

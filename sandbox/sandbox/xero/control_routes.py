"""The control API under /_sandbox/ (stats, truth, mutations, clock, faults, reset, webhooks)
and the background delivery of webhooks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.xero import mutations
from sandbox.xero.api_routes import COLLECTION_BY_LOWER
from sandbox.xero.responses import json_response, read_body
from sandbox.xero.service import XeroService, service_of
from sandbox.xero.state import Limits

LIMIT_NAMES = ("minute", "day", "concurrent", "app_minute")


async def stats_route(request: Request) -> Response:
    service = service_of(request)
    body = service.stats.as_json()
    body["in_flight"] = service.stats.in_flight
    return json_response(body)


async def truth(request: Request) -> Response:
    """Every record of a collection as the sandbox holds it, hidden ones included."""
    service = service_of(request)
    org = service.by_tenant.get(request.path_params["tenant_id"])
    collection = COLLECTION_BY_LOWER.get(request.path_params["collection"].lower())
    if org is None or collection is None:
        return json_response({"error": "unknown tenant or collection"}, 404)
    if collection == "Journals":
        records = (
            org.cash_journals
            if request.query_params.get("paymentsOnly") == "true"
            else org.journals
        )
        return json_response({"Journals": records})
    return json_response({collection: list(org.data[collection].values())})


async def mutate(request: Request) -> Response:
    service = service_of(request)
    body = await read_body(request)
    org = service.by_tenant.get(str(body.get("tenant_id", "")))
    if org is None:
        return json_response({"error": "tenant_id: unknown organisation"}, 400)
    try:
        results = mutations.apply(org, body, service.now_ms(), service.random)
    except (ValueError, KeyError) as exc:
        return json_response({"error": str(exc)}, 400)
    service.webhooks.collect(service.orgs)
    return json_response({"results": results, "now": service.clock.now().isoformat()})


async def clock_route(request: Request) -> Response:
    clock = service_of(request).clock
    if request.method == "POST":
        body = await read_body(request)
        seconds = float(body.get("advance_seconds", 0))
        if seconds < 0:
            return json_response({"error": "the clock only moves forward"}, 400)
        clock.advance(seconds)
    return json_response(
        {
            "now": clock.now().isoformat(),
            "timestamp": clock.timestamp(),
            "time_scale": clock.time_scale,
        }
    )


def _apply_faults(service: XeroService, body: dict[str, Any]) -> None:
    """Faults, limits and Standard-role organisations from a POST /_sandbox/faults body."""
    service.faults.update(body)
    if "limits" in body:
        current = service.limiter.limits
        service.limiter.limits = Limits(
            **({k: getattr(current, k) for k in LIMIT_NAMES} | body["limits"])
        )
    if "standard_role_tenants" in body:
        chosen = set(body["standard_role_tenants"])
        for org in service.orgs:
            org.standard_role = org.tenant_id in chosen


async def faults_route(request: Request) -> Response:
    service = service_of(request)
    if request.method == "POST":
        body = await read_body(request)
        try:
            _apply_faults(service, body)
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
    limits = service.limiter.limits
    return json_response(
        service.faults.as_json()
        | {
            "limits": {k: getattr(limits, k) for k in LIMIT_NAMES},
            "standard_role_tenants": [o.tenant_id for o in service.orgs if o.standard_role],
        }
    )


async def app_route(request: Request) -> Response:
    """The app's tier and scopes; POST `tier` (a change between runs) or `withheld_scopes`
    {tenant: [scope, ...]} (a scope granted for one organisation but not another)."""
    service = service_of(request)
    if request.method == "POST":
        body = await read_body(request)
        try:
            if "tier" in body:
                service.set_tier(str(body["tier"]))
            service.plan.update({k: v for k, v in body.items() if k == "withheld_scopes"})
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
    return json_response(service.plan.as_json())


async def reset(request: Request) -> Response:
    service = service_of(request)
    body = await read_body(request)
    seed = body.get("seed")
    service.reset(int(seed) if seed is not None else None)
    return json_response({"reset": True, "config": service.config})


async def webhooks_route(request: Request) -> Response:
    """Point the webhooks at a receiver, set the key, send intent-to-receive, deliver now."""
    service = service_of(request)
    hooks = service.webhooks
    result: dict[str, Any] = {}
    if request.method == "POST":
        body = await read_body(request)
        if "receiver_url" in body:
            hooks.receiver_url = body["receiver_url"]
            hooks.disabled = False
            hooks.failures = 0
            hooks.first_failure = None
            hooks.next_attempt = 0.0
        if "key" in body:
            hooks.key = str(body["key"])
        elif not hooks.key:
            hooks.key = service.credentials.webhook_key
        hooks.collect(service.orgs)
        client = service.http
        assert client is not None, "the app's lifespan opens the webhook client"
        if body.get("intent_to_receive"):
            result["intent_to_receive"] = await hooks.intent_to_receive(client)
        if body.get("deliver", True) and hooks.due():
            result["delivery"] = await hooks.deliver(client)
    return json_response(result | hooks.as_json())


async def _retry_loop(service: XeroService) -> None:
    """Deliver due batches (first attempts and retries) in the background."""
    while True:
        await asyncio.sleep(0.05)
        hooks = service.webhooks
        if hooks.receiver_url is not None and service.http is not None:
            hooks.collect(service.orgs)
            if hooks.due():
                with contextlib.suppress(Exception):
                    await hooks.deliver(service.http)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """The webhook client and the delivery loop live as long as the app."""
    service: XeroService = app.state.service
    async with httpx.AsyncClient() as client:
        service.http = client
        task = asyncio.create_task(_retry_loop(service))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            service.http = None


ROUTES = [
    Route("/_sandbox/stats", stats_route, methods=["GET"]),
    Route("/_sandbox/truth/{tenant_id}/{collection}", truth, methods=["GET"]),
    Route("/_sandbox/mutate", mutate, methods=["POST"]),
    Route("/_sandbox/clock", clock_route, methods=["GET", "POST"]),
    Route("/_sandbox/faults", faults_route, methods=["GET", "POST"]),
    Route("/_sandbox/app", app_route, methods=["GET", "POST"]),
    Route("/_sandbox/reset", reset, methods=["POST"]),
    Route("/_sandbox/webhooks", webhooks_route, methods=["GET", "POST"]),
]

"""The Xero sandbox's HTTP face: identity, connections, the Accounting API and the control API,
all in one Starlette app on one port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.clock import SandboxClock
from sandbox.xero import mutations, queries, reports
from sandbox.xero.company import COLLECTIONS, Org
from sandbox.xero.generator import ANCHOR, generate
from sandbox.xero.state import (
    AccessToken,
    Faults,
    GrantError,
    Identity,
    Limits,
    RateLimiter,
    Stats,
)
from sandbox.xero.util import msdate
from sandbox.xero.webhooks import Webhooks

API_PREFIX = "/api.xro/2.0"
COLLECTION_BY_LOWER = {name.lower(): name for name in COLLECTIONS}
XML_ANSWER = (
    b'<?xml version="1.0" encoding="utf-8"?><Response><Status>OK</Status>'
    b"<!-- Xero answers XML unless the request sends Accept: application/json; "
    b"the sandbox serves records as JSON only --></Response>"
)


class DroppedResponse(Response):
    """Starts a response and never finishes it: the server closes the connection mid-answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"4096")],
            }
        )


class Credentials:
    """Client ids and secrets that follow from the seed, so a ready line can be reused."""

    def __init__(self, seed: int, tenant_ids: list[str]) -> None:
        rng = random.Random(f"credentials-{seed}")
        self.client_id = f"{rng.getrandbits(128):032X}"
        self.client_secret = _token(rng, 48)
        self.refresh_token = _token(rng, 43)
        self.webhook_key = _token(rng, 64)
        self.custom: dict[str, tuple[str, str]] = {}
        for tenant in tenant_ids:
            self.custom[f"{rng.getrandbits(128):032X}"] = (_token(rng, 48), tenant)


def _token(rng: random.Random, length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(length))


class XeroService:
    """Data, identity, limits, stats, faults and webhooks of one running sandbox."""

    def __init__(
        self,
        *,
        seed: int,
        size: str,
        tenants: int,
        time_scale: float,
        access_token_lifetime: float,
        refresh_grace_seconds: float,
    ) -> None:
        self.seed = seed
        self.size = size
        self.tenants = tenants
        self.access_token_lifetime = access_token_lifetime
        self.refresh_grace_seconds = refresh_grace_seconds
        start = max(
            datetime.now(timezone.utc),
            datetime(ANCHOR.year, ANCHOR.month, ANCHOR.day, tzinfo=timezone.utc),
        )
        self.clock = SandboxClock(start=start.replace(microsecond=0), time_scale=time_scale)
        self.base_url = ""
        self.random = random.Random(seed)
        self._build()

    def _build(self) -> None:
        self.orgs: list[Org] = generate(self.seed, self.size, self.tenants)
        if self.size == "benchmark":
            # millions of long-lived records: keep the cyclic GC from rescanning them each page
            gc.collect()
            gc.freeze()
        self.by_tenant = {org.tenant_id: org for org in self.orgs}
        self.credentials = Credentials(self.seed, [org.tenant_id for org in self.orgs])
        creds = self.credentials
        self.identity = Identity(
            clock=self.clock,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            tenant_ids=[org.tenant_id for org in self.orgs],
            access_token_lifetime=self.access_token_lifetime,
            refresh_grace_seconds=self.refresh_grace_seconds,
            custom_clients=dict(creds.custom),
        )
        self.identity.restore_connections()
        self.identity.add_refresh_token(creds.refresh_token)
        self.limiter = RateLimiter(clock=self.clock)
        self.stats = Stats()
        self.faults = Faults()
        self.webhooks = Webhooks(clock=self.clock, api_url=self.base_url + API_PREFIX)
        self.fault_rng = random.Random(self.seed + 1)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self._build()

    def set_base_url(self, url: str) -> None:
        self.base_url = url
        self.webhooks.api_url = url + API_PREFIX

    @property
    def config(self) -> dict[str, Any]:
        """The ready line: also tap-xero's config."""
        creds = self.credentials
        return {
            "api_url": self.base_url + API_PREFIX,
            "identity_url": self.base_url,
            "connections_url": self.base_url + "/connections",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token,
            "tenant_ids": [org.tenant_id for org in self.orgs],
            "webhook_key": creds.webhook_key,
        }

    def custom_connection(self, tenant_id: str) -> dict[str, str]:
        for client_id, (secret, tenant) in self.credentials.custom.items():
            if tenant == tenant_id:
                return {"client_id": client_id, "client_secret": secret, "tenant_id": tenant}
        msg = f"unknown tenant {tenant_id}"
        raise KeyError(msg)

    def now_ms(self) -> int:
        return int(self.clock.timestamp() * 1000)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
    """Client id and secret from HTTP Basic (Xero's way) or from the form."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except (ValueError, UnicodeDecodeError):
            raise GrantError("invalid_client", 401) from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    client_id = form.get("client_id", "")
    return client_id, form.get("client_secret")


def build_app(service: XeroService) -> Starlette:
    http: dict[str, httpx.AsyncClient] = {}

    # ---- identity ------------------------------------------------------------------------
    async def authorize(request: Request) -> Response:
        """Auto-approving consent: redirects straight back with a code (PKCE S256 only)."""
        p = request.query_params
        client_id = p.get("client_id", "")
        redirect_uri = p.get("redirect_uri", "")
        if client_id != service.identity.client_id or not redirect_uri:
            return _json({"error": "invalid_request"}, 400)
        if p.get("response_type") != "code":
            return _json({"error": "unsupported_response_type"}, 400)
        challenge = p.get("code_challenge")
        if challenge is not None and p.get("code_challenge_method", "plain") != "S256":
            return _json({"error": "invalid_request", "error_description": "S256 only"}, 400)
        code = service.identity.new_code(client_id, redirect_uri, challenge)
        query = {"code": code, "scope": p.get("scope", "")}
        if "state" in p:
            query["state"] = p["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(query), status_code=302)

    async def token(request: Request) -> Response:
        # application/x-www-form-urlencoded, decoded by the standard library
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        grant_type = form.get("grant_type", "")
        service.stats.token_requests[grant_type or "missing"] += 1
        identity = service.identity
        try:
            client_id, secret = _client_auth(request, form)
            if grant_type == "authorization_code":
                identity.check_client(client_id, secret, public_ok="code_verifier" in form)
                answer = identity.exchange_code(
                    form.get("code", ""),
                    client_id,
                    form.get("redirect_uri", ""),
                    form.get("code_verifier"),
                )
            elif grant_type == "refresh_token":
                identity.check_client(client_id, secret, public_ok=False)
                answer = identity.rotate(form.get("refresh_token", ""), client_id)
                if service.faults.lose_token_responses > 0:
                    service.faults.lose_token_responses -= 1
                    return DroppedResponse()
            elif grant_type == "client_credentials":
                identity.check_client(client_id, secret, public_ok=False)
                answer = identity.client_credentials(client_id)
            else:
                raise GrantError("unsupported_grant_type")
        except GrantError as exc:
            return _json({"error": exc.error}, exc.status)
        return _json(answer, headers={"Cache-Control": "no-store"})

    def bearer(request: Request) -> AccessToken | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        return service.identity.token(header[7:].strip())

    async def connections(request: Request) -> Response:
        service.stats.record(request.method, "connections", "")
        access = bearer(request)
        if access is None:
            return _json({"Title": "Unauthorized", "Status": 401, "Detail": "TokenInvalid"}, 401)
        identity = service.identity
        if request.method == "DELETE":
            connection_id = request.path_params["connection_id"]
            for tenant, connection in list(identity.connections.items()):
                if connection["id"] == connection_id and access.tenant is None:
                    del identity.connections[tenant]
                    return Response(status_code=204)
            return _json({"Title": "Not Found", "Status": 404}, 404)
        out = []
        for tenant in identity.granted(access):
            org = service.by_tenant[tenant]
            connection = identity.connections.get(tenant) or {"id": tenant, "authEventId": tenant}
            created = org.data["Organisation"][tenant]["CreatedDateUTC"]
            stamp = datetime.fromtimestamp(int(created[6:-7]) / 1000, tz=timezone.utc)
            out.append(
                {
                    "id": connection["id"],
                    "authEventId": connection["authEventId"],
                    "tenantId": tenant,
                    "tenantType": "ORGANISATION",
                    "tenantName": org.name,
                    "createdDateUtc": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0",
                    "updatedDateUtc": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0",
                }
            )
        return _json(out)

    # ---- accounting API ------------------------------------------------------------------
    async def api(request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        parts = path.split("/")
        endpoint = COLLECTION_BY_LOWER.get(parts[0].lower(), parts[0])
        if endpoint == "Reports" and len(parts) > 1:
            endpoint = f"Reports/{parts[1]}"
        tenant_header = request.headers.get("xero-tenant-id", "")
        access = bearer(request)
        stats = service.stats
        stats.record(request.method, endpoint, tenant_header)
        if access is None:
            return _status(
                stats,
                401,
                {
                    "Type": None,
                    "Title": "Unauthorized",
                    "Status": 401,
                    "Detail": "TokenExpired or TokenInvalid",
                },
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        granted = service.identity.granted(access)
        tenant = tenant_header or (access.tenant or "")
        if not tenant or tenant not in granted or tenant not in service.by_tenant:
            return _status(
                stats,
                403,
                {
                    "Type": None,
                    "Title": "Forbidden",
                    "Status": 403,
                    "Detail": "AuthenticationUnsuccessful",
                },
            )
        org = service.by_tenant[tenant]
        limiter = service.limiter
        faults = service.faults
        if faults.storm_429 > 0:
            faults.storm_429 -= 1
            stats.rate_limited["minute"] += 1
            headers = limiter.headers(tenant, access.client_id) | {
                "X-Rate-Limit-Problem": "minute",
                "Retry-After": limiter.retry_after(60.0),
            }
            return _status(stats, 429, {"Title": "Too Many Requests", "Status": 429}, headers)
        problem, wait = limiter.admit(tenant, access.client_id)
        if problem is not None:
            stats.rate_limited[problem] += 1
            headers = limiter.headers(tenant, access.client_id) | {
                "X-Rate-Limit-Problem": problem,
                "Retry-After": limiter.retry_after(wait),
            }
            return _status(stats, 429, {"Title": "Too Many Requests", "Status": 429}, headers)
        limit_headers = limiter.headers(tenant, access.client_id)
        limiter.in_flight[tenant] += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        stats.max_in_flight_by_tenant[tenant] = max(
            stats.max_in_flight_by_tenant.get(tenant, 0), limiter.in_flight[tenant]
        )
        try:
            if faults.latency_ms > 0:
                await asyncio.sleep(faults.latency_ms / 1000)
            if faults.drop_next > 0 or (
                faults.drop_rate and service.fault_rng.random() < faults.drop_rate
            ):
                faults.drop_next = max(0, faults.drop_next - 1)
                stats.statuses[0] += 1
                return DroppedResponse()
            if faults.fail_next:
                status = int(faults.fail_next.pop(0))
                return _status(
                    stats, status, {"Title": "Server error", "Status": status}, limit_headers
                )
            if faults.error_rate and service.fault_rng.random() < faults.error_rate:
                status = service.fault_rng.choice(faults.error_statuses)
                return _status(
                    stats, status, {"Title": "Server error", "Status": status}, limit_headers
                )
            if request.method != "GET":
                return _status(
                    stats,
                    405,
                    {
                        "Title": "Method Not Allowed",
                        "Status": 405,
                        "Detail": "the sandbox API is read-only: use POST /_sandbox/mutate",
                    },
                    limit_headers,
                )
            try:
                content = answer(org, parts, request)
            except queries.ApiError as exc:
                return _status(stats, exc.status, exc.body, limit_headers)
            stats.statuses[200] += 1
            if "application/json" not in request.headers.get("accept", ""):
                # Xero answers XML unless asked for JSON; the sandbox only says so
                return Response(XML_ANSWER, 200, limit_headers, media_type="text/xml")
            return Response(content, 200, limit_headers, media_type="application/json")
        finally:
            limiter.in_flight[tenant] -= 1
            stats.in_flight -= 1

    def answer(org: Org, parts: list[str], request: Request) -> bytes:
        """The body of a successful GET: Xero's envelope around the records."""
        name = parts[0].lower()
        envelope: dict[str, Any] = {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": "Xero Sandbox",
            "DateTimeUTC": msdate(service.now_ms()).replace("+0000", ""),
        }
        if name == "reports":
            if len(parts) < 2:
                raise queries.ApiError(404, "Not Found", "report name missing")
            if org.standard_role:
                raise queries.ApiError(403, "Forbidden", "the Standard role cannot run reports")
            report = reports.run(org, parts[1], request.query_params, service.now_ms())
            envelope["Reports"] = [report]
            return json.dumps(envelope, separators=(",", ":")).encode()
        collection = COLLECTION_BY_LOWER.get(name)
        if collection is None:
            raise queries.ApiError(404, "Not Found", f"no such endpoint: {parts[0]}")
        key = queries.ENVELOPE_KEY[collection]
        if len(parts) > 1:
            record = queries.find(org, collection, parts[1])
            if record is None:
                raise queries.ApiError(404, "Not Found", "The resource cannot be found")
            return _splice(envelope, key, org.encode(collection, [record]))
        records, pagination = queries.select(
            org, collection, request.query_params, request.headers.get("if-modified-since")
        )
        if pagination is not None:
            envelope["pagination"] = pagination
        if queries.summary_only(collection, request.query_params):
            encoded = [json.dumps(r, separators=(",", ":")).encode() for r in records]
        else:
            encoded = org.encode(collection, records)
        return _splice(envelope, key, encoded)

    # ---- control API -----------------------------------------------------------------------
    async def stats_route(request: Request) -> Response:
        body = service.stats.as_json()
        body["in_flight"] = service.stats.in_flight
        return _json(body)

    async def truth(request: Request) -> Response:
        org = service.by_tenant.get(request.path_params["tenant_id"])
        collection = COLLECTION_BY_LOWER.get(request.path_params["collection"].lower())
        if org is None or collection is None:
            return _json({"error": "unknown tenant or collection"}, 404)
        if collection == "Journals":
            records = (
                org.cash_journals
                if request.query_params.get("paymentsOnly") == "true"
                else org.journals
            )
            return _json({"Journals": records})
        return _json({collection: list(org.data[collection].values())})

    async def mutate(request: Request) -> Response:
        body = await _body(request)
        org = service.by_tenant.get(str(body.get("tenant_id", "")))
        if org is None:
            return _json({"error": "tenant_id: unknown organisation"}, 400)
        try:
            results = mutations.apply(org, body, service.now_ms(), service.random)
        except (ValueError, KeyError) as exc:
            return _json({"error": str(exc)}, 400)
        service.webhooks.collect(service.orgs)
        return _json({"results": results, "now": service.clock.now().isoformat()})

    async def clock_route(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            seconds = float(body.get("advance_seconds", 0))
            if seconds < 0:
                return _json({"error": "the clock only moves forward"}, 400)
            service.clock.advance(seconds)
        return _json(
            {
                "now": service.clock.now().isoformat(),
                "timestamp": service.clock.timestamp(),
                "time_scale": service.clock.time_scale,
            }
        )

    async def faults_route(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            try:
                service.faults.update(body)
                if "limits" in body:
                    current = service.limiter.limits
                    service.limiter.limits = Limits(
                        **(
                            {
                                k: getattr(current, k)
                                for k in ("minute", "day", "concurrent", "app_minute")
                            }
                            | body["limits"]
                        )
                    )
                if "standard_role_tenants" in body:
                    chosen = set(body["standard_role_tenants"])
                    for org in service.orgs:
                        org.standard_role = org.tenant_id in chosen
            except (TypeError, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
        limits = service.limiter.limits
        return _json(
            service.faults.as_json()
            | {
                "limits": {
                    "minute": limits.minute,
                    "day": limits.day,
                    "concurrent": limits.concurrent,
                    "app_minute": limits.app_minute,
                },
                "standard_role_tenants": [o.tenant_id for o in service.orgs if o.standard_role],
            }
        )

    async def reset(request: Request) -> Response:
        body = await _body(request)
        seed = body.get("seed")
        service.reset(int(seed) if seed is not None else None)
        return _json({"reset": True, "config": service.config})

    async def webhooks_route(request: Request) -> Response:
        hooks = service.webhooks
        result: dict[str, Any] = {}
        if request.method == "POST":
            body = await _body(request)
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
            service.webhooks.collect(service.orgs)
            client = http["client"]
            if body.get("intent_to_receive"):
                result["intent_to_receive"] = await hooks.intent_to_receive(client)
            if body.get("deliver", True) and hooks.due():
                result["delivery"] = await hooks.deliver(client)
        return _json(result | hooks.as_json())

    async def _retry_loop() -> None:
        """Deliver due batches (first attempts and retries) in the background."""
        while True:
            await asyncio.sleep(0.05)
            hooks = service.webhooks
            if hooks.receiver_url is not None and "client" in http:
                hooks.collect(service.orgs)
                if hooks.due():
                    with contextlib.suppress(Exception):
                        await hooks.deliver(http["client"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client:
            http["client"] = client
            task = asyncio.create_task(_retry_loop())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/connect/authorize", authorize, methods=["GET"]),
        Route("/connect/token", token, methods=["POST"]),
        Route("/connections", connections, methods=["GET"]),
        Route("/connections/{connection_id}", connections, methods=["DELETE"]),
        Route(API_PREFIX + "/{path:path}", api, methods=methods),
        Route("/_sandbox/stats", stats_route, methods=["GET"]),
        Route("/_sandbox/truth/{tenant_id}/{collection}", truth, methods=["GET"]),
        Route("/_sandbox/mutate", mutate, methods=["POST"]),
        Route("/_sandbox/clock", clock_route, methods=["GET", "POST"]),
        Route("/_sandbox/faults", faults_route, methods=["GET", "POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/webhooks", webhooks_route, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _splice(envelope: dict[str, Any], key: str, records: list[bytes]) -> bytes:
    """The envelope's JSON with the already encoded records as its `key` array."""
    head = json.dumps(envelope, separators=(",", ":")).encode()[:-1]
    return head + b',"' + key.encode() + b'":[' + b",".join(records) + b"]}"


def _status(
    stats: Stats, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    stats.statuses[status] += 1
    return _json(body, status, headers)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        msg = "expected a JSON object"
        raise ValueError(msg)
    return data

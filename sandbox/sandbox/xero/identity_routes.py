"""Xero's identity service: the consent redirect, the token endpoint and /connections."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.xero.responses import DroppedResponse, json_response
from sandbox.xero.service import XeroService, service_of
from sandbox.xero.state import AccessToken, GrantError


def client_auth(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
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


def bearer(service: XeroService, request: Request) -> AccessToken | None:
    """The live access token of the request's `Authorization: Bearer`, if any."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return service.identity.token(header[7:].strip())


async def authorize(request: Request) -> Response:
    """Auto-approving consent: redirects straight back with a code (PKCE S256 only)."""
    service = service_of(request)
    p = request.query_params
    client_id = p.get("client_id", "")
    redirect_uri = p.get("redirect_uri", "")
    if client_id != service.identity.client_id or not redirect_uri:
        return json_response({"error": "invalid_request"}, 400)
    if p.get("response_type") != "code":
        return json_response({"error": "unsupported_response_type"}, 400)
    challenge = p.get("code_challenge")
    if challenge is not None and p.get("code_challenge_method", "plain") != "S256":
        return json_response({"error": "invalid_request", "error_description": "S256 only"}, 400)
    requested = p.get("scope", "").split()
    try:
        scopes = service.plan.grant(requested or None, custom=False)
    except ValueError as exc:
        # Xero shows an error page, not a redirect, for a scope the app may not ask for
        page = "<html><body><h1>Error: unauthorized_client : Invalid scope for client</h1>"
        page += f"<p>{html.escape(str(exc))}</p></body></html>"
        return HTMLResponse(page, status_code=500)
    code = service.identity.new_code(client_id, redirect_uri, challenge, scopes)
    query = {"code": code, "scope": p.get("scope", "")}
    if "state" in p:
        query["state"] = p["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(redirect_uri + separator + urlencode(query), status_code=302)


async def token(request: Request) -> Response:
    """The token endpoint: authorization code (with PKCE), refresh (rotating) and custom
    connections' client credentials."""
    service = service_of(request)
    # application/x-www-form-urlencoded, decoded by the standard library
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    grant_type = form.get("grant_type", "")
    service.stats.token_requests[grant_type or "missing"] += 1
    identity = service.identity
    try:
        client_id, secret = client_auth(request, form)
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
            answer = identity.client_credentials(client_id, _custom_scopes(service, form))
        else:
            raise GrantError("unsupported_grant_type")
    except GrantError as exc:
        return json_response({"error": exc.error}, exc.status)
    return json_response(answer, headers={"Cache-Control": "no-store"})


def _custom_scopes(service: XeroService, form: dict[str, str]) -> frozenset[str]:
    """A custom connection's scopes: those asked for (all allowed) or the app's own."""
    requested = form.get("scope", "").split()
    try:
        return service.plan.grant(requested or None, custom=True)
    except ValueError:
        raise GrantError("invalid_scope") from None


async def connections(request: Request) -> Response:
    """GET the organisations a token may reach; DELETE one connection (the app's tokens only)."""
    service = service_of(request)
    service.stats.record(request.method, "connections", "")
    access = bearer(service, request)
    if access is None:
        return json_response(
            {"Title": "Unauthorized", "Status": 401, "Detail": "TokenInvalid"}, 401
        )
    if request.method == "DELETE":
        return _disconnect(service, access, request.path_params["connection_id"])
    identity = service.identity
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
    return json_response(out)


def _disconnect(service: XeroService, access: AccessToken, connection_id: str) -> Response:
    identity = service.identity
    for tenant, connection in list(identity.connections.items()):
        if connection["id"] == connection_id and access.tenant is None:
            del identity.connections[tenant]
            return Response(status_code=204)
    return json_response({"Title": "Not Found", "Status": 404}, 404)


ROUTES = [
    Route("/connect/authorize", authorize, methods=["GET"]),
    Route("/connect/token", token, methods=["POST"]),
    Route("/connections", connections, methods=["GET"]),
    Route("/connections/{connection_id}", connections, methods=["DELETE"]),
]

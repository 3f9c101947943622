"""Microsoft Entra ID, as much of it as MSAL's client-credentials flow needs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.limits import retry_after_header
from sandbox.powerbi.state import PowerBIState, Principal

# Scopes MSAL may add on its own; they never change a client-credentials grant.
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def _oauth_error(
    status: int, error: str, aadsts: int, description: str, request: Request
) -> JSONResponse:
    """Entra's error shape: error, error_description (with the AADSTS code), error_codes..."""
    trace_id = str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace_id}",
        "error_codes": [aadsts],
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace_id,
        "correlation_id": request.headers.get("client-request-id", str(uuid.uuid4())),
    }
    return JSONResponse(body, status_code=status)


class Entra:
    """Discovery and token endpoints under /{tenant}/, over one sandbox's state."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state

    async def latency(self) -> None:
        if self.state.faults.latency_ms > 0:
            await asyncio.sleep(self.state.faults.latency_ms / 1000)

    async def openid_configuration(self, request: Request) -> Response:
        state = self.state
        tenant = request.path_params["tenant"]
        await self.latency()
        if tenant != state.tenant_id:
            state.record("OpenIdConfiguration", 400)
            return _oauth_error(
                400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.", request
            )
        base = str(request.base_url).rstrip("/")
        state.record("OpenIdConfiguration", 200)
        return JSONResponse(
            {
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "token"],
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "WW",
                "cloud_instance_name": "sandbox",
            }
        )

    async def token(self, request: Request) -> Response:
        response = await self._token(request)
        self.state.record("Token", response.status_code)
        return response

    def _outage(self, request: Request) -> Response:
        state = self.state
        outage = _oauth_error(
            503,
            "temporarily_unavailable",
            50196,
            "The server is temporarily unavailable (sandbox token outage).",
            request,
        )
        wait = state.faults.retry_after
        outage.headers["Retry-After"] = (
            retry_after_header(wait, state.clock.time_scale) if wait is not None else "1"
        )
        return outage

    async def _token(self, request: Request) -> Response:
        state = self.state
        tenant = request.path_params["tenant"]
        await self.latency()
        if state.faults.token_outage:
            return self._outage(request)
        if tenant != state.tenant_id:
            return _oauth_error(
                400, "invalid_request", 90002, f"Tenant '{tenant}' not found.", request
            )
        fields = await _form(request)
        try:
            client_id, client_secret = _client_credentials(request, fields)
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(
                401, "invalid_client", 7000216, "Malformed Basic credentials.", request
            )
        if fields.get("grant_type") != "client_credentials":
            return _oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                "The sandbox supports only the client_credentials grant.",
                request,
            )
        if not client_id:
            return _oauth_error(
                400, "invalid_request", 900144, "The request body must contain client_id.", request
            )
        principal = state.principals.get(client_id)
        if principal is None:
            return _oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
                request,
            )
        if not _secret_matches(principal, client_secret):
            return _oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID.",
                request,
            )
        scopes = set(fields.get("scope", "").split()) - _RESERVED_SCOPES
        granted = {f"{aud}/.default": aud for aud in state.token_audiences}
        if len(scopes) != 1 or next(iter(scopes)) not in granted:
            return _oauth_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope is not valid; the sandbox issues tokens "
                f"only for one of {', '.join(repr(s) for s in granted)}.",
                request,
            )
        access_token, expires = state.issue_token(principal, granted[scopes.pop()])
        lifetime_real = max(1, int(state.clock.to_real_seconds(expires - state.clock.timestamp())))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime_real,
            "ext_expires_in": lifetime_real,
            "access_token": access_token,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def keys(self, request: Request) -> Response:
        return JSONResponse({"keys": []})


async def _form(request: Request) -> dict[str, str]:
    """application/x-www-form-urlencoded, parsed here to need no multipart library."""
    try:
        return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def _client_credentials(request: Request, fields: dict[str, str]) -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic, else from the form (binascii.Error if malformed)."""
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        decoded = base64.b64decode(basic[6:].strip(), validate=True).decode()
        user, _, password = decoded.partition(":")
        return unquote(user), unquote(password)
    return fields.get("client_id"), fields.get("client_secret")


def _secret_matches(principal: Principal, client_secret: str | None) -> bool:
    return bool(client_secret) and hmac.compare_digest(
        str(client_secret).encode(), principal.client_secret.encode()
    )


def routes(state: PowerBIState) -> list[Route]:
    """Discovery and token endpoints under /{tenant}/."""
    entra = Entra(state)
    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", entra.openid_configuration),
        Route("/{tenant}/oauth2/v2.0/token", entra.token, methods=["POST"]),
        Route("/{tenant}/discovery/v2.0/keys", entra.keys),
    ]

"""The sandbox's mutable state besides the data: identity, rate limits, stats and faults.

All times are sandbox seconds from `SandboxClock`; handlers run on one event loop, so the
counters need no locks.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import SandboxClock

SIXTY_DAYS = 60 * 86_400.0
CODE_LIFETIME = 300.0


# ---- identity ------------------------------------------------------------------------------
@dataclass
class AccessToken:
    client_id: str
    expires_at: float
    tenant: str | None  # a custom connection's one organisation; None: the app's connections
    scopes: frozenset[str] = frozenset()


@dataclass
class RefreshToken:
    client_id: str
    last_used: float
    scopes: frozenset[str] = frozenset()
    retired_at: float | None = None


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    challenge: str | None
    expires_at: float
    scopes: frozenset[str] = frozenset()


class GrantError(Exception):
    """An OAuth error answer: `error` is the RFC 6749 code."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


@dataclass
class Identity:
    """Clients, codes and tokens of the sandbox's identity service."""

    clock: SandboxClock
    client_id: str
    client_secret: str
    tenant_ids: list[str]
    access_token_lifetime: float = 1800.0
    refresh_grace_seconds: float = 1800.0
    custom_clients: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # id -> (secret, tenant)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)  # tenant -> connection

    def check_client(self, client_id: str, client_secret: str | None, *, public_ok: bool) -> None:
        if client_id == self.client_id:
            if client_secret is None and public_ok:
                return
            if client_secret is not None and secrets.compare_digest(
                client_secret, self.client_secret
            ):
                return
        elif client_id in self.custom_clients:
            secret = self.custom_clients[client_id][0]
            if client_secret is not None and secrets.compare_digest(client_secret, secret):
                return
        raise GrantError("invalid_client", 401)

    def new_code(
        self, client_id: str, redirect_uri: str, challenge: str | None, scopes: frozenset[str]
    ) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(
            client_id, redirect_uri, challenge, self.clock.timestamp() + CODE_LIFETIME, scopes
        )
        return code

    def issue(
        self, client_id: str, tenant: str | None, scopes: frozenset[str], *, with_refresh: bool
    ) -> dict[str, Any]:
        now = self.clock.timestamp()
        token = secrets.token_urlsafe(32)
        expires = now + self.access_token_lifetime
        self.access[token] = AccessToken(client_id, expires, tenant, scopes)
        answer: dict[str, Any] = {
            "access_token": token,
            # in real seconds, so that a client refreshing ahead of expiry keeps up with the scale
            "expires_in": max(1, math.ceil(self.clock.to_real_seconds(self.access_token_lifetime))),
            "token_type": "Bearer",
            "scope": " ".join(sorted(scopes)),
        }
        if with_refresh:
            refresh = secrets.token_urlsafe(32)
            self.refresh[refresh] = RefreshToken(client_id, now, scopes)
            answer["refresh_token"] = refresh
        return answer

    def add_refresh_token(self, token: str, scopes: frozenset[str]) -> None:
        self.refresh[token] = RefreshToken(self.client_id, self.clock.timestamp(), scopes)

    def exchange_code(
        self, code: str, client_id: str, redirect_uri: str, verifier: str | None
    ) -> dict[str, Any]:
        grant = self.codes.pop(code, None)
        if (
            grant is None
            or grant.expires_at < self.clock.timestamp()
            or grant.client_id != client_id
        ):
            raise GrantError("invalid_grant")
        if grant.redirect_uri != redirect_uri:
            raise GrantError("invalid_grant")
        if grant.challenge is not None:
            if not verifier:
                raise GrantError("invalid_grant")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not secrets.compare_digest(expected, grant.challenge):
                raise GrantError("invalid_grant")
        self.restore_connections()
        return self.issue(client_id, None, grant.scopes, with_refresh=True)

    def rotate(self, token: str, client_id: str) -> dict[str, Any]:
        """Refresh: a new pair; the old refresh token retires but works for the grace period."""
        now = self.clock.timestamp()
        record = self.refresh.get(token)
        if record is None or record.client_id != client_id:
            raise GrantError("invalid_grant")
        if record.retired_at is not None and now > record.retired_at + self.refresh_grace_seconds:
            raise GrantError("invalid_grant")
        if now > record.last_used + SIXTY_DAYS:
            raise GrantError("invalid_grant")
        if record.retired_at is None:
            record.retired_at = now
        record.last_used = now
        return self.issue(client_id, None, record.scopes, with_refresh=True)

    def client_credentials(self, client_id: str, scopes: frozenset[str]) -> dict[str, Any]:
        if client_id not in self.custom_clients:
            raise GrantError("unauthorized_client")
        tenant = self.custom_clients[client_id][1]
        return self.issue(client_id, tenant, scopes, with_refresh=False)

    def token(self, bearer: str) -> AccessToken | None:
        """The live access token, or None when unknown or expired."""
        record = self.access.get(bearer)
        if record is None or record.expires_at <= self.clock.timestamp():
            return None
        return record

    def granted(self, token: AccessToken) -> list[str]:
        if token.tenant is not None:
            return [token.tenant]
        return [t for t in self.tenant_ids if t in self.connections]

    def restore_connections(self) -> None:
        """A new consent reconnects every organisation."""
        for tenant in self.tenant_ids:
            if tenant not in self.connections:
                self.connections[tenant] = {
                    "id": secrets.token_hex(16),
                    "authEventId": secrets.token_hex(16),
                }


# ---- rate limits ---------------------------------------------------------------------------
@dataclass
class Window:
    """A fixed window that opens at the first call after the previous one closed."""

    length: float
    start: float = -math.inf
    count: int = 0

    def roll(self, now: float) -> None:
        if now >= self.start + self.length:
            self.start = now
            self.count = 0

    def remaining(self, limit: int) -> int:
        return max(0, limit - self.count)

    def reset_in(self, now: float) -> float:
        return max(0.0, self.start + self.length - now)


@dataclass
class Limits:
    minute: int = 60
    day: int = 5000
    concurrent: int = 5
    app_minute: int = 10_000


@dataclass
class RateLimiter:
    """Xero's limits: per organisation per minute, per day and in flight; per app (client id)
    per minute across organisations."""

    clock: SandboxClock
    limits: Limits = field(default_factory=Limits)
    minute: dict[str, Window] = field(default_factory=dict)
    day: dict[str, Window] = field(default_factory=dict)
    app: dict[str, Window] = field(default_factory=dict)  # by client id: each app its own
    in_flight: Counter[str] = field(default_factory=Counter)

    def admit(self, tenant: str, app_id: str) -> tuple[str | None, float]:
        """Count a call; (problem, retry-after sandbox seconds) when it is refused."""
        now = self.clock.timestamp()
        minute = self.minute.setdefault(tenant, Window(60.0))
        day = self.day.setdefault(tenant, Window(86_400.0))
        app = self.app.setdefault(app_id, Window(60.0))
        for window in (minute, day, app):
            window.roll(now)
        if self.in_flight[tenant] >= self.limits.concurrent:
            return "concurrent", 1.0
        if day.count >= self.limits.day:
            return "day", day.reset_in(now)
        if minute.count >= self.limits.minute:
            return "minute", minute.reset_in(now)
        if app.count >= self.limits.app_minute:
            return "appminute", app.reset_in(now)
        minute.count += 1
        day.count += 1
        app.count += 1
        return None, 0.0

    def headers(self, tenant: str, app_id: str) -> dict[str, str]:
        minute = self.minute.get(tenant)
        day = self.day.get(tenant)
        app = self.app.get(app_id)
        limits = self.limits
        return {
            "X-MinLimit-Remaining": str(
                minute.remaining(limits.minute) if minute else limits.minute
            ),
            "X-DayLimit-Remaining": str(day.remaining(limits.day) if day else limits.day),
            "X-AppMinLimit-Remaining": str(
                app.remaining(limits.app_minute) if app else limits.app_minute
            ),
        }

    def retry_after(self, sandbox_seconds: float) -> str:
        """`Retry-After` in real whole seconds (never 0), shrunk by the time scale."""
        return str(max(1, math.ceil(self.clock.to_real_seconds(sandbox_seconds))))


# ---- stats and faults ----------------------------------------------------------------------
@dataclass
class Stats:
    """What the API saw: for tests that assert on the client's behaviour."""

    calls: dict[str, dict[str, Counter[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter))
    )
    methods: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    rate_limited: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    token_requests: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0
    max_in_flight_by_tenant: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    # bytes of API response bodies as sent (compressed when the client asked for gzip)
    egress_bytes: Counter[str] = field(default_factory=Counter)

    MAX_REQUESTS = 200_000

    def record(self, method: str, endpoint: str, tenant: str) -> None:
        self.calls[tenant][endpoint][method] += 1
        self.methods[method] += 1
        if len(self.requests) < self.MAX_REQUESTS:
            self.requests.append((method, endpoint, tenant))

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": {t: {e: dict(m) for e, m in eps.items()} for t, eps in self.calls.items()},
            "methods": dict(self.methods),
            "requests": [{"method": m, "endpoint": e, "tenant": t} for m, e, t in self.requests],
            "rate_limited": dict(self.rate_limited),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "token_requests": dict(self.token_requests),
            "max_in_flight": self.max_in_flight,
            "max_in_flight_by_tenant": dict(self.max_in_flight_by_tenant),
            "egress_bytes": dict(self.egress_bytes),
        }


@dataclass
class Faults:
    """Failures on demand (see docs/sandbox-xero.md for the JSON body)."""

    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    fail_next: list[int] = field(default_factory=list)  # statuses of the next API calls
    drop_next: int = 0
    storm_429: int = 0  # the next N API calls answer 429 (minute)
    lose_token_responses: int = 0  # the next N refreshes are applied, then the answer is dropped

    def update(self, body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key in ("standard_role_tenants", "limits"):
                continue
            if not hasattr(self, key):
                msg = f"unknown fault {key!r}"
                raise ValueError(msg)
            setattr(self, key, value)

    def as_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "error_statuses": self.error_statuses,
            "latency_ms": self.latency_ms,
            "drop_rate": self.drop_rate,
            "fail_next": self.fail_next,
            "drop_next": self.drop_next,
            "storm_429": self.storm_429,
            "lose_token_responses": self.lose_token_responses,
        }

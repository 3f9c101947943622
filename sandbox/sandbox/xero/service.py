"""One running Xero sandbox's state: data, identity, limits, stats, faults and webhooks."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

import httpx
from starlette.requests import Request

from sandbox.clock import SandboxClock
from sandbox.xero.access import DAY_LIMIT, AppPlan
from sandbox.xero.company import Org
from sandbox.xero.generator import ANCHOR, generate
from sandbox.xero.state import Faults, Identity, Limits, RateLimiter, Stats
from sandbox.xero.webhooks import Webhooks

API_PREFIX = "/api.xro/2.0"


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
        tier: str = "starter",
        scopes: str | Iterable[str] | None = None,
    ) -> None:
        self.tier = tier
        self.scopes = scopes
        AppPlan.create(tier, scopes)  # bad tier or scope names fail here, before the build
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
        # the webhook sender's HTTP client, open while the app runs (see control_routes.lifespan)
        self.http: httpx.AsyncClient | None = None
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
        self.plan = AppPlan.create(self.tier, self.scopes)
        self.identity.restore_connections()
        self.identity.add_refresh_token(creds.refresh_token, self.plan.grant(None, custom=False))
        self.limiter = RateLimiter(clock=self.clock, limits=Limits(day=DAY_LIMIT[self.plan.tier]))
        self.stats = Stats()
        self.faults = Faults()
        self.webhooks = Webhooks(clock=self.clock, api_url=self.base_url + API_PREFIX)
        self.fault_rng = random.Random(self.seed + 1)

    def reset(self, seed: int | None = None) -> None:
        """Everything back to the start, the tier and scopes given at start included."""
        if seed is not None:
            self.seed = seed
        self._build()

    def set_tier(self, tier: str) -> None:
        """A tier change between runs: the day limit follows, Journals open or close."""
        self.plan.update({"tier": tier})
        self.limiter.limits.day = DAY_LIMIT[self.plan.tier]

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


def service_of(request: Request) -> XeroService:
    """The sandbox a request reached (build_app puts it on the app's state)."""
    return cast("XeroService", request.app.state.service)

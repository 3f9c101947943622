"""Everything the Power BI sandbox remembers: identities, workspace, datasets, faults, stats."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import random
import secrets
import threading
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sandbox.clock import SandboxClock
from sandbox.powerbi.errors import ApiError
from sandbox.powerbi.limits import HOUR, MINUTE, Limits, Window, retry_after_header
from sandbox.powerbi.model import DatasetSchema, Relationship, TableState
from sandbox.powerbi.reports import Report

POWERBI_RESOURCE = "https://analysis.windows.net/powerbi/api"
POWERBI_SCOPE = POWERBI_RESOURCE + "/.default"


@dataclass
class Principal:
    """A registered service principal (an app registration with one secret)."""

    client_id: str
    client_secret: str
    object_id: str
    display_name: str


@dataclass
class Dataset:
    id: str
    name: str
    mode: str
    retention: str
    created: datetime
    configured_by: str
    tables: dict[str, TableState]
    relationships: list[Relationship]
    posts_minute: Window = field(default_factory=lambda: Window(MINUTE))
    posts_hour: Window = field(default_factory=lambda: Window(HOUR))
    rows_hour: Window = field(default_factory=lambda: Window(HOUR))
    pending: int = 0
    max_posts_in_a_minute: int = 0

    def summary(self) -> dict[str, Any]:
        """The dataset as `GET datasets` shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "addRowsAPIEnabled": True,
            "configuredBy": self.configured_by,
            "isRefreshable": False,
            "isEffectiveIdentityRequired": False,
            "isEffectiveIdentityRolesRequired": False,
            "isOnPremGatewayRequired": False,
            "targetStorageMode": "Abf",
            "createdDate": self.created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "defaultRetentionPolicy": self.retention,
        }

    def table(self, name: str) -> TableState | None:
        return self.tables.get(name)


@dataclass
class Faults:
    """Faults on demand (POST /_sandbox/faults), documented in docs/sandbox-powerbi.md."""

    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 503])
    fail_next: int = 0
    fail_next_status: int = 503
    retry_after: float | None = None
    latency_ms: float = 0.0
    token_outage: bool = False
    push_dataset_creation_retired: bool = False
    service_principals_disabled: bool = False
    operations: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


FAULT_FIELDS = set(Faults().__dict__)


@dataclass
class Stats:
    requests: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    rows_per_post: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    rows_posted: int = 0
    throttled: int = 0
    posts_minute: Window = field(default_factory=lambda: Window(MINUTE))
    max_posts_in_a_minute: int = 0


def _coerce_fault(key: str, value: Any) -> Any:
    """Fault values in their field's type (ValueError/TypeError for a wrong one: 400)."""
    if key in ("token_outage", "push_dataset_creation_retired", "service_principals_disabled"):
        if not isinstance(value, bool):
            msg = f"{key} must be true or false"
            raise TypeError(msg)
        return value
    if key in ("fail_next", "fail_next_status"):
        return int(value)
    if key in ("error_rate", "latency_ms"):
        return float(value)
    if key == "retry_after":
        return None if value is None else float(value)
    if key == "error_statuses":
        return [int(v) for v in value]
    return None if value is None else [str(v) for v in value]  # operations


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PowerBIState:
    """One tenant, one workspace, the principals, the datasets; guarded by one lock."""

    # The resources whose `<resource>/.default` scope the token service grants (the Fabric
    # sandbox, which shares this Entra, widens it).
    token_audiences: tuple[str, ...] = (POWERBI_RESOURCE,)

    def __init__(
        self,
        clock: SandboxClock,
        *,
        token_lifetime_seconds: float = 3600.0,
        limits: Limits | None = None,
    ) -> None:
        self.clock = clock
        self.limits = limits or Limits()
        self.token_lifetime_seconds = token_lifetime_seconds
        self.lock = threading.RLock()
        self.tenant_id = str(uuid.uuid4())
        self.workspace_id = str(uuid.uuid4())
        self.workspace_name = "Sandbox workspace"
        self._signing_key = secrets.token_bytes(32)
        self.member = self._new_principal("target-powerbi (member)")
        self.outsider = self._new_principal("outsider (not a workspace member)")
        self.principals = {p.client_id: p for p in (self.member, self.outsider)}
        self.members = {self.member.client_id}
        self.datasets: dict[str, Dataset] = {}
        self.reports: dict[str, Report] = {}  # Fabric report items (reports_api.py)
        self.faults = Faults()
        self.stats = Stats()
        self.random = random.Random()

    @staticmethod
    def _new_principal(display_name: str) -> Principal:
        return Principal(
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(24),
            object_id=str(uuid.uuid4()),
            display_name=display_name,
        )

    # ---- tokens -------------------------------------------------------------------------
    def issue_token(
        self, principal: Principal, audience: str = POWERBI_RESOURCE
    ) -> tuple[str, float]:
        """A JWT-shaped token for `audience`, signed with the sandbox's key; and its expiry."""
        now = self.clock.timestamp()
        expires = now + self.token_lifetime_seconds
        header = {"typ": "JWT", "alg": "HS256"}
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": expires,
            "appid": principal.client_id,
            "oid": principal.object_id,
            "tid": self.tenant_id,
            "jti": secrets.token_hex(8),
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature), expires

    def principal_for(
        self, authorization: str | None, audience: str = POWERBI_RESOURCE
    ) -> Principal:
        """The principal behind a bearer token for `audience`, or 401 (missing, forged, expired)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(
                401,
                "PowerBINotAuthorizedException",
                "missing bearer token",
                headers={"WWW-Authenticate": self.www_authenticate()},
            )
        token = authorization[len("Bearer ") :].strip()
        forged = ApiError(
            401,
            "InvalidAuthenticationToken",
            "the access token is invalid",
            headers={"WWW-Authenticate": self.www_authenticate()},
        )
        parts = token.split(".")
        if len(parts) != 3:
            raise forged
        signing_input = parts[0] + "." + parts[1]
        expected = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            raise forged from None
        if not hmac.compare_digest(signature, expected) or not isinstance(claims, dict):
            raise forged
        if claims.get("aud") != audience or claims.get("tid") != self.tenant_id:
            raise forged
        if float(claims.get("exp", 0)) <= self.clock.timestamp():
            raise ApiError(
                401,
                "TokenExpired",
                "Access token has expired, resubmit with a new access token",
                headers={"WWW-Authenticate": self.www_authenticate()},
            )
        principal = self.principals.get(str(claims.get("appid")))
        if principal is None:
            raise forged
        return principal

    def www_authenticate(self) -> str:
        return (
            'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            'error="invalid_token"'
        )

    def authorize_workspace(self, principal: Principal, group_id: str) -> None:
        """The Fabric tenant setting, then the workspace, then membership."""
        if self.faults.service_principals_disabled:
            raise ApiError(
                401,
                "PowerBINotAuthorizedException",
                "Service principals are not allowed to use Power BI APIs in this tenant "
                "(Fabric admin setting 'Service principals can use Fabric APIs' is disabled)",
            )
        if group_id.lower() != self.workspace_id:
            raise ApiError(
                404,
                "PowerBIEntityNotFound",
                f"Workspace {group_id} was not found or the caller has no access to it",
            )
        if principal.client_id not in self.members:
            raise ApiError(
                403,
                "PowerBINotAuthorizedException",
                "The service principal is not a Member or Admin of the workspace",
            )

    # ---- control ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget datasets, reports, faults and stats; identities and tokens stay valid."""
        with self.lock:
            self.datasets.clear()
            self.reports.clear()
            self.faults = Faults()
            self.stats = Stats()

    def set_faults(self, body: dict[str, Any]) -> Faults:
        """Merge the given fault fields (`"clear": true` starts from no faults)."""
        with self.lock:
            unknown = set(body) - FAULT_FIELDS - {"clear", "delete_dataset", "seed"}
            if unknown:
                msg = f"unknown fault fields: {', '.join(sorted(unknown))}"
                raise ValueError(msg)
            faults = Faults() if body.get("clear") else copy.deepcopy(self.faults)
            for key in FAULT_FIELDS & set(body):
                setattr(faults, key, _coerce_fault(key, body[key]))
            if not 0.0 <= float(faults.error_rate) <= 1.0:
                msg = "error_rate must be between 0 and 1"
                raise ValueError(msg)
            if "seed" in body:
                self.random.seed(body["seed"])
            self.faults = faults
            doomed = body.get("delete_dataset")
            if doomed is not None:
                ids = [doomed] if isinstance(doomed, str) else list(doomed)
                for dataset_id in ids:
                    if self.datasets.pop(dataset_id, None) is None:
                        msg = f"no dataset {dataset_id}"
                        raise ValueError(msg)
            return faults

    def injected_error(self, operation: str) -> ApiError | None:
        """A 500/503 when the faults call for one on this operation."""
        faults = self.faults
        if faults.operations is not None and operation not in faults.operations:
            return None
        status: int | None = None
        if faults.fail_next > 0:
            faults.fail_next -= 1
            status = faults.fail_next_status
        elif faults.error_rate > 0 and self.random.random() < faults.error_rate:
            status = self.random.choice(faults.error_statuses)
        if status is None:
            return None
        headers: dict[str, str] = {}
        if faults.retry_after is not None:
            headers["Retry-After"] = retry_after_header(faults.retry_after, self.clock.time_scale)
        code = "ServiceUnavailable" if status == 503 else "InternalServerError"
        return ApiError(status, code, f"injected fault ({status})", headers=headers)

    def record(self, operation: str, status: int) -> None:
        with self.lock:
            self.stats.requests[operation][str(status)] += 1
            if status == 429:
                self.stats.throttled += 1

    def snapshot(self) -> dict[str, Any]:
        """The control API's view of every dataset."""
        with self.lock:
            return {
                "workspace": {"id": self.workspace_id, "name": self.workspace_name},
                "datasets": [
                    {
                        **ds.summary(),
                        "defaultMode": ds.mode,
                        "tables": [
                            {**t.schema.to_json(), "rowCount": t.count} for t in ds.tables.values()
                        ],
                        "relationships": [r.to_json() for r in ds.relationships],
                    }
                    for ds in self.datasets.values()
                ],
            }

    def stats_json(self) -> dict[str, Any]:
        with self.lock:
            stats = self.stats
            per_post = list(stats.rows_per_post)
            return {
                "requests": {op: dict(counts) for op, counts in stats.requests.items()},
                "rows_per_post": per_post,
                "rows_per_post_summary": {
                    "posts": len(per_post),
                    "min": min(per_post, default=0),
                    "max": max(per_post, default=0),
                    "mean": (sum(per_post) / len(per_post)) if per_post else 0.0,
                },
                "rows_posted": stats.rows_posted,
                "max_posts_in_a_minute": stats.max_posts_in_a_minute,
                "max_posts_in_a_minute_by_dataset": {
                    ds.id: ds.max_posts_in_a_minute for ds in self.datasets.values()
                },
                "throttled": stats.throttled,
            }

    def create_dataset(
        self, schema: DatasetSchema, retention: str, principal: Principal
    ) -> Dataset:
        with self.lock:
            dataset = Dataset(
                id=str(uuid.uuid4()),
                name=schema.name,
                mode=schema.mode,
                retention=retention,
                created=datetime.fromtimestamp(self.clock.timestamp(), tz=timezone.utc),
                configured_by=principal.display_name,
                tables={t.name: TableState(t) for t in schema.tables},
                relationships=schema.relationships,
            )
            for table in dataset.tables.values():
                if table.schema.initial_rows:
                    rows = table.convert_rows(table.schema.initial_rows, self.limits)
                    table.schema.initial_rows = []
                    self.store_rows(dataset, table, rows)
            self.datasets[dataset.id] = dataset
            return dataset

    def row_cap(self, dataset: Dataset) -> int:
        if dataset.retention == "basicFIFO":
            return self.limits.max_rows_fifo
        return self.limits.max_rows_none

    def store_rows(self, dataset: Dataset, table: TableState, rows: list[tuple[Any, ...]]) -> None:
        """Append; under basicFIFO drop the oldest rows beyond the cap."""
        table.rows.extend(rows)
        self.enforce_cap(dataset, table)

    def enforce_cap(self, dataset: Dataset, table: TableState) -> None:
        """basicFIFO drops the oldest rows (synthetic ones are the oldest) beyond the cap."""
        cap = self.row_cap(dataset)
        excess = table.count - cap
        if excess > 0 and dataset.retention == "basicFIFO":
            from_synthetic = min(excess, table.synthetic)
            table.synthetic -= from_synthetic
            for _ in range(excess - from_synthetic):
                table.rows.popleft()

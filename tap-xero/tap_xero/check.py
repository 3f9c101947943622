"""`tap-xero auth check`: what the connection may read, per organisation, before a real run.

One GET per distinct endpoint of the selected streams (child streams share their parent's),
with the smallest answer each endpoint allows, through the run's own token manager and
limiter. A 403 is read as a run would read it (`tap_xero.access`). Xero's
`X-DayLimit-Remaining` gives the calls left today and, through it, the tier's day limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import requests

from tap_xero import access
from tap_xero.auth import XeroAuthError
from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream
from tap_xero.connections import organisation_label, unauthorized_error
from tap_xero.limits import DailyBudgetExhaustedError

if TYPE_CHECKING:
    from tap_xero.base import XeroTapBase


@dataclass
class OrgAccess:
    """What one organisation of the connection lets the selected streams read."""

    tenant_id: str
    label: str
    readable: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # stream -> why
    day_left: int | None = None
    day_limit: int | None = None


def endpoints(tap: XeroTapBase) -> dict[str, tuple[XeroStream, list[str]]]:
    """Endpoint path -> (a stream reading it, every selected stream it serves)."""
    found: dict[str, tuple[XeroStream, list[str]]] = {}
    for stream in tap.streams.values():
        if not stream.selected:
            continue
        reader = stream
        if isinstance(stream, XeroChildStream):
            reader = next(s for s in tap.streams.values() if type(s) is stream.parent_type)
        if not isinstance(reader, XeroStream):
            continue
        entry = found.setdefault(reader.path, (reader, []))
        entry[1].append(stream.name)
    return found


def _get(
    tap: XeroTapBase, session: requests.Session, tenant: str, stream: XeroStream
) -> requests.Response:
    url = f"{stream.url_base}{stream.path}"
    headers = {"Accept": "application/json", "xero-tenant-id": tenant}
    limiter = tap.limiters.for_tenant(tenant)
    for attempt in range(2):
        headers["Authorization"] = f"Bearer {tap.token_manager.access_token()}"
        with limiter.slot():
            response = session.get(
                url,
                params=stream.probe_params(),
                headers=headers,
                timeout=tap.settings.request_timeout,
                allow_redirects=False,
            )
        limiter.observe(response.headers)
        if response.status_code != 401 or attempt:
            return response
        tap.token_manager.invalidate(headers["Authorization"].removeprefix("Bearer "))
    return response


def _is_report(stream: XeroStream) -> bool:
    return stream.path.startswith("/Reports/")


def _why(response: requests.Response, stream: XeroStream) -> str | None:
    """None when the endpoint answered as a readable one; else why it is not readable."""
    status = response.status_code
    scope_refused = "insufficient_scope" in response.headers.get("WWW-Authenticate", "")
    if status == 401 and not scope_refused:
        raise unauthorized_error()
    if status == 429 and response.headers.get("X-Rate-Limit-Problem", "").lower() == "day":
        raise DailyBudgetExhaustedError
    if status not in (401, 403):
        return None if status < 500 else f"Xero answered HTTP {status}; try again later"
    kind = "stream" if scope_refused else access.kind_of(response, report=_is_report(stream))
    if kind == "proxy":
        return access.proxy_message(stream.path, stream.url_base)
    if kind == "role":
        return "the user's role cannot run reports ('Standard + Reports' or 'Advisor' needed)"
    if kind == "connection":
        return "the organisation refused the connection (AuthenticationUnsuccessful)"
    scopes, tier = stream.refusal_facts(stream.path)
    return access.cause(stream.path, scopes, tier)


def check_organisation(tap: XeroTapBase, tenant: str) -> OrgAccess:
    result = OrgAccess(tenant, organisation_label(tenant, tap.organisations))
    session = requests.Session()
    for stream, names in endpoints(tap).values():
        try:
            why = _why(_get(tap, session, tenant, stream), stream)
        except DailyBudgetExhaustedError:
            why = "Xero's day limit for this organisation is spent; try again tomorrow"
        except requests.RequestException as exc:
            msg = f"cannot reach {stream.url_base} ({type(exc).__name__}): check api_url"
            raise XeroAuthError(msg) from None
        for name in names:
            if why is None:
                result.readable.append(name)
            else:
                result.refused[name] = why
    limiter = tap.limiters.for_tenant(tenant)
    result.day_left, result.day_limit = limiter.day_remaining, limiter.day_limit
    return result


def report(results: Iterable[OrgAccess]) -> list[str]:
    """The lines `auth check` prints."""
    lines: list[str] = []
    for org in results:
        total = len(org.readable) + len(org.refused)
        day = "calls left today: unknown (no X-DayLimit-Remaining)"
        if org.day_left is not None:
            limit = f"{org.day_limit:,}" if org.day_limit else "5,000 or more"
            day = f"calls left today: {org.day_left:,} (day limit {limit})"
        lines.append(
            f"{org.label}: {len(org.readable)} of {total} selected streams readable; {day}"
        )
        if org.readable:
            lines.append(f"  readable: {', '.join(sorted(org.readable))}")
        for name, why in sorted(org.refused.items()):
            lines.append(f"  not readable: {name}: {why}")
    return lines

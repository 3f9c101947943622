"""The organisations a token grants, and what to tell the user when access is refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tap_xero.auth import RELOGIN_HINT, XeroAuthError, XeroTokenManager

ROLE_HINT = (
    "the Xero user who authorised the app needs the 'Standard + Reports' or 'Advisor' role "
    "in that organisation: ask an adviser of the organisation to change it under "
    "Settings > Users, then retry"
)


def tenant_label(connection: Mapping[str, Any]) -> str:
    name = connection.get("tenantName")
    tenant_id = connection.get("tenantId", "?")
    return f"{name} ({tenant_id})" if name else str(tenant_id)


def select_tenants(
    connections: Sequence[Mapping[str, Any]], tenant_ids: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The connections to read: every organisation, or exactly those of `tenant_ids`.

    An id in `tenant_ids` that the token does not grant is an error naming the fix.
    """
    organisations = [
        dict(c) for c in connections if c.get("tenantType", "ORGANISATION") == "ORGANISATION"
    ]
    if not tenant_ids:
        if not organisations:
            msg = (
                "the token grants no Xero organisation: the connection was removed or never "
                f"made; {RELOGIN_HINT} and tick at least one organisation"
            )
            raise XeroAuthError(msg)
        return organisations
    by_id = {str(c.get("tenantId")): c for c in organisations}
    missing = [t for t in tenant_ids if t not in by_id]
    if missing:
        raise not_granted_error(missing, organisations)
    return [by_id[t] for t in tenant_ids]


def not_granted_error(
    tenant_ids: Sequence[str], granted: Sequence[Mapping[str, Any]]
) -> XeroAuthError:
    available = ", ".join(tenant_label(c) for c in granted) or "none"
    return XeroAuthError(
        f"organisation(s) {', '.join(tenant_ids)} not granted to this app (granted: "
        f"{available}). {RELOGIN_HINT[0].upper()}{RELOGIN_HINT[1:]} and tick them on the "
        "consent page, or remove them from tenant_ids"
    )


def forbidden_error(
    tenant_id: str,
    granted: Sequence[Mapping[str, Any]] | None,
    what: str = "this endpoint",
) -> XeroAuthError:
    """The error for an HTTP 403 from the Accounting API for `tenant_id`.

    An organisation outside `granted` (the `/connections` list) was not granted; one
    inside it means the user's role is too low (reports need 'Standard + Reports').
    """
    if granted is not None and tenant_id not in {str(c.get("tenantId")) for c in granted}:
        return not_granted_error([tenant_id], granted)
    label = next(
        (tenant_label(c) for c in granted or () if str(c.get("tenantId")) == tenant_id),
        tenant_id,
    )
    return XeroAuthError(f"Xero refused {what} for organisation {label} (HTTP 403): {ROLE_HINT}")


def organisation_label(tenant_id: str, granted: Sequence[Mapping[str, Any]] | None) -> str:
    """`Name (id)` of an organisation of the connection, or its id."""
    return next(
        (tenant_label(c) for c in granted or () if str(c.get("tenantId")) == tenant_id),
        tenant_id,
    )


def connection_error(tenant_id: str, granted: Sequence[Mapping[str, Any]] | None) -> XeroAuthError:
    """A 403 `AuthenticationUnsuccessful`: the organisation's connection itself is refused."""
    if granted is not None and tenant_id not in {str(c.get("tenantId")) for c in granted}:
        return not_granted_error([tenant_id], granted)
    return XeroAuthError(
        f"Xero refused organisation {organisation_label(tenant_id, granted)} "
        "(HTTP 403 AuthenticationUnsuccessful): its connection was removed, the organisation "
        "is no longer active, or the user who authorised it lost access or changed role; "
        f"{RELOGIN_HINT}"
    )


def unauthorized_error() -> XeroAuthError:
    """A 401 that survived a refresh: the connection itself is gone."""
    return XeroAuthError(
        "Xero rejected a freshly refreshed access token (HTTP 401): the app was disconnected "
        f"from the organisation or the user lost access; {RELOGIN_HINT}"
    )


def granted_tenants(
    manager: XeroTokenManager, tenant_ids: Sequence[str] | None
) -> list[dict[str, Any]]:
    """`/connections`, narrowed to `tenant_ids` (or all of them), with actionable errors."""
    return select_tenants(manager.connections(), tenant_ids)

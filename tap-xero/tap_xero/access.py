"""What a 403 from the Accounting API means, and what to tell the user about it.

Since March 2026 a connection may read some endpoints and not others: the app's tier
(GET /Journals needs Advanced) and its granted scopes (granular since March 2026) decide.
A refusal of that kind concerns one stream of one organisation, which the run skips
(`on_forbidden_stream: skip`) while everything else goes on. Other 403s concern the whole
connection and stop the run with their own advice:

- `AuthenticationUnsuccessful`: the organisation's connection is gone (Xero's documented
  body for a revoked or changed connection);
- a 403 on a report with no scope in it: the user's role is too low for reports;
- a 403 that is not Xero's JSON (an HTML page): a proxy or firewall on the way refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import requests

Kind = Literal["stream", "connection", "role", "proxy"]


class StreamRefusedError(Exception):
    """Xero refused one stream's endpoint to one organisation (tier or scope): a 403, or a
    401 whose `WWW-Authenticate` says `insufficient_scope` (RFC 6750)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class Refusal:
    """A stream the connection may not read for one organisation, and the likely cause."""

    stream: str
    tenant_id: str
    organisation: str
    endpoint: str
    cause: str
    status: int = 403

    def line(self) -> str:
        return (
            f"{self.stream} is not readable for organisation {self.organisation}: Xero refused "
            f"GET {self.endpoint} (HTTP {self.status}). Likely cause: {self.cause}"
        )


def _body_detail(response: requests.Response) -> str | None:
    """Xero's JSON error text (`Detail`, `Title`, `Message`), or None when not JSON."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return " ".join(str(body.get(key) or "") for key in ("Title", "Detail", "Message")).strip()


def kind_of(response: requests.Response, *, report: bool) -> Kind:
    """Which 403 this is (see the module docstring)."""
    detail = _body_detail(response)
    if detail is None:
        return "proxy"
    if "AuthenticationUnsuccessful" in detail:
        return "connection"
    challenge = response.headers.get("WWW-Authenticate", "")
    about_access = "scope" in f"{detail} {challenge}".lower() or "tier" in detail.lower()
    if report and not about_access:
        return "role"
    return "stream"


def cause(endpoint: str, scopes: tuple[str, ...], tier: str | None) -> str:
    """The likely cause of a stream refusal, with what to change."""
    granular, broad = (*scopes, "", "")[:2]
    scope_text = f"the scope {granular}"
    if broad and broad != granular:
        scope_text += f" (older apps with broad scopes: {broad})"
    if tier is not None:
        return (
            f"the app's tier: GET {endpoint} needs the {tier} tier since March 2026 (custom "
            f"connections made since 29 April 2026 cannot read it at all); or {scope_text} "
            "is not granted"
        )
    return (
        f"{scope_text} is not granted for this organisation: add it to the app and run "
        "`tap-xero auth login` again (tick this organisation)"
    )


def proxy_message(endpoint: str, url: str) -> str:
    return (
        f"a proxy or firewall between tap-xero and Xero refused GET {endpoint} (HTTP 403 with "
        f"a page that is not Xero's JSON): allow {url} through it, or check HTTPS_PROXY"
    )


# The read scopes of each family of endpoints: (granular, broad). Granular scopes are required
# for apps created since 2 March 2026; broad ones work for older apps until September 2027.
INVOICES = ("accounting.invoices.read", "accounting.transactions.read")
PAYMENTS = ("accounting.payments.read", "accounting.transactions.read")
BANKING = ("accounting.banktransactions.read", "accounting.transactions.read")
MANUAL_JOURNALS = ("accounting.manualjournals.read", "accounting.transactions.read")
EXPENSES = ("accounting.classicexpenses.read", "accounting.transactions.read")
CONTACTS = ("accounting.contacts.read", "accounting.contacts.read")
SETTINGS = ("accounting.settings.read", "accounting.settings.read")
JOURNALS = ("accounting.journals.read", "accounting.journals.read")
BUDGETS = ("accounting.budgets.read", "accounting.budgets.read")


def report_scopes(family: str) -> tuple[str, str]:
    """A report family's granular scope (e.g. `profitandloss`), and the broad reports scope."""
    return (f"accounting.reports.{family}.read", "accounting.reports.read")

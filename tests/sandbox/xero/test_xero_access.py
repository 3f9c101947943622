"""App tiers and scopes: day limits, Journals below Advanced, the scope each endpoint needs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandbox.xero import XeroSandbox, access
from sandbox.xero.company import COLLECTIONS
from sandbox.xero.queries import ENVELOPE_KEY
from tap_xero import auth as tap_auth

from .conftest import Client

SEED = 11


@pytest.fixture(scope="module")
def starter() -> Iterator[XeroSandbox]:
    """The default app: Starter tier, the granular scopes tap-xero asks for."""
    with XeroSandbox(seed=SEED, size="small", tenants=2) as sbx:
        yield sbx


@pytest.fixture
def fresh(starter: XeroSandbox) -> XeroSandbox:
    """The module's sandbox back at its start: Starter tier, nothing withheld."""
    assert httpx.post(starter.url + "/_sandbox/reset", json={"seed": SEED}).status_code == 200
    return starter


@pytest.fixture
def client(fresh: XeroSandbox) -> Iterator[Client]:
    c = Client(fresh)
    yield c
    c.http.close()


def custom_token(sbx: XeroSandbox, tenant: str, scope: str | None) -> httpx.Response:
    creds = sbx.custom_connection(tenant)
    data = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    return httpx.post(
        sbx.config["identity_url"] + "/connect/token",
        auth=(creds["client_id"], creds["client_secret"]),
        data=data,
    )


def get(sbx: XeroSandbox, token: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        sbx.config["api_url"] + path,
        params=params,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )


def assert_unauthorised(response: httpx.Response) -> None:
    """Xero's answer to a missing scope and to Journals below Advanced."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["Title"] == "Unauthorized" and body["Detail"] == "AuthorizationUnsuccessful"
    assert set(body) == {"Type", "Title", "Status", "Detail", "Instance", "Extensions"}
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert "x-daylimit-remaining" in response.headers


def test_default_scopes_are_what_tap_xero_asks_for() -> None:
    assert access.GRANULAR_DEFAULT == tap_auth.GRANULAR_SCOPES
    assert access.BROAD_DEFAULT == tap_auth.BROAD_SCOPES


def test_starter_day_limit_and_tier_change(client: Client, fresh: XeroSandbox) -> None:
    tenant = client.config["tenant_ids"][0]
    first = client.get("/Currencies")
    assert first.headers["x-daylimit-remaining"] == "999"
    fresh.service.limiter.day[tenant].count = 1000  # the organisation's day is spent
    refused = client.get("/Currencies")
    assert refused.status_code == 429
    assert refused.headers["x-rate-limit-problem"] == "day"
    assert refused.headers["x-daylimit-remaining"] == "0"
    # the other organisation has its own day
    other = client.get("/Currencies", tenant=client.config["tenant_ids"][1])
    assert other.headers["x-daylimit-remaining"] == "999"
    upgraded = client.control("app", {"tier": "core"})
    assert upgraded["day_limit"] == 5000 and upgraded["journals"] is False
    assert client.get("/Currencies").headers["x-daylimit-remaining"] == "3999"


def test_journals_need_the_advanced_tier(client: Client) -> None:
    assert client.control("app")["tier"] == "starter"
    journal_paths = ("/Journals", "/Journals?paymentsOnly=true", "/Journals?offset=100")
    for path in journal_paths:
        assert_unauthorised(client.get(path))
    assert client.get("/ManualJournals").status_code == 200
    client.control("app", {"tier": "advanced"})
    cash = client.get("/Journals", params={"paymentsOnly": "true"})
    assert cash.status_code == 200 and cash.json()["Journals"]
    one = client.get("/Journals").json()["Journals"][0]["JournalID"]
    assert client.get(f"/Journals/{one}").status_code == 200
    client.control("app", {"tier": "plus"})  # a downgrade between runs: journals disappear
    assert_unauthorised(client.get(f"/Journals/{one}"))


def test_granular_token_lacks_classic_expenses(client: Client) -> None:
    """tap-xero's granular list has no accounting.classicexpenses.read: no ExpenseClaims."""
    assert "accounting.classicexpenses.read" not in client.tokens["scope"].split()
    assert set(client.tokens["scope"].split()) == set(access.GRANULAR_DEFAULT)
    for path in ("/ExpenseClaims", "/Receipts"):
        assert_unauthorised(client.get(path))
    for path in ("/Invoices", "/Reports/ProfitAndLoss", "/Reports/TrialBalance", "/Items"):
        assert client.get(path).status_code == 200, path


def test_scope_withheld_in_one_organisation(client: Client) -> None:
    first, second = client.config["tenant_ids"]
    client.control("app", {"withheld_scopes": {first: ["accounting.invoices.read"]}})
    assert_unauthorised(client.get("/Invoices", tenant=first))
    assert client.get("/Invoices", tenant=second).status_code == 200
    assert client.get("/Contacts", tenant=first).status_code == 200
    bad = client.http.post(client.sbx.url + "/_sandbox/app", json={"tier": "gold"})
    assert bad.status_code == 400 and "tier" in bad.json()["error"]


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_each_endpoint_opens_with_its_scope_only(fresh: XeroSandbox, collection: str) -> None:
    """A custom connection asking for one scope reads its endpoints and nothing else."""
    httpx.post(fresh.url + "/_sandbox/app", json={"tier": "enterprise"})
    tenant = fresh.config["tenant_ids"][0]
    families = access.COLLECTION_SCOPES[collection]
    scope = families[0] if families[0].endswith(".read") else families[0] + ".read"
    if scope == "accounting.journals.read":
        refused = custom_token(fresh, tenant, scope)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
        return
    token = custom_token(fresh, tenant, scope).json()["access_token"]
    answer = get(fresh, token, f"/{collection}")
    assert answer.status_code == 200, (collection, answer.text)
    assert ENVELOPE_KEY[collection] in answer.json()
    other = "accounting.budgets.read" if collection != "Budgets" else "accounting.contacts.read"
    token = custom_token(fresh, tenant, other).json()["access_token"]
    assert_unauthorised(get(fresh, token, f"/{collection}"))


def test_report_scopes_by_family(fresh: XeroSandbox) -> None:
    tenant = fresh.config["tenant_ids"][0]
    token = custom_token(fresh, tenant, "accounting.reports.trialbalance.read").json()
    assert token["scope"] == "accounting.reports.trialbalance.read"
    assert get(fresh, token["access_token"], "/Reports/TrialBalance").status_code == 200
    assert_unauthorised(get(fresh, token["access_token"], "/Reports/BalanceSheet"))


def test_custom_connection_of_a_new_app_has_no_journals(fresh: XeroSandbox) -> None:
    tenant = fresh.config["tenant_ids"][0]
    httpx.post(fresh.url + "/_sandbox/app", json={"tier": "advanced"})
    answer = custom_token(fresh, tenant, None).json()
    assert "accounting.journals.read" not in answer["scope"].split()
    assert_unauthorised(get(fresh, answer["access_token"], "/Journals"))
    assert custom_token(fresh, tenant, "accounting.transactions.read").status_code == 400


def test_consent_refuses_broad_scopes_for_a_new_app(client: Client) -> None:
    params = {
        "response_type": "code",
        "client_id": client.config["client_id"],
        "redirect_uri": "http://127.0.0.1:9/cb",
        "state": "s",
    }
    url = client.config["identity_url"] + "/connect/authorize"
    broad = client.http.get(url, params=params | {"scope": " ".join(access.BROAD_DEFAULT)})
    assert broad.status_code == 500
    assert "Invalid scope for client" in broad.text
    granular = client.http.get(url, params=params | {"scope": "offline_access openid"})
    assert granular.status_code == 302


def test_broad_app_may_ask_for_both() -> None:
    style, granted = access.parse_scopes("broad")
    assert style == "broad" and granted == frozenset(access.BROAD_DEFAULT)
    plan = access.AppPlan.create("core", "broad")
    assert plan.grant(access.GRANULAR_DEFAULT, custom=False) == frozenset(access.GRANULAR_DEFAULT)
    assert access.parse_scopes("accounting.contacts.read,accounting.reports.read")[0] == "broad"
    with pytest.raises(ValueError, match="unknown Xero scope"):
        access.parse_scopes("accounting.everything")
    with pytest.raises(ValueError, match="unknown tier"):
        access.AppPlan.create("gold", None)


def test_cli_refuses_a_bad_tier_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "xero", "--tier", "gold"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice: 'gold'" in done.stderr and "Traceback" not in done.stderr

"""Identity over loopback: refresh rotation and grace, PKCE, custom connections, 401/403."""

from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sandbox.xero import XeroSandbox

from .conftest import Client


def token_call(client: Client, **data: str) -> httpx.Response:
    return client.http.post(
        client.config["identity_url"] + "/connect/token",
        auth=(client.config["client_id"], client.config["client_secret"]),
        data=data,
    )


def test_refresh_rotates_and_old_token_has_a_grace_period(client: Client) -> None:
    first = client.tokens["refresh_token"]
    assert first != client.config["refresh_token"]
    assert client.tokens["expires_in"] == 1800 and client.tokens["token_type"] == "Bearer"
    # the retired token still works within the grace period (a lost response)
    again = client.refresh(client.config["refresh_token"])
    assert again.status_code == 200
    newest = client.refresh(first).json()["refresh_token"]
    client.control("clock", {"advance_seconds": 1801})
    expired = client.refresh(client.config["refresh_token"])
    assert expired.status_code == 400 and expired.json() == {"error": "invalid_grant"}
    assert client.refresh(first).json() == {"error": "invalid_grant"}
    assert client.refresh(newest).status_code == 200


def test_unused_refresh_token_expires_after_60_days(client: Client) -> None:
    token = client.tokens["refresh_token"]
    client.control("clock", {"advance_seconds": 59 * 86400})
    token = client.refresh(token).json()["refresh_token"]
    client.control("clock", {"advance_seconds": 60 * 86400 + 1})
    assert client.refresh(token).json() == {"error": "invalid_grant"}


def test_access_token_expiry_and_unknown_tokens(client: Client) -> None:
    assert client.get("/Organisation").status_code == 200
    client.control("clock", {"advance_seconds": 1800})
    expired = client.get("/Organisation")
    assert expired.status_code == 401
    assert "WWW-Authenticate" in expired.headers
    client.access_token = "not-a-token"
    assert client.get("/Organisation").status_code == 401


def test_client_authentication(client: Client) -> None:
    wrong = client.http.post(
        client.config["identity_url"] + "/connect/token",
        auth=(client.config["client_id"], "wrong-secret"),
        data={"grant_type": "refresh_token", "refresh_token": client.tokens["refresh_token"]},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "wrong-secret" not in wrong.text
    form = client.http.post(
        client.config["identity_url"] + "/connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": client.tokens["refresh_token"],
            "client_id": client.config["client_id"],
            "client_secret": client.config["client_secret"],
        },
    )
    assert form.status_code == 200
    assert token_call(client, grant_type="password").json()["error"] == "unsupported_grant_type"


def test_authorization_code_with_pkce(client: Client) -> None:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    redirect = "http://127.0.0.1:9/callback"
    answer = client.http.get(
        client.config["identity_url"] + "/connect/authorize",
        params={
            "response_type": "code",
            "client_id": client.config["client_id"],
            "redirect_uri": redirect,
            "scope": "offline_access accounting.transactions.read",
            "state": "xyz",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        },
    )
    assert answer.status_code == 302
    location = urlparse(answer.headers["location"])
    query = parse_qs(location.query)
    assert location.path == "/callback" and query["state"] == ["xyz"]
    code = query["code"][0]
    bad = token_call(
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        code_verifier="w" * 64,
    )
    assert bad.json() == {"error": "invalid_grant"}
    # a failed exchange burns the code, as one-time codes do
    answer = client.http.get(
        client.config["identity_url"] + "/connect/authorize",
        params={
            "response_type": "code",
            "client_id": client.config["client_id"],
            "redirect_uri": redirect,
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        },
    )
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    good = token_call(
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        code_verifier=verifier,
    )
    assert good.status_code == 200 and "refresh_token" in good.json()
    reused = token_call(
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        code_verifier=verifier,
    )
    assert reused.json() == {"error": "invalid_grant"}
    plain = client.http.get(
        client.config["identity_url"] + "/connect/authorize",
        params={
            "response_type": "code",
            "client_id": client.config["client_id"],
            "redirect_uri": redirect,
            "code_challenge": verifier,
            "code_challenge_method": "plain",
        },
    )
    assert plain.status_code == 400


def test_custom_connection_is_bound_to_one_organisation(client: Client, sbx: XeroSandbox) -> None:
    tenants = client.config["tenant_ids"]
    custom = sbx.custom_connection(tenants[1])
    assert custom["tenant_id"] == tenants[1]
    answer = client.http.post(
        client.config["identity_url"] + "/connect/token",
        auth=(custom["client_id"], custom["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert answer.status_code == 200
    assert "refresh_token" not in answer.json()
    client.access_token = answer.json()["access_token"]
    no_header = client.http.get(
        client.config["api_url"] + "/Organisation",
        headers={"Authorization": f"Bearer {client.access_token}", "Accept": "application/json"},
    )
    assert no_header.status_code == 200
    assert no_header.json()["Organisations"][0]["OrganisationID"] == tenants[1]
    assert client.get("/Organisation", tenant=tenants[0]).status_code == 403
    # the app's client cannot use client_credentials
    assert token_call(client, grant_type="client_credentials").status_code == 400


def test_tenant_header_is_required_and_checked(client: Client) -> None:
    assert client.get("/Invoices", tenant="").status_code == 403
    assert client.get("/Invoices", tenant="00000000-0000-4000-8000-000000000000").status_code == 403
    body = client.get("/Organisation", tenant=client.config["tenant_ids"][1]).json()
    assert body["Organisations"][0]["OrganisationID"] == client.config["tenant_ids"][1]


def test_connections_list_and_delete(client: Client) -> None:
    headers = {"Authorization": f"Bearer {client.access_token}"}
    listed = client.http.get(client.config["connections_url"], headers=headers).json()
    assert [c["tenantId"] for c in listed] == client.config["tenant_ids"]
    assert {c["tenantType"] for c in listed} == {"ORGANISATION"}
    assert all(c["tenantName"] and c["id"] and c["createdDateUtc"] for c in listed)
    assert client.http.get(client.config["connections_url"]).status_code == 401
    gone = listed[0]
    deleted = client.http.delete(
        f"{client.config['connections_url']}/{gone['id']}", headers=headers
    )
    assert deleted.status_code == 204
    after = client.http.get(client.config["connections_url"], headers=headers).json()
    assert gone["tenantId"] not in [c["tenantId"] for c in after]
    assert client.get("/Organisation", tenant=gone["tenantId"]).status_code == 403


def test_lost_token_response_is_recovered_by_the_grace_period(client: Client) -> None:
    client.control("faults", {"lose_token_responses": 1})
    refresh = client.tokens["refresh_token"]
    with pytest.raises(httpx.HTTPError):
        client.refresh(refresh)
    # the rotation was applied, but the old token still works for the grace period
    retry = client.refresh(refresh)
    assert retry.status_code == 200
    assert client.control("stats")["token_requests"]["refresh_token"] == 3


def test_time_scale_shrinks_token_lifetime() -> None:
    with XeroSandbox(seed=2, tenants=1, time_scale=900) as fast:
        c = Client(fast)
        try:
            assert c.tokens["expires_in"] == 2
            assert c.get("/Organisation").status_code == 200
            time.sleep(2.1)
            assert c.get("/Organisation").status_code == 401
        finally:
            c.http.close()

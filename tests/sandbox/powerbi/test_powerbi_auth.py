"""Entra token service through the real MSAL library, and the API's 401/403 refusals."""

from __future__ import annotations

import base64
from pathlib import Path

import msal
import pytest
import requests
from sandbox.powerbi import PowerBISandbox

from .conftest import SCOPE, Client, msal_app, session_for, simple_dataset


def test_msal_token_works_on_the_api(client: Client) -> None:
    result = client.app.acquire_token_for_client(scopes=[SCOPE])
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 0
    response = client.request("GET", "/datasets")
    assert response.status_code == 200
    assert response.json()["value"] == []
    assert response.headers["RequestId"]


def test_token_endpoint_accepts_basic_credentials(sbx) -> None:
    config = sbx.config
    session = session_for(config)
    pair = f"{config['client_id']}:{config['client_secret']}".encode()
    response = session.post(
        f"{config['authority_url']}/{config['tenant_id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": SCOPE},
        headers={"Authorization": "Basic " + base64.b64encode(pair).decode()},
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    api = f"{config['api_url']}/groups/{config['workspace_id']}/datasets"
    assert session.get(api, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_wrong_secret_is_refused_without_echoing_it(sbx) -> None:
    config = sbx.config
    app = msal_app(config, config["client_id"], "not-the-secret", session_for(config))
    result = app.acquire_token_for_client(scopes=[SCOPE])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    assert "not-the-secret" not in str(result)


def test_unknown_client_and_wrong_scope_are_refused(sbx) -> None:
    config = sbx.config
    app = msal_app(config, "00000000-0000-0000-0000-000000000000", "x", session_for(config))
    assert app.acquire_token_for_client(scopes=[SCOPE])["error"] == "unauthorized_client"
    app = msal_app(config, config["client_id"], config["client_secret"], session_for(config))
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["error"] == "invalid_scope"


def test_unknown_tenant_fails_discovery(sbx) -> None:
    config = dict(sbx.config, tenant_id="not-our-tenant")
    with pytest.raises(ValueError, match="not-our-tenant"):
        msal_app(config, config["client_id"], config["client_secret"], session_for(config))
    stats = session_for(config).get(sbx.url + "/_sandbox/stats").json()
    assert stats["requests"]["OpenIdConfiguration"] == {"400": 1}


def test_outsider_is_forbidden(sbx) -> None:
    outsider = sbx.outsider()
    client = Client(sbx, outsider["client_id"], outsider["client_secret"])
    response = client.request("GET", "/datasets")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PowerBINotAuthorizedException"
    assert client.create(simple_dataset()).status_code == 403


def test_unknown_workspace_is_not_found(client: Client) -> None:
    response = client.session.get(
        f"{client.config['api_url']}/groups/11111111-1111-1111-1111-111111111111/datasets",
        headers={"Authorization": f"Bearer {client.token()}"},
    )
    assert response.status_code == 404


def test_my_workspace_is_refused_to_a_service_principal(client: Client) -> None:
    response = client.session.get(
        f"{client.config['api_url']}/datasets",
        headers={"Authorization": f"Bearer {client.token()}"},
    )
    assert response.status_code == 403


def test_expired_token_is_refused_then_msal_gets_a_new_one() -> None:
    # Real time on this sandbox, so a loaded machine cannot age the token by itself.
    with PowerBISandbox(time_scale=1.0, token_lifetime_seconds=600) as sbx:
        _expired_token_flow(sbx, Client(sbx))


def _expired_token_flow(sbx: PowerBISandbox, client: Client) -> None:
    token = client.token()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.session.get(client.base + "/datasets", headers=headers).status_code == 200
    sbx.advance(570)
    assert client.session.get(client.base + "/datasets", headers=headers).status_code == 200
    sbx.advance(31)
    response = client.session.get(client.base + "/datasets", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "TokenExpired"
    assert "WWW-Authenticate" in response.headers
    # MSAL's cache counts real seconds, so a new application asks for a new token.
    config = client.config
    app = msal_app(config, config["client_id"], config["client_secret"], client.session)
    fresh = app.acquire_token_for_client(scopes=[SCOPE])
    assert fresh["access_token"] != token
    headers = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert client.session.get(client.base + "/datasets", headers=headers).status_code == 200


def test_forged_and_missing_tokens_are_refused(client: Client) -> None:
    token = client.token()
    header, claims, signature = token.split(".")
    tampered = claims[:-2] + ("A" if claims[-2] != "A" else "B") + claims[-1]
    for bad in (f"{header}.{tampered}.{signature}", "not-a-jwt", f"{header}.{claims}.AAAA"):
        response = client.session.get(
            client.base + "/datasets", headers={"Authorization": f"Bearer {bad}"}
        )
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert client.session.get(client.base + "/datasets").status_code == 401


def test_token_from_another_sandbox_is_forged(sbx) -> None:
    with PowerBISandbox() as other:
        foreign = Client(other).token()
    client = Client(sbx)
    response = client.session.get(
        client.base + "/datasets", headers={"Authorization": f"Bearer {foreign}"}
    )
    assert response.status_code == 401


def test_token_outage_fault(sbx, client: Client) -> None:
    client.control("POST", "/_sandbox/faults", json={"token_outage": True})
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        Client(sbx).app.acquire_token_for_client(scopes=[SCOPE])
    stats = client.control("GET", "/_sandbox/stats").json()
    assert stats["requests"]["Token"]["503"] == 1
    client.control("POST", "/_sandbox/faults", json={"token_outage": False})
    assert "access_token" in Client(sbx).app.acquire_token_for_client(scopes=[SCOPE])


def test_service_principals_disabled_in_tenant(client: Client) -> None:
    client.control("POST", "/_sandbox/faults", json={"service_principals_disabled": True})
    response = client.request("GET", "/datasets")
    assert response.status_code == 401
    body = response.json()["error"]
    assert body["code"] == "PowerBINotAuthorizedException"
    assert "Service principals" in body["message"]
    client.control("POST", "/_sandbox/faults", json={"clear": True})
    assert client.request("GET", "/datasets").status_code == 200


def test_ca_bundle_is_a_pem_and_verification_stays_on(sbx) -> None:
    config = sbx.config
    assert "BEGIN CERTIFICATE" in Path(config["ca_bundle"]).read_text()
    plain = requests.Session()
    plain.trust_env = False  # the system bundle alone does not trust the sandbox
    try:
        plain.get(sbx.url + "/_sandbox/stats")
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("the sandbox must not be trusted without its CA bundle")

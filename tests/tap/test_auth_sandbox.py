"""tap-xero authentication against the Xero sandbox over loopback HTTP.

Runs are real processes where it matters (rotation across runs, concurrency), and every
line they log is checked for secrets.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sandbox.xero import XeroSandbox
from tap_xero import cli
from tap_xero.auth import (
    BROAD_SCOPES,
    GRANULAR_SCOPES,
    XeroAuthError,
    XeroTokenManager,
    pkce_pair,
    token_url,
)
from tap_xero.connections import forbidden_error, select_tenants
from tap_xero.token_store import TokenStore

pytestmark = pytest.mark.timeout(60)

BIN = Path(sys.executable).parent
RUN = """
import hashlib, json, logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from tap_xero.auth import XeroTokenManager
config = json.loads(Path(sys.argv[1]).read_text())
go = Path(sys.argv[2]) if len(sys.argv) > 2 else None
while go is not None and not go.exists():
    time.sleep(0.01)
manager = XeroTokenManager(config, logging.getLogger("run"))
tenants = [c["tenantId"] for c in manager.connections()]  # once more after a 401
token = manager.access_token()  # the token in use at the end of the run
print(json.dumps({"mode": manager.mode, "tenants": tenants,
                  "token": hashlib.sha256(token.encode()).hexdigest()}))
"""


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with XeroSandbox(seed=5, size="small", tenants=2, tier="advanced", scopes="broad") as sbx:
        yield sbx


def control(sbx: XeroSandbox, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{sbx.url}/_sandbox/{name}", json=body, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def refreshes(sbx: XeroSandbox) -> int:
    stats = requests.get(f"{sbx.url}/_sandbox/stats", timeout=10).json()
    return int(stats["token_requests"].get("refresh_token", 0))


def mint_seed(sbx: XeroSandbox) -> str:
    """A fresh refresh token, as a user re-authorising would get (auto-approved consent)."""
    config = sbx.config
    verifier, challenge = pkce_pair()
    redirect = "http://localhost:9/callback"
    consent = requests.get(
        config["identity_url"] + "/connect/authorize",
        params={
            "response_type": "code",
            "client_id": config["client_id"],
            "redirect_uri": redirect,
            "scope": " ".join(BROAD_SCOPES),
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    answer = requests.post(
        token_url(config),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        auth=(config["client_id"], config["client_secret"]),
        timeout=10,
    ).json()
    return str(answer["refresh_token"])


def config_for(sbx: XeroSandbox, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **sbx.config,
        "refresh_token": mint_seed(sbx),
        "token_store_path": str(tmp_path / "secrets" / "xero-tokens.json"),
        **extra,
    }


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def secrets_of(config: dict[str, Any]) -> list[str]:
    """Every secret a log line must never show: credentials and every token held."""
    values = [config["client_secret"], config.get("refresh_token") or ""]
    store = TokenStore(config["token_store_path"])
    state = store.load(config["client_id"]) if store.path.exists() else None
    if state is not None:
        values += [state.refresh_token, state.access_token]
    return [v for v in values if v]


def assert_no_secret(text: str, config: dict[str, Any], *more: str) -> None:
    for secret in [*secrets_of(config), *more]:
        assert secret not in text


def run(config_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(config_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out), out + err


def test_a_run_after_a_run_uses_the_rotated_token(sandbox, tmp_path):
    config = config_for(sandbox, tmp_path)
    path = write_config(tmp_path, config)
    first, log1 = finish(run(path))
    assert first["mode"] == "oauth_app"
    assert sorted(first["tenants"]) == sorted(sandbox.config["tenant_ids"])
    rotated = TokenStore(config["token_store_path"]).load(config["client_id"])
    assert rotated is not None
    assert rotated.refresh_token != config["refresh_token"]
    # Two hours later (on Xero's clock): the access token and the seed's grace period are
    # gone, and Meltano hands the same config (with the same stale seed) to the next run,
    # which gets a 401 with the stored access token and refreshes with the stored one.
    control(sandbox, "clock", {"advance_seconds": 7200})
    before = refreshes(sandbox)
    second, log2 = finish(run(path))
    assert second["token"] != first["token"]
    assert refreshes(sandbox) == before + 1
    assert_no_secret(log1 + log2, config, rotated.refresh_token, rotated.access_token)


def test_concurrent_runs_wait_for_each_other_and_share_one_refresh(sandbox, tmp_path):
    config = config_for(sandbox, tmp_path)
    path = write_config(tmp_path, config)
    go = tmp_path / "go"
    store = TokenStore(config["token_store_path"])
    before = refreshes(sandbox)
    with store.locked():  # a run mid-refresh: the others must wait, not fail
        processes = [run(path, str(go)) for _ in range(3)]
        go.touch()
        time.sleep(0.5)
        assert all(p.poll() is None for p in processes)
    results = [finish(p) for p in processes]
    assert refreshes(sandbox) == before + 1  # one rotation; the others reused it
    assert len({r["token"] for r, _ in results}) == 1
    for result, log in results:
        assert sorted(result["tenants"]) == sorted(sandbox.config["tenant_ids"])
        assert_no_secret(log, config)


def test_a_lost_token_response_is_recovered_within_the_run(sandbox, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = config_for(sandbox, tmp_path)
    control(sandbox, "faults", {"lose_token_responses": 1})
    before = refreshes(sandbox)
    manager = XeroTokenManager(config, logging.getLogger("t"))
    assert len(manager.connections()) == 2
    assert refreshes(sandbox) == before + 2  # the retry used the old token in its grace
    assert_no_secret(caplog.text, config)


def test_a_crash_after_the_refresh_recovers_through_the_grace_period(sandbox, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = config_for(sandbox, tmp_path)
    control(sandbox, "faults", {"lose_token_responses": 1})
    crashed = XeroTokenManager(config, logging.getLogger("t"), max_tries=1)
    with pytest.raises(XeroAuthError, match="did not answer"):
        crashed.access_token()  # Xero rotated, the run never learnt the new token
    control(sandbox, "clock", {"advance_seconds": 20 * 60})  # inside the 30-minute grace
    recovered = XeroTokenManager(config, logging.getLogger("t"))
    assert len(recovered.connections()) == 2
    control(sandbox, "clock", {"advance_seconds": 7200})  # the chain stays alive after it
    assert len(XeroTokenManager(config, logging.getLogger("t")).connections()) == 2
    assert_no_secret(caplog.text, config)


def test_a_token_rotated_elsewhere_past_the_grace_period_says_log_in_again(sandbox, tmp_path):
    config = config_for(sandbox, tmp_path)
    # A run with another (now lost) token store used the seed; 31 minutes pass.
    requests.post(
        token_url(config),
        data={"grant_type": "refresh_token", "refresh_token": config["refresh_token"]},
        auth=(config["client_id"], config["client_secret"]),
        timeout=10,
    ).raise_for_status()
    control(sandbox, "clock", {"advance_seconds": 31 * 60})
    path = write_config(tmp_path, config)
    result = subprocess.run(
        [str(BIN / "tap-xero"), "auth", "tenants", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 1
    assert "invalid_grant" in result.stderr
    assert "run `tap-xero auth login` again" in result.stderr
    assert_no_secret(result.stdout + result.stderr, config)


def test_custom_connection(sandbox, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    tenant = sandbox.config["tenant_ids"][1]
    custom = sandbox.custom_connection(tenant)
    config = {
        **sandbox.config,
        "client_id": custom["client_id"],
        "client_secret": custom["client_secret"],
        "refresh_token": "",
        "token_store_path": str(tmp_path / "unused.json"),
    }
    manager = XeroTokenManager(config, logging.getLogger("t"))
    assert manager.mode == "custom_connection"
    assert [c["tenantId"] for c in manager.connections()] == [tenant]
    token = manager.access_token()
    # No tenant header needed: the connection is bound to one organisation.
    answer = requests.get(
        config["api_url"] + "/Organisation",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert not Path(config["token_store_path"]).exists()
    assert_no_secret(caplog.text, config, token)
    wrong = {**config, "client_secret": "not-the-secret"}
    with pytest.raises(XeroAuthError, match="invalid_client") as excinfo:
        XeroTokenManager(wrong, logging.getLogger("t")).access_token()
    assert "not-the-secret" not in str(excinfo.value)


def test_auth_login_end_to_end(sandbox, tmp_path, capsys):
    old_seed = mint_seed(sandbox)
    config = {
        **sandbox.config,
        "refresh_token": old_seed,  # what the config held before the user logged in again
        "tenant_ids": [*sandbox.config["tenant_ids"], "not-a-granted-tenant"],
        "token_store_path": str(tmp_path / "secrets" / "xero-tokens.json"),
    }
    path = write_config(tmp_path, config)
    asked: list[str] = []

    def browser(url: str) -> None:
        """The user's browser: the sandbox consents and redirects to our listener."""
        asked.append(url)
        assert requests.get(url, timeout=10).status_code == 200

    status = cli.auth_main(
        ["login", "--config", str(path), "--redirect-uri", "http://localhost:0/callback"],
        opener=browser,
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    query = parse_qs(urlsplit(asked[0]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["scope"][0].split() == list(GRANULAR_SCOPES)
    for tenant in sandbox.config["tenant_ids"]:
        assert tenant in out
    assert "Warning: tenant_ids lists not-a-granted-tenant" in out
    state = TokenStore(config["token_store_path"]).load(config["client_id"])
    assert state is not None
    assert state.refresh_token != old_seed
    assert state.has_seen(old_seed)  # the config's seed is superseded by the login
    assert (Path(config["token_store_path"]).stat().st_mode & 0o777) == 0o600
    # `auth tenants`, as Meltano invokes it (config first), uses the stored token.
    before = refreshes(sandbox)
    control(sandbox, "clock", {"advance_seconds": 3600})
    listed = subprocess.run(
        [str(BIN / "tap-xero"), "--config", str(path), "auth", "tenants", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    tenants = [c["tenantId"] for c in json.loads(listed.stdout)]
    assert sorted(tenants) == sorted(sandbox.config["tenant_ids"])
    assert refreshes(sandbox) == before + 1
    assert_no_secret(out + err + listed.stdout + listed.stderr, config, state.refresh_token)


def test_auth_login_broad_scopes_and_declined_consent(sandbox, tmp_path, capsys):
    config = {**sandbox.config, "token_store_path": str(tmp_path / "t.json")}
    path = write_config(tmp_path, config)
    asked: list[str] = []

    def declining_browser(url: str) -> None:
        asked.append(url)
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        requests.get(redirect, params={"error": "access_denied"}, timeout=10)

    status = cli.auth_main(
        [
            "login",
            "--config",
            str(path),
            "--scope-style",
            "broad",
            "--redirect-uri",
            "http://127.0.0.1:0/cb",
        ],
        opener=declining_browser,
    )
    _out, err = capsys.readouterr()
    assert status == 1
    assert parse_qs(urlsplit(asked[0]).query)["scope"][0].split() == list(BROAD_SCOPES)
    assert "access_denied" in err
    assert "tap-xero auth login" in err
    assert not Path(config["token_store_path"]).exists()


def test_organisation_not_granted_and_missing_role(sandbox, tmp_path):
    config = config_for(sandbox, tmp_path)
    manager = XeroTokenManager(config, logging.getLogger("t"))
    first, second = sandbox.config["tenant_ids"]
    connections = manager.connections()
    removed = next(c for c in connections if c["tenantId"] == second)
    token = manager.access_token()
    requests.delete(
        f"{config['connections_url']}/{removed['id']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).raise_for_status()
    granted = manager.connections()
    with pytest.raises(XeroAuthError, match=rf"{second} not granted") as excinfo:
        select_tenants(granted, [first, second])
    assert "tap-xero auth login" in str(excinfo.value)
    assert select_tenants(granted, None) == granted
    # A user with the Standard role: reports answer 403.
    control(sandbox, "faults", {"standard_role_tenants": [first]})
    try:
        answer = requests.get(
            config["api_url"] + "/Reports/ProfitAndLoss",
            headers={"Authorization": f"Bearer {token}", "xero-tenant-id": first},
            timeout=10,
        )
    finally:
        control(sandbox, "faults", {"standard_role_tenants": []})
    assert answer.status_code == 403
    message = str(forbidden_error(first, granted, "the ProfitAndLoss report"))
    assert "Standard + Reports" in message
    assert "Advisor" in message
    mint_seed(sandbox)  # a new consent reconnects every organisation for the other tests

"""Token manager logic against an in-memory identity service (no network; fast).

The loopback tests against the Xero sandbox are in test_auth_sandbox.py.
"""

from __future__ import annotations

import json
import logging
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from tap_xero import cli
from tap_xero.auth import (
    BROAD_SCOPES,
    GRANULAR_SCOPES,
    MIN_VALIDITY_SECONDS,
    XeroAuthError,
    XeroBearerAuth,
    XeroTokenManager,
    authorize_url,
    pkce_pair,
    requested_scopes,
)
from tap_xero.connections import forbidden_error, select_tenants, unauthorized_error
from tap_xero.settings import TapSettings, load_config
from tap_xero.token_store import TokenState, TokenStore, fingerprint

CLIENT_ID = "client-1"
CLIENT_SECRET = "s3cret-client-value"
TENANTS = [
    {"id": "c1", "tenantId": "t-1", "tenantType": "ORGANISATION", "tenantName": "Demo One"},
    {"id": "c2", "tenantId": "t-2", "tenantType": "ORGANISATION", "tenantName": "Demo Two"},
]


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response


class FakeIdentity:
    """Xero's identity rules in memory: rotation with a grace period, 401 on bad bearers."""

    def __init__(self, grace: float = 1800.0, lifetime: float = 1800.0) -> None:
        self.now = 1_000_000.0
        self.grace = grace
        self.lifetime = lifetime
        self.counter = 0
        self.refresh: dict[str, float | None] = {}  # token -> retired at (None: live)
        self.access: dict[str, float] = {}  # token -> expires at
        self.custom_clients = {"custom-1"}
        self.lose_next = 0  # apply the refresh, then drop the response
        self.fail_5xx = 0
        self.calls: list[str] = []
        self.scopes: str | None = None
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def issue_refresh(self) -> str:
        self.counter += 1
        token = f"rt-{self.counter}"
        self.refresh[token] = None
        return token

    def _issue_access(self) -> dict[str, Any]:
        self.counter += 1
        token = f"at-{self.counter}"
        self.access[token] = self.now + self.lifetime
        return {"access_token": token, "expires_in": int(self.lifetime), "token_type": "Bearer"}

    # requests.Session-like surface
    def post(self, url: str, data: dict[str, str], auth: Any, headers: Any, timeout: float) -> Any:
        with self.lock:
            grant = data["grant_type"]
            self.calls.append(grant)
            if self.fail_5xx:
                self.fail_5xx -= 1
                return _response(503, {})
            client_id = auth[0] if auth else data.get("client_id")
            if grant == "client_credentials":
                self.scopes = data.get("scope")
                if client_id not in self.custom_clients:
                    return _response(400, {"error": "unauthorized_client"})
                return _response(200, self._issue_access())
            if auth != (CLIENT_ID, CLIENT_SECRET):
                return _response(400, {"error": "invalid_client"})
            token = data["refresh_token"]
            if token not in self.refresh:
                return _response(400, {"error": "invalid_grant"})
            retired = self.refresh[token]
            if retired is not None and self.now - retired > self.grace:
                return _response(400, {"error": "invalid_grant"})
            if retired is None:
                self.refresh[token] = self.now
            body = {**self._issue_access(), "refresh_token": self.issue_refresh()}
            if self.lose_next:
                self.lose_next -= 1
                msg = "connection dropped after the refresh was applied"
                raise requests.ConnectionError(msg)
            return _response(200, body)

    def get(self, url: str, headers: dict[str, str], timeout: float) -> Any:
        with self.lock:
            self.calls.append("connections")
            token = headers["Authorization"].removeprefix("Bearer ")
            if self.access.get(token, 0) <= self.now:
                return _response(401, {"Title": "Unauthorized"})
            return _response(200, TENANTS)


@pytest.fixture
def idp() -> FakeIdentity:
    return FakeIdentity()


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG)
    return logging.getLogger("test-auth")


def make_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_store_path": str(tmp_path / "store" / "tokens.json"),
        "identity_url": "http://127.0.0.1:9/identity",
        "connections_url": "http://127.0.0.1:9/connections",
        **extra,
    }


def manager_for(
    config: dict[str, Any], idp: FakeIdentity, logger: logging.Logger
) -> XeroTokenManager:
    return XeroTokenManager(
        config,
        logger,
        session=idp,  # type: ignore[arg-type]
        clock=idp.clock,
        max_tries=3,
    )


def stored(config: dict[str, Any]) -> TokenState:
    state = TokenStore(config["token_store_path"]).load(CLIENT_ID)
    assert state is not None
    return state


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in (CLIENT_SECRET, *secrets):
        assert secret not in text


def test_run_after_run_uses_the_rotated_token_from_the_store(tmp_path, idp, logger, caplog):
    seed = idp.issue_refresh()
    config = make_config(tmp_path, refresh_token=seed)
    first = manager_for(config, idp, logger)
    assert first.mode == "oauth_app"
    token = first.access_token()
    state = stored(config)
    assert state.access_token == token
    assert state.refresh_token not in {seed, ""}
    # After the grace period the seed is dead: only the stored token can work.
    idp.now += 3600 * 2
    second = manager_for(config, idp, logger)  # same config: same (stale) seed
    second_token = second.access_token()
    assert second_token != token
    assert stored(config).refresh_token != state.refresh_token
    mode = stat.S_IMODE(Path(config["token_store_path"]).stat().st_mode)
    assert mode == 0o600
    assert_no_secret(caplog.text, seed, state.refresh_token, token, second_token)


def test_store_is_written_before_the_new_token_is_used(tmp_path, idp, logger, monkeypatch):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)

    def failing_save(self: TokenStore, state: TokenState) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(TokenStore, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        manager.access_token()
    assert manager._access_token == ""  # the new access token was never handed out


def test_access_token_is_cached_and_refreshed_ahead_of_expiry(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    token = manager.access_token()
    assert manager.access_token() == token
    assert idp.calls.count("refresh_token") == 1
    idp.now += idp.lifetime - MIN_VALIDITY_SECONDS + 1  # under a minute left
    fresh = manager.access_token()
    assert fresh != token
    assert idp.calls.count("refresh_token") == 2


def test_invalidate_refreshes_once(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    token = manager.access_token()
    manager.invalidate(token)
    fresh = manager.access_token()
    assert fresh != token
    assert manager.access_token() == fresh
    assert idp.calls.count("refresh_token") == 2


def test_a_second_manager_reuses_the_access_token_of_the_first(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    token = manager_for(config, idp, logger).access_token()
    assert manager_for(config, idp, logger).access_token() == token
    assert idp.calls.count("refresh_token") == 1


def test_threads_share_one_refresh(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    managers = [manager_for(config, idp, logger) for _ in range(4)]
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda m=m: tokens.extend(m.access_token() for _ in range(3)))
        for m in managers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1
    assert idp.calls.count("refresh_token") == 1


def test_lost_response_recovers_through_the_grace_period(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    idp.lose_next = 1
    token = manager_for(config, idp, logger).access_token()
    assert idp.access[token] > idp.now
    assert idp.calls.count("refresh_token") == 2  # the retry used the old token in its grace


def test_crash_before_persisting_recovers_through_the_grace_period(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager_for(config, idp, logger).access_token()
    # Another run refreshed with the stored token and died before writing the store.
    state = stored(config)
    idp.post(
        "",
        {"grant_type": "refresh_token", "refresh_token": state.refresh_token},
        (CLIENT_ID, CLIENT_SECRET),
        {},
        1,
    )
    idp.now += 1750  # within the grace period; the stored access token has under a minute left
    recovered = manager_for(config, idp, logger).access_token()
    assert recovered != state.access_token
    assert stored(config).refresh_token != state.refresh_token
    idp.now += 3600  # long after the grace period: the store holds a live token
    assert manager_for(config, idp, logger).access_token() != recovered


def test_after_the_grace_period_invalid_grant_says_to_log_in_again(tmp_path, idp, logger, caplog):
    seed = idp.issue_refresh()
    config = make_config(tmp_path, refresh_token=seed)
    idp.refresh[seed] = idp.now  # rotated elsewhere, then the store was lost
    idp.now += 1801
    manager = manager_for(config, idp, logger)
    with pytest.raises(XeroAuthError) as excinfo:
        manager.access_token()
    message = str(excinfo.value)
    assert "invalid_grant" in message
    assert "tap-xero auth login" in message
    assert config["token_store_path"] in message
    assert_no_secret(message + caplog.text, seed)


def test_a_new_seed_in_the_config_wins_over_the_store(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager_for(config, idp, logger).access_token()
    old_chain = stored(config).refresh_token
    new_seed = idp.issue_refresh()  # the user re-authorised and pasted a new seed
    config["refresh_token"] = new_seed
    manager_for(config, idp, logger).access_token()
    assert idp.refresh[new_seed] is not None  # the new seed was used
    assert idp.refresh[old_chain] is None  # the old chain was not
    assert stored(config).has_seen(new_seed)
    # Next run with the same config: the seed is known, the stored token is used.
    idp.now += 3600 * 2
    manager_for(config, idp, logger).access_token()


def test_a_dead_new_seed_falls_back_to_the_store(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager_for(config, idp, logger).access_token()
    config["refresh_token"] = "never-issued"
    idp.now += 3600
    assert manager_for(config, idp, logger).access_token()
    assert stored(config).has_seen("never-issued")


def test_mode_is_oauth_app_from_the_store_alone(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager_for(config, idp, logger).access_token()
    del config["refresh_token"]
    assert manager_for(config, idp, logger).mode == "oauth_app"


def test_custom_connection(tmp_path, idp, logger):
    config = make_config(tmp_path, client_id="custom-1")
    manager = manager_for(config, idp, logger)
    assert manager.mode == "custom_connection"
    token = manager.access_token()
    assert manager.connections() == TENANTS
    assert manager.access_token() == token
    assert not Path(config["token_store_path"]).exists()
    assert idp.scopes is None
    scoped = make_config(tmp_path, client_id="custom-1", scopes=["accounting.contacts.read"])
    manager_for(scoped, idp, logger).access_token()
    assert idp.scopes == "accounting.contacts.read"  # no offline_access: nothing to refresh


def test_client_credentials_on_a_non_custom_app_says_what_to_do(tmp_path, idp, logger):
    manager = manager_for(make_config(tmp_path), idp, logger)
    with pytest.raises(XeroAuthError, match=r"not a custom connection.*tap-xero auth login"):
        manager.access_token()


def test_wrong_secret_says_to_check_credentials(tmp_path, idp, logger):
    seed = idp.issue_refresh()
    config = make_config(tmp_path, refresh_token=seed, client_secret="wrong-secret-value")
    with pytest.raises(XeroAuthError, match=r"invalid_client.*client_secret") as excinfo:
        manager_for(config, idp, logger).access_token()
    assert_no_secret(str(excinfo.value), "wrong-secret-value", seed)


def test_identity_outage_is_retried_then_reported(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    idp.fail_5xx = 2
    assert manager_for(config, idp, logger).access_token()
    idp.fail_5xx = 10
    manager = manager_for(config, idp, logger)
    manager.invalidate(stored(config).access_token)
    with pytest.raises(XeroAuthError, match=r"did not answer.*HTTP 503"):
        manager.access_token()


def test_connections_refreshes_once_on_401(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    token = manager.access_token()
    del idp.access[token]  # revoked server-side
    assert manager.connections() == TENANTS
    assert idp.calls.count("refresh_token") == 2


def test_connections_401_after_refresh_says_to_log_in(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    idp.lifetime = 0.0  # every new token is dead on arrival at the API
    idp.access.clear()
    manager._expires_at = idp.now + 3600
    manager._access_token = "at-stale"
    with pytest.raises(XeroAuthError, match="tap-xero auth login"):
        manager.connections()


def test_bearer_auth_sets_the_header(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    request = requests.Request(
        "GET", "http://127.0.0.1:9/x", auth=XeroBearerAuth(manager)
    ).prepare()
    token = XeroBearerAuth.token_of(request)
    assert token == manager.access_token()
    assert request.headers["Authorization"] == f"Bearer {token}"


def test_store_keeps_apps_apart_and_is_atomic(tmp_path):
    store = TokenStore(tmp_path / "t.json")
    store.save(TokenState(client_id="a", refresh_token="rt-a"))
    store.save(TokenState(client_id="b", refresh_token="rt-b"))
    assert store.load("a").refresh_token == "rt-a"  # type: ignore[union-attr]
    assert store.load("b").refresh_token == "rt-b"  # type: ignore[union-attr]
    assert store.load("c") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]  # no temp file left


def test_corrupt_store_says_what_to_do(tmp_path, idp, logger):
    config = make_config(tmp_path, refresh_token="x")
    Path(config["token_store_path"]).parent.mkdir(parents=True)
    Path(config["token_store_path"]).write_text("{not json")
    with pytest.raises(XeroAuthError, match=r"not valid JSON.*tap-xero auth login"):
        manager_for(config, idp, logger)


def test_fingerprints_not_tokens_are_remembered():
    state = TokenState(client_id="a", refresh_token="rt-live")
    state.remember("rt-old", None, "")
    assert state.seen == [fingerprint("rt-old")]
    assert "rt-old" not in json.dumps(state.to_json())


def test_scopes_are_read_only():
    assert requested_scopes({"scope_style": "broad"}) == list(BROAD_SCOPES)
    assert requested_scopes({}) == list(GRANULAR_SCOPES)
    for scope in (*BROAD_SCOPES, *GRANULAR_SCOPES):
        assert scope == "offline_access" or scope.endswith(".read")
    assert requested_scopes({"scopes": ["accounting.contacts.read"]})[0] == "offline_access"
    with pytest.raises(XeroAuthError, match="read-only"):
        requested_scopes({"scopes": "offline_access accounting.transactions"})
    with pytest.raises(XeroAuthError, match="scope_style"):
        requested_scopes({"scope_style": "wide"})


def test_authorize_url_on_xero_and_on_a_sandbox():
    assert authorize_url({}) == "https://login.xero.com/identity/connect/authorize"
    assert authorize_url({"identity_url": "http://127.0.0.1:5/id/"}) == (
        "http://127.0.0.1:5/id/connect/authorize"
    )


def test_pkce_pair_is_s256():
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_select_tenants_and_403_messages():
    assert select_tenants(TENANTS, None) == TENANTS
    assert select_tenants(TENANTS, ["t-2"]) == [TENANTS[1]]
    with pytest.raises(XeroAuthError, match=r"t-9 not granted.*tap-xero auth login.*tenant_ids"):
        select_tenants(TENANTS, ["t-1", "t-9"])
    with pytest.raises(XeroAuthError, match="grants no Xero organisation"):
        select_tenants([], None)
    role = str(forbidden_error("t-1", TENANTS, "the ProfitAndLoss report"))
    assert "Demo One" in role
    assert "Standard + Reports" in role
    assert "Advisor" in role
    assert "not granted" in str(forbidden_error("t-9", TENANTS))
    assert "tap-xero auth login" in str(unauthorized_error())


def test_cli_config_from_env_and_files(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"client_id": "from-file"}))
    env = {"TAP_XERO_CLIENT_ID": "from-env", "TAP_XERO_TENANT_IDS": "a, b", "TAP_XERO_SCOPES": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = TapSettings.from_config(load_config([]))
    assert config.client_id == "from-env"
    assert config.tenant_ids == ("a", "b")
    assert config.scopes == ()
    assert config.identity_url == "https://identity.xero.com"
    assert TapSettings.from_config(load_config([str(path)])).client_id == "from-file"


def test_cli_accepts_meltano_leading_options():
    assert cli._split_leading_options(
        ["--config", "c.json", "--state", "s", "auth", "tenants"]
    ) == (
        ["c.json"],
        ["auth", "tenants"],
    )
    assert cli._split_leading_options(["--about"]) == ([], ["--about"])


def test_short_lifetimes_of_a_time_scaled_sandbox_do_not_refresh_every_call(tmp_path, idp, logger):
    idp.lifetime = 30.0  # Xero's 30 minutes at time scale 60
    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    manager = manager_for(config, idp, logger)
    token = manager.access_token()
    idp.now += 20
    assert manager.access_token() == token
    assert manager_for(config, idp, logger).access_token() == token  # from the store
    idp.now += 3  # under a quarter of the lifetime left
    assert manager.access_token() != token
    assert idp.calls.count("refresh_token") == 2


def test_a_killed_run_holding_the_lock_does_not_lock_the_next_one_out(tmp_path, idp, logger):
    import signal
    import subprocess
    import sys
    import time

    config = make_config(tmp_path, refresh_token=idp.issue_refresh())
    store = TokenStore(config["token_store_path"])
    store.path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tap_xero.token_store import TokenStore\n"
            "with TokenStore(sys.argv[1]).locked():\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(store.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)  # a run killed mid-refresh
        holder.wait(timeout=10)
        started = time.monotonic()
        assert manager_for(config, idp, logger).access_token()
        assert time.monotonic() - started < 10  # far below the 120 s lock timeout
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600

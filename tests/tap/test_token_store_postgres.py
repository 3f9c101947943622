"""The PostgreSQL token store (`token_store_url: postgresql://...`) against a real server
started by the tests (tests/tap/pg_server.py) and the Xero sandbox's identity service.

Rotation across machines is modelled by separate processes sharing only the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sandbox.server import BackgroundServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tap_xero.auth import XeroTokenManager
from tap_xero.token_store import TokenState, open_token_store
from tap_xero.token_store_pg import APPLICATION_NAME, PostgresTokenStore

from tests.tap.pg_server import free_port, postgres_server
from tests.tap.test_auth_sandbox import control, mint_seed, refreshes, run
from tests.tap.test_auth_sandbox import sandbox as sandbox  # the module's Xero sandbox fixture

pytestmark = pytest.mark.timeout(120)

BIN = Path(sys.executable).parent
PASSWORD = "pg-secret-Qx7"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server(PASSWORD) as url:
        yield url


@pytest.fixture
def fresh_db(pg_url: str) -> str:
    """The server with an empty token table (each test its own chain)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS tap_xero_tokens")
    return pg_url


def pg_config(sbx: Any, url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **sbx.config,
        "refresh_token": mint_seed(sbx),
        "token_store_url": url,
        "token_store_path": str(tmp_path / "never-used.json"),  # token_store_url wins
        **extra,
    }


def finish(process: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out), out + err


def stored(url: str, client_id: str) -> TokenState:
    state = PostgresTokenStore(url).load(client_id)
    assert state is not None
    return state


def wait_for_lock_waiters(url: str, count: int, timeout: float = 45) -> None:
    """Until `count` token-store sessions are blocked on a lock (the row's)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (APPLICATION_NAME,),
            ).fetchone()
            if waiting and waiting[0] >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} of {count} runs wait for the lock"
            time.sleep(0.05)


def test_the_url_chooses_the_store_and_never_shows_the_password(fresh_db, tmp_path):
    assert open_token_store(str(tmp_path / "t.json")).where == str(tmp_path / "t.json")
    store = open_token_store(fresh_db)
    assert isinstance(store, PostgresTokenStore)
    assert PASSWORD not in store.where
    assert store.where.startswith("postgresql://postgres@127.0.0.1:")
    assert store.load("app") is None
    with store.locked():
        assert store.load("app") is None  # a first run: nothing yet, the row locked anyway
        store.save(TokenState(client_id="app", refresh_token="r1", access_token="a1"))
    state = store.load("app")
    assert state is not None and (state.refresh_token, state.access_token) == ("r1", "a1")
    with store.locked():
        store.load("app")  # a rotation that ends without a save changes nothing
    assert stored(fresh_db, "app").refresh_token == "r1"


def test_two_processes_rotating_at_once_share_one_refresh_and_the_chain_goes_on(
    sandbox, fresh_db, tmp_path
):
    config = pg_config(sandbox, fresh_db, tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    go = tmp_path / "go"
    seeded, _ = finish(run(path))  # the first run starts the chain in the database
    first = stored(fresh_db, config["client_id"])
    assert first.refresh_token != config["refresh_token"]
    # Two hours on, both runs need a new access token at the same moment.
    control(sandbox, "clock", {"advance_seconds": 7200})
    before = refreshes(sandbox)
    holder = PostgresTokenStore(fresh_db)
    with holder.locked():
        assert holder.load(config["client_id"]) is not None  # a run mid-rotation elsewhere
        processes = [run(path, str(go)) for _ in range(2)]
        go.touch()
        wait_for_lock_waiters(fresh_db, 2)  # both runs queue on the row, none refreshes
        assert all(p.poll() is None for p in processes)
    results = [finish(p) for p in processes]
    assert refreshes(sandbox) == before + 1  # one refresh reached Xero; the other run reused it
    assert len({r["token"] for r, _ in results}) == 1
    assert results[0][0]["token"] != seeded["token"]
    second = stored(fresh_db, config["client_id"])
    assert second.refresh_token not in (first.refresh_token, config["refresh_token"])
    assert not Path(config["token_store_path"]).exists()
    # Two hours more, past every grace: the chain continues from the stored token.
    control(sandbox, "clock", {"advance_seconds": 7200})
    third, log = finish(run(path))
    assert refreshes(sandbox) == before + 2
    assert third["token"] != results[0][0]["token"]
    for text in [log, *(log for _, log in results)]:
        assert PASSWORD not in text
        assert second.refresh_token not in text


@pytest.mark.parametrize("command", ["auth", "sync"])
def test_an_unreachable_store_at_the_start_fails_in_one_line(sandbox, tmp_path, command):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(pg_config(sandbox, url, tmp_path)))
    argv = (
        ["auth", "tenants", "--config", str(path)] if command == "auth" else ["--config", str(path)]
    )
    result = subprocess.run(
        [str(BIN / "tap-xero"), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "cannot reach the token store" in line]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "token_store_url" in errors[0]
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


class DropOnRefresh:
    """An identity proxy: on the first token call it terminates the token store's database
    connection (the run is mid-rotation, holding the row lock), then lets Xero answer."""

    def __init__(self, identity_url: str, pg_url: str) -> None:
        self.identity_url = identity_url
        self.pg_url = pg_url
        self.drops = 1
        self.lock = threading.Lock()

    def terminate_rotation(self) -> None:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND state = 'idle in transaction'",
                (APPLICATION_NAME,),
            ).fetchall()
            assert len(rows) == 1, rows
            conn.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
            deadline = time.monotonic() + 10
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", rows[0]).fetchone():
                assert time.monotonic() < deadline
                time.sleep(0.02)

    async def token(self, request: Request) -> Response:
        with self.lock:
            drop, self.drops = self.drops > 0, self.drops - 1
        if drop:
            self.terminate_rotation()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k in ("authorization", "content-type", "accept")
        }
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                self.identity_url + "/connect/token", content=await request.body(), headers=headers
            )
        return Response(answer.content, answer.status_code, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/connect/token", self.token, methods=["POST"])])


def test_a_connection_dropped_mid_refresh_loses_nothing(sandbox, fresh_db, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = pg_config(sandbox, fresh_db, tmp_path)
    proxy = DropOnRefresh(sandbox.config["identity_url"], fresh_db)
    before = refreshes(sandbox)
    with BackgroundServer(proxy.app()) as server:
        manager = XeroTokenManager(
            {**config, "identity_url": server.base_url}, logging.getLogger("t")
        )
        assert len(manager.connections()) == 2  # the new access token works
    # Xero rotated, the COMMIT never happened; the rotation was repeated with the old token,
    # which Xero still accepts in its grace, and that result is what is stored.
    assert refreshes(sandbox) == before + 2
    assert "dropped mid-rotation" in caplog.text
    kept = stored(fresh_db, config["client_id"])
    assert kept.access_token and kept.refresh_token != config["refresh_token"]
    # Past the grace: only a correctly recorded chain still works.
    control(sandbox, "clock", {"advance_seconds": 7200})
    later = XeroTokenManager(config, logging.getLogger("t"))
    assert len(later.connections()) == 2
    assert refreshes(sandbox) == before + 3
    assert PASSWORD not in caplog.text
    assert kept.refresh_token not in caplog.text


class HoldAfterRefresh:
    """An identity proxy that lets Xero rotate, then never answers: the run is killed there."""

    def __init__(self, identity_url: str) -> None:
        self.identity_url = identity_url
        self.rotated = threading.Event()

    async def token(self, request: Request) -> Response:
        forwarded = ("authorization", "content-type", "accept")
        headers = {k: v for k, v in request.headers.items() if k in forwarded}
        async with httpx.AsyncClient() as client:
            await client.post(
                self.identity_url + "/connect/token", content=await request.body(), headers=headers
            )
        self.rotated.set()
        await asyncio.sleep(60)
        return Response(status_code=504)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/connect/token", self.token, methods=["POST"])])


def test_a_run_killed_mid_refresh_leaves_no_lock_and_loses_nothing(sandbox, fresh_db, tmp_path):
    config = pg_config(sandbox, fresh_db, tmp_path)
    proxy = HoldAfterRefresh(sandbox.config["identity_url"])
    before = refreshes(sandbox)
    with BackgroundServer(proxy.app()) as server:
        path = tmp_path / "victim.json"
        path.write_text(json.dumps({**config, "identity_url": server.base_url}))
        victim = run(path)
        try:
            assert proxy.rotated.wait(60), "the run never refreshed"
            victim.kill()  # kill -9 while holding the row lock, Xero's answer not yet read
            victim.wait(10)
        finally:
            if victim.poll() is None:
                victim.kill()
    assert refreshes(sandbox) == before + 1
    # The next run is not stuck behind the dead one's lock, and its old token still works.
    control(sandbox, "clock", {"advance_seconds": 20 * 60})  # inside Xero's 30-minute grace
    started = time.monotonic()
    recovered = XeroTokenManager(config, logging.getLogger("t"))
    assert len(recovered.connections()) == 2
    assert time.monotonic() - started < 30
    assert refreshes(sandbox) == before + 2
    control(sandbox, "clock", {"advance_seconds": 7200})  # and the recorded chain goes on
    assert len(XeroTokenManager(config, logging.getLogger("t")).connections()) == 2
    assert refreshes(sandbox) == before + 3

"""Rate limits, faults and stats over loopback."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sandbox.xero import XeroSandbox

from .conftest import Client


def test_minute_limit_per_organisation_with_headers(client: Client) -> None:
    first = client.get("/Organisation")
    assert first.headers["X-MinLimit-Remaining"] == "59"
    assert first.headers["X-DayLimit-Remaining"] == "4999"
    assert first.headers["X-AppMinLimit-Remaining"] == "9999"
    for n in range(2, 61):
        response = client.get("/Organisation")
        assert response.status_code == 200
        assert response.headers["X-MinLimit-Remaining"] == str(60 - n)
    refused = client.get("/Organisation")
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-MinLimit-Remaining"] == "0"
    # another organisation has its own window; the app-wide count is shared
    other = client.get("/Organisation", tenant=client.config["tenant_ids"][1])
    assert other.status_code == 200 and other.headers["X-MinLimit-Remaining"] == "59"
    assert other.headers["X-AppMinLimit-Remaining"] == "9939"
    client.control("clock", {"advance_seconds": 60})
    assert client.get("/Organisation").status_code == 200
    stats = client.control("stats")
    assert stats["rate_limited"] == {"minute": 1}
    # the control API is never limited
    for _ in range(70):
        assert client.http.get(client.sbx.url + "/_sandbox/stats").status_code == 200


def test_day_and_app_limits(client: Client) -> None:
    client.control("faults", {"limits": {"day": 3, "app_minute": 5}})
    for _ in range(3):
        assert client.get("/Organisation").status_code == 200
    day = client.get("/Organisation")
    assert day.status_code == 429 and day.headers["X-Rate-Limit-Problem"] == "day"
    assert int(day.headers["Retry-After"]) > 3600
    second = client.config["tenant_ids"][1]
    assert client.get("/Organisation", tenant=second).status_code == 200
    assert client.get("/Organisation", tenant=second).status_code == 200
    app = client.get("/Organisation", tenant=second)
    assert app.status_code == 429 and app.headers["X-Rate-Limit-Problem"] == "appminute"
    assert client.control("stats")["rate_limited"] == {"day": 1, "appminute": 1}
    # a custom connection is another app, with its own app-wide window
    custom = client.sbx.custom_connection(second)
    token = client.http.post(
        client.config["identity_url"] + "/connect/token",
        auth=(custom["client_id"], custom["client_secret"]),
        data={"grant_type": "client_credentials"},
    ).json()["access_token"]
    client.access_token = token
    other_app = client.get("/Organisation", tenant=second)
    assert other_app.status_code == 200
    assert other_app.headers["X-AppMinLimit-Remaining"] == "4"


def test_concurrent_limit(client: Client) -> None:
    client.control("faults", {"latency_ms": 1000})
    with ThreadPoolExecutor(max_workers=7) as pool:
        statuses = list(pool.map(lambda _: client.get("/Organisation").status_code, range(7)))
    assert sorted(statuses) == [200] * 5 + [429] * 2
    stats = client.control("stats")
    assert stats["rate_limited"] == {"concurrent": 2}
    assert stats["max_in_flight"] == 5
    assert stats["max_in_flight_by_tenant"][client.config["tenant_ids"][0]] == 5


def test_faults_on_demand(client: Client) -> None:
    client.control("faults", {"fail_next": [500, 503], "storm_429": 0})
    assert client.get("/Organisation").status_code == 500
    assert client.get("/Organisation").status_code == 503
    assert client.get("/Organisation").status_code == 200
    client.control("faults", {"storm_429": 2})
    storm = client.get("/Organisation")
    assert storm.status_code == 429 and storm.headers["X-Rate-Limit-Problem"] == "minute"
    assert client.get("/Organisation").status_code == 429
    assert client.get("/Organisation").status_code == 200
    client.control("faults", {"drop_next": 1})
    with pytest.raises(httpx.HTTPError):
        client.get("/Organisation")
    assert client.get("/Organisation").status_code == 200
    client.control("faults", {"error_rate": 1.0, "error_statuses": [502]})
    assert client.get("/Organisation").status_code == 502
    client.control("faults", {"error_rate": 0.0, "latency_ms": 150})
    started = time.perf_counter()
    assert client.get("/Organisation").status_code == 200
    assert time.perf_counter() - started >= 0.15
    bad = client.http.post(client.sbx.url + "/_sandbox/faults", json={"nonsense": 1})
    assert bad.status_code == 400


def test_time_scale_shrinks_windows_and_retry_after() -> None:
    with XeroSandbox(seed=3, tenants=1, time_scale=60) as fast:
        c = Client(fast)
        try:
            c.control("faults", {"limits": {"minute": 2}})
            assert c.get("/Organisation").status_code == 200
            assert c.get("/Organisation").status_code == 200
            refused = c.get("/Organisation")
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            time.sleep(1.05)  # a sandbox minute is one real second
            assert c.get("/Organisation").status_code == 200
        finally:
            c.http.close()

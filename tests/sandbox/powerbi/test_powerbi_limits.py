"""Every limit at its edge: rows per POST, request size, POST rates, rows an hour, pending POSTs,
table row caps. A sandbox at time scale 1 keeps the minute windows honest; the control API's
clock advance replaces waiting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sandbox.powerbi import PowerBISandbox
from sandbox.powerbi.limits import Limits

from .conftest import Client, session_for

MiB16 = 16 * 1024 * 1024


def one_column(name: str = "Limits") -> dict[str, Any]:
    return {
        "name": name,
        "tables": [{"name": "T", "columns": [{"name": "v", "dataType": "Int64"}]}],
    }


@pytest.fixture(scope="module")
def realtime_sandbox() -> Iterator[PowerBISandbox]:
    with PowerBISandbox(time_scale=1.0) as sbx:
        yield sbx


@pytest.fixture
def rt(realtime_sandbox: PowerBISandbox) -> Client:
    realtime_sandbox.state.reset()
    return Client(realtime_sandbox)


def seed(client: Client, dataset_id: str, count: int, in_window: bool = False) -> int:
    response = client.control(
        "POST",
        f"/_sandbox/datasets/{dataset_id}/tables/T/seed",
        json={"count": count, "in_time_window": in_window},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["rowCount"])


def row_count(client: Client, dataset_id: str) -> int:
    rows = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/T/rows?limit=0")
    return int(rows.json()["rowCount"])


def test_10000_rows_accepted_10001_refused(client: Client) -> None:
    dataset_id = client.create_ok(one_column())
    ok = client.post_rows(dataset_id, "T", [{"v": i} for i in range(10_000)])
    assert ok.status_code == 200, ok.text
    refused = client.post_rows(dataset_id, "T", [{"v": i} for i in range(10_001)])
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidRequest"
    assert "10001" in refused.json()["error"]["message"]
    assert row_count(client, dataset_id) == 10_000


def _padded_body(size: int) -> bytes:
    body = json.dumps({"rows": [{"v": 1}]}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_request_size_limit_413(client: Client) -> None:
    dataset_id = client.create_ok(one_column())
    url = f"{client.base}/datasets/{dataset_id}/tables/T/rows"
    headers = {"Authorization": f"Bearer {client.token()}", "Content-Type": "application/json"}
    at_limit = client.session.post(url, data=_padded_body(MiB16), headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    over = client.session.post(url, data=_padded_body(MiB16 + 1), headers=headers)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "RequestEntityTooLarge"
    assert row_count(client, dataset_id) == 1


def test_121st_post_in_a_minute_is_throttled(rt: Client) -> None:
    dataset_id = rt.create_ok(one_column())
    other_id = rt.create_ok(one_column("Other"))
    for i in range(120):
        response = rt.post_rows(dataset_id, "T", [{"v": i}])
        assert response.status_code == 200, (i, response.text)
    throttled = rt.post_rows(dataset_id, "T", [{"v": 120}])
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    retry_after = int(throttled.headers["Retry-After"])
    assert 30 <= retry_after <= 60  # the oldest POST leaves the window within the minute
    assert rt.post_rows(other_id, "T", [{"v": 0}]).status_code == 200  # per dataset
    rt.sbx.advance(retry_after)
    assert rt.post_rows(dataset_id, "T", [{"v": 121}]).status_code == 200
    stats = rt.control("GET", "/_sandbox/stats").json()
    assert stats["throttled"] == 1
    assert stats["max_posts_in_a_minute_by_dataset"][dataset_id] == 120
    assert stats["requests"]["PostRowsInGroup"] == {"200": 122, "429": 1}
    assert row_count(rt, dataset_id) == 121


def _posts_over_two_minutes(client: Client, dataset_id: str) -> requests.Response:
    for minute in range(2):
        for _ in range(60):
            response = client.post_rows(dataset_id, "T", [])
            assert response.status_code == 200, (minute, response.text)
        client.sbx.advance(61)
    return client.post_rows(dataset_id, "T", [])


def test_120_posts_an_hour_once_a_table_holds_250000_rows(rt: Client) -> None:
    big = rt.create_ok(one_column("Big"))
    small = rt.create_ok(one_column("Small"))
    assert seed(rt, big, 250_000) == 250_000
    assert seed(rt, small, 249_999) == 249_999
    throttled = _posts_over_two_minutes(rt, big)
    assert throttled.status_code == 429
    assert "an hour" in throttled.json()["error"]["message"]
    assert int(throttled.headers["Retry-After"]) > 3000
    # the same pattern on a table one row short of the threshold is accepted
    assert _posts_over_two_minutes(rt, small).status_code == 200


def test_a_million_rows_an_hour_per_dataset(rt: Client) -> None:
    dataset_id = rt.create_ok(one_column("Million"), "basicFIFO")
    seed(rt, dataset_id, 990_000, in_window=True)
    rows = [{"v": i} for i in range(10_000)]
    assert rt.post_rows(dataset_id, "T", rows).status_code == 200  # exactly 1,000,000
    refused = rt.post_rows(dataset_id, "T", [{"v": 1}])
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == "Maximum number of rows exceeded in time window"
    assert int(refused.headers["Retry-After"]) > 3500
    rt.sbx.advance(3601)
    rt.renew()
    assert rt.post_rows(dataset_id, "T", [{"v": 1}]).status_code == 200


def test_five_pending_posts_per_dataset(rt: Client) -> None:
    dataset_id = rt.create_ok(one_column())
    token = rt.token()
    rt.control("POST", "/_sandbox/faults", json={"latency_ms": 1000})
    statuses: list[int] = []
    lock = threading.Lock()
    sessions = [session_for(rt.config) for _ in range(6)]
    for session in sessions:  # connect first, so the six POSTs leave together
        assert session.get(rt.sbx.url + "/_sandbox/clock").status_code == 200
    barrier = threading.Barrier(6)

    def post(session: requests.Session) -> None:
        barrier.wait()
        response = session.post(
            f"{rt.base}/datasets/{dataset_id}/tables/T/rows",
            json={"rows": [{"v": 1}]},
            headers={"Authorization": f"Bearer {token}"},
        )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=post, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rt.control("POST", "/_sandbox/faults", json={"clear": True})
    assert sorted(statuses) == [200, 200, 200, 200, 200, 429]
    assert row_count(rt, dataset_id) == 5


def test_basic_fifo_caps_at_200000_rows(client: Client) -> None:
    dataset_id = client.create_ok(one_column(), "basicFIFO")
    seed(client, dataset_id, 199_990)
    assert client.post_rows(dataset_id, "T", [{"v": i} for i in range(10)]).status_code == 200
    assert row_count(client, dataset_id) == 200_000
    assert client.post_rows(dataset_id, "T", [{"v": 10}]).status_code == 200
    assert row_count(client, dataset_id) == 200_000


def test_basic_fifo_drops_the_oldest_rows() -> None:
    with PowerBISandbox(limits=Limits(max_rows_fifo=10)) as sbx:
        client = Client(sbx)
        dataset_id = client.create_ok(one_column(), "basicFIFO")
        client.post_rows(dataset_id, "T", [{"v": i} for i in range(8)])
        client.post_rows(dataset_id, "T", [{"v": i} for i in range(8, 13)])
        rows = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/T/rows").json()
        assert [r["v"] for r in rows["rows"]] == list(range(3, 13))


def test_retention_none_caps_at_5000000_rows(client: Client) -> None:
    dataset_id = client.create_ok(one_column())
    seed(client, dataset_id, 4_999_990)
    assert client.post_rows(dataset_id, "T", [{"v": i} for i in range(10)]).status_code == 200
    refused = client.post_rows(dataset_id, "T", [{"v": 1}])
    assert refused.status_code == 400
    assert "5000000" in refused.json()["error"]["message"]
    assert row_count(client, dataset_id) == 5_000_000

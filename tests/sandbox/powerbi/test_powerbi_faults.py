"""Faults on demand, reset, the clock and the retirement refusal, through the control API."""

from __future__ import annotations

import time

from sandbox.powerbi.api import RETIRED_CODE

from .conftest import Client, simple_dataset


def test_fail_next_answers_the_given_status_then_recovers(client: Client) -> None:
    client.token()
    faults = {"fail_next": 2, "fail_next_status": 503, "retry_after": 120}
    assert client.control("POST", "/_sandbox/faults", json=faults).status_code == 200
    first = client.request("GET", "/datasets")
    assert first.status_code == 503
    assert first.json()["error"]["code"] == "ServiceUnavailable"
    assert first.headers["Retry-After"] == "2"  # 120 sandbox seconds at time scale 60
    assert client.request("GET", "/datasets").status_code == 503
    assert client.request("GET", "/datasets").status_code == 200


def test_error_rate_and_operation_filter(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    client.control(
        "POST",
        "/_sandbox/faults",
        json={"error_rate": 1.0, "error_statuses": [500], "operations": ["PostRowsInGroup"]},
    )
    response = client.post_rows(dataset_id, "Invoices", [{"id": 1}])
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "InternalServerError"
    assert client.request("GET", "/datasets").status_code == 200  # other operations unaffected
    client.control("POST", "/_sandbox/faults", json={"error_rate": 0.0})
    assert client.post_rows(dataset_id, "Invoices", [{"id": 1}]).status_code == 200
    stats = client.control("GET", "/_sandbox/stats").json()
    assert stats["requests"]["PostRowsInGroup"] == {"500": 1, "200": 1}
    assert stats["rows_per_post"] == [1]


def test_seeded_error_rate_is_partial(client: Client) -> None:
    client.token()
    client.control("POST", "/_sandbox/faults", json={"error_rate": 0.5, "seed": 7})
    statuses = [client.request("GET", "/datasets").status_code for _ in range(40)]
    assert 5 < statuses.count(200) < 35
    assert set(statuses) <= {200, 500, 503}


def test_latency(client: Client) -> None:
    client.token()
    client.control("POST", "/_sandbox/faults", json={"latency_ms": 300})
    started = time.monotonic()
    assert client.request("GET", "/datasets").status_code == 200
    assert time.monotonic() - started >= 0.3
    assert client.control("GET", "/_sandbox/faults").json()["latency_ms"] == 300


def test_dataset_deleted_behind_the_clients_back(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    response = client.control("POST", "/_sandbox/faults", json={"delete_dataset": dataset_id})
    assert response.status_code == 200
    assert client.post_rows(dataset_id, "Invoices", [{"id": 1}]).status_code == 404
    again = client.control("POST", "/_sandbox/faults", json={"delete_dataset": dataset_id})
    assert again.status_code == 400


def test_push_dataset_creation_retired(client: Client) -> None:
    existing = client.create_ok(simple_dataset())
    client.control("POST", "/_sandbox/faults", json={"push_dataset_creation_retired": True})
    response = client.create(simple_dataset("New"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == RETIRED_CODE
    assert client.post_rows(existing, "Invoices", [{"id": 1}]).status_code == 200


def test_unknown_fault_fields_are_refused(client: Client) -> None:
    response = client.control("POST", "/_sandbox/faults", json={"error_rat": 1})
    assert response.status_code == 400
    assert "error_rat" in response.json()["error"]["message"]
    bad_type = {"latency_ms": 5, "token_outage": "yes"}
    assert client.control("POST", "/_sandbox/faults", json=bad_type).status_code == 400
    assert client.control("GET", "/_sandbox/faults").json()["latency_ms"] == 0  # nothing applied


def test_reset_forgets_datasets_and_faults_but_keeps_identities(client: Client) -> None:
    client.create_ok(simple_dataset())
    client.control("POST", "/_sandbox/faults", json={"latency_ms": 5})
    assert client.control("POST", "/_sandbox/reset").status_code == 200
    assert client.control("GET", "/_sandbox/datasets").json()["datasets"] == []
    assert client.control("GET", "/_sandbox/faults").json()["latency_ms"] == 0
    assert client.control("GET", "/_sandbox/stats").json()["requests"] == {}
    assert client.request("GET", "/datasets").status_code == 200


def test_clock_advance(client: Client) -> None:
    before = client.control("GET", "/_sandbox/clock").json()
    after = client.control("POST", "/_sandbox/clock", json={"advance_seconds": 86400}).json()
    assert after["time_scale"] == 60.0
    assert after["now"][:10] > before["now"][:10]
    assert (
        client.control("POST", "/_sandbox/clock", json={"advance_seconds": -1}).status_code == 400
    )

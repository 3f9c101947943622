"""Bodies derived from Microsoft's Swagger file: valid ones accepted, invalid ones refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Client
from .swagger_cases import FIXTURE, REFERENCE, derive_cases

CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())
BASE = {
    "name": "Swagger base",
    "tables": [{"name": "T1", "columns": [{"name": "c1", "dataType": "Int64"}]}],
}


def test_fixture_matches_the_reference_swagger() -> None:
    if not REFERENCE.exists():
        pytest.skip("the reference Swagger file is not on this machine; the fixture stands")
    assert derive_cases(json.loads(REFERENCE.read_text())) == CASES


def test_fixture_covers_every_kind() -> None:
    kinds = {case["kind"] for case in CASES}
    assert kinds == {"valid", "invalid", "strict"}
    assert len(CASES) > 50


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}: {c['why']}" for c in CASES])
def test_swagger_case(client: Client, case: dict[str, Any]) -> None:
    operation = case["operation"]
    if operation == "create":
        response = client.create(case["body"], case.get("query"))
        accepted = 201
    else:
        dataset_id = client.create_ok(BASE)
        path = f"/datasets/{dataset_id}/tables/T1"
        if operation == "post_rows":
            response = client.request("POST", path + "/rows", json=case["body"])
        else:
            response = client.request("PUT", path, json=case["body"])
        accepted = 200
    if case["kind"] == "valid":
        assert response.status_code == accepted, response.text
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] in {"InvalidRequest"}

"""Definitions and row values are validated as the service does, each rule at its edge."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Client, simple_dataset


def table(name: str, columns: int = 1, data_type: str = "Int64") -> dict[str, Any]:
    return {
        "name": name,
        "columns": [{"name": f"c{i}", "dataType": data_type} for i in range(columns)],
    }


def refused(response: Any, fragment: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest"
    assert fragment in error["message"], error["message"]


@pytest.mark.parametrize("char", list("./,():;$!&'\"+=[]{}|"))
def test_forbidden_characters_in_names(client: Client, char: str) -> None:
    body = {"name": "ds", "tables": [table(f"a{char}b")]}
    refused(client.create(body), "name")
    body = {
        "name": "ds",
        "tables": [{"name": "t", "columns": [{"name": f"c{char}", "dataType": "Int64"}]}],
    }
    refused(client.create(body), "name")


def test_name_length_edges(client: Client) -> None:
    assert client.create({"name": "d" * 100, "tables": [table("t" * 100)]}).status_code == 201
    refused(client.create({"name": "d" * 101, "tables": [table("t")]}), "1-100")
    refused(client.create({"name": "d", "tables": [table("t" * 101)]}), "1-100")
    body = {
        "name": "d",
        "tables": [{"name": "t", "columns": [{"name": "c" * 101, "dataType": "Int64"}]}],
    }
    refused(client.create(body), "1-100")


def test_property_names_are_case_sensitive(client: Client) -> None:
    body = {"name": "d", "tables": [{"name": "t", "columns": [{"name": "c", "datatype": "Int64"}]}]}
    refused(client.create(body), "dataType")
    refused(client.create({"Name": "d", "tables": [table("t")]}), "case-sensitive")


def test_data_types_are_case_insensitive_and_checked(client: Client) -> None:
    for spelling in ("int64", "DOUBLE", "boolean", "DateTime", "string", "decimal"):
        response = client.create({"name": "d", "tables": [table("t", data_type=spelling)]})
        assert response.status_code == 201, spelling
    refused(client.create({"name": "d", "tables": [table("t", data_type="Integer")]}), "dataType")


def test_75_tables_columns_relationships(client: Client) -> None:
    assert (
        client.create({"name": "d", "tables": [table(f"t{i}") for i in range(75)]}).status_code
        == 201
    )
    refused(client.create({"name": "d", "tables": [table(f"t{i}") for i in range(76)]}), "75")
    assert client.create({"name": "d", "tables": [table("t", 75)]}).status_code == 201
    refused(client.create({"name": "d", "tables": [table("t", 76)]}), "75")

    def with_relationships(count: int) -> dict[str, Any]:
        tables = [table(f"t{i}") for i in range(count + 1)]
        rels = [
            {
                "name": f"r{i}",
                "fromTable": f"t{i + 1}",
                "fromColumn": "c0",
                "toTable": "t0",
                "toColumn": "c0",
            }
            for i in range(count)
        ]
        return {"name": "d", "tables": tables[:75], "relationships": rels}

    assert client.create(with_relationships(74)).status_code == 201
    body = with_relationships(74)
    body["relationships"].append(
        {"name": "r74", "fromTable": "t1", "fromColumn": "c0", "toTable": "t2", "toColumn": "c0"}
    )
    assert client.create(body).status_code == 201  # 75 relationships
    body["relationships"].append(
        {"name": "r75", "fromTable": "t2", "fromColumn": "c0", "toTable": "t3", "toColumn": "c0"}
    )
    refused(client.create(body), "75")


def test_relationships_name_real_tables_and_columns(client: Client) -> None:
    def body(**rel: str) -> dict[str, Any]:
        base = {"name": "r", "fromTable": "a", "fromColumn": "c0", "toTable": "b", "toColumn": "c0"}
        return {"name": "d", "tables": [table("a"), table("b")], "relationships": [{**base, **rel}]}

    assert client.create(body()).status_code == 201
    refused(client.create(body(fromTable="zz")), "not a table")
    refused(client.create(body(toColumn="zz")), "not a column")
    refused(client.create(body(crossFilteringBehavior="Sideways")), "crossFilteringBehavior")
    assert client.create(body(crossFilteringBehavior="bothdirections")).status_code == 201


def test_measures_need_name_and_expression(client: Client) -> None:
    def body(measure: dict[str, Any]) -> dict[str, Any]:
        return {"name": "d", "tables": [{**table("t"), "measures": [measure]}]}

    assert client.create(body({"name": "Total", "expression": "SUM(t[c0])"})).status_code == 201
    refused(client.create(body({"name": "Total"})), "expression")
    refused(client.create(body({"expression": "1"})), "name")
    refused(client.create(body({"name": "Total", "expression": "  "})), "empty")
    refused(client.create(body({"name": "c0", "expression": "1"})), "already used")


def test_duplicates_are_refused(client: Client) -> None:
    refused(client.create({"name": "d", "tables": [table("t"), table("T")]}), "duplicate")
    cols = [{"name": "c", "dataType": "Int64"}, {"name": "C", "dataType": "String"}]
    refused(client.create({"name": "d", "tables": [{"name": "t", "columns": cols}]}), "duplicate")


def test_retention_and_mode(client: Client) -> None:
    refused(client.create(simple_dataset(), "forever"), "defaultRetentionPolicy")
    refused(client.create({**simple_dataset(), "defaultMode": "Streaming"}), "not emulated")
    assert client.create({**simple_dataset(), "defaultMode": "PushStreaming"}).status_code == 201


def test_body_must_be_json(client: Client) -> None:
    response = client.request(
        "POST", "/datasets", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    refused(response, "JSON")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.mark.parametrize(
    ("column", "value", "ok"),
    [
        ("id", INT64_MIN + 1, True),
        ("id", INT64_MAX - 1, True),
        ("id", INT64_MIN, False),
        ("id", INT64_MAX, False),
        ("id", 1.5, False),
        ("id", "7", False),
        ("id", True, False),
        ("rate", 1e308, True),
        ("rate", 3, True),
        ("rate", "1.0", False),
        ("paid", False, True),
        ("paid", "true", False),
        ("contact", "x" * 4000, True),
        ("contact", "x" * 4001, False),
        ("contact", 5, False),
        ("date", "2024-02-29T23:59:59.999+10:00", True),
        ("date", "2024-02-29", True),
        ("date", "2023-02-29T00:00:00Z", False),
        ("date", "yesterday", False),
        ("date", 1700000000, False),
        ("amount", 12345678901234567890.1234, True),
        ("amount", 10**24, False),
        ("amount", "12.5", False),
        ("contact", None, True),
    ],
)
def test_row_values_fit_their_column_types(
    client: Client, column: str, value: Any, ok: bool
) -> None:
    dataset_id = client.create_ok(simple_dataset())
    response = client.post_rows(dataset_id, "Invoices", [{"id": 1}, {column: value}])
    if ok:
        assert response.status_code == 200, response.text
    else:
        refused(response, column)
        rows = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/Invoices/rows")
        assert rows.json()["rowCount"] == 0  # one bad value refuses the whole request


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(client: Client, literal: str) -> None:
    dataset_id = client.create_ok(simple_dataset())
    body = f'{{"rows": [{{"rate": {literal}}}]}}'.encode()
    response = client.request(
        "POST",
        f"/datasets/{dataset_id}/tables/Invoices/rows",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    refused(response, "not valid JSON")


def test_huge_double_literal_is_refused(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    response = client.request(
        "POST",
        f"/datasets/{dataset_id}/tables/Invoices/rows",
        data=b'{"rows": [{"rate": 1e400}]}',
        headers={"Content-Type": "application/json"},
    )
    refused(response, "NaN and Infinity")


def test_row_columns_are_case_sensitive_and_known(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    refused(client.post_rows(dataset_id, "Invoices", [{"ID": 1}]), "case-sensitive")
    refused(client.post_rows(dataset_id, "Invoices", [{"nope": 1}]), "not a column")
    refused(client.post_rows(dataset_id, "Invoices", [[1, 2]]), "JSON object")


def test_stored_values_are_normalised(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    row = {"amount": 1.23456, "date": "2024-01-31T18:00:00.0049+10:00"}
    assert client.post_rows(dataset_id, "Invoices", [row]).status_code == 200
    stored = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/Invoices/rows").json()
    assert stored["rows"][0]["amount"] == 1.2346  # Decimal: scale 4
    assert stored["rows"][0]["date"] == "2024-01-31T08:00:00.003Z"  # UTC, 1/300 s

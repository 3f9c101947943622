"""The push dataset operations: create, list, tables, PUT a table, POST/DELETE rows, delete."""

from __future__ import annotations

from .conftest import Client, simple_dataset

ROW = {
    "id": 1,
    "amount": 12.5,
    "paid": True,
    "date": "2024-01-31T08:00:00Z",
    "contact": "Acme",
    "rate": 0.25,
}


def test_create_list_and_tables(client: Client) -> None:
    response = client.create(simple_dataset(), "basicFIFO")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Sales"
    assert body["defaultRetentionPolicy"] == "basicFIFO"
    listed = client.request("GET", "/datasets").json()["value"]
    assert [(d["id"], d["name"], d["addRowsAPIEnabled"]) for d in listed] == [
        (body["id"], "Sales", True)
    ]
    tables = client.request("GET", f"/datasets/{body['id']}/tables").json()["value"]
    assert [t["name"] for t in tables] == ["Invoices"]
    assert [c["dataType"] for c in tables[0]["columns"]] == [
        "Int64",
        "Decimal",
        "Boolean",
        "DateTime",
        "String",
        "Double",
    ]


def test_default_retention_is_none(client: Client) -> None:
    assert client.create(simple_dataset()).json()["defaultRetentionPolicy"] == "None"


def test_post_rows_are_stored_and_visible_in_control_api(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    response = client.post_rows(dataset_id, "Invoices", [ROW, {"id": 2}])
    assert response.status_code == 200, response.text
    stored = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/Invoices/rows").json()
    assert stored["rowCount"] == 2
    assert stored["rows"][0] == {**ROW, "date": "2024-01-31T08:00:00.000Z"}
    assert stored["rows"][1]["contact"] is None
    snapshot = client.control("GET", "/_sandbox/datasets").json()
    assert snapshot["datasets"][0]["tables"][0]["rowCount"] == 2


def test_delete_rows_empties_the_table(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    client.post_rows(dataset_id, "Invoices", [ROW, ROW])
    response = client.request("DELETE", f"/datasets/{dataset_id}/tables/Invoices/rows")
    assert response.status_code == 200
    stored = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/Invoices/rows").json()
    assert stored["rowCount"] == 0


def test_delete_dataset(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    got = client.request("GET", f"/datasets/{dataset_id}")
    assert got.status_code == 200
    assert (got.json()["id"], got.json()["name"]) == (dataset_id, "Sales")
    assert client.request("DELETE", f"/datasets/{dataset_id}").status_code == 200
    assert client.request("GET", "/datasets").json()["value"] == []
    assert client.request("GET", f"/datasets/{dataset_id}").status_code == 404
    response = client.post_rows(dataset_id, "Invoices", [ROW])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ItemNotFound"


def test_unknown_table_is_not_found(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    assert client.post_rows(dataset_id, "Nope", [ROW]).status_code == 404
    assert client.post_rows(dataset_id, "invoices", [ROW]).status_code == 404  # case-sensitive


def test_put_table_changes_schema_and_keeps_matching_values(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    client.post_rows(dataset_id, "Invoices", [ROW])
    new_table = {
        "name": "Invoices",
        "columns": [
            {"name": "id", "dataType": "Int64"},
            {"name": "contact", "dataType": "String"},
            {"name": "status", "dataType": "String"},
        ],
        "measures": [{"name": "Count", "expression": "COUNTROWS(Invoices)"}],
    }
    response = client.request("PUT", f"/datasets/{dataset_id}/tables/Invoices", json=new_table)
    assert response.status_code == 200, response.text
    stored = client.control("GET", f"/_sandbox/datasets/{dataset_id}/tables/Invoices/rows").json()
    assert stored["rows"] == [{"id": 1, "contact": "Acme", "status": None}]
    tables = client.request("GET", f"/datasets/{dataset_id}/tables").json()["value"]
    assert tables[0]["measures"] == [{"name": "Count", "expression": "COUNTROWS(Invoices)"}]


def test_put_table_cannot_add_a_table(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    body = {"name": "Payments", "columns": [{"name": "id", "dataType": "Int64"}]}
    response = client.request("PUT", f"/datasets/{dataset_id}/tables/Payments", json=body)
    assert response.status_code == 404
    tables = client.request("GET", f"/datasets/{dataset_id}/tables").json()["value"]
    assert [t["name"] for t in tables] == ["Invoices"]


def test_put_table_name_must_match_url(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset())
    body = {"name": "Other", "columns": [{"name": "id", "dataType": "Int64"}]}
    response = client.request("PUT", f"/datasets/{dataset_id}/tables/Invoices", json=body)
    assert response.status_code == 400


def test_viewer_shows_datasets_tables_counts_and_rows(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset("Viewer <test>"))
    client.post_rows(dataset_id, "Invoices", [{**ROW, "contact": "<b>Acme</b>"}])
    page = client.control("GET", "/tables")  # the raw tables, one click from the viewer's `/`
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Viewer &lt;test&gt;" in page.text
    assert "Invoices: 1 rows" in page.text
    assert "&lt;b&gt;Acme&lt;/b&gt;" in page.text
    assert client.sbx.config["workspace_id"] in page.text


def test_unknown_paths_and_methods_answer_power_bi_errors(client: Client) -> None:
    response = client.request("GET", "/dataflows")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ItemNotFound"
    response = client.request("PATCH", "/datasets")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "MethodNotAllowed"

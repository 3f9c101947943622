"""A Direct Lake semantic model's TMDL: read, bound to the replicated tables, or refused."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pyarrow as pa
import pytest
from sandbox.fabric.tmdl import TmdlError, parse, read_model

from .conftest import Fabric, parquet


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _parts(endpoint: str, invoices: str, relationships: str = "") -> list[dict[str, str]]:
    files = {
        "definition.pbism": json.dumps({"version": "4.0", "settings": {}}),
        "definition/database.tmdl": "database\n\tcompatibilityLevel: 1604\n",
        "definition/model.tmdl": "model Model\n\tculture: en-US\n\nref table invoices\n",
        "definition/expressions.tmdl": (
            "expression DatabaseQuery =\n\t\tlet\n\t\t\tdatabase = Sql.Database("
            f'"sandbox.datawarehouse.fabric.microsoft.com", "{endpoint}")\n'
            "\t\tin\n\t\t\tdatabase\n"
        ),
        "definition/tables/invoices.tmdl": invoices,
    }
    if relationships:
        files["definition/relationships.tmdl"] = relationships
    return [{"path": p, "payload": b64(t), "payloadType": "InlineBase64"} for p, t in files.items()]


def _table(total_type: str = "decimal", entity: str = "invoices", source: str = "Total") -> str:
    return (
        "table invoices\n\n"
        "\tcolumn InvoiceID\n\t\tdataType: string\n\t\tsourceColumn: InvoiceID\n\n"
        f"\tcolumn Total\n\t\tdataType: {total_type}\n\t\tsourceColumn: {source}\n\n"
        "\tmeasure 'Total invoiced' =\n\t\t\tSUM(invoices[Total])\n"
        "\t\tformatString: #,0.00\n\t\tisHidden\n\n"
        "\tpartition invoices = entity\n\t\tmode: directLake\n\t\tsource\n"
        f"\t\t\tentityName: {entity}\n\t\t\tschemaName: dbo\n"
        "\t\t\texpressionSource: DatabaseQuery\n"
    )


@pytest.fixture
def endpoint(fabric: Fabric) -> str:
    """A mirrored database with one replicated table, invoices (InvoiceID, Total decimal)."""
    fabric.faults(lro_polls=0)
    database = fabric.create_database("Xero")
    fabric.write_metadata(database, "invoices", {"keyColumns": ["InvoiceID"]})
    schema = pa.schema([("InvoiceID", pa.string()), ("Total", pa.decimal128(38, 4))])
    fabric.publish(
        database, "invoices", 1, parquet([{"InvoiceID": "I1", "Total": Decimal("1.5")}], schema)
    )
    item = fabric.rest("GET", f"/mirroredDatabases/{database}").json()
    return str(item["properties"]["sqlEndpointProperties"]["id"])


def _create(fabric: Fabric, parts: list[dict[str, str]]) -> tuple[int, str]:
    body = {"displayName": "Xero", "definition": {"parts": parts}}
    response = fabric.rest("POST", "/semanticModels", json=body)
    return response.status_code, response.json().get("message", "") if response.content else ""


def test_a_direct_lake_model_binds_to_the_replicated_table(fabric: Fabric, endpoint: str):
    relationship = (
        "relationship self\n\tfromColumn: invoices.InvoiceID\n\ttoColumn: invoices.Total\n"
    )
    status, _ = _create(fabric, _parts(endpoint, _table(), relationship))
    assert status == 201
    [model] = fabric.control("GET", "/semantic_models").json()["semanticModels"]
    assert model["versions"] == 1
    assert model["databases"] == [fabric.rest("GET", "/mirroredDatabases").json()["value"][0]["id"]]
    invoices = model["tables"]["invoices"]
    assert (invoices["mode"], invoices["entityName"], invoices["schemaName"]) == (
        "directLake",
        "invoices",
        "dbo",
    )
    assert invoices["columns"]["Total"] == {"dataType": "decimal", "sourceColumn": "Total"}
    assert invoices["measures"]["Total invoiced"] == {
        "expression": "SUM(invoices[Total])",
        "formatString": "#,0.00",
        "isHidden": "true",
    }
    assert model["relationships"][0]["fromColumn"] == "invoices.InvoiceID"


@pytest.mark.parametrize(
    ("table", "relationship", "reason"),
    [
        (_table(total_type="double"), "", "column Total is dataType double"),
        (_table(entity="bills"), "", "entity dbo.bills is not a table"),
        (_table(source="Amount"), "", "sourceColumn Amount is not in the Delta table"),
        (
            _table(),
            "relationship r\n\tfromColumn: invoices.Nope\n\ttoColumn: invoices.Total\n",
            "invoices.Nope is not a column of the model",
        ),
        (_table().replace("\tcolumn Total", "  column Total"), "", "indented with spaces"),
    ],
)
def test_what_direct_lake_cannot_bind_is_refused(
    fabric: Fabric, endpoint: str, table: str, relationship: str, reason: str
):
    status, message = _create(fabric, _parts(endpoint, table, relationship))
    assert status == 400
    assert reason in message
    assert fabric.control("GET", "/semantic_models").json()["semanticModels"] == []


def test_an_unknown_sql_endpoint_is_refused(fabric: Fabric, endpoint: str):
    status, message = _create(fabric, _parts("00000000-0000-0000-0000-000000000000", _table()))
    assert (status, "no mirrored database" in message) == (400, True)


def test_update_definition_is_checked_and_counted(fabric: Fabric, endpoint: str):
    status, _ = _create(fabric, _parts(endpoint, _table()))
    assert status == 201
    model_id = fabric.rest("GET", "/semanticModels").json()["value"][0]["id"]
    path = f"/semanticModels/{model_id}/updateDefinition"
    bad = fabric.rest(
        "POST", path, json={"definition": {"parts": _parts(endpoint, _table(entity="x"))}}
    )
    assert bad.status_code == 400
    good = fabric.rest("POST", path, json={"definition": {"parts": _parts(endpoint, _table())}})
    assert good.status_code == 200
    [model] = fabric.control("GET", "/semantic_models").json()["semanticModels"]
    assert model["versions"] == 2


def test_tmdl_reads_quoted_names_fences_and_flags():
    text = (
        "table 'Sales ''24'\n"
        "\tmeasure 'A = b' = ```\n\t\t\tSUM('Sales ''24'[x])\n\t\t\t```\n\t\tisHidden\n"
        "\tcolumn x\n\t\tdataType: int64\n"
    )
    [table] = parse(text, "t.tmdl")
    assert table.name == "Sales '24"
    [measure] = table.of("measure")
    assert (measure.name, measure.expression) == ("A = b", "SUM('Sales ''24'[x])")
    assert measure.properties == {"isHidden": "true"}
    with pytest.raises(TmdlError, match="indented too deep"):
        parse("table t\n\t\t\tcolumn x\n", "t.tmdl")
    with pytest.raises(TmdlError, match=r"not a table\.column"):
        read_model(
            {
                "definition/tables/t.tmdl": b"table t\n\tcolumn x\n",
                "definition/relationships.tmdl": (
                    b"relationship r\n\tfromColumn: t\n\ttoColumn: t.x\n"
                ),
            }
        )


def _report(model_id: str, measure: str = "Total invoiced") -> list[dict[str, str]]:
    connection = f"Data Source=powerbi://x;initial catalog=Xero;semanticmodelid={model_id}"
    visual = {
        "name": "v1",
        "position": {"x": 0, "y": 0, "width": 10, "height": 10},
        "visual": {
            "visualType": "card",
            "query": {
                "queryState": {
                    "Values": {
                        "projections": [
                            {
                                "field": {
                                    "Measure": {
                                        "Expression": {"SourceRef": {"Entity": "invoices"}},
                                        "Property": measure,
                                    }
                                }
                            }
                        ]
                    }
                }
            },
        },
    }
    files = {
        "definition.pbir": json.dumps(
            {
                "version": "4.0",
                "datasetReference": {"byConnection": {"connectionString": connection}},
            }
        ),
        "definition/pages/pages.json": json.dumps({"pageOrder": ["p"], "activePageName": "p"}),
        "definition/pages/p/page.json": json.dumps({"name": "p", "displayName": "P"}),
        "definition/pages/p/visuals/v1/visual.json": json.dumps(visual),
    }
    return [{"path": p, "payload": b64(t), "payloadType": "InlineBase64"} for p, t in files.items()]


def test_a_report_binds_to_a_semantic_model_that_has_its_fields(fabric: Fabric, endpoint: str):
    assert _create(fabric, _parts(endpoint, _table()))[0] == 201
    model_id = fabric.rest("GET", "/semanticModels").json()["value"][0]["id"]
    for parts, reason in [
        (_report("9" * 8 + "-0000-0000-0000-" + "0" * 12), "is not in the workspace"),
        (_report(model_id, "Nope"), "lacks: ['Nope']"),
    ]:
        refused = fabric.rest(
            "POST", "/reports", json={"displayName": "R", "definition": {"parts": parts}}
        )
        assert refused.status_code == 400
        assert reason in refused.json()["message"]
    created = fabric.rest(
        "POST", "/reports", json={"displayName": "R", "definition": {"parts": _report(model_id)}}
    )
    assert created.status_code == 201, created.text
    [model] = fabric.control("GET", "/semantic_models").json()["semanticModels"]
    assert model["reports"] == ["R"]

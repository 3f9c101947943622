"""`destination: fabric` with `semantic_model`: the model file deployed as a Direct Lake semantic
model over the mirrored tables of the Fabric sandbox, updated once when the model or the
tables change, and a refusal that is one warning line and converges on the next run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sandbox.fabric import FabricSandbox

from tests.target.conftest import DATA
from tests.target.fabric import Fabric


@pytest.fixture(scope="module")
def fabric_sandbox() -> Iterator[FabricSandbox]:
    with FabricSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def fabric(fabric_sandbox: FabricSandbox, tmp_path: Path) -> Fabric:
    control = Fabric(fabric_sandbox, tmp_path)
    control.control("POST", "/reset")
    control.control("POST", "/faults", {"lro_polls": 1})
    control.config["model_file"] = str(DATA / "model.yml")
    return control


def models(fabric: Fabric) -> list[dict[str, Any]]:
    return list(fabric.control("GET", "/semantic_models")["semanticModels"])


def calls(fabric: Fabric, operation: str) -> int:
    return sum(fabric.stats()["requests"].get(operation, {}).values())


def test_deployed_over_the_mirrored_tables_then_updated_once_per_change(
    fabric: Fabric, tmp_path: Path
) -> None:
    fabric.run("invoices_run1")
    [model] = models(fabric)
    (database,) = [
        i["id"] for i in fabric.control("GET", "/items")["items"] if i["type"] == "MirroredDatabase"
    ]
    assert (model["displayName"], model["versions"], model["databases"]) == (
        "Finance",
        1,
        [database],
    )
    mirrored = fabric.tables()
    assert set(model["tables"]) == set(mirrored)
    invoices = model["tables"]["invoices"]
    assert (invoices["mode"], invoices["entityName"]) == ("directLake", "invoices")
    assert set(invoices["columns"]) == set(mirrored["invoices"]["columns"])
    assert invoices["columns"]["Total"]["dataType"] == "decimal"  # the model file's type
    assert invoices["columns"]["Paid"]["dataType"] == "boolean"
    assert invoices["columns"]["Date"]["dataType"] == "dateTime"
    assert invoices["measures"]["Total invoiced"] == {
        "expression": "SUM(invoices[Total])",
        "formatString": "#,0.00",
    }
    assert [(r["name"], r["fromColumn"], r["toColumn"]) for r in model["relationships"]] == [
        ("invoice_contact", "invoices.Contact__ContactID", "contacts.ContactID")
    ]
    assert calls(fabric, "CreateSemanticModel") == 1

    fabric.run("invoices_run2")  # new rows, same tables and columns: nothing to deploy
    assert models(fabric)[0]["versions"] == 1
    assert calls(fabric, "UpdateSemanticModelDefinition") == 0

    changed = tmp_path / "model.yml"
    raw = yaml.safe_load((DATA / "model.yml").read_text())
    raw["tables"]["invoices"]["measures"].append(
        {"name": "Invoice count", "expression": "COUNTROWS(invoices)"}
    )
    changed.write_text(yaml.safe_dump(raw))
    fabric.config["model_file"] = str(changed)
    fabric.run("invoices_run2")
    [model] = models(fabric)
    assert model["versions"] == 2
    assert model["tables"]["invoices"]["measures"]["Invoice count"]["expression"] == (
        "COUNTROWS(invoices)"
    )
    fabric.run("invoices_run2")
    assert models(fabric)[0]["versions"] == 2

    fabric.run("invoices_new_column")  # a new column lands: the model reads it
    [model] = models(fabric)
    assert model["versions"] == 3
    assert set(model["tables"]["invoices"]["columns"]) == set(
        fabric.tables()["invoices"]["columns"]
    )
    assert calls(fabric, "UpdateSemanticModelDefinition") == 2
    assert calls(fabric, "CreateSemanticModel") == 1


def test_a_refusal_is_one_warning_and_the_next_run_deploys(fabric: Fabric) -> None:
    fabric.control(
        "POST",
        "/faults",
        {"fail_next": 1, "fail_next_status": 403, "operations": ["CreateSemanticModel"]},
    )
    run = fabric.run("invoices_run1")  # the data load does not fail
    fabric.assert_mirrors_store()
    assert models(fabric) == []
    warnings = [line for line in run.stderr.splitlines() if "Semantic model" in line]
    assert len(warnings) == 1, run.stderr[-2000:]
    assert "not deployed" in warnings[0] and "next run" in warnings[0]
    assert "Traceback" not in run.stderr
    assert fabric.config["client_secret"] not in run.stderr

    fabric.control("POST", "/faults", {"clear": True})
    fabric.run("invoices_run2")
    [model] = models(fabric)
    assert model["versions"] == 1
    assert "Total invoiced" in model["tables"]["invoices"]["measures"]


def test_off_by_the_setting(fabric: Fabric) -> None:
    fabric.run("invoices_run1", config={"semantic_model": False})
    assert models(fabric) == []
    assert calls(fabric, "ListSemanticModels") == 0


REPORT = """
name: Invoices
pages:
  main:
    title: Main
    visuals:
      - {type: card, title: Total, measures: [Total invoiced]}
      - {type: column, title: By contact, measures: [Total invoiced], by: "contacts[Name]"}
"""


def test_the_report_is_bound_to_the_direct_lake_model(fabric: Fabric, tmp_path: Path) -> None:
    report = tmp_path / "report.yml"
    report.write_text(REPORT)
    fabric.config["report_file"] = str(report)
    fabric.run("invoices_run1")
    [model] = models(fabric)
    assert model["reports"] == ["Invoices"]
    assert calls(fabric, "CreateReport") == 1
    fabric.run("invoices_run2")  # nothing changed in the report or the model: no call
    assert calls(fabric, "CreateReport") == 1
    assert calls(fabric, "UpdateReportDefinition") == 0

    report.write_text(REPORT.replace("contacts[Name]", "contacts[Nope]"))
    run = fabric.run("invoices_run2")  # refused by Fabric (the model lacks it): one warning
    warnings = [line for line in run.stderr.splitlines() if "not deployed" in line]
    assert len(warnings) == 1 and "Report from" in warnings[0], run.stderr[-2000:]
    assert "contacts[Nope]" in warnings[0]
    assert fabric.stats()["requests"]["UpdateReportDefinition"] == {"400": 1}

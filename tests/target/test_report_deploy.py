"""target-powerbi deploys the report of `report_file` beside its dataset (issue 17).

Against the Power BI sandbox, which serves the Fabric report calls: created bound
(`byConnection`) to the dataset after the dataset, updated when the description changes,
untouched when it does not, rebound after a dataset rebuild; a failure to deploy is one
warning line and never fails the load, and the next run deploys it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.target.conftest import DATA, PowerBI

REPORT = """\
name: Finance report
slicer: invoices[Contact__Name]
pages:
  totals:
    title: Totals
    visuals:
      - {type: card, title: Total invoiced, measures: [Total invoiced]}
"""


def _config(tmp_path: Path, text: str = REPORT) -> dict[str, Any]:
    report = tmp_path / "report.yml"
    report.write_text(text)
    return {"model_file": str(DATA / "model.yml"), "report_file": str(report)}


def _reports(powerbi: PowerBI) -> list[dict[str, Any]]:
    return list(powerbi.control("GET", "/reports")["reports"])


def _fabric_calls(powerbi: PowerBI) -> dict[str, int]:
    requests = powerbi.stats()["requests"]
    names = ("ListReports", "CreateReport", "UpdateReportDefinition")
    return {n: sum(requests.get(n, {}).values()) for n in names}


def _definition(powerbi: PowerBI, report_id: str) -> dict[str, str]:
    """The parts the sandbox keeps, as the Fabric getDefinition call gives them."""
    body = powerbi.control("GET", f"/reports/{report_id}/definition")
    return {p["path"]: base64.b64decode(p["payload"]).decode() for p in body["definition"]["parts"]}


def test_the_report_is_created_bound_to_the_dataset_and_updated_on_change(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    run = powerbi.run("invoices_run1", config=config)
    assert "Created report 'Finance report'" in run.stderr
    dataset_id = powerbi.dataset()["id"]
    (report,) = _reports(powerbi)
    assert report["name"] == "Finance report"
    assert report["datasetId"] == dataset_id
    pbir = json.loads(_definition(powerbi, report["id"])["definition.pbir"])
    assert (
        f"semanticmodelid={dataset_id}"
        in pbir["datasetReference"]["byConnection"]["connectionString"]
    )
    assert [p["name"] for p in report["pages"]] == ["totals"]

    # unchanged: no Fabric call at all
    before = _fabric_calls(powerbi)
    assert before["CreateReport"] == 1
    run = powerbi.run("invoices_run2", config=config)
    assert "Updated report" not in run.stderr
    assert "Created report" not in run.stderr
    assert _fabric_calls(powerbi) == before

    # one line more in the description: updateDefinition, same report
    changed = REPORT.replace(
        "      - {type: card",
        "      - {type: table, title: By contact, measures: [Total invoiced],"
        ' by: "invoices[Contact__Name]"}\n      - {type: card',
    )
    run = powerbi.run("invoices_run3", config=_config(tmp_path, changed))
    assert "Updated report 'Finance report'" in run.stderr
    (again,) = _reports(powerbi)
    assert again["id"] == report["id"]
    assert len(again["pages"][0]["visuals"]) == len(report["pages"][0]["visuals"]) + 1


def test_after_a_dataset_rebuild_the_report_is_bound_to_the_new_dataset(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    powerbi.run("invoices_run1", config=config)
    old = powerbi.dataset()["id"]
    run = powerbi.run(
        "payments_new_stream", config={**config, "rebuild_dataset_on_new_tables": True}
    )
    new = powerbi.dataset()["id"]
    assert new != old
    assert "Updated report 'Finance report'" in run.stderr
    (report,) = _reports(powerbi)
    assert report["datasetId"] == new


def test_a_failed_deployment_warns_once_and_the_next_run_deploys(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    powerbi.faults(fail_next=1, fail_next_status=500, operations=["CreateReport"])
    run = powerbi.run("invoices_run1", config=config)
    assert run.returncode == 0
    warnings = [line for line in run.stderr.splitlines() if "not deployed" in line]
    assert len(warnings) == 1, warnings
    assert "next run tries again" in warnings[0]
    assert powerbi.rows("invoices")  # the data landed
    assert _reports(powerbi) == []
    run = powerbi.run("invoices_run2", config=config)
    assert "Created report 'Finance report'" in run.stderr
    assert len(_reports(powerbi)) == 1


def test_a_bad_report_file_is_a_warning_not_a_failed_load(powerbi: PowerBI, tmp_path: Path) -> None:
    config = {**_config(tmp_path), "report_file": str(tmp_path / "missing.yml")}
    run = powerbi.run("invoices_run1", config=config)
    assert run.returncode == 0
    assert "missing.yml not deployed" in run.stderr or "not deployed" in run.stderr
    assert powerbi.rows("invoices")

"""`meltano run xero-to-powerbi` with `destination: fabric`: the Xero sandbox into the Fabric
sandbox's open mirrored database, equal to the truth after a first run and after a day of
business, the day landing about the changed rows (upserts and deletes), never a reload.

The tests of this module run in order on one deployment, as a real one's runs do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sandbox.xero.util import date_of

from tests.e2e import metrics
from tests.e2e.fabric import FabricSandboxes
from tests.e2e.pipeline import Pipeline
from tests.e2e.test_model import _ours, xero_metrics
from tests.e2e.test_pipeline import DAY_OF_BUSINESS
from tests.e2e.truth import compare

MODEL_FILE = Path(__file__).parents[2] / "model" / "xero.model.yml"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


class FabricDeployment:
    def __init__(self, tmp: Path) -> None:
        self.sandboxes = FabricSandboxes(seed=11, tenants=2)
        self.pipeline = Pipeline(self.sandboxes, tmp, TAP_XERO_PAGE_SIZE="100")
        self.landed: list[int] = []

    def run(self) -> None:
        before = int(self.sandboxes.stats()["rows_landed"])
        result = self.pipeline.run()
        assert result.returncode == 0, result.stderr[-4000:]
        self.landed.append(int(self.sandboxes.stats()["rows_landed"]) - before)

    def assert_equal_to_xero(self) -> dict[str, int]:
        compared, problems = compare(self.sandboxes, self.sandboxes.tables())
        assert not problems, "\n".join(problems[:40])
        stats = self.sandboxes.stats()
        assert stats["refused_files"] == [], stats["refused_files"]
        assert stats["files"]["waiting"] == 0
        return compared


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricDeployment]:
    deployment = FabricDeployment(tmp_path_factory.mktemp("fabric-pipeline"))
    try:
        deployment.run()
        yield deployment
    finally:
        deployment.sandboxes.stop()


def test_first_run_mirrors_every_table_equal_to_xero(deployment: FabricDeployment) -> None:
    compared = deployment.assert_equal_to_xero()
    for table in ("invoices", "invoice_line_items", "contacts", "payments", "journal_lines"):
        assert compared[table] > 0, table
    tables = deployment.sandboxes.tables()
    for tenant in deployment.sandboxes.tenants:  # organisation by organisation
        for table in ("invoices", "invoice_line_items", "accounts", "organisations"):
            assert any(row["tenant_id"] == tenant for row in tables[table]), (table, tenant)
    summary = deployment.sandboxes.fabric_get("tables")["tables"]
    assert all(t["status"] == "Replicating" and t["keyColumns"] for t in summary), summary
    # every row landed once: the full load is the tables' rows, nothing more
    assert deployment.landed[0] == sum(len(rows) for rows in tables.values())
    log = deployment.pipeline.workdir / "meltano-1.log"
    assert deployment.sandboxes.fabric.config["client_secret"] not in log.read_text()


def test_the_direct_lake_model_is_the_whole_model_file(deployment: FabricDeployment) -> None:
    """Every mirrored table, relationship and measure of model/xero.model.yml, in the semantic
    model the target deployed (the sandbox checked it binds to the Delta tables)."""
    raw = yaml.safe_load(MODEL_FILE.read_text(encoding="utf-8"))
    [model] = deployment.sandboxes.fabric_get("semantic_models")["semanticModels"]
    summary = {t["table"]: t for t in deployment.sandboxes.fabric_get("tables")["tables"]}
    assert set(model["tables"]) == set(summary)
    for name, table in model["tables"].items():
        assert (table["mode"], table["entityName"]) == ("directLake", name)
        assert set(table["columns"]) == set(summary[name]["columns"])
    assert model["reports"] == ["Xero"]  # report_file, bound to this model
    names = {r["name"] for r in model["relationships"]}
    assert names == {r["name"] for r in raw["relationships"]}
    for name, spec in raw["tables"].items():
        deployed = model["tables"][name]["measures"]
        for measure in spec.get("measures") or []:
            assert deployed[measure["name"]]["expression"] == measure["expression"].strip()
        for column in spec.get("columns") or {}:
            assert model["tables"][name]["columns"][column]["dataType"] == "decimal"


def test_the_measures_over_the_mirrored_tables_equal_xero(deployment: FabricDeployment) -> None:
    """The model's measures, evaluated by their Python reference over the replicated Delta
    tables (what the Direct Lake model reads), give Xero's own figures organisation by
    organisation: the same proof as the push path's (tests/e2e/test_model.py)."""
    xero = deployment.sandboxes.xero
    today = date_of(xero.service.now_ms())
    months = [metrics.add_months(metrics.month_start(today), -k) for k in range(12)]
    tables = deployment.sandboxes.tables()
    for tenant in deployment.sandboxes.tenants:
        reference = metrics.Model(tables, tenant, today)
        ours = _ours(reference, months)
        theirs = xero_metrics(xero, tenant, today, months, reference.financial_year_start())
        assert set(ours) == set(theirs)
        for name, value in ours.items():
            if isinstance(value, float) or isinstance(theirs[name], float):
                assert value == pytest.approx(theirs[name], rel=1e-9), (tenant, name)
            else:
                assert value == theirs[name], (tenant, name)
        assert ours["Total Assets"] and ours["Outstanding Receivables"]


def test_a_day_of_business_lands_only_the_changes(deployment: FabricDeployment) -> None:
    sandboxes = deployment.sandboxes
    sandboxes.xero_post("clock", {"advance_seconds": 86_400})
    done: dict[str, list[dict[str, Any]]] = {}
    for tenant in sandboxes.tenants:
        done[tenant] = []
        for action in DAY_OF_BUSINESS:
            sandboxes.xero_post("clock", {"advance_seconds": 60})
            done[tenant] += sandboxes.xero_post("mutate", {"tenant_id": tenant, "action": action})[
                "results"
            ]
    _, stale = compare(sandboxes, sandboxes.tables())
    assert stale, "the comparison must see the day's changes before the second run"

    deployment.run()
    deployment.assert_equal_to_xero()
    full, day = deployment.landed[0], deployment.landed[1]
    assert 0 < day < 0.1 * full, (full, day)  # changed rows, not reloaded tables
    audit = deployment.pipeline.audit()
    assert not [e for e in audit if e["operation"] == "drop_table"]
    tables = sandboxes.tables()
    for tenant, results in done.items():
        (deleted,) = [r["id"] for r in results if r["action"] == "delete_item"]
        assert deleted not in {r["ItemID"] for r in tables["items"] if r["tenant_id"] == tenant}
        (voided,) = [r["id"] for r in results if r["action"] == "void"]
        (row,) = [row for row in tables["invoices"] if row["InvoiceID"] == voided]
        assert row["Status"] == "VOIDED"


def test_a_run_without_changes_lands_nothing(deployment: FabricDeployment) -> None:
    deployment.run()
    deployment.assert_equal_to_xero()
    assert deployment.landed[-1] == 0
    requests = deployment.sandboxes.stats()["requests"]
    assert sum(requests["CreateSemanticModel"].values()) == 1
    [model] = deployment.sandboxes.fabric_get("semantic_models")["semanticModels"]
    updates = sum(requests.get("UpdateSemanticModelDefinition", {}).values())
    assert model["versions"] == 1 + updates <= 2  # the day may bring a column, never more

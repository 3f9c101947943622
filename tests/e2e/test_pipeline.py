"""`meltano run xero-to-powerbi` end to end: first run, a day of business, later runs.

One pipeline (two organisations, its own Meltano state, token store and target store)
is shared by the tests of this module, which run in order: each builds on the runs
before it, as the runs of a real deployment do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pipeline import Pipeline, Run, Sandboxes
from tests.e2e.truth import DERIVED_COLUMNS, compare, differs, expected, key_columns

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Paged incremental endpoints: after a day of business, one page per organisation.
PAGED = ("Invoices", "Contacts", "BankTransactions", "Payments")
DAY_OF_BUSINESS = (
    "pay",
    "part_pay",
    "void",
    "edit",
    "add_invoice",
    "add_credit_note",
    "add_contact",
    "archive_contact",
    "delete_item",
    "delete_payment",
)


class Deployment:
    """The shared pipeline and what each run of it cost."""

    def __init__(self, tmp: Path) -> None:
        self.sandboxes = Sandboxes(seed=11, tenants=2)
        # Pages of 100 records, so that the small demo company spans several pages as a
        # real one does at 1000.
        self.pipeline = Pipeline(self.sandboxes, tmp, TAP_XERO_PAGE_SIZE="100")
        self.calls: list[dict[str, int]] = []
        self.refresh_tokens: list[str] = []
        self.runs: list[Run] = []

    def run(self, *args: str) -> Run:
        before = self.endpoint_calls()
        result = self.pipeline.run(*args)
        assert result.returncode == 0, result.stderr[-4000:]
        after = self.endpoint_calls()
        self.calls.append({k: after[k] - before.get(k, 0) for k in after})
        client_id = self.sandboxes.xero.config["client_id"]
        self.refresh_tokens.append(self.pipeline.token_store["apps"][client_id]["refresh_token"])
        self.runs.append(result)
        return result

    def endpoint_calls(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tenant, endpoints in self.sandboxes.xero_get("stats")["calls"].items():
            for endpoint, methods in endpoints.items():
                if tenant and endpoint != "connections":
                    out[endpoint] = out.get(endpoint, 0) + sum(methods.values())
        return out

    def assert_equal_to_xero(self) -> dict[str, int]:
        compared, problems = compare(self.sandboxes, self.sandboxes.tables())
        assert not problems, "\n".join(problems[:40])
        return compared


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("pipeline"))
    try:
        deployment.run()
        yield deployment
    finally:
        deployment.sandboxes.stop()


def test_first_run_makes_every_table_equal_to_xero(deployment: Deployment) -> None:
    compared = deployment.assert_equal_to_xero()
    for table in ("invoices", "invoice_line_items", "contacts", "payments", "journal_lines"):
        assert compared[table] > 0, table
    tables = deployment.sandboxes.tables()
    for tenant in deployment.sandboxes.tenants:  # organisation by organisation
        for table in ("invoices", "invoice_line_items", "accounts", "organisations"):
            assert any(row["tenant_id"] == tenant for row in tables[table]), (table, tenant)
    assert len(tables) <= 75  # Power BI's limit per dataset
    stats = deployment.sandboxes.xero_get("stats")
    assert set(stats["methods"]) == {"GET"}  # the tap only reads
    assert not stats["rate_limited"]
    log = deployment.runs[0].stderr
    for secret in (
        deployment.sandboxes.xero.config["client_secret"],
        deployment.sandboxes.xero.config["refresh_token"],
        deployment.sandboxes.powerbi.config["client_secret"],
    ):
        assert secret not in log


def test_a_day_of_business_then_an_incremental_run_equal_to_the_new_truth(
    deployment: Deployment,
) -> None:
    sandboxes = deployment.sandboxes
    sandboxes.xero_post("clock", {"advance_seconds": 86_400})
    done: dict[str, list[dict[str, Any]]] = {}
    for tenant in sandboxes.tenants:
        done[tenant] = []
        for action in DAY_OF_BUSINESS:
            sandboxes.xero_post("clock", {"advance_seconds": 60})  # a change a minute
            done[tenant] += sandboxes.xero_post("mutate", {"tenant_id": tenant, "action": action})[
                "results"
            ]
    _, stale = compare(sandboxes, sandboxes.tables())
    assert stale, "the comparison must see the day's changes before the second run"

    deployment.run()
    deployment.assert_equal_to_xero()
    first, second = deployment.calls[0], deployment.calls[1]

    def reports(calls: dict[str, int]) -> int:
        return sum(n for endpoint, n in calls.items() if endpoint.startswith("Reports/"))

    # The documents come from If-Modified-Since; the day's back-dated voids and deleted
    # payments make the reports re-read from the earliest month they changed (test_reports
    # proves which months), never more than a first run reads.
    # Each endpoint costs at least a call per organisation; the paged ones are checked below.
    documents = sum(second.values()) - reports(second)
    assert documents < sum(first.values()) - reports(first), (first, second)
    assert reports(second) <= reports(first), (first, second)
    tenants = len(sandboxes.tenants)
    for endpoint in PAGED:
        assert first[endpoint] > tenants, endpoint  # several pages the first time
        assert second[endpoint] == tenants, endpoint  # only the changes: one page each
    assert second["Journals"] <= 2 * tenants < first["Journals"]

    tables = sandboxes.tables()
    for results in done.values():
        (archived,) = [r["id"] for r in results if r["action"] == "archive_contact"]
        (row,) = [row for row in tables["contacts"] if row["ContactID"] == archived]
        assert row["ContactStatus"] == "ARCHIVED"
        (voided,) = [r["id"] for r in results if r["action"] == "void"]
        (row,) = [row for row in tables["invoices"] if row["InvoiceID"] == voided]
        assert row["Status"] == "VOIDED"


def test_a_hard_deleted_item_leaves_power_bi(deployment: Deployment) -> None:
    sandboxes = deployment.sandboxes
    rows = sandboxes.tables()["items"]
    for tenant in sandboxes.tenants:
        truth = {record["ItemID"] for record in sandboxes.truth(tenant, "Items")}
        mine = {row["ItemID"] for row in rows if row["tenant_id"] == tenant}
        assert truth == mine, f"deleted items still in Power BI: {sorted(mine - truth)}"


def test_three_runs_in_a_row_rotate_one_refresh_token_chain(deployment: Deployment) -> None:
    sandboxes = deployment.sandboxes
    sandboxes.xero_post("clock", {"advance_seconds": 3_600})  # yesterday's access token is gone
    sandboxes.xero_post("mutate", {"tenant_id": sandboxes.tenants[0], "action": "add_invoice"})
    deployment.run()
    deployment.assert_equal_to_xero()
    seed = sandboxes.xero.config["refresh_token"]
    chain = [seed, *deployment.refresh_tokens]
    assert len(set(chain)) == len(chain) == 4, "each run rotates the refresh token once more"
    grants = sandboxes.xero_get("stats")["token_requests"]
    assert grants.get("refresh_token", 0) >= 3


def test_target_jsonl_lands_the_same_records_in_files(deployment: Deployment) -> None:
    deployment.run("tap-xero", "target-jsonl")
    out = deployment.pipeline.workdir / "jsonl"
    landed = {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
              for p in out.glob("*.jsonl")}  # fmt: skip
    tables = deployment.sandboxes.tables()
    want = expected(deployment.sandboxes)
    assert set(want) <= set(landed)
    for stream, truth_rows in want.items():
        columns = key_columns(stream)
        records = {tuple(r[c] for c in columns): r for r in landed[stream]}
        assert set(records) == set(truth_rows), stream
        in_powerbi = {tuple(r[c] for c in columns) for r in tables[stream]}
        assert set(records) == in_powerbi, stream  # the same records as Power BI holds
        for key, record in records.items():
            derived = DERIVED_COLUMNS.get(stream, set())
            fields = {k: v for k, v in record.items() if k != "tenant_id" and k not in derived}
            assert not differs(fields, truth_rows[key]), (stream, key)


def test_changes_within_one_second_then_two_more_runs(deployment: Deployment) -> None:
    sandboxes = deployment.sandboxes
    sandboxes.xero_post("clock", {"advance_seconds": 3_600})
    for action in ("add_contact", "archive_contact"):  # in the same sandbox second
        sandboxes.xero_post("mutate", {"tenant_id": sandboxes.tenants[0], "action": action})
    deployment.run()  # the bookmark is now the later of the two
    again = deployment.pipeline.run()  # re-reads that second: the earlier one comes first
    assert again.returncode == 0, again.stderr[-4000:]
    deployment.assert_equal_to_xero()

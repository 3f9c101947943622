"""Where tap-xero must follow Xero's OpenAPI spec rather than the project's own emulator.

Each test fails without its fix: checked here through a recording proxy in front of the
sandbox (the headers a run sends, answers the sandbox would never give).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from tap_xero.reports import budget_summary_calls
from tap_xero.streams import ENDPOINT_STREAM_TYPES

from tests.tap.proxy import RecordingProxy, via
from tests.tap.xero_helpers import run_tap, start_sandbox, tap_config, truth

SPEC = (
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "xero" / "xero_accounting.yaml"
)
DATE_TIME_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    sbx = start_sandbox(seed=11, tenants=1)
    proxy = RecordingProxy(sbx.url)
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"  # one rotation chain per module
    try:
        yield sbx, proxy, tmp_path_factory, tokens
    finally:
        proxy.close()
        sbx.stop()


@pytest.mark.skipif(not SPEC.exists(), reason="Xero's spec is only beside the repo in CI")
def test_every_stream_reads_a_get_path_of_the_spec():
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    for stream in ENDPOINT_STREAM_TYPES:
        assert "get" in paths.get(stream.path, {}), f"{stream.name}: {stream.path} not in spec"


def test_budget_summary_timeframe_is_an_integer_period():
    (call,) = budget_summary_calls([date(2026, 11, 1)])
    assert call.params["timeframe"] in {"1", "3", "12"}


def test_a_second_run_sends_if_modified_since_as_a_date_time_with_offset(world):
    sbx, proxy, factory, tokens = world
    tmp_path = factory.mktemp("ims")
    config = via(proxy, tap_config(sbx, tmp_path, token_store_path=str(tokens)))
    first = run_tap(tmp_path, config, selected={"invoices"}, tag="first")
    assert first.returncode == 0, first.stderr[-2000:]
    proxy.seen.clear()
    second = run_tap(tmp_path, config, selected={"invoices"}, state=first.states[-1], tag="2nd")
    assert second.returncode == 0, second.stderr[-2000:]
    sent = [s.headers.get("If-Modified-Since") for s in proxy.requests_to("/Invoices")]
    assert sent, "no request reached /Invoices"
    assert all(value and DATE_TIME_WITH_OFFSET.match(value) for value in sent), sent
    # Fewest bytes: every call asks Xero for a compressed answer.
    encodings = {s.headers.get("Accept-Encoding", "") for s in proxy.requests_to("/Invoices")}
    assert all("gzip" in e for e in encodings), encodings


def _rewrite_invoices(change: Any) -> Any:
    def transform(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/Invoices") and body.get("Invoices"):
            change(body["Invoices"])
        return body

    return transform


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("missing key", lambda rows: rows[0].pop("UpdatedDateUTC")),
        ("not a date", lambda rows: rows[-1].__setitem__("UpdatedDateUTC", "not a date")),
        ("out of order", lambda rows: rows.reverse()),
    ],
)
def test_odd_replication_values_never_stop_a_run_nor_reach_a_bookmark(world, case, change):
    sbx, proxy, factory, tokens = world
    tmp_path = factory.mktemp("odd")
    config = via(proxy, tap_config(sbx, tmp_path, page_size=20, token_store_path=str(tokens)))
    proxy.transform = _rewrite_invoices(change)
    try:
        run = run_tap(tmp_path, config, selected={"invoices"}, tag=case.replace(" ", "-"))
    finally:
        proxy.transform = None
    assert run.returncode == 0, run.stderr[-2000:]
    assert "InvalidStreamSortException" not in run.stderr
    tenant = config["tenant_ids"][0]
    want = {r["InvoiceID"] for r in truth(sbx, tenant, "Invoices")}
    assert {r["InvoiceID"] for r in run.records["invoices"]} == want  # every record emitted
    for state in run.states:
        for partition in state["bookmarks"].get("invoices", {}).get("partitions", []):
            value = partition.get("replication_key_value")
            assert value is None or DATE_TIME_WITH_OFFSET.match(value), value
    final = run.states[-1]["bookmarks"]["invoices"]["partitions"][0]["replication_key_value"]
    emitted = [r.get("UpdatedDateUTC") for r in run.records["invoices"]]
    assert final == max(d for d in emitted if d and DATE_TIME_WITH_OFFSET.match(d))
    again = run_tap(tmp_path, config, selected={"invoices"}, state=run.states[-1], tag="again")
    assert again.returncode == 0, again.stderr[-2000:]


def test_the_chart_of_accounts_is_read_once_per_organisation_for_stream_and_reports(world):
    sbx, proxy, factory, tokens = world
    tmp_path = factory.mktemp("accounts")
    config = via(proxy, tap_config(sbx, tmp_path, token_store_path=str(tokens)))
    proxy.seen.clear()
    run = run_tap(
        tmp_path, {**config, "report_history_months": 1}, selected={"accounts", "trial_balance"}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records["accounts"] and run.records["trial_balance"]
    assert len(proxy.requests_to("/Accounts")) == len(config["tenant_ids"])
    named = [r for r in run.records["trial_balance"] if r["account_id"]]
    assert named and all(r["account_code"] or r["account_name"] for r in named)

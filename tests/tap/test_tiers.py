"""tap-xero on every app tier: streams a connection may not read are skipped, not fatal.

The refusals come from a recording proxy in front of the sandbox, shaped as Xero answers
(JSON `Forbidden`), or as a corporate proxy would (an HTML page).
"""

from __future__ import annotations

import pytest

from tests.tap.proxy import RecordingProxy, via
from tests.tap.xero_helpers import run_tap, start_sandbox, tap_config, truth

FORBIDDEN = {"Type": None, "Title": "Forbidden", "Status": 403, "Detail": "Forbidden"}
SELECTED = {"journals", "journal_lines", "invoices", "items"}


@pytest.fixture
def world(tmp_path):
    sbx = start_sandbox(seed=13, tenants=2)
    proxy = RecordingProxy(sbx.url)
    try:
        yield sbx, proxy, via(proxy, tap_config(sbx, tmp_path))
    finally:
        proxy.close()
        sbx.stop()


def test_journals_refused_for_one_organisation_are_skipped_and_the_rest_is_read(world, tmp_path):
    sbx, proxy, config = world
    starter, advanced = config["tenant_ids"]
    proxy.refuse("/Journals", 403, FORBIDDEN, tenant=starter)
    run = run_tap(tmp_path, config, selected=SELECTED)
    assert run.returncode == 0, run.stderr[-3000:]
    warnings = [line for line in run.stderr.splitlines() if "is not readable" in line]
    assert len(warnings) == 2  # the warning, and its line in the run summary
    assert "journals" in warnings[0] and starter in warnings[0]
    assert "Advanced tier" in warnings[0]
    journals = run.records["journals"]
    assert {r["tenant_id"] for r in journals} == {advanced}
    assert len(journals) == len(truth(sbx, advanced, "Journals"))
    for tenant in (starter, advanced):
        invoices = [r for r in run.records["invoices"] if r["tenant_id"] == tenant]
        assert len(invoices) == len(truth(sbx, tenant, "Invoices"))
    # The refused organisation's journals bookmark is not invented.
    partitions = run.states[-1]["bookmarks"]["journals"]["partitions"]
    assert not [p for p in partitions if p["context"]["tenant_id"] == starter and
                p.get("replication_key_value")]  # fmt: skip


def test_a_refused_full_table_stream_sends_no_activate_version(world, tmp_path):
    _, proxy, config = world
    proxy.refuse("/Items", 403, FORBIDDEN, tenant=config["tenant_ids"][0])
    run = run_tap(tmp_path, config, selected={"items"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "accounting.settings.read" in run.stderr  # the scope to add
    # ACTIVATE_VERSION would make the target drop the refused organisation's rows.
    closing = [m for m in run.messages if m["type"] == "ACTIVATE_VERSION"]
    assert len(closing) <= 1  # the SDK's opening one at most, never the closing one


def test_a_401_for_a_missing_scope_skips_the_stream_without_blaming_the_token(world, tmp_path):
    _, proxy, config = world
    unauthorized = {"Title": "Unauthorized", "Status": 401, "Detail": "AuthorizationUnsuccessful"}
    challenge = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
    proxy.refuse("/Budgets", 401, unauthorized, headers=challenge)
    run = run_tap(tmp_path, config, selected={"budgets", "currencies"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "budgets is not readable" in run.stderr
    assert "accounting.budgets.read" in run.stderr
    assert run.records["currencies"]
    assert len(proxy.requests_to("/Budgets")) == len(config["tenant_ids"])  # no token retry


def test_on_forbidden_stream_fail_stops_with_the_same_line(world, tmp_path):
    _, proxy, config = world
    proxy.refuse("/Journals", 403, FORBIDDEN, tenant=config["tenant_ids"][0])
    run = run_tap(tmp_path, {**config, "on_forbidden_stream": "fail"}, selected=SELECTED)
    assert run.returncode != 0
    assert "journals is not readable" in run.stderr
    assert "on_forbidden_stream is 'fail'" in run.stderr


def test_a_403_page_from_a_proxy_is_not_blamed_on_the_role_or_a_scope(world, tmp_path):
    _, proxy, config = world
    proxy.refuse("/Invoices", 403, "<html><body><h1>Access denied</h1></body></html>", html=True)
    run = run_tap(tmp_path, config, selected={"invoices"})
    assert run.returncode != 0
    assert "proxy or firewall" in run.stderr
    assert "Standard + Reports" not in run.stderr
    assert "is not readable" not in run.stderr


def test_every_selected_schema_comes_before_any_record_and_the_summary_counts_bytes(
    world, tmp_path
):
    _, proxy, config = world
    run = run_tap(tmp_path, config, selected=SELECTED)
    assert run.returncode == 0, run.stderr[-3000:]
    kinds = [m["type"] for m in run.messages]
    first_record = kinds.index("RECORD")
    schemas = {m["stream"] for m in run.messages[:first_record] if m["type"] == "SCHEMA"}
    assert schemas >= SELECTED
    summary = [line for line in run.stderr.splitlines() if "Run summary for organisation" in line]
    assert len(summary) == 2
    calls = {t: len([s for s in proxy.seen if s.tenant == t]) for t in config["tenant_ids"]}
    for tenant in config["tenant_ids"]:
        (line,) = [line for line in summary if tenant in line]
        assert f" {calls[tenant]} calls" in line
        assert " 0 bytes" not in line


def auth_check(tmp_path, config, *extra):
    import json
    import subprocess

    from tests.tap.xero_helpers import TAP

    path = tmp_path / "check-config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [TAP, "auth", "check", "--config", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_auth_check_says_per_organisation_what_it_can_read_with_one_call_per_endpoint(
    world, tmp_path
):
    from tap_xero.tap import TapXero

    _, proxy, config = world
    starter, advanced = config["tenant_ids"]
    proxy.refuse("/Journals", 403, FORBIDDEN, tenant=starter)
    done = auth_check(tmp_path, config)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    blocks = {t: out[out.index(t) :] for t in (starter, advanced)}
    assert "not readable: journals:" in blocks[starter].split(advanced)[0]
    assert "Advanced tier" in out
    assert "not readable: journals:" not in blocks[advanced].split(starter)[0]
    assert "calls left today" in out
    # One call per distinct endpoint: child streams and cash journals share their endpoint.
    paths = {s.path for s in TapXero(config=config, validate_config=False).streams.values()
             if hasattr(s, "collection") and s.selected}  # fmt: skip
    for tenant in (starter, advanced):
        seen = [s.path for s in proxy.seen if s.tenant == tenant]
        assert len(seen) == len(set(seen)) == len(paths), sorted(seen)


def test_auth_check_fails_when_nothing_can_be_read(world, tmp_path):
    _, proxy, config = world
    proxy.refuse("", 403, FORBIDDEN)  # every endpoint, every organisation
    done = auth_check(tmp_path, config)
    assert done.returncode == 1
    assert "nothing selected can be read" in done.stderr
    assert "Traceback" not in done.stderr


def test_reports_fall_back_when_their_check_is_refused_for_one_organisation(world, tmp_path):
    """Without the ProfitAndLoss scope the trial balances are still read (older rule)."""
    _, proxy, config = world
    refused, allowed = config["tenant_ids"]
    unauthorized = {"Title": "Unauthorized", "Status": 401, "Detail": "AuthorizationUnsuccessful"}
    challenge = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
    proxy.refuse("/Reports/ProfitAndLoss", 401, unauthorized, tenant=refused, headers=challenge)
    config = {**config, "start_date": "2025-01-01T00:00:00Z", "report_history_months": 12}
    first = run_tap(tmp_path, config, selected={"trial_balance"}, tag="first")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_tap(tmp_path, config, selected={"trial_balance"}, state=first.states[-1])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "is not readable" not in first.stderr + second.stderr  # the stream itself is not
    assert "report check (ProfitAndLoss, BalanceSheet) is refused" in second.stderr
    months = {
        tenant: {r["period_end"][:7] for r in second.records.get("trial_balance", [])
                 if r["tenant_id"] == tenant}
        for tenant in (refused, allowed)
    }  # fmt: skip
    assert len(months[refused]) == 4  # the month open at the bookmark and 3 closed ones
    assert months[allowed] == set()  # checked: nothing changed, nothing read again

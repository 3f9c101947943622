"""Each replication mode over loopback: incremental by date, by journal number, full table."""

from __future__ import annotations

import pytest

from tests.tap.xero_helpers import catalog_for, control, run_tap, start_sandbox, tap_config, truth

SELECTED = {"invoices", "invoice_line_items", "contacts", "journals", "items", "bank_transfers"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Run 1 from scratch; mutate one organisation; run 2 from run 1's state."""
    tmp_path = tmp_path_factory.mktemp("incremental")
    sbx = start_sandbox(seed=5, tenants=2)
    try:
        config = tap_config(sbx, tmp_path, page_size=100)
        first = run_tap(tmp_path, config, selected=SELECTED, tag="first")
        assert first.returncode == 0, first.stderr[-3000:]
        changed, other = config["tenant_ids"]
        before = {r["InvoiceID"]: r["UpdatedDateUTC"] for r in truth(sbx, changed, "Invoices")}
        journals_before = len(truth(sbx, changed, "Journals"))
        control(sbx, "clock", {"advance_seconds": 3600})
        for action in ("pay", "add_invoice", "void", "archive_contact", "delete_item"):
            control(sbx, "mutate", {"tenant_id": changed, "action": action})
        after = truth(sbx, changed, "Invoices")
        touched = {
            r["InvoiceID"] for r in after if before.get(r["InvoiceID"]) != r["UpdatedDateUTC"]
        }
        second = run_tap(tmp_path, config, selected=SELECTED, state=first.states[-1], tag="second")
        assert second.returncode == 0, second.stderr[-3000:]
        yield {
            "sbx": sbx,
            "config": config,
            "first": first,
            "second": second,
            "changed": changed,
            "other": other,
            "touched": touched,
            "journals_before": journals_before,
            "tmp_path": tmp_path,
        }
    finally:
        sbx.stop()


def of(records, tenant):
    return [r for r in records if r["tenant_id"] == tenant]


def test_incremental_reads_only_what_changed(runs):
    second = runs["second"].records
    changed = {r["InvoiceID"] for r in of(second["invoices"], runs["changed"])}
    assert runs["touched"]
    assert runs["touched"] <= changed
    # One second of overlap at the bookmark may repeat a record; nothing else comes back.
    assert len(changed - runs["touched"]) <= 2
    assert len(of(second["invoices"], runs["other"])) <= 2
    # Their line items come along, with no extra call.
    lines = {r["InvoiceID"] for r in second["invoice_line_items"]}
    assert lines <= {r["InvoiceID"] for r in second["invoices"]}


def test_incremental_sends_if_modified_since_and_the_new_state_moves_on(runs):
    first = runs["first"].states[-1]["bookmarks"]["invoices"]["partitions"]
    second = runs["second"].states[-1]["bookmarks"]["invoices"]["partitions"]
    by_tenant = {p["context"]["tenant_id"]: p["replication_key_value"] for p in first}
    for p in second:
        tenant = p["context"]["tenant_id"]
        if tenant == runs["changed"]:
            assert p["replication_key_value"] > by_tenant[tenant]
        else:
            assert p["replication_key_value"] == by_tenant[tenant]


def test_archived_contact_arrives_as_an_update(runs):
    contacts = of(runs["second"].records["contacts"], runs["changed"])
    assert "ARCHIVED" in {c["ContactStatus"] for c in contacts}
    assert len(contacts) <= 3


def test_journals_continue_after_the_last_journal_number(runs):
    sbx, changed = runs["sbx"], runs["changed"]
    first = of(runs["first"].records["journals"], changed)
    second = of(runs["second"].records["journals"], changed)
    last = max(j["JournalNumber"] for j in first)
    assert len(first) == runs["journals_before"]
    assert second, "the mutations posted journals"
    assert min(j["JournalNumber"] for j in second) > last
    assert len(first) + len(second) == len(truth(sbx, changed, "Journals"))


def test_full_table_reference_data_is_read_whole_each_run(runs):
    sbx, changed = runs["sbx"], runs["changed"]
    items = of(runs["second"].records["items"], changed)
    assert sorted(i["ItemID"] for i in items) == sorted(
        i["ItemID"] for i in truth(sbx, changed, "Items")
    )
    assert len(items) < len(of(runs["first"].records["items"], changed))  # the hard delete shows


def test_bank_transfers_are_read_whole_so_a_deletion_shows(runs):
    # A deleted transfer keeps its CreatedDateUTC at Xero: no If-Modified-Since sees it.
    sbx, changed = runs["sbx"], runs["changed"]
    transfers = of(runs["second"].records["bank_transfers"], changed)
    assert sorted(t["BankTransferID"] for t in transfers) == sorted(
        t["BankTransferID"] for t in truth(sbx, changed, "BankTransfers", includeDeleted="true")
    )
    kinds = [
        m["type"]
        for m in runs["second"].messages
        if m.get("stream") == "bank_transfers" and m["type"] in ("ACTIVATE_VERSION", "RECORD")
    ]
    assert kinds[-1] == "ACTIVATE_VERSION" and "ACTIVATE_VERSION" not in kinds[:-1]
    assert "bank_transfers" not in runs["second"].states[-1]["bookmarks"] or not any(
        p.get("replication_key_value")
        for p in runs["second"].states[-1]["bookmarks"]["bank_transfers"].get("partitions", [])
    )


def test_a_catalog_can_force_full_table(runs):
    config, tmp_path = runs["config"], runs["tmp_path"]
    catalog = catalog_for(config, {"invoices"})
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == "invoices":
            entry["replication_method"] = "FULL_TABLE"
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["forced-replication-method"] = "FULL_TABLE"
    run = run_tap(tmp_path, config, catalog=catalog, state=runs["second"].states[-1], tag="forced")
    assert run.returncode == 0, run.stderr[-2000:]
    for tenant in config["tenant_ids"]:
        got = of(run.records["invoices"], tenant)
        assert len(got) == len(truth(runs["sbx"], tenant, "Invoices"))


def test_journals_read_from_the_start_when_only_a_start_date_is_set(runs, tmp_path):
    """With `start_date` and no bookmark, journal numbers still start at 0 (no crash)."""
    sbx = runs["sbx"]
    config = {**runs["config"], "start_date": "2020-01-01T00:00:00Z"}
    config["token_store_path"] = runs["config"]["token_store_path"]
    run = run_tap(tmp_path, config, selected={"journals"}, tag="start-date")
    assert run.returncode == 0, run.stderr[-3000:]
    tenant = runs["changed"]
    got = {r["JournalID"] for r in of(run.records["journals"], tenant)}
    assert got == {j["JournalID"] for j in truth(sbx, tenant, "Journals")}


def test_full_table_streams_close_with_activate_version(runs):
    """One ACTIVATE_VERSION, after every organisation's records, so a target can drop rows
    deleted in Xero (items are hard-deleted); none as the stream opens, which a target could
    settle at the end of its input though an organisation failed after it."""
    messages = [m for m in runs["second"].messages if m.get("stream") == "items"]
    kinds = [m["type"] for m in messages if m["type"] in ("ACTIVATE_VERSION", "RECORD")]
    assert kinds[-1] == "ACTIVATE_VERSION"
    assert "ACTIVATE_VERSION" not in kinds[:-1]
    versions = {m["version"] for m in messages if m["type"] == "ACTIVATE_VERSION"}
    assert len(versions) == 1
    tenants = {m["record"]["tenant_id"] for m in messages if m["type"] == "RECORD"}
    assert tenants == set(runs["config"]["tenant_ids"])


def test_a_repeated_second_does_not_break_the_sort_order(runs, tmp_path):
    """A record from just before the bookmark (Xero answers to the second) is dropped."""
    sbx, tenant = runs["sbx"], runs["changed"]
    state = runs["second"].states[-1]
    for action in ("add_contact", "archive_contact"):
        control(sbx, "mutate", {"tenant_id": tenant, "action": action})
    config = runs["config"]
    third = run_tap(tmp_path, config, selected={"contacts"}, state=state, tag="third")
    assert third.returncode == 0, third.stderr[-3000:]
    again = run_tap(tmp_path, config, selected={"contacts"}, state=third.states[-1], tag="4th")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "InvalidStreamSortException" not in again.stderr


def test_line_items_arrive_when_the_parent_array_is_deselected(runs, tmp_path):
    """Deselecting `invoices.LineItems` (a narrower invoices table) keeps every line."""
    sbx, config = runs["sbx"], runs["config"]
    catalog = catalog_for(config, {"invoices", "invoice_line_items"})
    (invoices,) = [e for e in catalog["streams"] if e["tap_stream_id"] == "invoices"]
    for item in invoices["metadata"]:
        if item["breadcrumb"] == ["properties", "LineItems"]:
            item["metadata"]["selected"] = False
    run = run_tap(tmp_path, config, catalog=catalog, tag="narrow")
    assert run.returncode == 0, run.stderr[-3000:]
    assert all("LineItems" not in r for r in run.records["invoices"])
    for tenant in config["tenant_ids"]:
        want = sum(len(i.get("LineItems", [])) for i in truth(sbx, tenant, "Invoices"))
        assert len(of(run.records["invoice_line_items"], tenant)) == want

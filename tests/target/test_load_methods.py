"""Each load method and the dataset's lifecycle, against the Power BI sandbox over loopback TLS."""

from __future__ import annotations

import json

from tests.target.conftest import DATA, PowerBI, by_key

EXPECTED_INVOICES = {("INV-1",): 90.5, ("INV-2",): 20.0, ("INV-3",): 7.0}
EXPECTED_LINES = {("INV-1", "L1"), ("INV-2", "L3"), ("INV-3", "L4")}


def requests_of(powerbi: PowerBI, operation: str) -> int:
    return sum(powerbi.stats()["requests"].get(operation, {}).values())


def assert_limits_respected(powerbi: PowerBI) -> None:
    stats = powerbi.stats()
    assert stats["throttled"] == 0
    assert stats["rows_per_post_summary"]["max"] <= 10_000
    assert stats["max_posts_in_a_minute"] <= 120
    for operation, counts in stats["requests"].items():
        assert set(counts) <= {"200", "201"}, f"{operation}: {counts}"


def assert_current_state(powerbi: PowerBI) -> None:
    invoices = by_key(powerbi.rows("invoices"), "InvoiceID")
    assert {k: v["Total"] for k, v in invoices.items()} == EXPECTED_INVOICES
    assert invoices[("INV-1",)]["Paid"] is True
    lines = by_key(powerbi.rows("invoices__Lines"), "InvoiceID", "LineID")
    assert set(lines) == EXPECTED_LINES
    contacts = by_key(powerbi.rows("contacts"), "ContactID")
    assert set(contacts) == {("C-1",), ("C-2",), ("C-3",)}


def test_upsert_appends_new_keys_and_reloads_changed_tables_once(powerbi: PowerBI) -> None:
    first = powerbi.run("invoices_run1")
    assert first.states[-1] == {"bookmarks": {"invoices": {"replication_key_value": "2024-01-03"}}}
    dataset = powerbi.dataset()
    assert {t["name"] for t in dataset["tables"]} == {"invoices", "invoices__Lines", "contacts"}
    (rel,) = dataset["relationships"]
    assert (rel["fromTable"], rel["toTable"]) == ("invoices__Lines", "invoices")
    inv1 = by_key(powerbi.rows("invoices"), "InvoiceID")[("INV-1",)]
    assert inv1["Date"].startswith("2024-01-02T03:04:05")
    assert inv1["Contact__Name"] == "Acme" and json.loads(inv1["Tags"]) == ["a", "b"]

    powerbi.run("invoices_run2")  # new keys only: appended, nothing deleted
    assert requests_of(powerbi, "DeleteRowsInGroup") == 0
    posted_before = powerbi.stats()["rows_posted"]

    powerbi.run("invoices_run3")  # INV-1 changed and lost a line: its tables reload once
    assert requests_of(powerbi, "DeleteRowsInGroup") == 2
    assert powerbi.stats()["rows_posted"] - posted_before == 6  # 3 invoices + 3 lines
    assert_current_state(powerbi)
    assert_limits_respected(powerbi)
    assert requests_of(powerbi, "PostDatasetInGroup") == 1

    secret = powerbi.config["client_secret"]
    audit = (powerbi.workdir / "audit.jsonl").read_text()
    assert audit.count("\n") >= 8
    for text in (first.stderr, first.stdout, audit):
        assert secret not in text


def test_a_replayed_run_pushes_nothing_new(powerbi: PowerBI) -> None:
    powerbi.run("invoices_run1")
    posted = powerbi.stats()["rows_posted"]
    powerbi.run("invoices_run1")
    assert powerbi.stats()["rows_posted"] == posted
    assert len(powerbi.rows("invoices")) == 2


def test_append_only_never_appends_the_same_row_twice(powerbi: PowerBI) -> None:
    config = {"load_method": "append-only"}
    powerbi.run("invoices_run1", config=config)
    powerbi.run("invoices_run1", config=config)
    powerbi.run("invoices_run3", config=config)
    totals = sorted(r["Total"] for r in powerbi.rows("invoices"))
    assert totals == [20.0, 90.5, 100.5]  # both versions of INV-1, each once
    assert requests_of(powerbi, "DeleteRowsInGroup") == 0


def test_overwrite_empties_each_table_once_per_run(powerbi: PowerBI) -> None:
    config = {"load_method": "overwrite"}
    powerbi.run("invoices_run1", config=config)
    powerbi.run("invoices_run2", config=config)
    assert [r["InvoiceID"] for r in powerbi.rows("invoices")] == ["INV-3"]
    assert [r["ContactID"] for r in powerbi.rows("contacts")] == ["C-3"]
    assert [r["LineID"] for r in powerbi.rows("invoices__Lines")] == ["L4"]


def test_activate_version_removes_rows_a_full_table_stream_no_longer_has(powerbi: PowerBI) -> None:
    powerbi.run("items_version1")
    assert {r["Code"] for r in powerbi.rows("items")} == {"A", "B", "C"}
    powerbi.run("items_version2")
    assert sorted(r["Code"] for r in powerbi.rows("items")) == ["A", "B"]


def test_new_columns_are_added_with_put_table(powerbi: PowerBI) -> None:
    powerbi.run("invoices_run1")
    powerbi.run("invoices_new_column")
    table = next(t for t in powerbi.dataset()["tables"] if t["name"] == "invoices")
    assert "Reference" in [c["name"] for c in table["columns"]]
    assert requests_of(powerbi, "PutTableInGroup") == 1
    rows = by_key(powerbi.rows("invoices"), "InvoiceID")
    assert rows[("INV-4",)]["Reference"] == "PO-44"
    assert set(rows) == {("INV-1",), ("INV-2",), ("INV-4",)}


def test_a_new_stream_stops_with_the_choices_or_rebuilds_from_the_store(powerbi: PowerBI) -> None:
    powerbi.run("invoices_run1")
    old_id = powerbi.dataset()["id"]
    refused = powerbi.run("payments_new_stream", config={"on_new_tables": "fail"}, check=False)
    assert refused.returncode != 0
    assert "on_new_tables" in refused.stderr
    assert "payments" in refused.stderr
    assert refused.states == []  # no STATE for rows Power BI does not hold

    rebuilt = powerbi.run("payments_new_stream")  # on_new_tables: rebuild, the default
    assert "rebound" in rebuilt.stderr
    dataset = powerbi.dataset()
    assert dataset["id"] != old_id
    assert {t["name"] for t in dataset["tables"]} >= {"invoices", "contacts", "payments"}
    assert len(powerbi.rows("invoices")) == 2  # reloaded from the local store
    assert [r["PaymentID"] for r in powerbi.rows("payments")] == ["P-1"]


def test_a_dataset_deleted_behind_the_targets_back_is_recreated_from_the_store(
    powerbi: PowerBI,
) -> None:
    powerbi.run("invoices_run1")
    powerbi.faults(delete_dataset=powerbi.dataset()["id"])
    run = powerbi.run("invoices_run2")
    assert "gone" in run.stderr
    invoices = by_key(powerbi.rows("invoices"), "InvoiceID")
    assert set(invoices) == {("INV-1",), ("INV-2",), ("INV-3",)}
    assert len(powerbi.rows("contacts")) == 3


def test_model_file_adds_relationships_measures_and_column_types(powerbi: PowerBI) -> None:
    powerbi.run("invoices_run1", config={"model_file": str(DATA / "model.yml")})
    dataset = powerbi.dataset()
    names = {r["name"] for r in dataset["relationships"]}
    assert names == {"invoice_contact", "invoices__Lines_to_invoices"}
    invoices = next(t for t in dataset["tables"] if t["name"] == "invoices")
    assert [m["name"] for m in invoices["measures"]] == ["Total invoiced"]
    types = {c["name"]: c["dataType"] for c in invoices["columns"]}
    assert types["Total"] == "Decimal"


def test_values_power_bi_cannot_hold_are_logged_not_lost_silently(
    powerbi: PowerBI, tmp_path
) -> None:
    singer = tmp_path / "long.singer"
    messages = [
        {
            "type": "SCHEMA",
            "stream": "notes",
            "key_properties": ["id"],
            "schema": {
                "properties": {
                    "id": {"type": "string"},
                    "body": {"type": "string"},
                    "big": {"type": "integer"},
                }
            },
        },
        {
            "type": "RECORD",
            "stream": "notes",
            "record": {"id": "n1", "body": "x" * 4500, "big": 2**63},
        },
    ]
    singer.write_text("".join(json.dumps(m) + "\n" for m in messages))
    run = powerbi.run(singer)
    assert "stream 'notes'" in run.stderr and "column 'body'" in run.stderr
    assert "column 'big'" in run.stderr and '["n1"]' in run.stderr
    (row,) = powerbi.rows("notes")
    assert len(row["body"]) == 4000 and row["big"] is None
    failed = powerbi.run(
        singer, config={"on_invalid_value": "fail", "dataset_name": "Other"}, check=False
    )
    assert failed.returncode != 0 and "on_invalid_value" in failed.stderr


def test_a_retried_post_that_may_have_landed_twice_is_reconciled(powerbi: PowerBI) -> None:
    # the sandbox fails the next POST rows with 503 (after storing nothing); the client
    # retries, marks the table uncertain, and the target reloads it from the store
    powerbi.faults(fail_next=1, fail_next_status=503, operations=["PostRowsInGroup"])
    run = powerbi.run("invoices_run1")
    assert "may have landed twice" in run.stderr
    assert_limits_respected_but_503(powerbi)
    invoices = by_key(powerbi.rows("invoices"), "InvoiceID")
    assert set(invoices) == {("INV-1",), ("INV-2",)}
    assert len(by_key(powerbi.rows("invoices__Lines"), "InvoiceID", "LineID")) == 3


def assert_limits_respected_but_503(powerbi: PowerBI) -> None:
    stats = powerbi.stats()
    assert stats["throttled"] == 0
    assert stats["requests"]["PostRowsInGroup"].get("503") == 1


def test_a_mid_run_drain_before_the_dataset_exists_holds_state_until_every_schema(
    powerbi: PowerBI, capsys
) -> None:
    from target_powerbi.target import TargetPowerBI

    def schema(stream: str) -> dict:
        return {
            "type": "SCHEMA",
            "stream": stream,
            "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}}},
        }

    def record(stream: str, n: int) -> dict:
        return {"type": "RECORD", "stream": stream, "record": {"id": n}}

    target = TargetPowerBI(config=powerbi.config)
    target._process_schema_message(schema("first"))
    target._process_record_message(record("first", 1))
    target._process_state_message({"type": "STATE", "value": {"at": 1}})
    target.drain_all()  # what the SDK does when records have waited five minutes
    assert capsys.readouterr().out == ""  # held: the dataset would lack later streams
    assert powerbi.datasets() == []
    target._process_schema_message(schema("second"))
    target._process_record_message(record("second", 2))
    target._process_state_message({"type": "STATE", "value": {"at": 2}})
    target.process_endofpipe()
    assert json.loads(capsys.readouterr().out) == {"at": 2}
    assert {t["name"] for t in powerbi.dataset()["tables"]} == {"first", "second"}

    # once the dataset exists, a mid-run drain pushes and emits STATE at once
    again = TargetPowerBI(config=powerbi.config)
    again._process_schema_message(schema("first"))
    again._process_record_message(record("first", 3))
    again._process_state_message({"type": "STATE", "value": {"at": 3}})
    again.drain_all()
    assert json.loads(capsys.readouterr().out) == {"at": 3}
    assert sorted(r["id"] for r in powerbi.rows("first")) == [1, 3]
    again.process_endofpipe()

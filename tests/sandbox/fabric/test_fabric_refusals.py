"""What open mirroring does not apply: recorded as refused (or waiting), never half-applied."""

from __future__ import annotations

import pyarrow as pa

from .conftest import Fabric, parquet, seq

ROWS = [{"InvoiceID": "a", "Total": 10.0}, {"InvoiceID": "b", "Total": 20.0}]


def refused(fabric: Fabric) -> dict[str, str]:
    return {r["file"]: r["reason"] for r in fabric.stats()["refused_files"]}


def keyed(fabric: Fabric, table: str = "Invoices") -> str:
    db = fabric.create_database()
    fabric.write_metadata(db, table, {"keyColumns": ["InvoiceID"]})
    return db


def test_a_gap_in_the_sequence_blocks_later_files_until_it_is_filled(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    fabric.publish(
        db, "Invoices", 3, parquet([{"InvoiceID": "a", "Total": 3.0, "__rowMarker__": 1}])
    )

    stats = fabric.stats()
    assert stats["waiting_files"] == {"dbo.Invoices": [seq(3)]}
    assert stats["files"]["applied"] == 1
    assert fabric.tables()["dbo.Invoices"]["nextSequence"] == seq(2)

    fabric.publish(
        db, "Invoices", 2, parquet([{"InvoiceID": "a", "Total": 2.0, "__rowMarker__": 1}])
    )
    totals = {r["InvoiceID"]: r["Total"] for r in fabric.rows("Invoices")}
    assert totals == {"a": 3.0, "b": 20.0}  # 2 then 3, in sequence order
    assert fabric.stats()["waiting_files"] == {}


def test_a_processed_sequence_number_is_never_read_again(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    fabric.publish(db, "Invoices", 2, parquet(ROWS[:1]))
    fabric.publish(db, "Invoices", 1, parquet([{"InvoiceID": "zzz", "Total": 0.0}]))

    assert "already processed" in refused(fabric)[seq(1)]
    assert {r["InvoiceID"] for r in fabric.rows("Invoices")} == {"a", "b"}


def test_updates_and_deletes_need_key_columns(fabric: Fabric):
    db = fabric.create_database()
    fabric.publish(db, "Invoices", 1, parquet(ROWS))  # no _metadata.json: inserts only
    fabric.publish(
        db, "Invoices", 2, parquet([{"InvoiceID": "a", "Total": None, "__rowMarker__": 2}])
    )

    assert "keyColumns" in refused(fabric)[seq(2)]
    table = fabric.tables()["dbo.Invoices"]
    assert table["status"] == "Failed"
    assert table["rowCount"] == 2

    # Documented repair: delete the failed file, upload a valid one under the same name.
    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(2)}").delete_file()
    fabric.publish(db, "Invoices", 2, parquet([{"InvoiceID": "c", "Total": 5.0}]))
    table = fabric.tables()["dbo.Invoices"]
    assert (table["status"], table["rowCount"]) == ("Replicating", 3)


def test_key_columns_must_be_in_a_file_that_updates(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet([{"Total": 1.0, "__rowMarker__": 4}]))
    assert "InvoiceID" in refused(fabric)[seq(1)]
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0


def test_a_changed_column_type_stops_the_table_until_its_folder_is_recreated(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    fabric.publish(
        db, "Invoices", 2, parquet([{"InvoiceID": "c", "Total": "thirty", "__rowMarker__": 4}])
    )
    reason = refused(fabric)[seq(2)]
    assert "Total changed type from double to string" in reason
    assert fabric.tables()["dbo.Invoices"]["status"] == "Failed"

    # Replacing the file does not restart a stopped table ...
    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(2)}").delete_file()
    fabric.publish(db, "Invoices", 2, parquet([{"InvoiceID": "c", "Total": 30.0}]))
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 2
    # ... recreating the folder with its data does.
    fabric.fs.get_directory_client(folder).delete_directory()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet([{"InvoiceID": "c", "Total": "thirty"}]))
    table = fabric.tables()["dbo.Invoices"]
    assert (table["status"], table["rowCount"]) == ("Replicating", 1)


def test_timestamp_units_are_one_type(fabric: Fabric):
    db = keyed(fabric)
    for number, unit in ((1, "ns"), (2, "us")):
        schema = pa.schema([("InvoiceID", pa.string()), ("Date", pa.timestamp(unit, tz="UTC"))])
        fabric.publish(
            db, "Invoices", number, parquet([{"InvoiceID": str(number), "Date": 0}], schema)
        )
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 2
    assert refused(fabric) == {}


def test_malformed_and_zero_byte_files_are_refused(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, b"PAR1 this is not parquet")
    assert "not a valid Parquet file" in refused(fabric)[seq(1)]

    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(1)}").delete_file()
    fabric.fs.get_file_client(f"{folder}/_{seq(1)}").create_file()
    fabric.fs.get_file_client(f"{folder}/_{seq(1)}").rename_file(
        f"{fabric.config['workspace_id']}/{folder}/{seq(1)}"
    )
    assert "zero-byte" in refused(fabric)[seq(1)]
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0


def test_uploading_under_the_final_name_exposes_an_empty_file(fabric: Fabric):
    """Not atomic: the create is seen before the data; the flush then replaces it."""
    db = keyed(fabric)
    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(1)}").upload_data(parquet(ROWS), overwrite=True)
    assert "zero-byte" in refused(fabric)[seq(1)]
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 2


def test_key_columns_cannot_change(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["Total"]})
    fabric.publish(db, "Invoices", 2, parquet([{"InvoiceID": "c", "Total": 1.0}]))

    assert "can't be changed" in refused(fabric)["_metadata.json"]
    table = fabric.tables()["dbo.Invoices"]
    assert (table["status"], table["rowCount"], table["keyColumns"]) == (
        "Failed",
        2,
        ["InvoiceID"],
    )
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3


def test_row_marker_must_be_last_and_a_known_value(fabric: Fabric):
    db = keyed(fabric)
    first = pa.table({"__rowMarker__": [4], "InvoiceID": ["a"], "Total": [1.0]})
    fabric.publish(db, "Invoices", 1, parquet(first))
    assert "last column" in refused(fabric)[seq(1)]

    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(1)}").delete_file()
    fabric.publish(
        db, "Invoices", 1, parquet([{"InvoiceID": "a", "Total": 1.0, "__rowMarker__": 3}])
    )
    assert "found 3" in refused(fabric)[seq(1)]
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0


def test_misnamed_files_are_never_read(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", "1.parquet", parquet(ROWS))
    fabric.publish(db, "Invoices", "00000000000000000001.csv", parquet(ROWS))
    reasons = refused(fabric)
    assert set(reasons) == {"1.parquet", "00000000000000000001.csv"}
    assert all("20 digits" in r for r in reasons.values())
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0


def test_invalid_metadata_holds_the_table_until_it_is_fixed(fabric: Fabric):
    db = fabric.create_database()
    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_directory_client(folder).create_directory()
    fabric.fs.get_file_client(f"{folder}/_metadata.json").upload_data(
        b"{keyColumns", overwrite=True
    )
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    assert "not valid JSON" in refused(fabric)["_metadata.json"]
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0

    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    table = fabric.tables()["dbo.Invoices"]
    assert (table["status"], table["rowCount"], table["keyColumns"]) == (
        "Replicating",
        2,
        ["InvoiceID"],
    )


def test_complex_types_must_be_json_strings(fabric: Fabric):
    db = keyed(fabric)
    fabric.publish(db, "Invoices", 1, parquet([{"InvoiceID": "a", "Lines": [{"Amount": 1.0}]}]))
    assert "JSON string" in refused(fabric)[seq(1)]
    folder = fabric.folder(db, "Invoices")
    fabric.fs.get_file_client(f"{folder}/{seq(1)}").delete_file()
    fabric.publish(db, "Invoices", 1, parquet([{"InvoiceID": "a", "Lines": '[{"Amount": 1.0}]'}]))
    assert fabric.rows("Invoices") == [{"InvoiceID": "a", "Lines": '[{"Amount": 1.0}]'}]


def test_keys_declared_after_a_keyed_file_let_it_apply(fabric: Fabric):
    db = fabric.create_database()
    fabric.publish(
        db, "Invoices", 1, parquet([{"InvoiceID": "a", "Total": 1.0, "__rowMarker__": 4}])
    )
    assert fabric.tables()["dbo.Invoices"]["status"] == "Failed"
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    table = fabric.tables()["dbo.Invoices"]
    assert (table["status"], table["rowCount"]) == ("Replicating", 1)

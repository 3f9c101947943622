"""Landed files replicate to Delta tables in sequence order and by key, as open mirroring does."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable

from .conftest import Fabric, parquet, seq

INVOICES = [
    {"InvoiceID": "a", "Total": 10.0},
    {"InvoiceID": "b", "Total": 20.0},
    {"InvoiceID": "c", "Total": 30.0},
]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["InvoiceID"]: row for row in rows}


def test_upload_then_rename_replicates_and_keeps_only_the_last_file(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))

    table = fabric.tables()["dbo.Invoices"]
    assert table["rowCount"] == 3
    assert table["status"] == "Replicating"
    assert table["keyColumns"] == ["InvoiceID"]
    assert by_id(fabric.rows("Invoices")) == by_id(INVOICES)
    # The Delta table itself holds the rows (read with deltalake, not through the sandbox).
    delta = DeltaTable(table["deltaPath"]).to_pyarrow_table()
    assert sorted(delta.column("InvoiceID").to_pylist()) == ["a", "b", "c"]

    changes = [
        {"InvoiceID": "a", "Total": 11.0, "__rowMarker__": 4},
        {"InvoiceID": "b", "Total": None, "__rowMarker__": 2},
        {"InvoiceID": "d", "Total": 40.0, "__rowMarker__": 4},
    ]
    fabric.publish(db, "Invoices", 2, parquet(changes))
    fabric.publish(db, "Invoices", 3, parquet([{"InvoiceID": "e", "Total": 50.0}]))

    rows = by_id(fabric.rows("Invoices"))
    assert set(rows) == {"a", "c", "d", "e"}
    assert rows["a"]["Total"] == 11.0
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 4
    # Processed files move to _ProcessedFiles; the last one stays for the publisher.
    assert fabric.names(db, "Invoices") == [
        seq(3),
        "_ProcessedFiles",
        f"_ProcessedFiles/{seq(1)}",
        f"_ProcessedFiles/{seq(2)}",
        "_metadata.json",
    ]
    stats = fabric.stats()
    assert stats["rows_landed"] == 3 + 3 + 1
    assert stats["files"]["applied"] == 3
    assert stats["refused_files"] == []


def test_underscore_files_are_ignored_until_renamed(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    folder = fabric.folder(db, "Invoices")
    temporary = fabric.fs.get_file_client(f"{folder}/_{seq(1)}")
    temporary.upload_data(parquet(INVOICES), overwrite=True)

    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0
    assert fabric.stats()["files"]["applied"] == 0

    temporary.rename_file(f"{fabric.config['workspace_id']}/{folder}/{seq(1)}")
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3


def test_row_markers_follow_the_documented_table(fabric: Fabric):
    """0 inserts even over a key; 1 and 4 insert a missing key; 2 of a missing key: no change."""
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES[:1]))
    fabric.publish(
        db,
        "Invoices",
        2,
        parquet(
            [
                {"InvoiceID": "a", "Total": 99.0, "__rowMarker__": 0},
                {"InvoiceID": "x", "Total": 1.0, "__rowMarker__": 1},
                {"InvoiceID": "y", "Total": 2.0, "__rowMarker__": 4},
                {"InvoiceID": "z", "Total": None, "__rowMarker__": 2},
            ]
        ),
    )
    rows = fabric.rows("Invoices")
    assert sorted((r["InvoiceID"], r["Total"]) for r in rows) == [
        ("a", 10.0),
        ("a", 99.0),
        ("x", 1.0),
        ("y", 2.0),
    ]


def test_rows_apply_in_file_order(fabric: Fabric):
    """Rows apply in order: the last change of a key wins; a key moves by delete and insert."""
    db = fabric.create_database()
    fabric.write_metadata(db, "Employees", {"keyColumns": ["EmployeeID"]})
    fabric.publish(
        db,
        "Employees",
        1,
        parquet(
            [
                {"EmployeeID": "E0001", "Location": "Redmond", "__rowMarker__": 0},
                {"EmployeeID": "E0001", "Location": "Bellevue", "__rowMarker__": 1},
                {"EmployeeID": "E0001", "Location": None, "__rowMarker__": 2},
                {"EmployeeID": "E0002", "Location": "Bellevue", "__rowMarker__": 0},
            ]
        ),
    )
    assert fabric.rows("Employees") == [{"EmployeeID": "E0002", "Location": "Bellevue"}]


def test_new_columns_are_added(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))
    fabric.publish(
        db,
        "Invoices",
        2,
        parquet([{"InvoiceID": "d", "Total": 1.0, "Status": "PAID", "__rowMarker__": 4}]),
    )
    rows = by_id(fabric.rows("Invoices"))
    assert rows["d"]["Status"] == "PAID"
    assert rows["a"]["Status"] is None
    assert fabric.tables()["dbo.Invoices"]["columns"] == {
        "InvoiceID": "string",
        "Total": "double",
        "Status": "string",
    }


def test_insert_only_files_append_and_keep_types(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Journals", {})
    schema = pa.schema(
        [
            ("JournalID", pa.string()),
            ("Amount", pa.decimal128(18, 2)),
            ("Date", pa.timestamp("ns", tz="UTC")),
        ]
    )
    rows = [{"JournalID": "j1", "Amount": 12, "Date": None}]
    fabric.publish(db, "Journals", 1, parquet(rows, schema))
    fabric.publish(db, "Journals", 2, parquet(rows, schema))
    table = fabric.tables()["dbo.Journals"]
    assert table["rowCount"] == 2
    assert table["keyColumns"] is None
    assert [r["Amount"] for r in fabric.rows("Journals")] == ["12.00", "12.00"]


def test_replication_waits_for_start_mirroring_and_stops(fabric: Fabric):
    db = fabric.create_database(start=False)
    status = fabric.rest("POST", f"/mirroredDatabases/{db}/getMirroringStatus").json()
    assert status == {"status": "Initialized"}
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))
    assert fabric.tables() == {}

    assert fabric.rest("POST", f"/mirroredDatabases/{db}/startMirroring").status_code == 200
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3

    assert fabric.rest("POST", f"/mirroredDatabases/{db}/stopMirroring").status_code == 200
    fabric.publish(db, "Invoices", 2, parquet([{"InvoiceID": "z", "Total": 1.0}]))
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3
    status = fabric.rest("POST", f"/mirroredDatabases/{db}/getMirroringStatus").json()
    assert status == {"status": "Stopped"}


def test_tables_mirroring_status(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))
    body = fabric.rest("POST", f"/mirroredDatabases/{db}/getTablesMirroringStatus").json()
    assert body["continuationToken"] is None
    [entry] = body["data"]
    assert entry["sourceSchemaName"] == "dbo"
    assert entry["sourceTableName"] == "Invoices"
    assert entry["status"] == "Replicating"
    assert entry["metrics"]["processedRows"] == 3
    assert entry["metrics"]["processedBytes"] > 0


def test_deleting_the_folder_drops_the_table_and_a_new_folder_starts_over(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))
    fabric.fs.get_directory_client(fabric.folder(db, "Invoices")).delete_directory()
    assert fabric.tables() == {}

    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(INVOICES[:1]))
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 1


def test_schema_folders(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "xero.schema/Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "xero.schema/Invoices", 1, parquet(INVOICES))
    assert fabric.tables()["xero.Invoices"]["rowCount"] == 3
    assert len(fabric.rows("xero.Invoices")) == 3


def test_upsert_default_row_marker(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(
        db, "Invoices", {"keyColumns": ["InvoiceID"], "isUpsertDefaultRowMarker": True}
    )
    fabric.publish(db, "Invoices", 1, parquet(INVOICES))
    fabric.publish(db, "Invoices", 2, parquet([{"InvoiceID": "a", "Total": 1.0}]))
    assert by_id(fabric.rows("Invoices"))["a"]["Total"] == 1.0
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3


def test_rows_of_a_table_in_several_databases(fabric: Fabric):
    first = fabric.create_database("First")
    second = fabric.create_database("Second")
    for db, rows in ((first, INVOICES[:1]), (second, INVOICES)):
        fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
        fabric.publish(db, "Invoices", 1, parquet(rows))
    assert fabric.control("GET", "/tables/Invoices/rows").status_code == 409
    assert len(fabric.rows("Invoices", database="Second")) == 3
    assert len(fabric.rows("dbo.Invoices", database=first, limit=5)) == 1
    assert fabric.control("GET", "/tables/Nothing/rows").status_code == 404


def test_publication_through_the_scratch_pad(fabric: Fabric):
    """Best practices: stage in LandingZone/_scratchPad (not a table), then move into the folder."""
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    staged = fabric.fs.get_file_client(f"{db}/Files/LandingZone/_scratchPad/batch-7.parquet")
    staged.upload_data(parquet(INVOICES), overwrite=True)
    assert set(fabric.tables()) == {"dbo.Invoices"}
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 0

    staged.rename_file(f"{fabric.config['workspace_id']}/{fabric.folder(db, 'Invoices')}/{seq(1)}")
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 3

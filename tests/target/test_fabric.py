"""`destination: fabric`: the store's tables landed in the Fabric sandbox's open mirrored
database - only what changed, as upserts and deletes - and crashes at every write point
(SIGKILL from outside) converge on the next run with nothing lost or doubled."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox.fabric import FabricSandbox

from tests.sandbox.fabric.conftest import Fabric as Publisher
from tests.target.conftest import write_singer
from tests.target.fabric import Fabric


@pytest.fixture(scope="module")
def fabric_sandbox() -> Iterator[FabricSandbox]:
    with FabricSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def fabric(fabric_sandbox: FabricSandbox, tmp_path: Path) -> Fabric:
    control = Fabric(fabric_sandbox, tmp_path)
    control.control("POST", "/reset")
    return control


def landed(fabric: Fabric) -> int:
    return int(fabric.stats()["rows_landed"])


def test_creates_the_database_and_lands_only_changes(fabric: Fabric) -> None:
    fabric.run("invoices_run1")
    fabric.assert_mirrors_store()
    items = fabric.control("GET", "/items")
    assert [(i["type"], i["displayName"]) for i in items["items"]] == [
        ("MirroredDatabase", "Finance"),
        ("SemanticModel", "Finance"),
    ]
    tables = fabric.tables()
    assert tables["invoices"]["keyColumns"] == ["InvoiceID"]
    assert tables["invoices__Lines"]["keyColumns"] == ["InvoiceID", "_index"]
    assert tables["invoices"]["status"] == "Replicating"
    first = landed(fabric)
    assert first == sum(t["rowCount"] for t in tables.values())  # each row once

    fabric.run("invoices_run2")  # one changed invoice, one new one
    fabric.assert_mirrors_store()
    second = landed(fabric) - first
    assert 0 < second < first
    fabric.run("invoices_run2")  # nothing new
    assert landed(fabric) - first == second
    fabric.run("invoices_run3")
    fabric.assert_mirrors_store()


def test_activate_version_deletes_the_older_rows_in_place(fabric: Fabric) -> None:
    fabric.run("items_version1")
    before = len(fabric.mirrored("items"))
    landed_before = landed(fabric)
    fabric.run("items_version2")
    fabric.assert_mirrors_store()
    assert len(fabric.mirrored("items")) < before
    assert landed(fabric) - landed_before <= 3  # the deletes and the re-sent rows, no reload
    ops = [line for line in fabric.audit_path.read_text().splitlines() if "drop_table" in line]
    assert not ops


def _records(total: Any, kind: str = "number") -> list[dict[str, Any]]:
    schema = {
        "type": "SCHEMA",
        "stream": "amounts",
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "total": {"type": [kind, "null"]}},
        },
    }
    records = [
        {"type": "RECORD", "stream": "amounts", "record": {"id": i, "total": total}}
        for i in range(3)
    ]
    return [schema, *records]


def test_a_column_type_change_drops_and_lands_the_table_again(
    fabric: Fabric, tmp_path: Path
) -> None:
    fabric.run(write_singer(tmp_path / "a.singer", _records(1.5)))
    fabric.assert_mirrors_store()
    assert fabric.tables()["amounts"]["columns"]["total"] == "double"
    fabric.run(write_singer(tmp_path / "b.singer", _records("x", "string")))
    fabric.assert_mirrors_store()
    assert fabric.tables()["amounts"]["columns"]["total"] == "string"
    assert [r["total"] for r in fabric.mirrored("amounts")] == ["x", "x", "x"]


def test_a_keyless_stream_is_keyed_by_the_stores_key(fabric: Fabric, tmp_path: Path) -> None:
    schema = {
        "type": "SCHEMA",
        "stream": "events",
        "key_properties": [],
        "schema": {"type": "object", "properties": {"what": {"type": "string"}}},
    }
    records = [{"type": "RECORD", "stream": "events", "record": {"what": w}} for w in "abc"]
    fabric.run(write_singer(tmp_path / "e.singer", [schema, *records]))
    fabric.assert_mirrors_store()
    assert fabric.tables()["events"]["keyColumns"] == ["_row_key"]
    assert sorted(r["what"] for r in fabric.mirrored("events")) == ["a", "b", "c"]


def test_a_lost_answer_to_the_rename_is_verified_not_published_twice(fabric: Fabric) -> None:
    fabric.faults(drop_next=1, drop_after_apply=True, operations=["RenamePath"])
    fabric.run("invoices_run1")
    fabric.assert_mirrors_store()
    assert fabric.stats()["requests"]["DroppedConnection"]


def test_published_but_not_recorded_converges(fabric: Fabric, tmp_path: Path) -> None:
    """The crash between a rename and the store's record: the store of before, files of after."""
    fabric.run("invoices_run1")
    snapshot = tmp_path / "before.sqlite3"
    shutil.copy(fabric.store_path, snapshot)
    fabric.run("invoices_run2")
    files = fabric.stats()["files"]["applied"]
    for suffix in ("-wal", "-shm"):
        Path(str(fabric.store_path) + suffix).unlink(missing_ok=True)
    shutil.copy(snapshot, fabric.store_path)
    fabric.run("invoices_run2")  # lands the same changes again, under the next numbers
    fabric.assert_mirrors_store()
    assert fabric.stats()["files"]["applied"] > files


def test_a_table_folder_deleted_outside_is_landed_again(fabric: Fabric) -> None:
    fabric.run("invoices_run1")
    database = fabric.tables()["invoices"]["database"]
    publisher = Publisher(fabric.sandbox)
    publisher.fs.get_directory_client(f"{database}/Files/LandingZone/invoices").delete_directory()
    assert "invoices" not in fabric.tables()
    fabric.run("invoices_run2")
    fabric.assert_mirrors_store()


# The writes of a first run of invoices_run1 at two rows a file, as its audit log numbers
# them: each kind of write point, and a file after the first of a table.
WRITE_POINTS = [
    (1, "create_mirrored_database"),
    (2, "put_metadata"),
    (3, "upload_file"),
    (4, "publish_file"),
    (8, "upload_file"),
    (9, "publish_file"),
]


@pytest.mark.timeout(200)
@pytest.mark.parametrize(("point", "operation"), WRITE_POINTS)
def test_killed_at_a_write_point_converges(fabric: Fabric, point: int, operation: str) -> None:
    """SIGKILL right after a write the audit log records, then the same input again."""
    fabric.config["rows_per_file"] = 2
    fabric.faults(latency_ms=150)  # every call takes a while: the kill comes before the next
    killed = fabric.run("invoices_run1", kill=fabric.kill_at_audit_line(point), check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not killed.states, "no STATE may pass before everything is landed"
    lines = fabric.audit_path.read_text().splitlines()
    assert f'"operation": "{operation}"' in lines[point - 1]
    assert fabric.problems(), "the kill came after everything was landed: nothing was tested"
    fabric.faults(clear=True)
    fabric.run("invoices_run1")
    fabric.assert_mirrors_store()
    fabric.run("invoices_run2")
    fabric.assert_mirrors_store()

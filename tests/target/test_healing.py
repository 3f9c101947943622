"""Issue 14: no half dataset, Singer semantics as other taps use them, unsendable values,
layout changes that heal, partitions replaced, fail fast, private files.

Every case runs the real target (a subprocess) against the Power BI sandbox.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.target.conftest import Kill, PowerBI, by_key, write_singer


def schema(
    stream: str, properties: dict[str, Any], keys: list[str] | None = None
) -> dict[str, Any]:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "key_properties": keys if keys is not None else ["id"],
        "schema": {"type": "object", "properties": properties},
    }


def record(stream: str, version: int | None = None, **values: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": values}
    if version is not None:
        message["version"] = version
    return message


def state(**value: Any) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


ORDERS = {"id": {"type": "string"}, "amount": {"type": ["number", "null"]}}
NOTES = {"id": {"type": "string"}, "text": {"type": ["string", "null"]}}


def singer(tmp_path: Path, name: str, *messages: dict[str, Any]) -> Path:
    return write_singer(tmp_path / f"{name}.singer", list(messages))


def requests_of(powerbi: PowerBI, operation: str) -> int:
    return sum(powerbi.stats()["requests"].get(operation, {}).values())


# ---------------------------------------------------------------- 1. never a half dataset
def test_the_dataset_is_created_at_the_first_push_with_every_table_seen(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    only_schemas = singer(
        tmp_path, "schemas", schema("orders", ORDERS), schema("notes", NOTES), state(at=0)
    )
    run = powerbi.run(only_schemas)
    assert run.states == [{"at": 0}]
    assert powerbi.datasets() == []  # no rows yet: nothing created
    first = singer(
        tmp_path,
        "first",
        schema("orders", ORDERS),
        schema("notes", NOTES),
        record("orders", id="o1", amount=1),
        state(at=1),
    )
    powerbi.run(first)
    assert {t["name"] for t in powerbi.dataset()["tables"]} == {"orders", "notes"}


def test_a_run_that_fails_before_its_first_push_creates_nothing(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    path = singer(
        tmp_path,
        "cut",
        schema("orders", ORDERS),
        *[record("orders", id=f"o{n}", amount=n) for n in range(30)],
        state(at=1),
    )
    killed = powerbi.run(
        path,
        config={"batch_size": 10},
        kill=Kill(input_lines=21, log_text="Stored 10 records of orders", log_count=2),
        check=False,
    )
    assert killed.returncode == -9
    assert powerbi.datasets() == []
    assert requests_of(powerbi, "PostDatasetInGroup") == 0


# ---------------------------------------------------------------- 4. Singer semantics
def test_an_opening_only_activate_version_removes_what_the_new_version_lacks(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    items = {"Code": {"type": "string"}}

    def full_table(version: int, *codes: str) -> Path:
        return singer(
            tmp_path,
            f"v{version}",
            schema("items", items, ["Code"]),
            {"type": "ACTIVATE_VERSION", "stream": "items", "version": version},
            *[record("items", version, Code=c) for c in codes],
            state(v=version),
        )

    powerbi.run(full_table(1, "A", "B", "C"))
    assert {r["Code"] for r in powerbi.rows("items")} == {"A", "B", "C"}
    run = powerbi.run(full_table(2, "A", "C"))
    assert sorted(r["Code"] for r in powerbi.rows("items")) == ["A", "C"]
    assert run.states == [{"v": 2}]


def test_an_input_cut_among_a_new_versions_records_removes_nothing(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    items = {"Code": {"type": "string"}}
    opened = {"type": "ACTIVATE_VERSION", "stream": "items", "version": 1}
    powerbi.run(
        singer(
            tmp_path,
            "v1",
            schema("items", items, ["Code"]),
            opened,
            *[record("items", 1, Code=c) for c in "ABC"],
            state(v=1),
        )
    )
    # the tap stopped after sending A of version 2 (no STATE after it): B and C stay
    cut = powerbi.run(
        singer(
            tmp_path,
            "v2",
            schema("items", items, ["Code"]),
            {**opened, "version": 2},
            record("items", 2, Code="A"),
        )
    )
    assert "kept until a complete run" in cut.stderr
    assert {r["Code"] for r in powerbi.rows("items")} == {"A", "B", "C"}


def test_a_keyless_stream_keeps_every_record_and_a_rerun_doubles_nothing(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    events = {"kind": {"type": "string"}, "n": {"type": "integer"}}
    path = singer(
        tmp_path,
        "events",
        schema("events", events, []),
        record("events", kind="click", n=1),
        record("events", kind="click", n=1),
        record("events", kind="view", n=2),
        state(at=1),
    )
    powerbi.run(path)
    assert sorted((r["kind"], r["n"]) for r in powerbi.rows("events")) == [
        ("click", 1),
        ("click", 1),
        ("view", 2),
    ]
    powerbi.run(path)  # the same records sent again (a resend after a crash)
    assert len(powerbi.rows("events")) == 3


def test_no_state_passes_rows_that_never_reached_power_bi(powerbi: PowerBI, tmp_path: Path) -> None:
    powerbi.run(singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1")))
    powerbi.faults(fail_next=5, fail_next_status=503, operations=["PostRowsInGroup"])
    failed = powerbi.run(
        singer(tmp_path, "b", schema("orders", ORDERS), record("orders", id="o2"), state(at=2)),
        config={"max_retries": 0},
        check=False,
    )
    assert failed.returncode != 0 and failed.states == []
    powerbi.faults(clear=True)
    # a run without that stream's SCHEMA: its STATE comes only once o2 is in Power BI
    later = powerbi.run(singer(tmp_path, "c", state(at=3)))
    assert later.states == [{"at": 3}]
    assert {r["id"] for r in powerbi.rows("orders")} == {"o1", "o2"}


# ---------------------------------------------------------------- 3. unsendable values
AWKWARD = {
    "id": {"type": "string"},
    "text": {"type": ["string", "null"]},
    "when": {"type": ["string", "null"], "format": "date-time"},
    "amount": {"type": ["number", "null"]},
    "count": {"type": ["integer", "null"]},
}


def awkward_lines() -> list[str]:
    """Raw Singer lines: JSON a Python dict cannot carry (lone surrogates, NaN)."""
    head = json.dumps(schema("awkward", AWKWARD))
    rows = [
        '{"id": "surrogate", "text": "a\\ud800b"}',
        '{"id": "max-date", "when": "9999-12-31T23:59:59.999Z"}',
        '{"id": "utc-after-9999", "when": "9999-12-31T23:30:00-01:00"}',
        '{"id": "utc-before-1", "when": "0001-01-01T00:30:00+01:00"}',
        '{"id": "nan", "amount": NaN, "count": NaN}',
        '{"id": "precise", "amount": 1234567890123456789.123456789}',
        '{"id": "big-int", "amount": 9007199254740993}',
        '{"id": "fine", "text": "ok", "when": "2024-01-02T03:04:05+02:00", "amount": 0.1}',
    ]
    records = [f'{{"type": "RECORD", "stream": "awkward", "record": {r}}}' for r in rows]
    return [head, *records, json.dumps(state(at=1))]


def test_unsendable_values_are_replaced_and_logged_with_warn(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    path = tmp_path / "awkward.singer"
    lines = awkward_lines()
    raw = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"
    # and a line of invalid UTF-8
    bad = b'{"type": "RECORD", "stream": "awkward", "record": {"id": "bytes", "text": "a\xffb"}}\n'
    path.write_bytes(raw.replace(lines[-1].encode(), bad + lines[-1].encode()))
    run = powerbi.run(path)
    assert run.states == [{"at": 1}]
    rows = by_key(powerbi.rows("awkward"), "id")
    assert rows[("surrogate",)]["text"] == "a\ufffdb"
    assert rows[("bytes",)]["text"] == "a\ufffdb"
    for key in ("max-date", "utc-after-9999", "utc-before-1"):
        assert rows[(key,)]["when"] is None
    assert rows[("nan",)]["amount"] is None and rows[("nan",)]["count"] is None
    assert rows[("precise",)]["amount"] == pytest.approx(1234567890123456789.0)
    assert rows[("fine",)]["when"].startswith("2024-01-02T01:04:05")
    for key, column in [
        ("surrogate", "text"),
        ("max-date", "when"),
        ("utc-after-9999", "when"),
        ("utc-before-1", "when"),
        ("nan", "amount"),
        ("precise", "amount"),
        ("big-int", "amount"),
    ]:
        assert any(
            f'record ["{key}"]' in line and f"column '{column}'" in line
            for line in run.stderr.splitlines()
        ), (key, column)
    assert not any("fine" in line and "column" in line for line in run.stderr.splitlines())


def test_unsendable_values_stop_the_run_before_storing_with_fail(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    path = tmp_path / "awkward.singer"
    path.write_bytes("\n".join(awkward_lines()).encode("utf-8", "surrogatepass") + b"\n")
    run = powerbi.run(path, config={"on_invalid_value": "fail"}, check=False)
    assert run.returncode != 0 and run.states == []
    assert "on_invalid_value" in run.stderr and "Traceback" not in run.stderr
    store = sqlite3.connect(powerbi.workdir / "store.sqlite3")
    assert store.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 0
    assert powerbi.datasets() == []


def test_a_store_holding_an_unsendable_row_is_repaired(powerbi: PowerBI, tmp_path: Path) -> None:
    powerbi.run(singer(tmp_path, "a", schema("notes", NOTES), record("notes", id="n1", text="x")))
    # an earlier version stored a lone surrogate and a date Power BI overflows on
    db = sqlite3.connect(powerbi.workdir / "store.sqlite3")
    bad = json.dumps({"id": "n2", "text": "a\ud800b"})
    db.execute(
        "INSERT INTO rows (tbl, k, root, hash, seq, data) VALUES ('notes', '[\"n2\"]', "
        "'[\"n2\"]', 'x', 1000, ?)",
        (bad,),
    )
    db.execute("UPDATE meta SET v='1000' WHERE k='seq'")
    db.execute("DELETE FROM meta WHERE k='checked'")
    db.commit()
    db.close()
    run = powerbi.run(singer(tmp_path, "b", schema("notes", NOTES), state(at=2)))
    assert run.states == [{"at": 2}]
    rows = by_key(powerbi.rows("notes"), "id")
    assert rows[("n2",)]["text"] == "a\ufffdb"
    assert "repaired" in run.stderr


# ---------------------------------------------------------------- 2. layout changes heal
def test_a_new_table_rebuilds_the_dataset_and_rebinds_its_reports(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    powerbi.run(singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1")))
    old = powerbi.dataset()["id"]
    report = powerbi.control("POST", "/published-reports", {"name": "Sales", "datasetId": old})
    run = powerbi.run(
        singer(
            tmp_path,
            "b",
            schema("orders", ORDERS),
            schema("notes", NOTES),
            record("notes", id="n1", text="hello"),
            state(at=2),
        )
    )
    assert run.states == [{"at": 2}]
    (dataset,) = powerbi.datasets()
    assert dataset["id"] != old
    assert {t["name"] for t in dataset["tables"]} == {"orders", "notes"}
    assert [r["id"] for r in powerbi.rows("orders")] == ["o1"]  # from the store
    (rebound,) = powerbi.control("GET", "/published-reports")["reports"]
    assert rebound["id"] == report["id"] and rebound["datasetId"] == dataset["id"]
    assert "Sales" in run.stderr and "rebound" in run.stderr


@dataclass
class Pinned:
    """A dataset with a report, and a dashboard with two tiles pinned from that report."""

    old: str
    report: str
    dashboard: str

    def tiles(self, powerbi: PowerBI) -> list[tuple[str, str, str | None]]:
        (dashboard,) = [
            d for d in powerbi.control("GET", "/dashboards")["dashboards"]
            if d["id"] == self.dashboard
        ]  # fmt: skip
        return sorted((t["title"], t["datasetId"], t.get("reportId")) for t in dashboard["tiles"])

    def bound_to(self, dataset_id: str) -> list[tuple[str, str, str | None]]:
        return [("Orders", dataset_id, self.report), ("Revenue", dataset_id, self.report)]


@pytest.fixture
def pinned(powerbi: PowerBI, tmp_path: Path) -> Pinned:
    powerbi.run(singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1")))
    old = powerbi.dataset()["id"]
    report = powerbi.control("POST", "/published-reports", {"name": "Sales", "datasetId": old})
    dashboard = powerbi.control("POST", "/dashboards", {"name": "Daily"})["id"]
    for title in ("Revenue", "Orders"):
        tile = {"title": title, "datasetId": old, "reportId": report["id"]}
        powerbi.control("POST", f"/dashboards/{dashboard}/tiles", tile)
    return Pinned(old, report["id"], dashboard)


NEW_TABLE = (
    schema("orders", ORDERS),
    schema("notes", NOTES),
    record("notes", id="n1", text="hello"),
    state(at=2),
)


def test_a_rebuild_keeps_the_dashboard_tiles_bound_to_the_new_dataset(
    powerbi: PowerBI, pinned: Pinned, tmp_path: Path
) -> None:
    run = powerbi.run(singer(tmp_path, "b", *NEW_TABLE))
    new = powerbi.dataset()["id"]
    assert new != pinned.old
    assert pinned.tiles(powerbi) == pinned.bound_to(new)
    assert "Daily: Revenue" in run.stderr and "Daily: Orders" in run.stderr


def test_a_rebuild_stopped_after_copying_tiles_copies_none_twice(
    powerbi: PowerBI, pinned: Pinned, tmp_path: Path
) -> None:
    powerbi.faults(fail_next=1, operations=["DeleteDatasetInGroup"])
    failed = powerbi.run(singer(tmp_path, "b", *NEW_TABLE), config={"max_retries": 0}, check=False)
    assert failed.returncode != 0
    assert len(powerbi.datasets()) == 2  # the old one kept, its tiles copied already
    powerbi.faults(fail_next=0, operations=None)
    powerbi.run(singer(tmp_path, "c", state(at=3)))
    new = powerbi.dataset()["id"]
    assert [d["id"] for d in powerbi.datasets()] == [new]
    assert pinned.tiles(powerbi) == pinned.bound_to(new)


def test_tiles_that_cannot_be_copied_keep_the_old_dataset_until_a_later_run(
    powerbi: PowerBI, pinned: Pinned, tmp_path: Path
) -> None:
    powerbi.faults(error_rate=1.0, operations=["GetTilesInGroup"])
    run = powerbi.run(singer(tmp_path, "b", *NEW_TABLE), config={"max_retries": 0})
    assert run.states == [{"at": 2}]
    assert pinned.old in {d["id"] for d in powerbi.datasets()}
    assert "could not be moved" in run.stderr and "next run tries again" in run.stderr
    powerbi.faults(error_rate=0.0, operations=None)
    assert pinned.tiles(powerbi) == pinned.bound_to(pinned.old)
    powerbi.run(singer(tmp_path, "c", state(at=3)))
    new = powerbi.dataset()["id"]
    assert [d["id"] for d in powerbi.datasets()] == [new]
    assert pinned.tiles(powerbi) == pinned.bound_to(new)


def test_on_new_tables_fail_stops_with_one_line(powerbi: PowerBI, tmp_path: Path) -> None:
    powerbi.run(singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1")))
    run = powerbi.run(
        singer(tmp_path, "b", schema("notes", NOTES), record("notes", id="n1")),
        config={"on_new_tables": "fail"},
        check=False,
    )
    assert run.returncode != 0 and "on_new_tables" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_changed_column_type_migrates_the_store_and_reloads(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    ints = {"id": {"type": "string"}, "amount": {"type": "integer"}, "ref": {"type": "number"}}
    powerbi.run(
        singer(tmp_path, "a", schema("orders", ints), record("orders", id="o1", amount=5, ref=7))
    )
    widened = {"id": {"type": "string"}, "amount": {"type": "number"}, "ref": {"type": "string"}}
    run = powerbi.run(
        singer(
            tmp_path,
            "b",
            schema("orders", widened),
            record("orders", id="o2", amount=2.5, ref="R-2"),
            state(at=2),
        )
    )
    assert run.states == [{"at": 2}]
    rows = by_key(powerbi.rows("orders"), "id")
    assert rows[("o1",)]["amount"] == 5 and rows[("o1",)]["ref"] == "7"
    assert rows[("o2",)]["amount"] == 2.5 and rows[("o2",)]["ref"] == "R-2"
    table = next(t for t in powerbi.dataset()["tables"] if t["name"] == "orders")
    types = {c["name"]: c["dataType"] for c in table["columns"]}
    assert types["amount"] == "Double" and types["ref"] == "String"


def test_a_changed_key_re_keys_the_store_instead_of_doubling(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    props = {"id": {"type": "string"}, "code": {"type": "string"}, "n": {"type": "integer"}}
    powerbi.run(
        singer(
            tmp_path,
            "a",
            schema("things", props, ["id"]),
            record("things", id="1", code="A", n=1),
            record("things", id="2", code="B", n=1),
        )
    )
    powerbi.run(
        singer(
            tmp_path,
            "b",
            schema("things", props, ["code"]),
            record("things", id="1", code="A", n=2),
            state(at=2),
        )
    )
    rows = by_key(powerbi.rows("things"), "code")
    assert {k: v["n"] for k, v in rows.items()} == {("A",): 2, ("B",): 1}


# ---------------------------------------------------------------- 5. replace_partitions
def test_replace_partitions_removes_lines_that_vanished_from_a_parent(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    lines = {
        "tenant_id": {"type": "string"},
        "InvoiceID": {"type": "string"},
        "LineID": {"type": "string"},
    }

    def run(name: str, *line_ids: tuple[str, str]) -> None:
        powerbi.run(
            singer(
                tmp_path,
                name,
                schema("invoice_line_items", lines, ["tenant_id", "InvoiceID", "LineID"]),
                *[
                    record("invoice_line_items", tenant_id="t", InvoiceID=i, LineID=line)
                    for i, line in line_ids
                ],
                state(at=name),
            ),
            config={"replace_partitions": {"invoice_line_items": ["tenant_id", "InvoiceID"]}},
        )

    run("a", ("I1", "a"), ("I1", "b"), ("I1", "c"), ("I2", "x"))
    run("b", ("I1", "a"), ("I1", "c"))  # a line removed from invoice I1; I2 not re-read
    assert sorted((r["InvoiceID"], r["LineID"]) for r in powerbi.rows("invoice_line_items")) == [
        ("I1", "a"),
        ("I1", "c"),
        ("I2", "x"),
    ]


# ---------------------------------------------------------------- 6. fail fast, one line
def test_bad_credentials_fail_before_the_input_is_read(powerbi: PowerBI, tmp_path: Path) -> None:
    path = singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1"))
    started = time.monotonic()
    run = powerbi.run(
        path,
        config={"client_secret": "wrong-secret-value", "max_retries": 0},
        kill=Kill(input_lines=1),  # the input never ends: only a check before it can stop
        check=False,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    assert time.monotonic() - started < 60
    errors = [line for line in run.stderr.splitlines() if "client_secret" in line]
    assert errors and "Traceback" not in run.stderr
    assert "wrong-secret-value" not in run.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("api_url", "http://api.example.com/v1.0/myorg"),
        ("max_retries", -1),
        ("request_timeout", 0),
        ("batch_size", 10_001),
        ("api_url", "https://127.0.0.1:1/v1.0/myorg"),  # unreachable
        ("store_path", "{tmp}/a-file/store.sqlite3"),  # a folder it cannot write
    ],
)
def test_bad_settings_endpoints_and_folders_fail_in_one_line(
    powerbi: PowerBI, tmp_path: Path, setting: str, value: Any
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    if isinstance(value, str):
        value = value.format(tmp=tmp_path)
    config = {"max_retries": 0, setting: value}
    run = powerbi.run(singer(tmp_path, "a", state(at=1)), config=config, check=False)
    assert run.returncode != 0
    assert setting in run.stderr and "Traceback" not in run.stderr


# ---------------------------------------------------------------- 7. private files
def test_the_store_and_the_audit_log_are_private_whatever_the_umask(
    powerbi: PowerBI, tmp_path: Path
) -> None:
    folder = tmp_path / "private" / "nested"
    config = {
        "store_path": str(folder / "store.sqlite3"),
        "audit_log_path": str(tmp_path / "logs" / "audit.jsonl"),
    }
    old = os.umask(0o000)
    try:
        powerbi.run(
            singer(tmp_path, "a", schema("orders", ORDERS), record("orders", id="o1")),
            config=config,
        )
    finally:
        os.umask(old)
    for path in (folder / "store.sqlite3", tmp_path / "logs" / "audit.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for sidecar in folder.glob("store.sqlite3-*"):
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar
    for path in (folder, folder.parent, tmp_path / "logs"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path

"""JSON Schema -> Power BI tables, and records -> rows (no network)."""

from __future__ import annotations

import datetime as dt
import decimal
import logging

import pytest
from target_powerbi.mapping import (
    INT64_MAX,
    MAX_COLUMNS,
    InvalidValueError,
    Shape,
    ValuePolicy,
    build_rows,
    map_stream,
    record_key,
    sanitize_name,
    unique_name,
)
from target_powerbi.model import ModelFileError, load_model

INVOICE = {
    "type": "object",
    "properties": {
        "InvoiceID": {"type": "string"},
        "Number": {"type": ["integer", "null"]},
        "Total": {"type": ["number", "null"]},
        "Rate": {"type": "number", "multipleOf": 0.01},
        "Paid": {"type": "boolean"},
        "Date": {"type": "string", "format": "date"},
        "Updated": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "Mixed": {"anyOf": [{"type": "integer"}, {"type": "number"}]},
        "Either": {"type": ["string", "integer"]},
        "Anything": {},
        "Free": {"type": "object"},
        "Contact": {
            "type": ["object", "null"],
            "properties": {
                "ContactID": {"type": "string"},
                "Address": {"type": "object", "properties": {"City": {"type": "string"}}},
            },
        },
        "Tags": {"type": "array", "items": {"type": "string"}},
        "Lines": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {
                    "LineID": {"type": "string"},
                    "Tracking": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"Name": {"type": "string"}}},
                    },
                },
            },
        },
    },
}


def columns(table):
    return {c["name"]: c["dataType"] for c in table.to_powerbi()["columns"]}


DEEP = Shape(object_depth=2, child_table_depth=2)


def test_types_nullable_anyof_and_flattening():
    root = map_stream("Invoices", INVOICE, ["InvoiceID"], set(), shape=DEEP)
    assert columns(root) == {
        "InvoiceID": "String",
        "Number": "Int64",
        "Total": "Double",
        "Rate": "Decimal",
        "Paid": "Boolean",
        "Date": "DateTime",
        "Updated": "DateTime",
        "Mixed": "Double",
        "Either": "String",
        "Anything": "String",
        "Free": "String",
        "Contact__ContactID": "String",
        "Contact__Address__City": "String",
        "Tags": "String",
    }
    assert root.columns[0].name == "InvoiceID"


def test_arrays_of_objects_become_child_tables_keyed_to_the_parent():
    root = map_stream("Invoices", INVOICE, ["InvoiceID"], set(), shape=DEEP)
    names = [t.name for t in root.walk()]
    assert names == ["Invoices", "Invoices__Lines", "Invoices__Lines__Tracking"]
    lines = root.children[0]
    # Lines has children of its own, so it gets a `_key` column they refer to
    assert columns(lines) == {
        "_key": "String",
        "InvoiceID": "String",
        "_index": "Int64",
        "LineID": "String",
    }
    tracking = lines.children[0]
    assert columns(tracking) == {"_parent_key": "String", "_index": "Int64", "Name": "String"}
    rels = {
        (r["fromTable"], r["fromColumn"], r["toTable"], r["toColumn"]) for r in root.relationships()
    }
    assert rels == {
        ("Invoices__Lines", "InvoiceID", "Invoices", "InvoiceID"),
        ("Invoices__Lines__Tracking", "_parent_key", "Invoices__Lines", "_key"),
    }

    record = {
        "InvoiceID": "I1",
        "Tags": ["x", "y"],
        "Lines": [{"LineID": "L1", "Tracking": [{"Name": "North"}]}, {"LineID": "L2"}],
        "Contact": {"ContactID": "C1", "Address": {"City": "Oslo"}},
    }
    key = record_key(root, record, by_content=False)
    rows = build_rows(root, record, key, ValuePolicy())
    by_table = {}
    for row in rows:
        by_table.setdefault(row.table, []).append(row)
    (inv,) = by_table["Invoices"]
    assert inv.data["Tags"] == '["x","y"]'
    assert inv.data["Contact__Address__City"] == "Oslo"
    line_rows = by_table["Invoices__Lines"]
    assert [r.data for r in line_rows] == [
        {"_key": line_rows[0].key, "InvoiceID": "I1", "_index": 0, "LineID": "L1"},
        {"_key": line_rows[1].key, "InvoiceID": "I1", "_index": 1, "LineID": "L2"},
    ]
    (track,) = by_table["Invoices__Lines__Tracking"]
    assert track.data["_parent_key"] == line_rows[0].data["_key"]
    assert len({r.key for r in rows}) == len(rows)


def test_names_are_sanitised_and_unique_case_insensitively():
    assert (
        sanitize_name("a.b/c,d(e)f:g;h$i!j&k'l\"m+n=o[p]q{r}s|t")
        == "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_p_q_r_s_t"
    )
    long = sanitize_name("x" * 300)
    assert len(long) == 100
    used: set[str] = set()
    assert unique_name("Total", used) == "Total"
    assert unique_name("total", used) == "total_2"
    assert unique_name("TOTAL", used) == "TOTAL_3"
    schema = {"properties": {"a.b": {"type": "string"}, "a_b": {"type": "string"}}}
    root = map_stream("s", schema, [], set())
    assert list(columns(root)) == ["a_b", "a_b_2"]
    taken = {"s"}
    assert map_stream("S", schema, [], taken).name == "S_2"


def test_over_75_columns_keeps_keys_and_carries_the_rest_as_json(caplog):
    props = {f"c{i:03d}": {"type": "integer"} for i in range(100)}
    props["zkey"] = {"type": "string"}
    with caplog.at_level(logging.WARNING):
        root = map_stream("wide", {"properties": props}, ["zkey"], set())
    cols = root.to_powerbi()["columns"]
    assert len(cols) == MAX_COLUMNS
    assert cols[0]["name"] == "zkey" and cols[-1]["name"] == "_overflow"
    assert "wide" in caplog.text and "c099" in caplog.text
    record = {f"c{i:03d}": i for i in range(100)} | {"zkey": "k"}
    (row,) = build_rows(root, record, "k", ValuePolicy())
    assert row.data["c072"] == 72
    assert '"c099":99' in row.data["_overflow"]
    assert len(row.data) == MAX_COLUMNS


def test_values_power_bi_cannot_hold_are_reported_with_stream_record_and_column(caplog):
    schema = {
        "properties": {
            "id": {"type": "string"},
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "s": {"type": "string"},
            "d": {"type": "string", "format": "date-time"},
        }
    }
    root = map_stream("things", schema, ["id"], set())
    record = {"id": "r1", "n": INT64_MAX + 1, "x": float("nan"), "s": "é" * 5000, "d": "nope"}
    key = record_key(root, record, by_content=False)
    policy = ValuePolicy(logger=logging.getLogger("t"))
    with caplog.at_level(logging.WARNING):
        (row,) = build_rows(root, record, key, policy)
    assert row.data["n"] is None and row.data["x"] is None and row.data["d"] is None
    assert len(row.data["s"]) == 4000
    assert policy.warnings == 4
    for column in ("'n'", "'x'", "'s'", "'d'"):
        assert f"column {column}" in caplog.text
    assert "stream 'things'" in caplog.text and '["r1"]' in caplog.text
    with pytest.raises(InvalidValueError, match="column 'n'"):
        build_rows(root, record, key, ValuePolicy(on_invalid="fail"))


def test_values_are_converted_to_power_bi_forms():
    schema = {
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "dec": {"type": "number", "multipleOf": 0.0001},
            "d": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "b": {"type": "boolean"},
        }
    }
    root = map_stream("v", schema, [], set())
    record = {
        "n": decimal.Decimal("12"),
        "x": decimal.Decimal("1.5"),
        "dec": decimal.Decimal("2.123456"),
        "d": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "day": "2024-05-02",
        "b": True,
    }
    (row,) = build_rows(root, record, "k", ValuePolicy())
    assert row.data == {
        "n": 12,
        "x": 1.5,
        "dec": 2.1235,
        "d": "2024-05-01T10:00:00.000Z",
        "day": "2024-05-02T00:00:00.000Z",
        "b": True,
    }


def test_keys_by_properties_or_by_content():
    root = map_stream(
        "k", {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}, ["a"], set()
    )
    assert record_key(root, {"a": "x", "b": 1}, by_content=False) == record_key(
        root, {"a": "x", "b": 2}, by_content=False
    )
    assert record_key(root, {"a": "x", "b": 1}, by_content=True) != record_key(
        root, {"a": "x", "b": 2}, by_content=True
    )


def test_model_file_types_measures_and_relationships(tmp_path):
    path = tmp_path / "model.yml"
    path.write_text(
        "relationships:\n"
        "  - fromTable: Invoices\n    fromColumn: Contact__ContactID\n"
        "    toTable: Contacts\n    toColumn: ContactID\n"
        "tables:\n  Invoices:\n"
        "    measures:\n      - name: Total invoiced\n        expression: SUM(Invoices[Total])\n"
        "    columns:\n      Total: Decimal\n"
    )
    model = load_model(str(path))
    assert model.relationships[0]["crossFilteringBehavior"] == "OneDirection"
    assert model.measures["Invoices"][0]["name"] == "Total invoiced"
    root = map_stream("Invoices", INVOICE, ["InvoiceID"], set(), type_overrides=model.column_types)
    assert columns(root)["Total"] == "Decimal"
    path.write_text("tables:\n  Invoices:\n    columns:\n      Total: Money\n")
    with pytest.raises(ModelFileError, match="Money"):
        load_model(str(path))
    path.write_text("relationships:\n  - fromTable: A\n")
    with pytest.raises(ModelFileError, match="missing"):
        load_model(str(path))


def test_repeated_value_problems_are_counted_not_flooded(caplog):
    root = map_stream("t", {"properties": {"s": {"type": "string"}}}, [], set())
    policy = ValuePolicy(logger=logging.getLogger("flood"))
    with caplog.at_level(logging.WARNING):
        for i in range(50):
            build_rows(root, {"s": "y" * 4001}, f"k{i}", policy)
    assert policy.warnings == 50
    assert policy.summary() == {("t", "s"): 50}
    assert len(caplog.records) == 21  # 20 values, then one line saying the rest are counted


def test_composite_keys_give_the_parent_a_key_column_children_relate_to():
    # tap-xero's keys: (TenantID, InvoiceID)
    schema = {
        "properties": {
            "TenantID": {"type": "string"},
            "InvoiceID": {"type": "string"},
            "Lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"Sku": {"type": "string"}}},
            },
        }
    }
    root = map_stream("Invoices", schema, ["TenantID", "InvoiceID"], set())
    assert list(columns(root)) == ["_key", "TenantID", "InvoiceID"]
    (rel,) = root.relationships()
    assert (rel["fromColumn"], rel["toColumn"]) == ("_parent_key", "_key")
    record = {"TenantID": "t1", "InvoiceID": "i1", "Lines": [{"Sku": "a"}]}
    key = record_key(root, record, by_content=False)
    parent, line = build_rows(root, record, key, ValuePolicy())
    assert parent.data["_key"] == key == line.data["_parent_key"] == '["t1","i1"]'


def test_default_shape_one_level_of_objects_and_of_child_tables():
    root = map_stream("Invoices", INVOICE, ["InvoiceID"], set())
    assert [t.name for t in root.walk()] == ["Invoices", "Invoices__Lines"]
    cols = columns(root)
    assert cols["Contact__ContactID"] == "String"
    assert cols["Contact__Address"] == "String"  # the second level is JSON text
    assert "Contact__Address__City" not in cols
    # the record's own fields come before those of nested objects
    names = [c.name for c in root.columns]
    assert names.index("Tags") < names.index("Contact__ContactID")
    assert columns(root.children[0])["Tracking"] == "String"  # deeper arrays: JSON


def test_child_tables_allow_list_and_refs():
    schema = {
        "$defs": {
            "Line": {"type": "object", "properties": {"Sku": {"type": "string"}}},
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}},
        },
        "properties": {
            "id": {"type": "string"},
            "Lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
            "Notes": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
            "Loop": {"$ref": "#/$defs/Node"},
        },
    }
    only_lines = Shape(child_tables=frozenset({"Docs.Lines"}))
    root = map_stream("Docs", schema, ["id"], set(), shape=only_lines)
    assert [t.name for t in root.walk()] == ["Docs", "Docs__Lines"]
    cols = columns(root)
    assert cols["Notes"] == "String"  # not on the list: JSON text
    assert cols["Loop__next"] == "String"  # a cycle ends as JSON text
    assert columns(root.children[0]) == {"id": "String", "_index": "Int64", "Sku": "String"}


def test_a_key_property_missing_from_the_schema_still_gives_children_a_parent_column():
    schema = {
        "properties": {
            "Lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        }
    }
    root = map_stream("odd", schema, ["id"], set())
    assert root.key_column == "_key"
    assert columns(root.children[0])["_parent_key"] == "String"

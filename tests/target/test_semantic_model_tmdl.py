"""The Direct Lake model's TMDL, generated from the real model file and read back with the
Fabric sandbox's TMDL reader: every table, column type, relationship and measure is there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from sandbox.fabric.tmdl import COMPATIBLE, read_model, reference, sql_endpoint_of
from target_powerbi.destinations.parquet import ARROW_TYPES, arrow_type_name
from target_powerbi.destinations.semantic_model import (
    SqlEndpoint,
    quote,
    tmdl_parts,
    tmdl_type,
    usable_measures,
)
from target_powerbi.mapping import DATA_TYPES
from target_powerbi.model import load_model

MODEL_FILE = Path(__file__).parents[2] / "model" / "xero.model.yml"
ENDPOINT = SqlEndpoint(
    "abc.datawarehouse.fabric.microsoft.com", "5e1c0b7e-0000-4000-8000-000000000001"
)
_COLUMN_REF = re.compile(r"\b([a-z_]+)\[([^\]]+)\]")


def _raw() -> dict[str, Any]:
    return dict(yaml.safe_load(MODEL_FILE.read_text(encoding="utf-8")))


def _tables(raw: dict[str, Any], without: set[str] = frozenset()) -> dict[str, dict[str, str]]:
    """Every table the model names, with every column it names (model types as landed)."""
    tables: dict[str, dict[str, str]] = {}

    def add(table: str, column: str) -> None:
        if table not in without:
            tables.setdefault(table, {}).setdefault(column, arrow_type_name("String"))

    for rel in raw["relationships"]:
        add(rel["fromTable"], rel["fromColumn"])
        add(rel["toTable"], rel["toColumn"])
    for table, spec in raw["tables"].items():
        for measure in spec.get("measures") or []:
            for ref_table, column in _COLUMN_REF.findall(measure["expression"]):
                add(ref_table, column)
        for column, data_type in (spec.get("columns") or {}).items():
            add(table, column)
            if table in tables:
                tables[table][column] = arrow_type_name(data_type)
    return tables


def _read(parts: dict[str, str]) -> Any:
    return read_model({path: text.encode("utf-8") for path, text in parts.items()})


def test_every_table_column_relationship_and_measure_of_the_model_file() -> None:
    raw = _raw()
    tables = _tables(raw)
    parts = tmdl_parts(load_model(str(MODEL_FILE)), tables, ENDPOINT)
    assert {"definition.pbism", "definition/database.tmdl", "definition/model.tmdl"} <= set(parts)
    model = _read(parts)
    assert model.compatibility_level >= 1604  # Direct Lake
    assert sql_endpoint_of(model, "DatabaseQuery") == ENDPOINT.id
    assert set(model.tables) == set(tables)
    for name, table in model.tables.items():
        partition = table.child("partition")
        source = partition.child("source")
        assert partition.properties["mode"] == "directLake"
        assert source.properties == {
            "entityName": name,
            "schemaName": "dbo",
            "expressionSource": "DatabaseQuery",
        }
        columns = {c.name: c.properties for c in table.of("column")}
        assert set(columns) == set(tables[name])
        assert all(c["sourceColumn"] == n for n, c in columns.items())
    for table, spec in raw["tables"].items():
        columns = {c.name: c.properties for c in model.tables[table].of("column")}
        for column, data_type in (spec.get("columns") or {}).items():
            assert data_type == "Decimal"
            assert columns[column]["dataType"] == "decimal", (table, column)
        measures = {m.name: m for m in model.tables[table].of("measure")}
        wanted = spec.get("measures") or []
        assert sorted(measures) == sorted(m["name"] for m in wanted), table
        for measure in wanted:
            found = measures[measure["name"]]
            assert found.expression == measure["expression"].strip()
            assert found.properties.get("formatString") == measure.get("formatString")
            assert ("isHidden" in found.properties) == bool(measure.get("isHidden"))
    relationships = {r.name: r.properties for r in model.relationships}
    assert len(relationships) == len(raw["relationships"])
    for rel in raw["relationships"]:
        found = relationships[rel["name"]]
        assert reference(found["fromColumn"], "") == (rel["fromTable"], rel["fromColumn"])
        assert reference(found["toColumn"], "") == (rel["toTable"], rel["toColumn"])


def test_a_run_without_journals_or_accounts_leaves_out_what_needs_them() -> None:
    raw = _raw()
    tables = _tables(raw, without={"journals", "journal_lines", "accounts"})
    model = load_model(str(MODEL_FILE))
    parts = tmdl_parts(model, tables, ENDPOINT)
    found = _read(parts)  # relationships still name existing columns (the reader checks)
    names = {r.name for r in found.relationships}
    assert "journal_lines_to_journals" not in names
    assert "invoices_to_contacts" in names
    kept = {m["name"] for ms in usable_measures(model, tables).values() for m in ms}
    assert "Invoiced Sales" in kept
    # reads accounts[Type] itself, or through a measure that does
    assert not {"Payments Net", "Daily Cash Flow", "Net Profit", "Return on Total Assets"} & kept
    in_tmdl = {m.name for t in found.tables.values() for m in t.of("measure")}
    assert in_tmdl == kept


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_each_landed_type_is_a_direct_lake_type_of_the_same_kind(data_type: str) -> None:
    """The TMDL dataType of a column is the one Direct Lake reads its landed type as."""
    expected = {
        "Int64": "int64",
        "Double": "double",
        "Decimal": "decimal",
        "Boolean": "boolean",
        "DateTime": "dateTime",
        "String": "string",
    }[data_type]
    assert tmdl_type(arrow_type_name(data_type)) == expected
    assert COMPATIBLE[expected](ARROW_TYPES[data_type])
    others = [k for k, check in COMPATIBLE.items() if check(ARROW_TYPES[data_type])]
    assert others == [expected]


def test_names_are_quoted_as_tmdl_needs() -> None:
    assert quote("invoices") == "invoices"
    assert quote("Net Profit") == "'Net Profit'"
    assert quote("O'Brien") == "'O''Brien'"
    assert tmdl_type(str(pa.decimal128(38, 4))) == "decimal"

"""Parquet files in the open mirroring landing zone format, written with pyarrow.

Column types follow the landing zone's rules: each Power BI data type of the table's
definition becomes one Parquet type, complex values arrive as JSON text already (the
mapping makes them String columns), and ``__rowMarker__`` is the last column:
4 (upsert: update the row with the key, or insert it) for new and changed rows,
2 (delete) for removed ones, which carry only their key columns.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from target_powerbi.destinations.landed import ROW_KEY, Change

ROW_MARKER = "__rowMarker__"
UPSERT = 4
DELETE = 2
# Power BI's Decimal is a fixed decimal of four places: the same scale in OneLake.
DECIMAL_TYPE = pa.decimal128(38, 4)
_QUANTUM = Decimal("0.0001")

ARROW_TYPES: dict[str, Any] = {
    "Int64": pa.int64(),
    "Double": pa.float64(),
    "Decimal": DECIMAL_TYPE,
    "Boolean": pa.bool_(),
    "DateTime": pa.timestamp("us", tz="UTC"),
    "String": pa.string(),
}


def columns_of(definition: dict[str, Any], key_columns: list[str]) -> dict[str, str]:
    """The table's columns and their Power BI data types, the synthetic key first if used."""
    columns = {str(c["name"]): str(c.get("dataType", "String")) for c in definition["columns"]}
    if ROW_KEY in key_columns and ROW_KEY not in columns:
        columns = {ROW_KEY: "String", **columns}
    return columns


def _value(value: Any, data_type: str) -> Any:
    if value is None:
        return None
    if data_type == "DateTime":
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if data_type == "Decimal":
        return Decimal(str(value)).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
    if data_type == "Double":
        return float(value)
    if data_type == "String" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def parquet_file(columns: dict[str, str], key_columns: list[str], changes: list[Change]) -> bytes:
    """One landing zone file: every change as a row, ``__rowMarker__`` last."""
    arrays = []
    names = []
    for name, data_type in columns.items():
        values = []
        for change in changes:
            if change.data is None:
                raw = change.keys[key_columns.index(name)] if name in key_columns else None
            elif name == ROW_KEY:
                raw = change.k
            else:
                raw = change.data.get(name)
            values.append(_value(raw, data_type))
        arrays.append(pa.array(values, type=ARROW_TYPES.get(data_type, pa.string())))
        names.append(name)
    markers = [UPSERT if c.data is not None else DELETE for c in changes]
    arrays.append(pa.array(markers, type=pa.int32()))
    names.append(ROW_MARKER)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    return buffer.getvalue()


def arrow_type_name(data_type: str) -> str:
    """How a column's type is recorded, to see a type change (which Fabric refuses)."""
    return str(ARROW_TYPES.get(data_type, pa.string()))

"""Reading one landed file the way open mirroring validates it (before anything is applied).

Rules and their sources are listed in docs/sandbox-fabric.md ("Validation").
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

ROW_MARKER = "__rowMarker__"
INSERT, UPDATE, DELETE, UPSERT = 0, 1, 2, 4
MARKERS = {INSERT, UPDATE, DELETE, UPSERT}
SEQUENCE_NAME = re.compile(r"^(\d{20})\.parquet$")


class LandingError(Exception):
    """A landed file (or _metadata.json) that is not applied; `fatal` stops the table."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass(frozen=True)
class Metadata:
    """A table's `_metadata.json`."""

    key_columns: tuple[str, ...] | None
    upsert_default: bool


@dataclass(frozen=True)
class Changes:
    """A valid data file: its columns (without the marker) and one operation per row."""

    data: pa.Table
    operations: list[int]

    @property
    def keyed(self) -> bool:
        return any(op != INSERT for op in self.operations)


def parse_metadata(raw: bytes) -> Metadata:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LandingError(f"_metadata.json is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise LandingError("_metadata.json must hold a JSON object")
    keys = value.get("keyColumns", value.get("KeyColumns"))
    if keys is not None and (
        not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys)
    ):
        raise LandingError("keyColumns must be a non-empty list of column names")
    strategy = value.get("fileDetectionStrategy", "SequentialFileName")
    if strategy != "SequentialFileName":
        raise LandingError(
            f"fileDetectionStrategy {strategy!r} is not emulated by the sandbox "
            "(only the default SequentialFileName)"
        )
    upsert = value.get("isUpsertDefaultRowMarker", False)
    if not isinstance(upsert, bool):
        raise LandingError("isUpsertDefaultRowMarker must be true or false")
    return Metadata(tuple(keys) if keys else None, upsert)


def read_changes(raw: bytes, metadata: Metadata | None) -> Changes:
    """The file's rows and operations, or a LandingError: why the service would not apply it."""
    if not raw:
        raise LandingError("zero-byte file: not a complete Parquet file")
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        raise LandingError(f"not a valid Parquet file ({exc})") from None
    names = table.column_names
    default = UPSERT if metadata is not None and metadata.upsert_default else INSERT
    if ROW_MARKER not in names:
        operations = [default] * table.num_rows
    else:
        operations = _markers(table)
        table = table.drop_columns([ROW_MARKER])
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        raise LandingError(
            f"column(s) {', '.join(nested)} have a complex type; write complex types as a "
            "JSON string"
        )
    changes = Changes(table, operations)
    keys = metadata.key_columns if metadata is not None else None
    if changes.keyed:
        if not keys:
            raise LandingError(
                "rows marked update, delete or upsert need keyColumns in the table's _metadata.json"
            )
        missing = [k for k in keys if k not in table.column_names]
        if missing:
            raise LandingError(f"key column(s) {', '.join(missing)} missing from the file")
    return changes


def _markers(table: pa.Table) -> list[int]:
    if table.column_names[-1] != ROW_MARKER:
        raise LandingError(f"{ROW_MARKER} must be the last column of the file")
    column = table.column(ROW_MARKER)
    if not pa.types.is_integer(column.type):
        raise LandingError(f"{ROW_MARKER} must be an integer column, not {column.type}")
    values = column.to_pylist()
    wrong = sorted({str(v) for v in values if v not in MARKERS})
    if wrong:
        raise LandingError(
            f"{ROW_MARKER} values must be 0 (insert), 1 (update), 2 (delete) or 4 (upsert); "
            f"found {', '.join(wrong)}"
        )
    return [int(v) for v in values]


def kind(data_type: pa.DataType) -> str:
    """A column's type as the table keeps it: timestamp units and large variants are encodings."""
    if pa.types.is_timestamp(data_type):
        return f"timestamp[tz={data_type.tz}]"
    if pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_large_binary(data_type):
        return "binary"
    return str(data_type)


def check_types(data: pa.Table, landed: dict[str, str]) -> None:
    """A column may be added, never change type (replication of the table stops)."""
    for field in data.schema:
        if pa.types.is_null(field.type):
            continue
        known = landed.get(field.name)
        if known is not None and known != kind(field.type):
            raise LandingError(
                f"column {field.name} changed type from {known} to {kind(field.type)}; replication "
                "of this table stops until its folder is recreated",
                fatal=True,
            )

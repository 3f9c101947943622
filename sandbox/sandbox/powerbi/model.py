"""Push dataset definitions and row values, validated as strictly as the service validates them.

Where the real service's behaviour is not documented the sandbox refuses (see
docs/sandbox-powerbi.md, "Strict where unknown").
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.powerbi.errors import bad_request
from sandbox.powerbi.limits import Limits

DATA_TYPES = {t.lower(): t for t in ("Int64", "Double", "Boolean", "DateTime", "String", "Decimal")}
CROSS_FILTERING = {t.lower(): t for t in ("OneDirection", "BothDirections", "Automatic")}
SUMMARIZE_BY = {
    t.lower(): t
    for t in ("Default", "None", "Sum", "Min", "Max", "Count", "Average", "DistinctCount")
}
DATASET_MODES = {t.lower(): t for t in ("Push", "PushStreaming")}
OTHER_MODES = {"asazure", "asonprem", "streaming"}
RETENTION_POLICIES = {t.lower(): t for t in ("None", "basicFIFO")}

FORBIDDEN_NAME_CHARS = frozenset("./,():;$!&'\"+=[]{}|")
# Microsoft's Swagger pattern for table and relationship names (ASCII punctuation mostly excluded).
_TABLE_NAME = re.compile(
    "^[\\t\\n\\r #\\-0-9@-Z^_a-z~-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]{1,100}$"
)
# Microsoft's Swagger pattern for column, measure and relationship column names.
_COLUMN_NAME = re.compile("^[\\t\\n\\r -\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+$")

# ISO-8601 date or date-time, the same on every Python version (3.10's fromisoformat is narrow).
_ISO_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
DECIMAL_MAX = Decimal(10) ** 24  # precision 28, scale 4
_DECIMAL_QUANTUM = Decimal("0.0001")

TABLE_KEYS = {
    "name": str,
    "columns": list,
    "rows": list,
    "measures": list,
    "isHidden": bool,
    "description": str,
    "source": list,
}
COLUMN_KEYS = {
    "name": str,
    "dataType": str,
    "formatString": str,
    "sortByColumn": str,
    "dataCategory": str,
    "isHidden": bool,
    "summarizeBy": str,
}
MEASURE_KEYS = {
    "name": str,
    "expression": str,
    "formatString": str,
    "description": str,
    "isHidden": bool,
}
RELATIONSHIP_KEYS = {
    "name": str,
    "crossFilteringBehavior": str,
    "fromTable": str,
    "fromColumn": str,
    "toTable": str,
    "toColumn": str,
}
DATASET_KEYS = {
    "name": str,
    "tables": list,
    "relationships": list,
    "datasources": list,
    "defaultMode": str,
}


def check_object(
    value: Any, keys: Mapping[str, type], required: tuple[str, ...], where: str
) -> dict[str, Any]:
    """Refuse a non-object, an unknown (or wrongly cased) property, a missing one, a wrong type."""
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be a JSON object")
    for key, item in value.items():
        expected = keys.get(key)
        if expected is None:
            hint = next((k for k in keys if k.lower() == key.lower()), None)
            extra = f" (property names are case-sensitive: '{hint}')" if hint else ""
            raise bad_request(f"{where} has an unknown property '{key}'{extra}")
        if item is None and key not in required:
            continue
        if expected is bool and not isinstance(item, bool):
            raise bad_request(f"{where}.{key} must be a boolean")
        if expected is str and not isinstance(item, str):
            raise bad_request(f"{where}.{key} must be a string")
        if expected is list and not isinstance(item, list):
            raise bad_request(f"{where}.{key} must be an array")
    for key in required:
        if value.get(key) is None:
            raise bad_request(f"{where} is missing the required property '{key}'")
    return value


def check_name(name: str, kind: str, *, table_like: bool = False) -> str:
    """Names: 1-100 characters, none of the forbidden characters, Swagger's pattern."""
    if not 1 <= len(name) <= 100:
        raise bad_request(f"{kind} name must be 1-100 characters, got {len(name)}")
    bad = sorted(FORBIDDEN_NAME_CHARS.intersection(name))
    if bad:
        raise bad_request(f"{kind} name '{name}' contains forbidden characters {''.join(bad)}")
    pattern = _TABLE_NAME if table_like else _COLUMN_NAME
    if not pattern.match(name):
        raise bad_request(f"{kind} name '{name}' contains characters that are not allowed")
    if name.strip() != name or not name.strip():
        raise bad_request(f"{kind} name '{name}' must not start or end with whitespace")
    return name


def _enum(value: str, allowed: dict[str, str], what: str) -> str:
    canonical = allowed.get(value.lower())
    if canonical is None:
        raise bad_request(f"{what} '{value}' is not one of {', '.join(allowed.values())}")
    return canonical


@dataclass
class Column:
    name: str
    data_type: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dataType": self.data_type, **self.extra}


@dataclass
class Measure:
    name: str
    expression: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "expression": self.expression, **self.extra}


@dataclass
class Relationship:
    name: str
    from_table: str
    from_column: str
    to_table: str
    to_column: str
    cross_filtering: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fromTable": self.from_table,
            "fromColumn": self.from_column,
            "toTable": self.to_table,
            "toColumn": self.to_column,
            "crossFilteringBehavior": self.cross_filtering,
        }


@dataclass
class TableSchema:
    name: str
    columns: list[Column]
    measures: list[Measure]
    extra: dict[str, Any] = field(default_factory=dict)
    initial_rows: list[Any] = field(default_factory=list)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "columns": [c.to_json() for c in self.columns],
        }
        if self.measures:
            body["measures"] = [m.to_json() for m in self.measures]
        body.update(self.extra)
        return body


def parse_table(value: Any, where: str, limits: Limits) -> TableSchema:
    """A Table of Swagger's definitions, with the service's limits and name rules."""
    body = check_object(value, TABLE_KEYS, ("name", "columns"), where)
    name = check_name(body["name"], "Table", table_like=True)
    where = f"table '{name}'"
    raw_columns: list[Any] = body["columns"]
    if not raw_columns:
        raise bad_request(f"{where} must have at least one column")
    if len(raw_columns) > limits.max_columns:
        raise bad_request(
            f"{where} has {len(raw_columns)} columns; at most {limits.max_columns} are allowed"
        )
    columns: list[Column] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_columns):
        col = check_object(raw, COLUMN_KEYS, ("name", "dataType"), f"{where} column {index}")
        col_name = check_name(col["name"], "Column")
        if col_name.lower() in seen:
            raise bad_request(f"{where} has a duplicate column '{col_name}'")
        seen.add(col_name.lower())
        data_type = DATA_TYPES.get(col["dataType"].lower())
        if data_type is None:
            raise bad_request(
                f"column '{col_name}' has an unknown dataType '{col['dataType']}'; "
                f"expected one of {', '.join(DATA_TYPES.values())}"
            )
        extra = {k: v for k, v in col.items() if k not in ("name", "dataType") and v is not None}
        if "summarizeBy" in extra:
            extra["summarizeBy"] = _enum(extra["summarizeBy"], SUMMARIZE_BY, "summarizeBy")
        columns.append(Column(col_name, data_type, extra))
    for parsed in columns:
        sort_by = parsed.extra.get("sortByColumn")
        if sort_by is not None and sort_by not in {c.name for c in columns}:
            raise bad_request(
                f"column '{parsed.name}' sorts by '{sort_by}', not a column of {where}"
            )
    measures: list[Measure] = []
    for index, raw in enumerate(body.get("measures") or []):
        mes = check_object(raw, MEASURE_KEYS, ("name", "expression"), f"{where} measure {index}")
        mes_name = check_name(mes["name"], "Measure")
        if mes_name.lower() in seen:
            raise bad_request(f"{where}: measure name '{mes_name}' is already used")
        seen.add(mes_name.lower())
        if not mes["expression"].strip():
            raise bad_request(f"measure '{mes_name}' has an empty expression")
        extra = {k: v for k, v in mes.items() if k not in ("name", "expression") and v is not None}
        measures.append(Measure(mes_name, mes["expression"], extra))
    extra = {k: v for k, v in body.items() if k in ("isHidden", "description") and v is not None}
    return TableSchema(name, columns, measures, extra, list(body.get("rows") or []))


@dataclass
class DatasetSchema:
    name: str
    mode: str
    tables: list[TableSchema]
    relationships: list[Relationship]


def parse_dataset(value: Any, limits: Limits) -> DatasetSchema:
    """A CreateDatasetRequest of Swagger's definitions, for push datasets only."""
    body = check_object(value, DATASET_KEYS, ("name", "tables"), "dataset")
    name = check_name(body["name"], "Dataset")
    mode_raw = body.get("defaultMode") or "Push"
    if mode_raw.lower() in OTHER_MODES:
        raise bad_request(
            f"defaultMode '{mode_raw}' is not emulated: only Push and PushStreaming take rows"
        )
    mode = _enum(mode_raw, DATASET_MODES, "defaultMode")
    raw_tables: list[Any] = body["tables"]
    if not raw_tables:
        raise bad_request("a push dataset needs at least one table")
    if len(raw_tables) > limits.max_tables:
        raise bad_request(
            f"dataset has {len(raw_tables)} tables; at most {limits.max_tables} are allowed"
        )
    tables: list[TableSchema] = []
    for index, raw in enumerate(raw_tables):
        table = parse_table(raw, f"table {index}", limits)
        if any(t.name.lower() == table.name.lower() for t in tables):
            raise bad_request(f"dataset has a duplicate table '{table.name}'")
        tables.append(table)
    raw_rels: list[Any] = body.get("relationships") or []
    if len(raw_rels) > limits.max_relationships:
        raise bad_request(
            f"dataset has {len(raw_rels)} relationships; "
            f"at most {limits.max_relationships} are allowed"
        )
    by_name = {t.name: t for t in tables}
    relationships: list[Relationship] = []
    for index, raw in enumerate(raw_rels):
        taken = {r.name.lower() for r in relationships}
        relationships.append(_parse_relationship(raw, f"relationship {index}", by_name, taken))
    return DatasetSchema(name, mode, tables, relationships)


def _parse_relationship(
    raw: Any, where: str, by_name: dict[str, TableSchema], taken: set[str]
) -> Relationship:
    """One relationship: a new name; both ends exist, differ and share a data type."""
    rel = check_object(
        raw,
        RELATIONSHIP_KEYS,
        ("name", "fromTable", "fromColumn", "toTable", "toColumn"),
        where,
    )
    rel_name = check_name(rel["name"], "Relationship", table_like=True)
    if rel_name.lower() in taken:
        raise bad_request(f"duplicate relationship '{rel_name}'")
    ends: list[Column] = []
    for table_key, column_key in (("fromTable", "fromColumn"), ("toTable", "toColumn")):
        table_ref = by_name.get(rel[table_key])
        if table_ref is None:
            raise bad_request(
                f"relationship '{rel_name}': {table_key} '{rel[table_key]}' is not a table"
            )
        column = table_ref.column(rel[column_key])
        if column is None:
            raise bad_request(
                f"relationship '{rel_name}': {column_key} '{rel[column_key]}' "
                f"is not a column of '{table_ref.name}'"
            )
        ends.append(column)
    if rel["fromTable"] == rel["toTable"]:
        raise bad_request(f"relationship '{rel_name}' must join two different tables")
    if ends[0].data_type != ends[1].data_type:
        raise bad_request(
            f"relationship '{rel_name}' joins a {ends[0].data_type} column "
            f"to a {ends[1].data_type} column"
        )
    cross = _enum(
        rel.get("crossFilteringBehavior") or "OneDirection",
        CROSS_FILTERING,
        "crossFilteringBehavior",
    )
    return Relationship(
        rel_name, rel["fromTable"], rel["fromColumn"], rel["toTable"], rel["toColumn"], cross
    )


def parse_retention(value: str | None) -> str:
    """The `defaultRetentionPolicy` query parameter (None when absent)."""
    if value is None or value == "":
        return "None"
    return _enum(value, RETENTION_POLICIES, "defaultRetentionPolicy")


def _to_string(value: Any, limits: Limits) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if len(value) > limits.max_string_length:
        raise ValueError(
            f"a string of {len(value)} characters is longer than {limits.max_string_length}"
        )
    return value


def _to_boolean(value: Any, limits: Limits) -> Any:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _to_datetime(value: Any, limits: Limits) -> Any:
    """ISO-8601 (no zone means UTC), stored in UTC to 1/300 of a second as the service does."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO-8601 date-time string")
    match = _ISO_DATETIME.match(value)
    if match is None:
        raise ValueError(f"'{value}' is not an ISO-8601 date-time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        raise ValueError(f"'{value}' is not a valid date-time") from None
    if zone and zone not in ("Z", "z"):
        parsed = parsed.astimezone(timezone.utc)
    micro = parsed.microsecond
    if micro:
        ticks = (micro * 300 + 500_000) // 1_000_000
        rounded = (ticks * 1_000_000 + 150) // 300
        if rounded >= 1_000_000:
            parsed = parsed.replace(microsecond=0) + timedelta(seconds=1)
        else:
            parsed = parsed.replace(microsecond=rounded)
    return parsed.isoformat(timespec="milliseconds")[:23] + "Z"


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, Decimal))


def _to_int64(value: Any, limits: Limits) -> Any:
    if not _is_number(value):
        raise ValueError("expected a number for Int64")
    if not isinstance(value, int):
        raise ValueError("expected a whole number for Int64")
    if not INT64_MIN < value < INT64_MAX:
        raise ValueError(f"{value} is outside the Int64 range (Min and Max excluded)")
    return value


def _to_double(value: Any, limits: Limits) -> Any:
    if not _is_number(value):
        raise ValueError("expected a number for Double")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value} does not fit a Double") from None
    if not math.isfinite(number):
        raise ValueError("NaN and Infinity are not valid Double values")
    return number


def _to_decimal(value: Any, limits: Limits) -> Any:
    """Precision 28, scale 4: rounded to 4 places, like a fixed decimal column."""
    if not _is_number(value):
        raise ValueError("expected a number for Decimal")
    try:
        dec = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
        if not dec.is_finite():
            raise ValueError("NaN and Infinity are not valid Decimal values")
        dec = dec.quantize(_DECIMAL_QUANTUM)
    except InvalidOperation:
        raise ValueError(f"{value} does not fit a Decimal (precision 28, scale 4)") from None
    if abs(dec) >= DECIMAL_MAX:
        raise ValueError(f"{value} does not fit a Decimal (precision 28, scale 4)")
    return dec


Converter = Callable[[Any, Limits], Any]
CONVERTERS: dict[str, Converter] = {
    "String": _to_string,
    "Boolean": _to_boolean,
    "DateTime": _to_datetime,
    "Int64": _to_int64,
    "Double": _to_double,
    "Decimal": _to_decimal,
}


def convert_value(value: Any, data_type: str, limits: Limits) -> Any:
    """One row value checked against its column type; returns the stored value."""
    if value is None:
        return None
    return CONVERTERS[data_type](value, limits)


@dataclass
class TableState:
    """A table's schema and its rows (tuples in column order; `synthetic` rows are counted only)."""

    schema: TableSchema
    rows: deque[tuple[Any, ...]] = field(default_factory=deque)
    synthetic: int = 0

    @property
    def count(self) -> int:
        return self.synthetic + len(self.rows)

    def convert_rows(self, raw_rows: list[Any], limits: Limits) -> list[tuple[Any, ...]]:
        """Every row checked; the first bad value refuses the whole request."""
        columns = self.schema.columns
        index = {c.name: i for i, c in enumerate(columns)}
        converters = [CONVERTERS[c.data_type] for c in columns]
        converted: list[tuple[Any, ...]] = []
        name = self.schema.name
        for number, raw in enumerate(raw_rows):
            if not isinstance(raw, dict):
                raise bad_request(f"table '{name}' row {number} must be a JSON object")
            values: list[Any] = [None] * len(columns)
            for key, value in raw.items():
                position = index.get(key)
                if position is None:
                    hint = next((c for c in index if c.lower() == key.lower()), None)
                    extra = f" (column names are case-sensitive: '{hint}')" if hint else ""
                    raise bad_request(
                        f"table '{name}' row {number}: '{key}' is not a column{extra}"
                    )
                if value is None:
                    continue
                try:
                    values[position] = converters[position](value, limits)
                except ValueError as exc:
                    data_type = columns[position].data_type
                    raise bad_request(
                        f"table '{name}' row {number} column '{key}' ({data_type}): {exc}"
                    ) from None
            converted.append(tuple(values))
        return converted

    def row_dicts(self, limit: int | None = None) -> list[dict[str, Any]]:
        names = [c.name for c in self.schema.columns]
        out: list[dict[str, Any]] = []
        for row in self.rows:
            if limit is not None and len(out) >= limit:
                break
            out.append({n: _jsonable(v) for n, v in zip(names, row, strict=True)})
        return out

    def replace_schema(self, schema: TableSchema) -> None:
        """Keep the values of columns that survive with the same type; others become null."""
        old = {c.name: (i, c.data_type) for i, c in enumerate(self.schema.columns)}
        plan = [
            old[c.name][0] if c.name in old and old[c.name][1] == c.data_type else None
            for c in schema.columns
        ]
        self.rows = deque(
            tuple(row[i] if i is not None else None for i in plan) for row in self.rows
        )
        self.schema = schema


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value

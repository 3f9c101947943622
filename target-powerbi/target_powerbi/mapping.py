"""JSON Schema -> Power BI tables and columns, and records -> rows.

One place decides how a Singer stream looks in Power BI:

- ``integer`` -> Int64, ``number`` -> Double (Decimal when the schema says
  ``multipleOf`` with at most 4 decimals, or the model file asks), ``boolean`` ->
  Boolean, ``date``/``date-time`` strings -> DateTime (ISO-8601 UTC), other
  strings -> String; ``null`` in a type list or ``anyOf`` is dropped, and mixed
  types fall back to a JSON string.
- Nested objects are flattened into ``parent__child`` columns (the separator of
  the Singer SDK's flattening); objects without properties become JSON strings.
- Arrays of objects become child tables keyed to their parent row; other arrays
  become JSON strings.
- Names are sanitised to what Power BI accepts and kept unique
  (case-insensitively, as the tabular model compares names).
- Over 75 columns: the first 74 are kept and the rest are carried as one JSON
  ``_overflow`` column; a value over 4,000 characters is truncated; an Int64 out
  of range, a NaN/Infinity or an unparseable date becomes null. Each of these is
  logged with the stream, the record's key and the column, or, with
  ``on_invalid_value: fail``, stops the run.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_COLUMNS = 75
MAX_TABLES = 75
MAX_STRING = 4000
MAX_NAME = 100
INT64_MIN = -(2**63) + 1  # Int64.MinValue itself is refused
INT64_MAX = 2**63 - 2  # Int64.MaxValue itself is refused
SEPARATOR = "__"
OVERFLOW_COLUMN = "_overflow"
INDEX_COLUMN = "_index"
PARENT_KEY_COLUMN = "_parent_key"
KEY_COLUMN = "_key"
MAX_DEPTH = 10
DATA_TYPES = ("Int64", "Double", "Boolean", "DateTime", "String", "Decimal")

_FORBIDDEN = re.compile(r"[./,():;$!&'\"+=\[\]{}|]")
# Microsoft's Swagger pattern for table names leaves out most ASCII punctuation too.
_TABLE_FORBIDDEN = re.compile(r"[!-\"$-,./:-?\[-\]`{-}]")
_CONTROL = re.compile(r"[\x00-\x1f]")


class InvalidValueError(ValueError):
    """A value Power BI cannot hold, with ``on_invalid_value: fail``."""


def sanitize_name(name: str, *, table: bool = False) -> str:
    """Return ``name`` with the characters Power BI refuses replaced, 1-100 characters."""
    clean = _CONTROL.sub("", _FORBIDDEN.sub("_", name)).strip()
    if table:
        clean = _TABLE_FORBIDDEN.sub("_", clean)
    if not clean:
        clean = "_"
    if len(clean) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]  # noqa: S324 - a name, not a secret
        clean = f"{clean[: MAX_NAME - 9]}_{digest}"
    return clean


def unique_name(name: str, used: set[str], *, table: bool = False) -> str:
    """Sanitise ``name`` and suffix it until it differs (case-insensitively) from ``used``."""
    base = sanitize_name(name, table=table)
    candidate = base
    n = 2
    while candidate.lower() in used:
        suffix = f"_{n}"
        candidate = f"{base[: MAX_NAME - len(suffix)]}{suffix}"
        n += 1
    used.add(candidate.lower())
    return candidate


@dataclass
class Column:
    """One Power BI column and where its value comes from in a record."""

    name: str
    data_type: str
    path: tuple[str, ...]
    json: bool = False  # serialise the value as a JSON string

    def to_powerbi(self) -> dict[str, Any]:
        """The column as Power BI's Table body declares it."""
        return {"name": self.name, "dataType": self.data_type}


@dataclass
class TableMap:
    """A Power BI table fed by a stream (root) or by an array of objects in it (child)."""

    name: str
    stream: str
    path: tuple[str, ...]
    columns: list[Column]
    key_properties: list[str]
    parent: TableMap | None = None
    parent_column: str | None = None  # the parent's key copied into this child table
    key_column: str | None = None  # the one column children refer to (a single key, or _key)
    children: list[TableMap] = field(default_factory=list)
    overflow: list[Column] = field(default_factory=list)
    overflow_column: str | None = None

    def to_powerbi(self) -> dict[str, Any]:
        """The table as Power BI's Table body declares it."""
        cols = [c.to_powerbi() for c in self.columns]
        if self.overflow_column:
            cols.append({"name": self.overflow_column, "dataType": "String"})
        return {"name": self.name, "columns": cols}

    def walk(self) -> Iterator[TableMap]:
        """This table and every descendant, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def relationships(self) -> list[dict[str, Any]]:
        """Child -> parent relationships (child's parent key -> parent's key column)."""
        rels = []
        for t in self.walk():
            if t.parent is not None and t.parent_column and t.parent.key_column:
                to_col = t.parent.key_column
                rels.append(
                    {
                        "name": sanitize_name(f"{t.name}_to_{t.parent.name}", table=True),
                        "fromTable": t.name,
                        "fromColumn": t.parent_column,
                        "toTable": t.parent.name,
                        "toColumn": to_col,
                        "crossFilteringBehavior": "OneDirection",
                    }
                )
        return rels


def _non_null(types: Iterable[Any]) -> list[Any]:
    return [t for t in types if t != "null"]


def _decimal_multiple(schema: dict[str, Any]) -> bool:
    step = schema.get("multipleOf")
    if not isinstance(step, (int, float)) or step <= 0 or step >= 1:
        return False
    return round(step, 4) == step


def resolve(schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Reduce a property schema to one kind: object, array, json or a Power BI data type.

    Returns the kind and the (non-null) schema it came from.
    """
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return _resolve_options(schema, combinator)
    raw = schema.get("type")
    types = _non_null(raw if isinstance(raw, list) else [raw] if raw else [])
    if not types:
        if "properties" in schema:
            return "object", schema
        if "items" in schema:
            return "array", schema
        return "json", schema
    if len(types) > 1:
        return _resolve_mixed(types), schema
    return _resolve_type(types[0], schema), schema


def _resolve_options(schema: dict[str, Any], combinator: str) -> tuple[str, dict[str, Any]]:
    """``anyOf`` / ``oneOf``: one option is that option; numbers widen; else JSON text."""
    options = [s for s in schema[combinator] if s.get("type") != "null" and s != {}]
    if len(options) == 1:
        merged = {k: v for k, v in schema.items() if k != combinator}
        return resolve({**merged, **options[0]})
    kinds = {resolve(s)[0] for s in options}
    if kinds and kinds <= {"Int64", "Double", "Decimal"}:
        return ("Int64" if kinds == {"Int64"} else "Double"), schema
    if len(kinds) == 1 and not kinds & {"object", "array"}:
        (only,) = kinds
        return only, schema
    return "json", schema


def _resolve_mixed(types: list[Any]) -> str:
    """A list of several types: numbers widen to Double, scalars become String, else JSON."""
    if set(types) <= {"integer", "number"}:
        return "Double"
    if set(types) <= {"string", "integer", "number", "boolean"}:
        return "String"
    return "json"


def _resolve_type(kind: Any, schema: dict[str, Any]) -> str:
    """One JSON Schema type (with its format or multipleOf) as a kind."""
    if kind == "number":
        return "Decimal" if _decimal_multiple(schema) else "Double"
    if kind == "string":
        return "DateTime" if schema.get("format") in ("date-time", "date") else "String"
    if kind == "object":
        return "object" if schema.get("properties") else "json"
    return _SIMPLE_TYPES.get(kind, "json")


_SIMPLE_TYPES = {"integer": "Int64", "boolean": "Boolean", "array": "array"}


def _is_object_array(schema: dict[str, Any]) -> bool:
    items = schema.get("items")
    if not isinstance(items, dict):
        return False
    kind, _ = resolve(items)
    return kind == "object"


@dataclass(frozen=True)
class Shape:
    """How deep the mapping goes: nested objects flattened, arrays made child tables."""

    object_depth: int = 1  # levels of nested objects flattened into columns; deeper: JSON
    child_table_depth: int = 1  # levels of child tables; arrays of objects deeper: JSON
    # when set, only these arrays ("<stream>.<field>", "<stream>.<field>.<field>") become
    # child tables; every other array is a JSON string column
    child_tables: frozenset[str] | None = None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace local ``$ref``s (``#/$defs/X``, ``#/definitions/X``); a cycle becomes ``{}``."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(n, stack) for n in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            name = ref.rsplit("/", 1)[-1]
            if name in stack or name not in defs or len(stack) > MAX_DEPTH:
                return {}
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return walk({**defs[name], **rest}, (*stack, name))
        return {k: walk(v, stack) for k, v in node.items() if k not in ("$defs", "definitions")}

    if not defs and "$ref" not in json.dumps(schema):
        return schema
    inlined: dict[str, Any] = walk(schema, ())
    return inlined


def map_stream(
    stream: str,
    schema: dict[str, Any],
    key_properties: list[str] | None,
    used_table_names: set[str],
    *,
    type_overrides: dict[str, dict[str, str]] | None = None,
    shape: Shape | None = None,
    logger: logging.Logger | None = None,
) -> TableMap:
    """Build the root table (and its child tables) of a stream.

    ``used_table_names`` (lower-cased) keeps table names unique across the dataset;
    ``type_overrides`` maps table -> column -> Power BI data type (from the model file).
    """
    log = logger or logging.getLogger(__name__)
    overrides = type_overrides or {}
    name = unique_name(stream, used_table_names, table=True)
    root = _build_table(
        name,
        stream,
        (),
        inline_refs(schema),
        list(key_properties or []),
        None,
        used_table_names,
        log,
        shape or Shape(),
        0,
    )
    for table in root.walk():
        for col in table.columns:
            wanted = overrides.get(table.name, {}).get(col.name)
            if wanted:
                if wanted not in DATA_TYPES:
                    msg = f"model file: unknown data type {wanted!r} for {table.name}.{col.name}"
                    raise ValueError(msg)
                col.data_type = wanted
                col.json = False
    return root


def _build_table(
    name: str,
    stream: str,
    path: tuple[str, ...],
    schema: dict[str, Any],
    key_properties: list[str],
    parent: TableMap | None,
    used_tables: set[str],
    log: logging.Logger,
    shape: Shape,
    level: int,
) -> TableMap:
    table = TableMap(name=name, stream=stream, path=path, columns=[], key_properties=key_properties)
    table.parent = parent
    used: set[str] = set()
    leading: list[Column] = []
    if parent is not None:
        parent_col = next(c for c in parent.columns if c.name == parent.key_column)
        if parent_col.path == ("\x00key",):
            table.parent_column = unique_name(PARENT_KEY_COLUMN, used)
        else:
            table.parent_column = unique_name(parent_col.name, used)
        leading.append(Column(table.parent_column, parent_col.data_type, ("\x00parent",)))
        leading.append(Column(unique_name(INDEX_COLUMN, used), "Int64", ("\x00index",)))
    columns: list[Column] = []
    arrays: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    _collect(
        schema.get("properties", {}),
        (),
        columns,
        arrays if level < shape.child_table_depth else None,
        used,
        0,
        shape.object_depth,
    )
    if shape.child_tables is not None:
        prefix = ".".join((stream, *[p for t in _lineage(parent) for p in t.path]))
        for apath, _ in [
            a for a in arrays if f"{prefix}.{'.'.join(a[0])}" not in shape.child_tables
        ]:
            arrays.remove((apath, _))
            label = SEPARATOR.join(apath)
            columns.append(Column(unique_name(label, used), "String", apath, json=True))
    single_key = (
        parent is None
        and len(key_properties) == 1
        and any(c.path == (key_properties[0],) for c in columns)
    )
    if arrays and not single_key:
        # children need one column to refer to: the row's key (composite, hash or position)
        table.key_column = unique_name(KEY_COLUMN, used)
        leading.insert(0, Column(table.key_column, "String", ("\x00key",)))
    # key columns first so they survive a cut at 75 columns
    keyed = [c for c in columns if c.path and c.path[0] in key_properties and len(c.path) == 1]
    others = [c for c in columns if c not in keyed]
    keyed.sort(key=lambda c: key_properties.index(c.path[0]))
    # the record's own fields before those of nested objects, so a cut at 75 keeps them
    others.sort(key=lambda c: len(c.path))
    ordered = leading + keyed + others
    if len(ordered) > MAX_COLUMNS:
        keep = ordered[: MAX_COLUMNS - 1]
        table.overflow = ordered[MAX_COLUMNS - 1 :]
        table.overflow_column = unique_name(OVERFLOW_COLUMN, used)
        log.warning(
            "Stream %r, table %r has %d columns, over Power BI's %d: columns %s are carried "
            "as JSON in column %r",
            stream,
            name,
            len(ordered),
            MAX_COLUMNS,
            [c.name for c in table.overflow],
            table.overflow_column,
        )
        ordered = keep
    table.columns = ordered
    if single_key:
        table.key_column = next((c.name for c in ordered if c.path == (key_properties[0],)), None)
    for apath, aschema in arrays:
        child_name = unique_name(name + SEPARATOR + SEPARATOR.join(apath), used_tables, table=True)
        items = aschema["items"]
        _, item_schema = resolve(items)
        child = _build_table(
            child_name, stream, apath, item_schema, [], table, used_tables, log, shape, level + 1
        )
        table.children.append(child)
    return table


def _lineage(table: TableMap | None) -> list[TableMap]:
    """The ancestors of a table, root first, ending with ``table``."""
    chain: list[TableMap] = []
    while table is not None:
        chain.insert(0, table)
        table = table.parent
    return chain


def _collect(
    properties: dict[str, Any],
    prefix: tuple[str, ...],
    columns: list[Column],
    arrays: list[tuple[tuple[str, ...], dict[str, Any]]] | None,
    used: set[str],
    depth: int,
    max_depth: int,
) -> None:
    for prop, sub in properties.items():
        path = (*prefix, prop)
        kind, resolved = resolve(sub if isinstance(sub, dict) else {})
        label = SEPARATOR.join(path)
        if kind == "object" and depth < min(max_depth, MAX_DEPTH):
            _collect(resolved["properties"], path, columns, arrays, used, depth + 1, max_depth)
        elif kind == "array" and arrays is not None and depth == 0 and _is_object_array(resolved):
            arrays.append((path, resolved))
        elif kind in ("object", "array", "json"):
            columns.append(Column(unique_name(label, used), "String", path, json=True))
        else:
            columns.append(Column(unique_name(label, used), kind, path))


# ---------------------------------------------------------------- records -> rows


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys) used for rows, keys and hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _get(record: Any, path: tuple[str, ...]) -> Any:
    value = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def to_utc_iso(value: Any) -> str | None:
    """ISO-8601 UTC text for a date or date-time (naive values are taken as UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = dt.datetime.combine(dt.date.fromisoformat(text[:10]), dt.time())
            except ValueError:
                return None
            if len(text) > 10:
                return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


@dataclass
class ValuePolicy:
    """What to do with a value Power BI cannot hold: ``warn`` (fix it, log it) or ``fail``."""

    on_invalid: str = "warn"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    warnings: int = 0
    per_column_log_limit: int = 20
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def problem(self, table: TableMap, key: str, column: str, what: str) -> None:
        """Report (or refuse) a value that had to be changed."""
        msg = f"stream {table.stream!r} table {table.name!r} record {key} column {column!r}: {what}"
        if self.on_invalid == "fail":
            raise InvalidValueError(msg + " (on_invalid_value is 'fail')")
        self.warnings += 1
        seen = self._counts.get((table.name, column), 0) + 1
        self._counts[(table.name, column)] = seen
        if seen <= self.per_column_log_limit:
            self.logger.warning(msg)
        if seen == self.per_column_log_limit:
            self.logger.warning(
                "stream %r table %r column %r: %d values changed so far; further ones are "
                "counted, not logged one by one",
                table.stream,
                table.name,
                column,
                seen,
            )

    def summary(self) -> dict[tuple[str, str], int]:
        """Values changed per (table, column) in this run."""
        return dict(self._counts)


def convert(value: Any, col: Column, table: TableMap, key: str, policy: ValuePolicy) -> Any:
    """A record value as Power BI accepts it for ``col``."""
    if value is None:
        return None
    if col.json or col.data_type == "String":
        return _to_text(value, _Cell(col, table, key, policy))
    converter = _CONVERTERS.get(col.data_type)
    if converter is None:
        return value
    return converter(value, _Cell(col, table, key, policy))


@dataclass(frozen=True)
class _Cell:
    """Where a value goes, to report a problem with it."""

    col: Column
    table: TableMap
    key: str
    policy: ValuePolicy

    def problem(self, what: str) -> None:
        self.policy.problem(self.table, self.key, self.col.name, what)


def _to_text(value: Any, cell: _Cell) -> str:
    text = value if isinstance(value, str) and not cell.col.json else dumps(value)
    if len(text) > MAX_STRING:
        cell.problem(f"{len(text)} characters, truncated to {MAX_STRING}")
        text = text[:MAX_STRING]
    return text


def _to_int64(value: Any, cell: _Cell) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)) and value == int(value):
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            cell.problem(f"{value!r} is not an integer, sent as null")
            return None
    if not isinstance(value, int):
        cell.problem(f"{value!r} is not an integer, sent as null")
        return None
    if not INT64_MIN <= value <= INT64_MAX:
        cell.problem(f"{value} is outside Int64, sent as null")
        return None
    return value


def _to_number(value: Any, cell: _Cell) -> float | int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        cell.problem(f"{value!r} is not a number, sent as null")
        return None
    if math.isnan(number) or math.isinf(number):
        cell.problem(f"{value!r} is not finite, sent as null")
        return None
    if cell.col.data_type == "Decimal":
        return round(number, 4)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return number


def _to_boolean(value: Any, cell: _Cell) -> bool | None:
    if isinstance(value, bool):
        return value
    cell.problem(f"{value!r} is not a boolean, sent as null")
    return None


def _to_datetime(value: Any, cell: _Cell) -> str | None:
    moment = to_utc_iso(value)
    if moment is None:
        cell.problem(f"{value!r} is not a date-time, sent as null")
    return moment


_CONVERTERS: dict[str, Any] = {
    "Int64": _to_int64,
    "Double": _to_number,
    "Decimal": _to_number,
    "Boolean": _to_boolean,
    "DateTime": _to_datetime,
}


def record_key(table: TableMap, record: dict[str, Any], *, by_content: bool) -> str:
    """The store key of a root record: its key properties, or a hash of its content."""
    if table.key_properties and not by_content:
        return dumps([_get(record, (k,)) for k in table.key_properties])
    return "h:" + hashlib.sha256(dumps(record).encode()).hexdigest()


@dataclass
class Row:
    """A row bound for a Power BI table, with its store key and root record key."""

    table: str
    key: str
    data: dict[str, Any]


def build_rows(
    root: TableMap,
    record: dict[str, Any],
    key: str,
    policy: ValuePolicy,
) -> list[Row]:
    """Every row (root and children) one record produces."""
    out: list[Row] = []
    _rows(root, record, key, None, None, policy, out)
    return out


def _rows(
    table: TableMap,
    item: dict[str, Any],
    key: str,
    parent_value: Any,
    index: int | None,
    policy: ValuePolicy,
    out: list[Row],
) -> None:
    data: dict[str, Any] = {}
    for col in table.columns:
        if col.path == ("\x00parent",):
            data[col.name] = parent_value
        elif col.path == ("\x00index",):
            data[col.name] = index
        elif col.path == ("\x00key",):
            data[col.name] = key
        else:
            data[col.name] = convert(_get(item, col.path), col, table, key, policy)
    if table.overflow_column:
        extra = {c.name: _get(item, c.path) for c in table.overflow}
        extra = {k: v for k, v in extra.items() if v is not None}
        spill = Column(table.overflow_column, "String", (), json=True)
        data[table.overflow_column] = convert(extra, spill, table, key, policy) if extra else None
    out.append(Row(table.name, key, data))
    for child in table.children:
        items = _get(item, child.path)
        if not isinstance(items, list):
            continue
        pvalue = data.get(table.key_column) if table.key_column else key
        for i, sub in enumerate(items):
            if isinstance(sub, dict):
                _rows(child, sub, dumps([key, child.name, i]), pvalue, i, policy, out)

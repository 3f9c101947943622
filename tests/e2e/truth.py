"""Power BI's tables against the Xero sandbox's ground truth, organisation by organisation.

What each table should hold is derived from the tap's own stream classes (collection,
id field, parent and lines field of the line-item streams), so a new stream is compared
without touching this file. A row is compared column by column with its truth record:
`A__B` columns are the nested object's fields, JSON text columns the nested arrays,
child tables `<table>__<field>` the array items in order. Values are compared as Power BI
stores them: Microsoft JSON dates and ISO strings as instants (to 1/300 s), numbers to
four decimals, strings cut at 4,000 characters.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from tap_xero.child import XeroChildStream
from tap_xero.client import XeroStream
from tap_xero.streams import STREAM_TYPES

from tests.e2e.pipeline import Sandboxes

MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
SKIP_COLUMNS = {"_key", "_parent_key", "_index", "tenant_id"}
# Columns the project's stream maps add (meltano.yml): not Xero's, so not in the truth.
_PROJECT = yaml.safe_load((Path(__file__).resolve().parents[2] / "meltano.yml").read_text())
_MAPS = next(p for p in _PROJECT["plugins"]["loaders"] if p["name"] == "target-powerbi")["config"]
DERIVED_COLUMNS = {
    table: {column for column, expression in columns.items() if expression != "__NULL__"}
    for table, columns in _MAPS["stream_maps"].items()
}
MAX_STRING = 4000  # characters of a Power BI String value


def _instant(value: str) -> float | None:
    """Milliseconds since the epoch of a Microsoft JSON date or an ISO date-time."""
    found = MS_DATE.match(value)
    if found:
        return float(found.group(1))
    if ISO.match(value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp() * 1000
    return None


def differs(landed: Any, truth: Any) -> bool:
    """True when `landed` (Power BI's value) is not what `truth` (Xero's) becomes."""
    if landed is None or truth is None:
        return not (landed is None and truth in (None, "", [], {}))
    if isinstance(landed, str) and isinstance(truth, (list, dict)):
        if len(landed) == MAX_STRING:  # JSON text cut at Power BI's limit (with a warning)
            return False
        return differs(json.loads(landed), truth)
    if isinstance(landed, bool) or isinstance(truth, bool):
        return bool(landed) is not bool(truth) or type(landed) is not type(truth)
    if isinstance(landed, (int, float)) and isinstance(truth, (int, float)):
        return abs(float(landed) - float(truth)) > 0.0001 + 1e-9 * abs(float(truth))
    if isinstance(landed, str) and isinstance(truth, str):
        if landed == truth or (len(landed) == MAX_STRING and truth.startswith(landed)):
            return False
        a, b = _instant(landed), _instant(truth)
        return a is None or b is None or abs(a - b) > 4
    if isinstance(landed, list) and isinstance(truth, list):
        return len(landed) != len(truth) or any(map(differs, landed, truth))
    if isinstance(landed, dict) and isinstance(truth, dict):
        return any(differs(value, truth.get(key)) for key, value in landed.items())
    return True


def _lookup(record: dict[str, Any], column: str) -> Any:
    value: Any = record
    for part in column.split("__"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def row_problems(table: str, row: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """Differences between a Power BI row and its truth record, column by column.

    `_overflow` (the columns past Power BI's 75, as one JSON object) is opened up.
    """
    skip = SKIP_COLUMNS | DERIVED_COLUMNS.get(table, set())
    values = {c: v for c, v in row.items() if c not in skip and not c.startswith("_sdc")}
    overflow = values.pop("_overflow", None)
    if overflow:
        values.update(json.loads(overflow))
    return [
        f"{table} {row.get('_key') or row.get('_parent_key')} {column}: "
        f"{value!r} != {_lookup(truth, column)!r}"
        for column, value in values.items()
        if differs(value, _lookup(truth, column))
    ]


def expected(sandboxes: Sandboxes) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every tap table's rows by key, from the sandbox's truth: the current state."""
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
    cache: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}

    def records(tenant: str, stream: type[XeroStream]) -> list[dict[str, Any]]:
        token = (tenant, stream.path, stream.payments_only)
        if token not in cache:
            params = {"paymentsOnly": "true"} if stream.payments_only else {}
            cache[token] = sandboxes.truth(tenant, stream.path.strip("/"), **params)
        return cache[token]

    for tenant in sandboxes.tenants:
        for kind in STREAM_TYPES:
            if issubclass(kind, XeroChildStream):
                parent = kind.parent_type
                for record in records(tenant, parent):
                    for number, line in enumerate(record.get(kind.lines_field) or [], 1):
                        row = {**line, parent.id_field: record[parent.id_field]}
                        if kind.id_field is None:
                            row["LineNumber"] = number
                            key = (tenant, record[parent.id_field], number)
                        else:
                            key = (tenant, line[kind.id_field])
                        out[kind.name][key] = row
            elif issubclass(kind, XeroStream):
                for record in records(tenant, kind):
                    out[kind.name][(tenant, record[kind.id_field])] = record
    return out


def key_columns(stream: str) -> list[str]:
    kind = next(k for k in STREAM_TYPES if k.name == stream)
    if issubclass(kind, XeroChildStream):
        if kind.id_field is None:
            return ["tenant_id", kind.parent_type.id_field, "LineNumber"]
        return ["tenant_id", kind.id_field]
    assert issubclass(kind, XeroStream)
    return ["tenant_id", kind.id_field]


def compare(
    sandboxes: Sandboxes, tables: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, int], list[str]]:
    """Rows compared per table, and every difference (empty when Power BI equals the truth)."""
    problems: list[str] = []
    compared: dict[str, int] = {}
    want = expected(sandboxes)
    for stream, truth_rows in want.items():
        rows = tables.get(stream)
        if rows is None:
            problems.append(f"{stream}: no such table in Power BI")
            continue
        columns = key_columns(stream)
        landed = {tuple(row[c] for c in columns): row for row in rows}
        if len(landed) != len(rows):
            problems.append(f"{stream}: {len(rows) - len(landed)} duplicate keys")
        for tenant in sandboxes.tenants:
            mine = {k for k in landed if k[0] == tenant}
            theirs = {k for k in truth_rows if k[0] == tenant}
            if mine != theirs:
                problems.append(
                    f"{stream} in {tenant}: {len(mine - theirs)} rows not in Xero "
                    f"{sorted(mine - theirs)[:3]}, {len(theirs - mine)} missing "
                    f"{sorted(theirs - mine)[:3]}"
                )
        for key in landed.keys() & truth_rows.keys():
            problems.extend(row_problems(stream, landed[key], truth_rows[key]))
        compared[stream] = len(landed)
        problems.extend(_child_tables(stream, tables, landed, truth_rows, compared))
    return compared, problems


def _child_tables(
    stream: str,
    tables: dict[str, list[dict[str, Any]]],
    landed: dict[tuple[Any, ...], dict[str, Any]],
    truth_rows: dict[tuple[Any, ...], dict[str, Any]],
    compared: dict[str, int],
) -> list[str]:
    """Tables `<stream>__<field>`: each parent's items, in order, equal to the truth's."""
    problems: list[str] = []
    for name, rows in tables.items():
        if not name.startswith(f"{stream}__"):
            continue
        field = name.split("__", 1)[1]
        keys = {row.get("_key") or json.dumps(list(k), separators=(",", ":")): k for k, row in
                landed.items()}  # fmt: skip
        items: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: r["_index"]):
            items[keys.get(row["_parent_key"])].append(row)
        if None in items:
            problems.append(f"{name}: {len(items[None])} rows of no parent in the table")
        for key, record in truth_rows.items():
            want = record.get(field) or []
            got = items.get(key, [])
            if len(got) != len(want):
                problems.append(f"{name} {key}: {len(got)} rows, Xero has {len(want)}")
                continue
            for row, item in zip(got, want, strict=True):
                problems.extend(row_problems(name, row, item))
        compared[name] = len(rows)
    return problems

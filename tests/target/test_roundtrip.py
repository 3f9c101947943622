"""Round trip of the mapping, as a property: every value of a record is found again in its
Power BI row (a column, JSON text in a column, or `_overflow`), or a log line says why not.

Hypothesis generates wide, nested schemas with awkward property names and records for
them; each example runs the real target in this process against the Power BI sandbox.
The check does not reuse the mapping: it collects every leaf value of the record and
looks for it among the values of the row, with JSON text opened, whatever the names.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox.powerbi import PowerBISandbox
from target_powerbi.target import TargetPowerBI

# awkward names: punctuation Power BI refuses, case twins, unicode, long ones
NAME = st.one_of(
    st.sampled_from(["id", "ID", "Id", "a.b", "x[0]", "p/q", "a__b", "naïve", "名前", " s "]),
    st.text(min_size=1, max_size=120),
)
SCALAR_VALUES = {
    "integer": st.integers(min_value=-(2**53), max_value=2**53),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=64).filter(
        lambda f: abs(f) < 1e300
    ),
    "string": st.text(max_size=60).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    "boolean": st.booleans(),
}


@st.composite
def property_schema(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kinds = ["integer", "number", "string", "boolean", "array"] + (["object"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "object":
        names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
        return {
            "type": ["object", "null"],
            "properties": {n: draw(property_schema(depth + 1)) for n in names},
        }
    if kind == "array":
        return {"type": ["array", "null"], "items": {"type": "string"}}
    return {"type": [kind, "null"]}


def value_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema["type"][0]
    if kind == "object":
        fields = {n: value_for(s) for n, s in schema["properties"].items()}
        return st.one_of(st.none(), st.fixed_dictionaries(fields))
    if kind == "array":
        return st.one_of(st.none(), st.lists(SCALAR_VALUES["string"], max_size=3))
    return st.one_of(st.none(), SCALAR_VALUES[kind])


@st.composite
def stream(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    wide = draw(st.sampled_from([1, 40, 74, 75, 76, 90]))  # around Power BI's 75 columns
    names = draw(st.lists(NAME, min_size=wide, max_size=wide + 10, unique_by=str.lower))
    properties = {"_rid": {"type": "string"}}
    properties.update({n: draw(property_schema()) for n in names if n != "_rid"})
    records = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        record = {n: draw(value_for(s)) for n, s in properties.items() if n != "_rid"}
        records.append({"_rid": f"r{i}", **record})
    schema = {"type": "object", "properties": properties}
    return schema, records


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [] if value is None else [value]


def found_in(row: dict[str, Any]) -> list[Any]:
    """Every value of a row, with JSON text (JSON columns, `_overflow`) opened."""
    out: list[Any] = []
    for value in row.values():
        out.append(value)
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                out.extend(leaves(json.loads(value)))
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-300)
    return bool(a == b)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with PowerBISandbox() as running:
        yield running


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=stream())
def test_every_value_of_a_record_reaches_power_bi_or_a_log_line(
    sandbox: PowerBISandbox, tmp_path_factory: pytest.TempPathFactory, case: Any
) -> None:
    schema, records = case
    work: Path = tmp_path_factory.mktemp("roundtrip")
    name = f"rt{uuid.uuid4().hex[:8]}"
    config = {
        **sandbox.config,
        "dataset_name": name,
        "store_path": str(work / "store.sqlite3"),
        "child_table_depth": 0,
    }
    lines = [{"type": "SCHEMA", "stream": "wide", "key_properties": ["_rid"], "schema": schema}]
    lines += [{"type": "RECORD", "stream": "wide", "record": r} for r in records]
    log = Lines()
    logging.getLogger().addHandler(log)
    try:
        target = TargetPowerBI(config=config)
        target.logger.addHandler(log)
        target.listen(io.StringIO("".join(json.dumps(m) + "\n" for m in lines)))
    finally:
        logging.getLogger().removeHandler(log)
    http = requests.Session()
    http.trust_env = False
    http.verify = sandbox.ca_bundle
    datasets = http.get(f"{sandbox.url}/_sandbox/datasets", timeout=30).json()["datasets"]
    (dataset,) = [d for d in datasets if d["name"] == name]
    url = f"{sandbox.url}/_sandbox/datasets/{dataset['id']}/tables/wide/rows"
    rows = {r["_rid"]: r for r in http.get(url, timeout=30).json()["rows"]}
    said = "\n".join(log.lines)
    for record in records:
        row = rows[record["_rid"]]
        bag = found_in(row)
        for value in leaves(record):
            if any(same(value, got) for got in bag):
                continue
            # not found as sent: a log line must name the record and say why
            assert f'["{record["_rid"]}"]' in said, (value, row)

"""Derive request bodies from Microsoft's Power BI Swagger file (push dataset definitions).

Run `python tests/sandbox/powerbi/swagger_cases.py /path/to/swagger.json` to regenerate
`swagger_cases.json` (derived cases only; the Swagger file itself is never copied).
Each case is `valid` (the Swagger file allows it: the sandbox must accept it), `invalid` (the
Swagger file forbids it: the sandbox must refuse it with 400) or `strict` (the Swagger file
allows it but the sandbox refuses it on purpose; docs/sandbox-powerbi.md says why).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).with_name("swagger_cases.json")
REFERENCE = Path("/work/shared/reference/powerbi/swagger.json")
DATA_TYPES = ["Int64", "Double", "Boolean", "DateTime", "String", "Decimal"]  # FACTS.md
PUSH_MODES = {"Push", "PushStreaming"}


def python_pattern(pattern: str) -> re.Pattern[str]:
    """Swagger writes astral ranges as \\u10000; Python's re needs \\U00010000."""
    fixed = re.sub(
        r"\\u(1[0-9A-Fa-f]{4,5})(?=[-\]])", lambda m: "\\U" + m.group(1).zfill(8), pattern
    )
    return re.compile(fixed)


def _example(definitions: dict[str, Any], name: str, prop: str, spec: dict[str, Any]) -> Any:
    """A value of the property's declared type that also satisfies its pattern and enum."""
    if "enum" in spec:
        return spec["enum"][0]
    kind = spec.get("type")
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if prop == "dataType":
        return "Int64"
    if prop == "expression":
        return "COUNTROWS(T1)"
    if prop in ("sortByColumn", "fromColumn", "toColumn"):
        return "c1"
    if prop in ("fromTable",):
        return "T1"
    if prop in ("toTable",):
        return "T2"
    value = {"Table": "T1", "Column": "c1", "Measure": "m1", "Relationship": "r1"}.get(
        name, "Sandbox dataset"
    )
    if prop == "name" and "pattern" in spec:
        assert python_pattern(spec["pattern"]).match(value), (name, value)
    return value if prop == "name" else "x"


def derive_cases(swagger: dict[str, Any]) -> list[dict[str, Any]]:
    definitions = swagger["definitions"]
    create_op = swagger["paths"]["/v1.0/myorg/groups/{groupId}/datasets"]["post"]
    retention_enum = next(
        p["enum"] for p in create_op["parameters"] if p["name"] == "defaultRetentionPolicy"
    )
    table_def, column_def = definitions["Table"], definitions["Column"]
    measure_def, rel_def = definitions["Measure"], definitions["Relationship"]
    dataset_def = definitions["CreateDatasetRequest"]

    def minimal(name: str) -> dict[str, Any]:
        spec = definitions[name]
        return {
            prop: _example(definitions, name, prop, spec["properties"][prop])
            for prop in spec.get("required", [])
        }

    def base_dataset() -> dict[str, Any]:
        t1 = minimal("Table")
        t1["columns"] = [minimal("Column")]
        t2 = dict(t1, name="T2")
        t2["columns"] = [minimal("Column")]
        body = minimal("CreateDatasetRequest")
        body["tables"] = [t1, t2]
        return body

    cases: list[dict[str, Any]] = []

    def add(kind: str, why: str, body: Any, operation: str = "create", **extra: Any) -> None:
        cases.append({"kind": kind, "why": why, "operation": operation, "body": body, **extra})

    add("valid", "required properties only", base_dataset())
    for policy in retention_enum:
        add("valid", f"defaultRetentionPolicy={policy}", base_dataset(), query=policy)
    add("invalid", "defaultRetentionPolicy outside its enum", base_dataset(), query="forever")

    for mode in dataset_def["properties"]["defaultMode"]["enum"]:
        body = dict(base_dataset(), defaultMode=mode)
        if mode in PUSH_MODES:
            add("valid", f"defaultMode={mode}", body)
        else:
            add("strict", f"defaultMode={mode} is not a push dataset", body)
    add("invalid", "defaultMode outside its enum", dict(base_dataset(), defaultMode="Nope"))

    # Every optional property of every definition, with a value of its declared type.
    full = base_dataset()
    table = full["tables"][0]
    for prop, spec in table_def["properties"].items():
        if prop not in table and prop not in ("rows", "source"):
            table[prop] = _example(definitions, "Table", prop, spec)
    column = table["columns"][0]
    for prop, spec in column_def["properties"].items():
        if prop not in column and prop not in ("dataCategory", "summarizeBy", "formatString"):
            column[prop] = _example(definitions, "Column", prop, spec)
    table["measures"] = [
        {
            prop: _example(definitions, "Measure", prop, spec)
            for prop, spec in measure_def["properties"].items()
        }
    ]
    add("valid", "every optional table, column and measure property", full)
    for behavior in rel_def["properties"]["crossFilteringBehavior"]["enum"]:
        body = base_dataset()
        rel = minimal("Relationship")
        rel["crossFilteringBehavior"] = behavior
        body["relationships"] = [rel]
        add("valid", f"relationship crossFilteringBehavior={behavior}", body)
    for data_type in DATA_TYPES:
        body = base_dataset()
        body["tables"][0]["columns"] = [{"name": "c1", "dataType": data_type}]
        add("valid", f"column dataType {data_type}", body)

    # Missing required properties, definition by definition.
    def located(name: str) -> list[tuple[str, Any]]:
        body = base_dataset()
        if name == "CreateDatasetRequest":
            return [("dataset", body)]
        if name == "Table":
            return [("table", body)]
        if name == "Column":
            return [("column", body)]
        if name == "Measure":
            body["tables"][0]["measures"] = [minimal("Measure")]
            return [("measure", body)]
        body["relationships"] = [minimal("Relationship")]
        return [("relationship", body)]

    def target(body: dict[str, Any], where: str) -> dict[str, Any]:
        if where == "dataset":
            return body
        table_obj: dict[str, Any] = body["tables"][0]
        if where == "table":
            return table_obj
        if where == "column":
            return dict(table_obj["columns"][0])
        if where == "measure":
            return dict(table_obj["measures"][0])
        return dict(body["relationships"][0])

    def put_back(body: dict[str, Any], where: str, obj: dict[str, Any]) -> None:
        if where == "column":
            body["tables"][0]["columns"][0] = obj
        elif where == "measure":
            body["tables"][0]["measures"][0] = obj
        elif where == "relationship":
            body["relationships"][0] = obj

    for name in ("CreateDatasetRequest", "Table", "Column", "Measure", "Relationship"):
        spec = definitions[name]
        for prop in spec.get("required", []):
            for where, body in located(name):
                body = copy.deepcopy(body)
                obj = target(body, where)
                del obj[prop]
                put_back(body, where, obj)
                add("invalid", f"{name} without required '{prop}'", body)
        for prop, prop_spec in spec["properties"].items():
            wrong = {"string": 42, "boolean": "yes", "array": {"not": "a list"}}.get(
                prop_spec.get("type", "")
            )
            if wrong is None:
                continue
            for where, body in located(name):
                body = copy.deepcopy(body)
                obj = target(body, where)
                obj[prop] = wrong
                put_back(body, where, obj)
                add("invalid", f"{name}.{prop} is not a {prop_spec['type']}", body)

    # Names outside the Swagger patterns.
    table_pattern = python_pattern(table_def["properties"]["name"]["pattern"])
    for bad in ("", "a" * 101, "Sales.2024", "a/b", "[T]", "x{y}", "Q?"):
        assert not table_pattern.match(bad), bad
        body = base_dataset()
        body["tables"][0]["name"] = bad
        add("invalid", f"table name {bad[:20]!r} outside the Swagger pattern", body)
        body = base_dataset()
        rel = minimal("Relationship")
        rel["name"] = bad
        body["relationships"] = [rel]
        add("invalid", f"relationship name {bad[:20]!r} outside the Swagger pattern", body)
    column_pattern = python_pattern(column_def["properties"]["name"]["pattern"])
    for bad in ("", "a\x01b"):
        assert not column_pattern.match(bad), bad
        body = base_dataset()
        body["tables"][0]["columns"][0]["name"] = bad
        add("invalid", f"column name {bad!r} outside the Swagger pattern", body)
    longest = "T" * 100
    assert table_pattern.match(longest)
    body = base_dataset()
    body["tables"][0]["name"] = longest
    add("valid", "table name of exactly 100 characters", body)

    # POST rows (PostRowsRequest) and PUT table (Table) against the base dataset's table T1.
    rows_def = definitions["PostRowsRequest"]
    assert rows_def["properties"]["rows"]["items"]["type"] == "object"
    add("valid", "rows: array of objects", {"rows": [{"c1": 1}]}, "post_rows")
    add("valid", "rows: empty array", {"rows": []}, "post_rows")
    add("invalid", "rows is not an array", {"rows": {"c1": 1}}, "post_rows")
    add("invalid", "rows items are not objects", {"rows": [1, 2]}, "post_rows")
    add("strict", "rows omitted (no required property)", {}, "post_rows")
    put_body = minimal("Table")
    put_body["columns"] = [minimal("Column"), {"name": "c2", "dataType": "String"}]
    add("valid", "PUT the same table with one more column", put_body, "put_table")
    put_missing = dict(put_body)
    del put_missing["columns"]
    add("invalid", "PUT a Table without required 'columns'", put_missing, "put_table")
    return cases


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else REFERENCE
    cases = derive_cases(json.loads(source.read_text()))
    FIXTURE.write_text(json.dumps(cases, indent=1, ensure_ascii=True) + "\n")
    sys.stdout.write(f"{len(cases)} cases written to {FIXTURE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

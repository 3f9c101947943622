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


LOCATIONS = {
    "CreateDatasetRequest": "dataset",
    "Table": "table",
    "Column": "column",
    "Measure": "measure",
    "Relationship": "relationship",
}


class CaseDeriver:
    """Cases derived section by section from the Swagger file's push dataset definitions."""

    def __init__(self, swagger: dict[str, Any]) -> None:
        self.swagger = swagger
        self.definitions: dict[str, Any] = swagger["definitions"]
        self.cases: list[dict[str, Any]] = []

    def minimal(self, name: str) -> dict[str, Any]:
        spec = self.definitions[name]
        return {
            prop: _example(self.definitions, name, prop, spec["properties"][prop])
            for prop in spec.get("required", [])
        }

    def base_dataset(self) -> dict[str, Any]:
        t1 = self.minimal("Table")
        t1["columns"] = [self.minimal("Column")]
        t2 = dict(t1, name="T2")
        t2["columns"] = [self.minimal("Column")]
        body = self.minimal("CreateDatasetRequest")
        body["tables"] = [t1, t2]
        return body

    def add(self, kind: str, why: str, body: Any, operation: str = "create", **extra: Any) -> None:
        self.cases.append({"kind": kind, "why": why, "operation": operation, "body": body, **extra})

    def derive(self) -> list[dict[str, Any]]:
        self.retention_and_modes()
        self.optional_properties()
        for name in LOCATIONS:
            self.missing_required(name)
            self.wrong_types(name)
        self.names()
        self.rows_and_put()
        return self.cases

    def retention_and_modes(self) -> None:
        create_op = self.swagger["paths"]["/v1.0/myorg/groups/{groupId}/datasets"]["post"]
        retention_enum = next(
            p["enum"] for p in create_op["parameters"] if p["name"] == "defaultRetentionPolicy"
        )
        self.add("valid", "required properties only", self.base_dataset())
        for policy in retention_enum:
            self.add("valid", f"defaultRetentionPolicy={policy}", self.base_dataset(), query=policy)
        self.add(
            "invalid",
            "defaultRetentionPolicy outside its enum",
            self.base_dataset(),
            query="forever",
        )
        dataset_def = self.definitions["CreateDatasetRequest"]
        for mode in dataset_def["properties"]["defaultMode"]["enum"]:
            body = dict(self.base_dataset(), defaultMode=mode)
            if mode in PUSH_MODES:
                self.add("valid", f"defaultMode={mode}", body)
            else:
                self.add("strict", f"defaultMode={mode} is not a push dataset", body)
        self.add(
            "invalid", "defaultMode outside its enum", dict(self.base_dataset(), defaultMode="Nope")
        )

    def optional_properties(self) -> None:
        """Every optional property of every definition, with a value of its declared type."""
        definitions = self.definitions
        full = self.base_dataset()
        table = full["tables"][0]
        for prop, spec in definitions["Table"]["properties"].items():
            if prop not in table and prop not in ("rows", "source"):
                table[prop] = _example(definitions, "Table", prop, spec)
        column = table["columns"][0]
        for prop, spec in definitions["Column"]["properties"].items():
            if prop not in column and prop not in ("dataCategory", "summarizeBy", "formatString"):
                column[prop] = _example(definitions, "Column", prop, spec)
        table["measures"] = [
            {
                prop: _example(definitions, "Measure", prop, spec)
                for prop, spec in definitions["Measure"]["properties"].items()
            }
        ]
        self.add("valid", "every optional table, column and measure property", full)
        rel_def = definitions["Relationship"]
        for behavior in rel_def["properties"]["crossFilteringBehavior"]["enum"]:
            body = self.base_dataset()
            rel = self.minimal("Relationship")
            rel["crossFilteringBehavior"] = behavior
            body["relationships"] = [rel]
            self.add("valid", f"relationship crossFilteringBehavior={behavior}", body)
        for data_type in DATA_TYPES:
            body = self.base_dataset()
            body["tables"][0]["columns"] = [{"name": "c1", "dataType": data_type}]
            self.add("valid", f"column dataType {data_type}", body)

    def located(self, name: str) -> dict[str, Any]:
        """A base dataset that holds one object of definition `name`."""
        body = self.base_dataset()
        if name == "Measure":
            body["tables"][0]["measures"] = [self.minimal("Measure")]
        elif name == "Relationship":
            body["relationships"] = [self.minimal("Relationship")]
        return body

    def changed(self, name: str, change: Any) -> dict[str, Any]:
        """A copy of `located(name)` whose object of definition `name` went through `change`."""
        body = copy.deepcopy(self.located(name))
        where = LOCATIONS[name]
        obj = _target(body, where)
        change(obj)
        _put_back(body, where, obj)
        return body

    def missing_required(self, name: str) -> None:
        for prop in self.definitions[name].get("required", []):
            body = self.changed(name, lambda obj, prop=prop: obj.pop(prop))
            self.add("invalid", f"{name} without required '{prop}'", body)

    def wrong_types(self, name: str) -> None:
        for prop, prop_spec in self.definitions[name]["properties"].items():
            wrong = {"string": 42, "boolean": "yes", "array": {"not": "a list"}}.get(
                prop_spec.get("type", "")
            )
            if wrong is None:
                continue
            body = self.changed(name, lambda obj, prop=prop, wrong=wrong: obj.update({prop: wrong}))
            self.add("invalid", f"{name}.{prop} is not a {prop_spec['type']}", body)

    def names(self) -> None:
        """Names outside the Swagger patterns, and the longest name inside."""
        definitions = self.definitions
        table_pattern = python_pattern(definitions["Table"]["properties"]["name"]["pattern"])
        for bad in ("", "a" * 101, "Sales.2024", "a/b", "[T]", "x{y}", "Q?"):
            assert not table_pattern.match(bad), bad
            body = self.base_dataset()
            body["tables"][0]["name"] = bad
            self.add("invalid", f"table name {bad[:20]!r} outside the Swagger pattern", body)
            body = self.base_dataset()
            rel = self.minimal("Relationship")
            rel["name"] = bad
            body["relationships"] = [rel]
            self.add("invalid", f"relationship name {bad[:20]!r} outside the Swagger pattern", body)
        column_pattern = python_pattern(definitions["Column"]["properties"]["name"]["pattern"])
        for bad in ("", "a\x01b"):
            assert not column_pattern.match(bad), bad
            body = self.base_dataset()
            body["tables"][0]["columns"][0]["name"] = bad
            self.add("invalid", f"column name {bad!r} outside the Swagger pattern", body)
        longest = "T" * 100
        assert table_pattern.match(longest)
        body = self.base_dataset()
        body["tables"][0]["name"] = longest
        self.add("valid", "table name of exactly 100 characters", body)

    def rows_and_put(self) -> None:
        """POST rows (PostRowsRequest) and PUT table (Table) against the base dataset's T1."""
        rows_def = self.definitions["PostRowsRequest"]
        assert rows_def["properties"]["rows"]["items"]["type"] == "object"
        self.add("valid", "rows: array of objects", {"rows": [{"c1": 1}]}, "post_rows")
        self.add("valid", "rows: empty array", {"rows": []}, "post_rows")
        self.add("invalid", "rows is not an array", {"rows": {"c1": 1}}, "post_rows")
        self.add("invalid", "rows items are not objects", {"rows": [1, 2]}, "post_rows")
        self.add("strict", "rows omitted (no required property)", {}, "post_rows")
        put_body = self.minimal("Table")
        put_body["columns"] = [self.minimal("Column"), {"name": "c2", "dataType": "String"}]
        self.add("valid", "PUT the same table with one more column", put_body, "put_table")
        put_missing = dict(put_body)
        del put_missing["columns"]
        self.add("invalid", "PUT a Table without required 'columns'", put_missing, "put_table")


def _target(body: dict[str, Any], where: str) -> dict[str, Any]:
    """The object at `where` (a copy, except the dataset and the table)."""
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


def _put_back(body: dict[str, Any], where: str, obj: dict[str, Any]) -> None:
    if where == "column":
        body["tables"][0]["columns"][0] = obj
    elif where == "measure":
        body["tables"][0]["measures"][0] = obj
    elif where == "relationship":
        body["relationships"][0] = obj


def derive_cases(swagger: dict[str, Any]) -> list[dict[str, Any]]:
    return CaseDeriver(swagger).derive()


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else REFERENCE
    cases = derive_cases(json.loads(source.read_text()))
    FIXTURE.write_text(json.dumps(cases, indent=1, ensure_ascii=True) + "\n")
    sys.stdout.write(f"{len(cases)} cases written to {FIXTURE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

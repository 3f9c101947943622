"""A semantic model's TMDL definition, read structurally and checked against the mirrored tables.

TMDL (Tabular Model Definition Language) is indentation based: an object line (``table
Sales``, ``measure 'Sales Amount' = SUM(...)``, ``partition X = entity``) declares a TOM
object, lines one tab deeper are its properties (``dataType: string``, a bare
``isHidden``) and child objects, and a multi-line expression after ``=`` is indented one
level deeper than the properties (or fenced with triple backticks). Names with spaces or
``.,=:'`` are single-quoted, a quote doubled. The sandbox reads the structure only (no DAX,
no M): enough to see the tables, columns, measures, partitions, relationships and shared
expressions, and to refuse what Direct Lake cannot bind. Sources in docs/sandbox-fabric.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

_PROPERTY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*):\s?(.*)$")
_KEYWORD = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?=\s|=|$)")
SQL_DATABASE = re.compile(r'Sql\.Database\(\s*"((?:[^"]|"")*)"\s*,\s*"((?:[^"]|"")*)"\s*\)')
FENCE = "```"


class TmdlError(ValueError):
    """The definition does not read as TMDL, or does not bind; the message says where."""


@dataclass
class Node:
    kind: str
    name: str
    expression: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def child(self, kind: str) -> Node | None:
        return next((c for c in self.children if c.kind == kind), None)

    def of(self, kind: str) -> list[Node]:
        return [c for c in self.children if c.kind == kind]


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip("\t"))


def _name(text: str, where: str, *, stop: str = r"\s=") -> tuple[str, str]:
    """A (possibly quoted) name at the start of `text`, and the rest."""
    text = text.lstrip(" ")
    if not text.startswith("'"):
        match = re.match(rf"^([^{stop}]*)(.*)$", text, re.DOTALL)
        assert match is not None
        return match.group(1), match.group(2)
    i, out = 1, []
    while i < len(text):
        if text[i] == "'":
            if text[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1 :]
        out.append(text[i])
        i += 1
    msg = f"{where}: unterminated quoted name"
    raise TmdlError(msg)


def reference(text: str, where: str) -> tuple[str, str]:
    """``table.column`` (either part possibly quoted) -> (table, column)."""
    table, rest = _name(text.strip(), where, stop=r"\s=.")
    if not rest.startswith("."):
        msg = f"{where}: {text.strip()!r} is not a table.column reference"
        raise TmdlError(msg)
    column, rest = _name(rest[1:], where)
    if rest.strip() or not table or not column:
        msg = f"{where}: {text.strip()!r} is not a table.column reference"
        raise TmdlError(msg)
    return table, column


class _Reader:
    """The lines of one file and the position in them."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.path = path
        self.i = 0

    def expression(self, value: str, depth: int, where: str) -> str:
        """The expression after ``=``: the rest of the line, a fenced block, or the lines
        indented one level deeper than the object's properties."""
        if value == FENCE:
            out: list[str] = []
            while self.i < len(self.lines):
                line = self.lines[self.i]
                self.i += 1
                if line.strip() == FENCE:
                    return "\n".join(out).strip()
                out.append(line.strip())
            msg = f"{where}: ``` not closed"
            raise TmdlError(msg)
        if value:
            return value
        block = []
        while self.i < len(self.lines) and (
            not self.lines[self.i].strip() or _depth(self.lines[self.i]) >= depth + 2
        ):
            block.append(self.lines[self.i].strip())
            self.i += 1
        if not "".join(block):
            msg = f"{where}: '=' with no expression"
            raise TmdlError(msg)
        return "\n".join(block).strip()

    def has_children(self, depth: int) -> bool:
        i = self.i
        while i < len(self.lines) and not self.lines[i].strip():
            i += 1
        return i < len(self.lines) and _depth(self.lines[i]) > depth


def _object(reader: _Reader, body: str, depth: int, where: str) -> Node:
    """An object line: ``kind [name] [= expression]`` (``ref table X`` kept as a ref)."""
    keyword = _KEYWORD.match(body)
    if keyword is None:
        msg = f"{where}: {body[:40]!r} is neither an object nor a property"
        raise TmdlError(msg)
    kind = keyword.group(1)
    rest = body[len(kind) :]
    if kind == "ref":  # ref table X: an ordering hint of model.tmdl
        inner = _KEYWORD.match(rest.strip())
        kind = f"ref {inner.group(1)}" if inner else "ref"
        rest = rest.strip()[len(inner.group(1)) :] if inner else rest
    name = ""
    if rest.strip() and not rest.lstrip().startswith("="):
        name, rest = _name(rest, where)
    node = Node(kind=kind, name=name)
    rest = rest.strip()
    if rest.startswith("="):
        node.expression = reader.expression(rest[1:].strip(), depth, where)
    elif rest:
        msg = f"{where}: unexpected {rest[:40]!r} after the name"
        raise TmdlError(msg)
    return node


def parse(text: str, path: str) -> list[Node]:
    """The objects of one TMDL file (top level), their properties and children."""
    reader = _Reader(text, path)
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []
    while reader.i < len(reader.lines):
        line = reader.lines[reader.i]
        reader.i += 1
        if not line.strip():
            continue
        where = f"{path} line {reader.i}"
        depth = _depth(line)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        if line.startswith(" ") or (parent is None and depth > 0):
            msg = f"{where}: indented with spaces, or outside of any object"
            raise TmdlError(msg)
        if parent is not None and depth > stack[-1][0] + 1:
            msg = f"{where}: indented too deep"
            raise TmdlError(msg)
        body = line.strip()
        prop = _PROPERTY.match(body)
        if prop is not None and parent is not None:
            parent.properties[prop.group(1)] = prop.group(2).strip()
            continue
        node = _object(reader, body, depth, where)
        if parent is None:
            roots.append(node)
        elif not node.name and node.expression is None and not reader.has_children(depth):
            parent.properties[node.kind] = "true"  # a bare flag: isHidden, isKey...
            continue
        else:
            parent.children.append(node)
        stack.append((depth, node))
    return roots


# ---------------------------------------------------------------- the model


@dataclass
class SemanticModel:
    """What the sandbox reads of a TMDL definition."""

    compatibility_level: int | None = None
    tables: dict[str, Node] = field(default_factory=dict)
    relationships: list[Node] = field(default_factory=list)
    expressions: dict[str, Node] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        tables: dict[str, Any] = {}
        for name, table in self.tables.items():
            partition = table.child("partition")
            source = partition.child("source") if partition else None
            tables[name] = {
                "mode": partition.properties.get("mode") if partition else None,
                "entityName": source.properties.get("entityName") if source else None,
                "schemaName": source.properties.get("schemaName") if source else None,
                "expressionSource": source.properties.get("expressionSource") if source else None,
                "columns": {c.name: dict(c.properties) for c in table.of("column")},
                "measures": {
                    m.name: {"expression": m.expression, **m.properties}
                    for m in table.of("measure")
                },
            }
        return {
            "compatibilityLevel": self.compatibility_level,
            "tables": tables,
            "relationships": [{"name": r.name, **r.properties} for r in self.relationships],
            "expressions": {n: e.expression for n, e in self.expressions.items()},
        }


def read_model(parts: Mapping[str, bytes]) -> SemanticModel:
    """The TMDL parts (``definition/...``) read into one model; TmdlError if they do not read."""
    model = SemanticModel()
    for path in sorted(parts):
        if not path.startswith("definition/") or not path.endswith(".tmdl"):
            continue
        try:
            text = parts[path].decode("utf-8")
        except UnicodeDecodeError:
            msg = f"{path}: not UTF-8 text"
            raise TmdlError(msg) from None
        for node in parse(text, path):
            _add(model, node, path)
    for rel in model.relationships:
        for end in ("fromColumn", "toColumn"):
            if end not in rel.properties:
                msg = f"relationship {rel.name}: no {end}"
                raise TmdlError(msg)
            table, column = reference(rel.properties[end], f"relationship {rel.name}")
            found = model.tables.get(table)
            if found is None or column not in {c.name for c in found.of("column")}:
                msg = (
                    f"relationship {rel.name}: {end} {table}.{column} is not a column of the model"
                )
                raise TmdlError(msg)
    return model


def _add(model: SemanticModel, node: Node, path: str) -> None:
    if node.kind == "database":
        level = node.properties.get("compatibilityLevel")
        model.compatibility_level = int(level) if level and level.isdigit() else None
    elif node.kind == "table":
        if node.name in model.tables:
            msg = f"{path}: table {node.name} defined twice"
            raise TmdlError(msg)
        model.tables[node.name] = node
    elif node.kind == "relationship":
        model.relationships.append(node)
    elif node.kind == "expression":
        model.expressions[node.name] = node


# ---------------------------------------------------------------- Direct Lake binding

COMPATIBLE: dict[str, Callable[[pa.DataType], bool]] = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "int64": pa.types.is_integer,
    "double": pa.types.is_floating,
    "decimal": pa.types.is_decimal,
    "dateTime": lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t),
    "boolean": pa.types.is_boolean,
    "binary": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
}
DIRECT_LAKE_LEVEL = 1604


def sql_endpoint_of(model: SemanticModel, expression: str) -> str:
    """The SQL analytics endpoint id a ``Sql.Database(host, id)`` expression names."""
    found = model.expressions.get(expression)
    if found is None or not found.expression:
        msg = f"expressionSource {expression} is not an expression of the model"
        raise TmdlError(msg)
    match = SQL_DATABASE.search(found.expression)
    if match is None:
        msg = (
            f"expression {expression} is not Sql.Database(<SQL analytics endpoint>, <id>): the "
            "sandbox binds Direct Lake on SQL only"
        )
        raise TmdlError(msg)
    return match.group(2)


def check_direct_lake(
    model: SemanticModel,
    tables_of: Callable[[str], Mapping[tuple[str, str], Mapping[str, pa.DataType]] | None],
) -> None:
    """Every Direct Lake partition's entity is a replicated table of the mirrored database its
    expression names, and every column's sourceColumn is there with a compatible type.

    ``tables_of(sql endpoint id)``: that database's tables, (schema, name) -> Delta types;
    None for an unknown endpoint.
    """
    for name, table in model.tables.items():
        partition = table.child("partition")
        if partition is None or partition.properties.get("mode") != "directLake":
            continue
        if model.compatibility_level is not None and model.compatibility_level < DIRECT_LAKE_LEVEL:
            msg = f"table {name}: Direct Lake needs compatibilityLevel {DIRECT_LAKE_LEVEL} or above"
            raise TmdlError(msg)
        source = partition.child("source")
        entity = source.properties.get("entityName") if source else None
        if (
            source is None
            or not entity
            or partition.name == ""
            or "expressionSource" not in source.properties
        ):
            msg = f"table {name}: a Direct Lake partition needs entityName and expressionSource"
            raise TmdlError(msg)
        endpoint = sql_endpoint_of(model, source.properties["expressionSource"])
        tables = tables_of(endpoint)
        if tables is None:
            msg = (
                f"table {name}: no mirrored database of this workspace has SQL endpoint {endpoint}"
            )
            raise TmdlError(msg)
        schema = source.properties.get("schemaName") or "dbo"
        delta = tables.get((schema, entity))
        if delta is None:
            msg = f"table {name}: entity {schema}.{entity} is not a table of the mirrored database"
            raise TmdlError(msg)
        for column in table.of("column"):
            _check_column(name, column, delta)


def _check_column(table: str, column: Node, delta: Mapping[str, pa.DataType]) -> None:
    source = column.properties.get("sourceColumn")
    if source is None:
        return
    if source not in delta:
        msg = (
            f"table {table}: column {column.name}: sourceColumn {source} is not in the Delta table"
        )
        raise TmdlError(msg)
    wanted = column.properties.get("dataType", "string")
    check = COMPATIBLE.get(wanted)
    if check is None or not check(delta[source]):
        msg = (
            f"table {table}: column {column.name} is dataType {wanted}, the Delta column "
            f"{source} is {delta[source]}"
        )
        raise TmdlError(msg)

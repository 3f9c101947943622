"""The Xero model as a Direct Lake semantic model over the mirrored tables (destination fabric).

The model file (`target_powerbi.model`) says the relationships, measures and column types;
the mirrored database says which tables exist and the types of their columns (the Parquet
types the destination landed, which the replicated Delta tables keep). From both, this
module writes the model's TMDL definition (Fabric's "SemanticModel definition": the parts
``definition.pbism`` and ``definition/*.tmdl``) and deploys it through the Fabric REST API:
created when absent, ``updateDefinition`` when its digest changed, nothing when unchanged.

Direct Lake on SQL: one shared expression, ``DatabaseQuery``, is ``Sql.Database(<SQL
analytics endpoint>, <endpoint id>)`` of the mirrored database, and each table has one
``entity`` partition in ``mode: directLake`` naming its ``entityName`` and ``schemaName``
(``dbo``, the open mirroring default schema) with ``expressionSource: DatabaseQuery``.

Deploying is best effort, as for the report (`target_powerbi.report`): the data load never
fails because of the model. A failure is one warning line; the digest is stored only after
a deployment succeeded, so the next run deploys again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target_powerbi.model import Model

if TYPE_CHECKING:
    import requests

    from target_powerbi.destinations.fabric import FabricRest
    from target_powerbi.destinations.landed import Landed

SCHEMA = "dbo"
EXPRESSION = "DatabaseQuery"
# Direct Lake needs compatibility level 1604 or above (ModeType.DirectLake).
COMPATIBILITY_LEVEL = 1604
PBISM_SCHEMA = (
    "https://developer.microsoft.com/json-schemas/fabric/item/semanticModel/"
    "definitionProperties/1.0.0/schema.json"
)
# The landed Parquet type (as `parquet.arrow_type_name` records it) -> TMDL dataType.
TMDL_TYPES = (
    ("int", "int64"),
    ("double", "double"),
    ("float", "double"),
    ("decimal", "decimal"),
    ("bool", "boolean"),
    ("timestamp", "dateTime"),
    ("date", "dateTime"),
    ("string", "string"),
    ("large_string", "string"),
)
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE_REF = re.compile(r"(?:'((?:[^']|'')+)'|\b([A-Za-z_][A-Za-z0-9_]*))\[")
_MEASURE_REF = re.compile(r"(?<![\w'\]])\[([^\]]+)\]")
_FILTERING = {"BothDirections": "bothDirections", "Automatic": "automatic"}
_HIDDEN_COLUMNS = {"_row_key"}  # the destination's synthetic key: a key, not a field to show


def tmdl_type(arrow_type: str) -> str:
    """The TMDL dataType of a landed column (string for anything else)."""
    for prefix, name in TMDL_TYPES:
        if arrow_type.startswith(prefix):
            return name
    return "string"


def quote(name: str) -> str:
    """A TMDL object name: bare when it is a plain identifier, else in single quotes."""
    return name if _BARE.match(name) else "'" + name.replace("'", "''") + "'"


def _references(expression: str) -> tuple[set[str], set[str]]:
    """The tables (``t[...]``) and bare measure references (``[M]``) of a DAX expression."""
    tables = {(a or "").replace("''", "'") or b for a, b in _TABLE_REF.findall(expression)}
    return tables, set(_MEASURE_REF.findall(expression))


def usable_measures(model: Model, tables: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The model's measures that can live in this model: on a present table, reading only
    present tables and measures that are kept (a run without, say, journals leaves out what
    needs them)."""
    candidates = {
        m["name"]: (table, m)
        for table, measures in model.measures.items()
        if table in tables
        for m in measures
    }
    kept = dict(candidates)
    changed = True
    while changed:
        changed = False
        for name, (_, measure) in list(kept.items()):
            refs, measures = _references(str(measure["expression"]))
            if refs - set(tables) or measures - set(kept) - _columns_named(tables, measures):
                del kept[name]
                changed = True
    out: dict[str, list[dict[str, Any]]] = {}
    for table, measure in kept.values():
        out.setdefault(table, []).append(measure)
    return out


def _columns_named(tables: Mapping[str, Any], names: set[str]) -> set[str]:
    """Bare references that are columns (row context) rather than measures."""
    return {n for n in names if any(n in cols for cols in tables.values())}


def _table_tmdl(name: str, columns: Mapping[str, str], measures: list[dict[str, Any]]) -> str:
    lines = [f"table {quote(name)}", ""]
    for column, arrow_type in columns.items():
        lines += [f"\tcolumn {quote(column)}", f"\t\tdataType: {tmdl_type(arrow_type)}"]
        if column in _HIDDEN_COLUMNS:
            lines.append("\t\tisHidden")
        lines += [f"\t\tsourceColumn: {column}", ""]
    for measure in measures:
        expression = str(measure["expression"]).strip().splitlines()
        if len(expression) == 1:
            lines.append(f"\tmeasure {quote(measure['name'])} = {expression[0]}")
        else:  # a multi-line expression: one level deeper than the measure's properties
            lines.append(f"\tmeasure {quote(measure['name'])} =")
            lines += [f"\t\t\t{line}" for line in expression]
        if measure.get("formatString"):
            lines.append(f"\t\tformatString: {measure['formatString']}")
        if measure.get("isHidden"):
            lines.append("\t\tisHidden")
        lines.append("")
    lines += [
        f"\tpartition {quote(name)} = entity",
        "\t\tmode: directLake",
        "\t\tsource",
        f"\t\t\tentityName: {name}",
        f"\t\t\tschemaName: {SCHEMA}",
        f"\t\t\texpressionSource: {EXPRESSION}",
        "",
    ]
    return "\n".join(lines)


def _relationships_tmdl(model: Model, tables: Mapping[str, Mapping[str, str]]) -> str:
    out = []
    for rel in model.relationships:
        ends = ((rel["fromTable"], rel["fromColumn"]), (rel["toTable"], rel["toColumn"]))
        if not all(column in tables.get(table, {}) for table, column in ends):
            continue  # a table this run does not have (journals without the Advanced tier)
        out += [
            f"relationship {quote(rel['name'])}",
            f"\tfromColumn: {quote(rel['fromTable'])}.{quote(rel['fromColumn'])}",
            f"\ttoColumn: {quote(rel['toTable'])}.{quote(rel['toColumn'])}",
        ]
        behaviour = _FILTERING.get(str(rel.get("crossFilteringBehavior")))
        if behaviour:
            out.append(f"\tcrossFilteringBehavior: {behaviour}")
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class SqlEndpoint:
    """The mirrored database's SQL analytics endpoint, the source of Direct Lake on SQL."""

    connection_string: str
    id: str


def tmdl_parts(
    model: Model, tables: Mapping[str, Mapping[str, str]], endpoint: SqlEndpoint
) -> dict[str, str]:
    """Every part of the semantic model's TMDL definition, path -> text.

    ``tables``: each mirrored table's columns and their landed Parquet types.
    """
    measures = usable_measures(model, tables)
    names = sorted(tables)
    parts = {
        "definition.pbism": json.dumps(
            {"$schema": PBISM_SCHEMA, "version": "4.0", "settings": {}}, indent=2
        )
        + "\n",
        "definition/database.tmdl": f"database\n\tcompatibilityLevel: {COMPATIBILITY_LEVEL}\n",
        "definition/model.tmdl": "\n".join(
            [
                "model Model",
                "\tculture: en-US",
                "\tdefaultPowerBIDataSourceVersion: powerBI_V3",
                "\tsourceQueryCulture: en-US",
                "",
                *(f"ref table {quote(n)}" for n in names),
                "",
            ]
        ),
        "definition/expressions.tmdl": "\n".join(
            [
                f"expression {EXPRESSION} =",
                "\t\tlet",
                f"\t\t\tdatabase = Sql.Database({_m_text(endpoint.connection_string)}, "
                f"{_m_text(endpoint.id)})",
                "\t\tin",
                "\t\t\tdatabase",
                "",
            ]
        ),
    }
    relationships = _relationships_tmdl(model, tables)
    if relationships:
        parts["definition/relationships.tmdl"] = relationships
    for name in names:
        parts[f"definition/tables/{name}.tmdl"] = _table_tmdl(
            name, tables[name], measures.get(name, [])
        )
    return parts


def _m_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def definition_body(parts: Mapping[str, str]) -> dict[str, Any]:
    """Fabric's ``definition`` object: every part inline, base64."""
    return {
        "parts": [
            {
                "path": path,
                "payload": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                "payloadType": "InlineBase64",
            }
            for path, text in sorted(parts.items())
        ]
    }


def digest_of(name: str, parts: Mapping[str, str]) -> str:
    text = json.dumps([name, sorted(parts.items())], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


META_KEY = "semantic_model"


class SemanticModelDeploy:
    """Deploys the Direct Lake model of one mirrored database, once a run."""

    def __init__(
        self,
        rest: FabricRest,
        landed: Landed,
        model: Model,
        name: str,
        logger: logging.Logger,
        *,
        poll_seconds: float,
    ) -> None:
        self.rest = rest
        self.landed = landed
        self.model = model
        self.name = name
        self.log = logger
        self.poll_seconds = poll_seconds

    def deploy(self, database_id: str) -> str | None:
        """The model's id, or None with one warning line (the load goes on; next run retries)."""
        try:
            return self._deploy(database_id)
        except Exception as exc:  # the model never fails the data load
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.log.warning(
                "Semantic model %r not deployed (%s); the data load goes on and the next run "
                "tries again",
                self.name,
                first,
            )
            return None

    def _deploy(self, database_id: str) -> str | None:
        endpoint = self._endpoint(database_id)
        tables = self._tables(database_id)
        if not tables:
            self.log.info("No mirrored table yet: the semantic model waits for the next run")
            return None
        parts = tmdl_parts(self.model, tables, endpoint)
        digest = digest_of(self.name, parts)
        known = json.loads(self.landed.get_meta(META_KEY) or "{}")
        found = self._find()
        if found is not None and found == known.get("id") and known.get("digest") == digest:
            return found
        body = definition_body(parts)
        if found is None:
            created = self._finish(
                self.rest.call(
                    "POST",
                    "/semanticModels",
                    {
                        "displayName": self.name,
                        "description": "Direct Lake model deployed by target-powerbi",
                        "definition": body,
                    },
                )
            )
            found = str(created.get("id") or self._find() or "")
            if not found:
                msg = "the create answered without the model's id"
                raise RuntimeError(msg)
            verb = "Created"
        else:
            self._finish(
                self.rest.call(
                    "POST", f"/semanticModels/{found}/updateDefinition", {"definition": body}
                )
            )
            verb = "Updated"
        self.landed.set_meta(META_KEY, json.dumps({"id": found, "digest": digest}))
        self.log.info(
            "%s the Direct Lake semantic model %r (%s): %d tables, %d relationships",
            verb,
            self.name,
            found,
            len(tables),
            parts.get("definition/relationships.tmdl", "").count("relationship "),
        )
        return found

    def _endpoint(self, database_id: str) -> SqlEndpoint:
        item = self.rest.call("GET", f"/mirroredDatabases/{database_id}").json()
        sql = (item.get("properties") or {}).get("sqlEndpointProperties") or {}
        if not sql.get("connectionString") or not sql.get("id"):
            msg = "the mirrored database's SQL analytics endpoint is not provisioned yet"
            raise RuntimeError(msg)
        return SqlEndpoint(str(sql["connectionString"]), str(sql["id"]))

    def _tables(self, database_id: str) -> dict[str, dict[str, str]]:
        """The mirrored tables (replicating, not failed) with the columns landed in them."""
        path = f"/mirroredDatabases/{database_id}/getTablesMirroringStatus"
        status = self.rest.call("POST", path).json()
        replicated = {
            str(t.get("sourceTableName"))
            for t in status.get("data") or []
            if t.get("status") not in ("Failed", "NotStarted")
            and (t.get("sourceSchemaName") or SCHEMA) == SCHEMA
        }
        tables = {}
        for name in sorted(replicated):
            table = self.landed.table(name)
            if table is not None and table.landed_columns:
                tables[name] = dict(table.landed_columns)
        return tables

    def _find(self) -> str | None:
        path: str | None = "/semanticModels"
        while path:
            page = self.rest.call("GET", path).json()
            for item in page.get("value", []):
                if item.get("displayName") == self.name:
                    return str(item["id"])
            token = page.get("continuationToken")
            path = f"/semanticModels?continuationToken={token}" if token else None
        return None

    def _finish(self, response: requests.Response) -> dict[str, Any]:
        """The result of a call that may answer 202 (Fabric's long-running operations):
        poll its Location until Succeeded, then read the result if there is one."""
        if response.status_code != 202:
            return dict(response.json()) if response.content else {}
        location = response.headers.get("Location") or ""
        deadline = time.monotonic() + self.poll_seconds
        wait = float(response.headers.get("Retry-After") or 1)
        while True:
            time.sleep(min(5.0, wait))
            state = self.rest.call("GET", location)
            status = state.json().get("status")
            if status == "Succeeded":
                result = state.headers.get("Location")
                if result and result != location:
                    got = self.rest.call("GET", result)
                    return dict(got.json()) if got.content else {}
                return {}
            if status in ("Failed", "Cancelled") or time.monotonic() > deadline:
                error = state.json().get("error") or {}
                msg = f"the operation ended {status}: {error.get('message') or error}"
                raise RuntimeError(msg)
            location = state.headers.get("Location") or location
            wait = float(state.headers.get("Retry-After") or wait)

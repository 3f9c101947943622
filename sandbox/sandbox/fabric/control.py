"""The control API under /_sandbox/ (plain JSON, no authentication): tables, rows, stats, faults."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sandbox.fabric.replicator import MirroredTable
from sandbox.fabric.state import FabricState
from sandbox.fabric.tmdl import SQL_DATABASE, TmdlError, read_model
from sandbox.powerbi.control import Control

VIEWER_ROWS = 10


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "SandboxControlError", "message": message}}, status)


def _plain(value: Any) -> Any:
    """Delta values as JSON: decimals and times as strings, bytes as base64."""
    if isinstance(value, (decimal.Decimal, dt.date, dt.time, dt.datetime)):
        return value.isoformat() if not isinstance(value, decimal.Decimal) else str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


class FabricControl(Control):
    """Power BI's control handlers (reset, clock) plus the Fabric sandbox's own."""

    def __init__(self, state: FabricState) -> None:
        super().__init__(state)
        self.fabric = state

    async def tables(self, request: Request) -> Response:
        self.fabric.replicate()
        return JSONResponse(self.fabric.tables_json())

    async def table_rows(self, request: Request) -> Response:
        name = request.path_params["table"]
        schema, _, table_name = name.rpartition(".")
        database = request.query_params.get("database")
        limit_raw = request.query_params.get("limit")
        limit = int(limit_raw) if limit_raw and limit_raw.isdigit() else None
        state = self.fabric
        state.replicate()
        with state.lock:
            found = [
                t
                for t in state.replicator.tables.values()
                if t.name == table_name
                and (not schema or t.schema == schema)
                and (database is None or database in (t.database, _item_name(state, t.database)))
            ]
            if not found:
                return _error(404, f"no replicated table {name}")
            if len(found) > 1:
                return _error(409, f"{name} is in several databases: add ?database=<id>")
            table = found[0]
            body = {**table.summary(), "rows": table.rows(limit)}
        return Response(json.dumps(body, default=_plain), media_type="application/json")

    async def fabric_stats(self, request: Request) -> Response:
        self.fabric.replicate()
        return JSONResponse(self.fabric.fabric_stats())

    async def fabric_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                raw = await request.body()
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    return _error(400, "the body must be a JSON object")
                self.fabric.set_faults(body)
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc))
        return JSONResponse(self.fabric.faults_json())

    async def fabric_viewer(self, request: Request) -> Response:
        self.fabric.replicate()
        return HTMLResponse(render_viewer(self.fabric))

    async def items(self, request: Request) -> Response:
        """Every item with its decoded definition (a semantic model's TMDL, mirroring.json)."""
        state = self.fabric
        with state.lock:
            return JSONResponse(
                {
                    "items": [
                        {
                            **item.summary(state.workspace_id, state.onelake_url),
                            "mirroringStatus": item.mirroring_status
                            if item.type == "MirroredDatabase"
                            else None,
                            "definition": item.decoded_parts(),
                        }
                        for item in state.items.values()
                    ]
                }
            )

    async def semantic_models(self, request: Request) -> Response:
        """Each semantic model as read from its TMDL: tables (columns, measures, partition),
        relationships, the mirrored database it binds to, and how many definitions it had."""
        state = self.fabric
        with state.lock:
            out = []
            for item in state.items.values():
                if item.type != "SemanticModel":
                    continue
                parts = {p["path"]: base64.b64decode(p.get("payload", "")) for p in item.parts}
                try:
                    model: dict[str, Any] = read_model(parts).to_json()
                except TmdlError as exc:  # a TMSL (model.bim) definition, say
                    model = {"error": str(exc)}
                endpoints = {i.sql_endpoint_id: i.id for i in state.items.values()}
                bound = {
                    m.group(2)
                    for e in (model.get("expressions") or {}).values()
                    if e and (m := SQL_DATABASE.search(e))
                }
                out.append(
                    {
                        "id": item.id,
                        "displayName": item.display_name,
                        "versions": item.versions,
                        "databases": sorted(endpoints[b] for b in bound if b in endpoints),
                        "reports": sorted(
                            r.display_name
                            for r in state.items.values()
                            if r.type == "Report" and r.bound_to == item.id
                        ),
                        **model,
                    }
                )
        return JSONResponse({"semanticModels": out})


def _item_name(state: FabricState, item_id: str) -> str | None:
    item = state.items.get(item_id)
    return item.display_name if item else None


def _table_html(table: MirroredTable) -> str:
    esc = html.escape
    rows = table.rows(VIEWER_ROWS)
    names = list(rows[0]) if rows else list(table.landed_types)
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(row.get(n)))}</td>" for n in names) + "</tr>"
        for row in rows
    )
    error = f"<p><b>{esc(table.error)}</b></p>" if table.error else ""
    return (
        f"<h3>{esc(table.schema)}.{esc(table.name)}: {table.row_count} rows "
        f"<small>{esc(table.status)} · next {table.next_sequence:020d}.parquet</small></h3>"
        f"{error}<table><tr>{head}</tr>{body}</table>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(_plain(value))


def render_viewer(state: FabricState) -> str:
    """Mirrored databases, their tables with row counts and first rows, refused files."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'><title>Fabric sandbox</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}th{background:#eee}",
        "</style></head><body><h1>Fabric sandbox (read-only)</h1>",
    ]
    with state.lock:
        parts.append(f"<h2>Workspace <small>{esc(state.workspace_id)}</small></h2>")
        for item in state.items.values():
            parts.append(
                f"<h2>{esc(item.type)} {esc(item.display_name)} <small>{esc(item.id)}"
                f"{' · ' + esc(item.mirroring_status) if item.type == 'MirroredDatabase' else ''}"
                "</small></h2>"
            )
            parts.extend(
                _table_html(t) for t in state.replicator.tables.values() if t.database == item.id
            )
        refused = state.replicator.stats.refused
        if refused:
            parts.append("<h2>Refused files</h2><ul>")
            parts.extend(f"<li>{esc(r.table)}/{esc(r.file)}: {esc(r.reason)}</li>" for r in refused)
            parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def routes(state: FabricState) -> list[Route]:
    control = FabricControl(state)
    return [
        Route("/", control.fabric_viewer, methods=["GET"]),
        Route("/_sandbox/tables", control.tables, methods=["GET"]),
        Route("/_sandbox/tables/{table}/rows", control.table_rows, methods=["GET"]),
        Route("/_sandbox/stats", control.fabric_stats, methods=["GET"]),
        Route("/_sandbox/faults", control.fabric_faults, methods=["GET", "POST"]),
        Route("/_sandbox/items", control.items, methods=["GET"]),
        Route("/_sandbox/semantic_models", control.semantic_models, methods=["GET"]),
        Route("/_sandbox/reset", control.reset, methods=["POST"]),
        Route("/_sandbox/clock", control.clock, methods=["GET", "POST"]),
    ]

"""The control API under /_sandbox/ and the raw tables page (`render_viewer`, at /tables)."""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.state import PowerBIState

VIEWER_ROWS = 10


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "SandboxControlError", "message": message}}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        msg = "the body must be a JSON object"
        raise ValueError(msg)
    return value


class Control:
    """The handlers of the control API, over one sandbox's state."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state

    async def datasets(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    async def rows(self, request: Request) -> Response:
        dataset_id = request.path_params["datasetId"]
        table_name = request.path_params["tableName"]
        limit_raw = request.query_params.get("limit")
        limit = int(limit_raw) if limit_raw and limit_raw.isdigit() else None
        with self.state.lock:
            dataset = self.state.datasets.get(dataset_id)
            table = dataset.table(table_name) if dataset else None
            if table is None:
                return _error(404, f"no table '{table_name}' in dataset {dataset_id}")
            return JSONResponse(
                {
                    "datasetId": dataset_id,
                    "table": table_name,
                    "rowCount": table.count,
                    "syntheticRows": table.synthetic,
                    "rows": table.row_dicts(limit),
                }
            )

    async def seed(self, request: Request) -> Response:
        """Count `count` contentless rows into a table (to reach the big-table edges quickly)."""
        state = self.state
        try:
            body = await _body(request)
            count = int(body.get("count", 0))
            in_window = bool(body.get("in_time_window", False))
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        with state.lock:
            dataset = state.datasets.get(request.path_params["datasetId"])
            table = dataset.table(request.path_params["tableName"]) if dataset else None
            if dataset is None or table is None:
                return _error(404, "no such dataset or table")
            if count < 0:
                return _error(400, "count must be >= 0")
            if dataset.retention != "basicFIFO" and table.count + count > state.row_cap(dataset):
                return _error(400, "the table would exceed its row cap")
            table.synthetic += count
            state.enforce_cap(dataset, table)
            if in_window and count:
                dataset.rows_hour.add(state.clock.timestamp(), count)
            return JSONResponse({"rowCount": table.count})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats_json())

    async def faults(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.state.faults.to_json())
        try:
            body = await _body(request)
            result = self.state.set_faults(body)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return JSONResponse(result.to_json())

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return JSONResponse({"reset": True})

    async def clock(self, request: Request) -> Response:
        clock = self.state.clock
        if request.method == "POST":
            try:
                body = await _body(request)
                seconds = float(body.get("advance_seconds", 0))
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc))
            if seconds < 0:
                return _error(400, "the clock only moves forward")
            clock.advance(seconds)
        return JSONResponse({"now": clock.now().isoformat(), "time_scale": clock.time_scale})


def routes(state: PowerBIState) -> list[Route]:
    control = Control(state)
    return [
        Route("/_sandbox/datasets", control.datasets, methods=["GET"]),
        Route(
            "/_sandbox/datasets/{datasetId}/tables/{tableName}/rows",
            control.rows,
            methods=["GET"],
        ),
        Route(
            "/_sandbox/datasets/{datasetId}/tables/{tableName}/seed",
            control.seed,
            methods=["POST"],
        ),
        Route("/_sandbox/stats", control.stats, methods=["GET"]),
        Route("/_sandbox/faults", control.faults, methods=["GET", "POST"]),
        Route("/_sandbox/reset", control.reset, methods=["POST"]),
        Route("/_sandbox/clock", control.clock, methods=["GET", "POST"]),
    ]


def render_viewer(state: PowerBIState) -> str:
    """Workspace, datasets, tables, row counts and the first rows of each table."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'>",
        "<title>Power BI sandbox</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}th{background:#eee}",
        "</style></head><body><p><a href='/'>Reports</a></p>",
        "<h1>Power BI sandbox: raw tables (read-only)</h1>",
    ]
    with state.lock:
        parts.append(
            f"<h2>Workspace {esc(state.workspace_name)} <small>{esc(state.workspace_id)}</small>"
            "</h2>"
        )
        if not state.datasets:
            parts.append("<p>No datasets yet.</p>")
        for ds in state.datasets.values():
            parts.append(
                f"<h3>Dataset {esc(ds.name)} <small>{esc(ds.id)} · {esc(ds.mode)} · "
                f"retention {esc(ds.retention)}</small></h3>"
            )
            for table in ds.tables.values():
                names = [c.name for c in table.schema.columns]
                parts.append(
                    f"<h4>{esc(table.schema.name)}: {table.count} rows</h4><table><tr>"
                    + "".join(f"<th>{esc(n)}</th>" for n in names)
                    + "</tr>"
                )
                for row in table.row_dicts(VIEWER_ROWS):
                    parts.append(
                        "<tr>"
                        + "".join(
                            f"<td>{esc('' if row[n] is None else str(row[n]))}</td>" for n in names
                        )
                        + "</tr>"
                    )
                parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)

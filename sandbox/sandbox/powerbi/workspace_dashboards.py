"""Dashboards of the workspace and their tiles: `Dashboards - Get Dashboards In Group`,
`Get Tiles In Group` and `Clone Tile In Group` (Microsoft's swagger: Dashboards_*InGroup),
and a control endpoint that pins a tile (a person pins tiles; the REST API cannot).

A tile lives as long as the dataset it shows: "deleting a dataset also deletes all reports
and dashboard tiles that contain data from that dataset" (Microsoft Learn, "Delete almost
anything in the Power BI service", powerbi-docs/create-reports/service-delete.md).
"""

from __future__ import annotations

import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.errors import ApiError, bad_request, not_found
from sandbox.powerbi.state import PowerBIState
from sandbox.powerbi.workspace_reports import read_json, reports_of, workspace_operation


@dataclass
class Tile:
    id: str
    title: str
    dataset_id: str
    report_id: str | None
    row: int

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "datasetId": self.dataset_id,
            "rowSpan": 1,
            "colSpan": 1,
        }
        if self.report_id:
            body["reportId"] = self.report_id
        return body


@dataclass
class Dashboard:
    id: str
    name: str
    tiles: dict[str, Tile] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "displayName": self.name, "isReadOnly": False}


_DASHBOARDS: weakref.WeakKeyDictionary[PowerBIState, dict[str, Dashboard]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def dashboards_of(state: PowerBIState) -> dict[str, Dashboard]:
    """The workspace's dashboards, without the tiles of datasets deleted since."""
    with _LOCK:
        dashboards = _DASHBOARDS.setdefault(state, {})
        with state.lock:
            for dashboard in dashboards.values():
                for gone in [
                    t.id for t in dashboard.tiles.values() if t.dataset_id not in state.datasets
                ]:
                    del dashboard.tiles[gone]
        return dashboards


def _dashboard(state: PowerBIState, dashboard_id: str) -> Dashboard:
    dashboard = dashboards_of(state).get(dashboard_id)
    if dashboard is None:
        raise not_found(f"Dashboard {dashboard_id} is not found")
    return dashboard


def pin_tile(state: PowerBIState, dashboard_id: str, body: Any) -> Tile:
    """A tile pinned from a report visual (or a dataset, without `reportId`)."""
    if not isinstance(body, dict) or not body.get("title") or not body.get("datasetId"):
        raise bad_request("title and datasetId are required")
    dataset_id, report_id = str(body["datasetId"]), body.get("reportId")
    with state.lock:
        if dataset_id not in state.datasets:
            raise not_found(f"Dataset {dataset_id} is not found")
    if report_id is not None and str(report_id) not in reports_of(state):
        raise not_found(f"Report {report_id} is not found")
    dashboard = _dashboard(state, dashboard_id)
    tile = Tile(
        str(uuid.uuid4()),
        str(body["title"]),
        dataset_id,
        str(report_id) if report_id else None,
        len(dashboard.tiles),
    )
    dashboard.tiles[tile.id] = tile
    return tile


def clone_tile(state: PowerBIState, dashboard_id: str, tile_id: str, body: Any) -> Tile:
    """`CloneTileRequest` within the workspace: same title, optionally another report/dataset.

    The source keeps its place, so the clone always meets a position conflict and goes
    to the tail (`positionConflictAction` Tail, the default); `Abort` refuses it.
    """
    source = _dashboard(state, dashboard_id).tiles.get(tile_id)
    if source is None:
        raise not_found(f"Tile {tile_id} is not found")
    if not isinstance(body, dict) or not body.get("targetDashboardId"):
        raise bad_request("CloneTileRequest needs targetDashboardId")
    workspace = body.get("targetWorkspaceId")
    if workspace not in (None, state.workspace_id):
        raise bad_request("the sandbox has one workspace")
    if body.get("positionConflictAction", "Tail") == "Abort":
        raise ApiError(409, "PositionConflict", "the tile's position is taken on the target")
    target = _dashboard(state, str(body["targetDashboardId"]))
    clone = pin_tile(
        state,
        target.id,
        {
            "title": source.title,
            "datasetId": body.get("targetModelId") or source.dataset_id,
            "reportId": body.get("targetReportId") or source.report_id,
        },
    )
    return clone


def routes(state: PowerBIState) -> list[Route]:
    """Three Dashboards operations under /v1.0/myorg/groups/{groupId}/ and the control ones."""

    def listing(what: str, value: list[dict[str, Any]]) -> Response:
        return JSONResponse({"@odata.context": f"$metadata#{what}", "value": value})

    async def list_dashboards(request: Request) -> Response:
        return listing("dashboards", [d.to_json() for d in dashboards_of(state).values()])

    async def list_tiles(request: Request) -> Response:
        dashboard = _dashboard(state, request.path_params["dashboardId"])
        tiles = sorted(dashboard.tiles.values(), key=lambda t: t.row)
        return listing("tiles", [t.to_json() for t in tiles])

    async def clone(request: Request) -> Response:
        params = request.path_params
        tile = clone_tile(state, params["dashboardId"], params["tileId"], await read_json(request))
        return JSONResponse(tile.to_json())

    async def control_dashboards(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            dashboard = Dashboard(str(uuid.uuid4()), str(body.get("name") or "Dashboard"))
            dashboards_of(state)[dashboard.id] = dashboard
            return JSONResponse(dashboard.to_json(), status_code=201)
        value = [
            {**d.to_json(), "tiles": [t.to_json() for t in d.tiles.values()]}
            for d in dashboards_of(state).values()
        ]
        return JSONResponse({"dashboards": value})

    async def control_pin(request: Request) -> Response:
        try:
            tile = pin_tile(state, request.path_params["dashboardId"], await request.json())
        except ApiError as exc:
            return exc.response(str(uuid.uuid4()))
        return JSONResponse(tile.to_json(), status_code=201)

    group = "/v1.0/myorg/groups/{groupId}/dashboards"
    return [
        Route(
            group,
            workspace_operation(state, "GetDashboardsInGroup", list_dashboards),
            methods=["GET"],
        ),
        Route(
            f"{group}/{{dashboardId}}/tiles",
            workspace_operation(state, "GetTilesInGroup", list_tiles),
            methods=["GET"],
        ),
        Route(
            f"{group}/{{dashboardId}}/tiles/{{tileId}}/Clone",
            workspace_operation(state, "CloneTileInGroup", clone),
            methods=["POST"],
        ),
        Route("/_sandbox/dashboards", control_dashboards, methods=["GET", "POST"]),
        Route("/_sandbox/dashboards/{dashboardId}/tiles", control_pin, methods=["POST"]),
    ]

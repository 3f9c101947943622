"""The Fabric REST API's report calls under /v1/ (Microsoft's "Items - Report" operations
and the long-running operation calls), and the control API's view of deployed reports.

Create, updateDefinition and getDefinition answer 202 with a `Location` to poll (Fabric
may answer either way; the sandbox always takes the long way, so clients prove they
poll): `GET /v1/operations/{id}` gives the state (`Running` at the first poll, then
`Succeeded`), `.../result` the item or definition once it succeeded.
A definition must hold `definition.pbir` referencing its dataset `byConnection` (the only
reference the REST API accepts) and the PBIR `definition/` folder; see
docs/sandbox-powerbi.md. Errors come in Fabric's shape: `{"errorCode", "message"}`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.api import read_json
from sandbox.powerbi.errors import ApiError
from sandbox.powerbi.reports import (
    DefinitionError,
    Evaluator,
    Report,
    bound_dataset,
    parse_pages,
)
from sandbox.powerbi.state import PowerBIState

Endpoint = Callable[[Request], Awaitable[Response]]
RETRY_AFTER_SECONDS = "1"


def _fabric_error(exc: ApiError) -> JSONResponse:
    body = {"errorCode": exc.code, "message": exc.message, "requestId": str(uuid.uuid4())}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


@dataclass
class Operation:
    """A long-running operation: `Running` at the first poll, then done, with its result
    (the work itself is done at once; the first poll proves the client polls again)."""

    id: str
    result: dict[str, Any] | None
    error: dict[str, str] | None = None
    running_polls: int = 1

    @property
    def done(self) -> bool:
        return self.running_polls <= 0

    def state(self) -> dict[str, Any]:
        if not self.done:
            self.running_polls -= 1
            return {"status": "Running", "percentComplete": 50, "error": None}
        return {
            "status": "Failed" if self.error else "Succeeded",
            "percentComplete": 100,
            "error": self.error,
        }


def decode_parts(body: Any) -> dict[str, str]:
    """The definition's parts, path -> text (InlineBase64 payloads)."""
    definition = body.get("definition") if isinstance(body, dict) else None
    parts = definition.get("parts") if isinstance(definition, dict) else None
    if not isinstance(parts, list) or not parts:
        raise ApiError(400, "InvalidDefinition", "definition.parts is required")
    out: dict[str, str] = {}
    for part in parts:
        if not isinstance(part, dict) or part.get("payloadType") != "InlineBase64":
            raise ApiError(400, "InvalidDefinition", "each part needs payloadType InlineBase64")
        try:
            out[str(part["path"])] = base64.b64decode(str(part["payload"])).decode("utf-8")
        except (KeyError, binascii.Error, UnicodeDecodeError):
            raise ApiError(
                400, "InvalidDefinition", f"part {part.get('path')}: bad payload"
            ) from None
    return out


class ReportsApi:
    """Fabric report items of the sandbox's workspace."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state
        self.operations: dict[str, Operation] = {}

    def operation(self, name: str, handler: Endpoint) -> Endpoint:
        """Authorization (token, workspace membership), injected faults, stats."""
        state = self.state

        async def endpoint(request: Request) -> Response:
            try:
                principal = state.principal_for(request.headers.get("authorization"))
                workspace = request.path_params.get("workspaceId")
                if workspace is not None:
                    state.authorize_workspace(principal, workspace)
                if state.faults.latency_ms > 0:
                    await asyncio.sleep(state.faults.latency_ms / 1000)
                injected = state.injected_error(name)
                if injected is not None:
                    raise injected
                response = await handler(request)
            except ApiError as exc:
                response = _fabric_error(exc)
            state.record(name, response.status_code)
            return response

        return endpoint

    def accepted(self, request: Request, result: dict[str, Any] | None) -> Response:
        """202 with the Location of the (finished) operation."""
        op = Operation(str(uuid.uuid4()), result)
        self.operations[op.id] = op
        location = f"{str(request.base_url).rstrip('/')}/v1/operations/{op.id}"
        headers = {
            "Location": location,
            "x-ms-operation-id": op.id,
            "Retry-After": RETRY_AFTER_SECONDS,
        }
        return Response(status_code=202, headers=headers)

    def _checked(self, parts: dict[str, str]) -> tuple[str, Report]:
        try:
            dataset_id = bound_dataset(parts)
            pages, landing = parse_pages(parts)
        except DefinitionError as exc:
            raise ApiError(400, "InvalidDefinition", str(exc)) from None
        if dataset_id not in self.state.datasets:
            msg = f"the semantic model {dataset_id} is not in the workspace"
            raise ApiError(400, "InvalidDefinition", msg)
        return dataset_id, Report("", "", dataset_id, parts, pages, landing)

    def find(self, request: Request) -> Report:
        report = self.state.reports.get(request.path_params["reportId"])
        if report is None:
            raise ApiError(404, "EntityNotFound", "The requested report was not found")
        return report

    async def list_reports(self, request: Request) -> Response:
        ws = self.state.workspace_id
        with self.state.lock:
            value = [r.item(ws) for r in self.state.reports.values()]
        return JSONResponse({"value": value})

    async def create(self, request: Request) -> Response:
        body = await read_json(request, self.state)
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "InvalidRequest", "displayName is required")
        parts = decode_parts(body)
        with self.state.lock:
            if any(r.name == name for r in self.state.reports.values()):
                msg = f"A report named {name!r} already exists in the workspace"
                raise ApiError(409, "ItemDisplayNameAlreadyInUse", msg)
            dataset_id, checked = self._checked(parts)
            report = Report(
                str(uuid.uuid4()), name, dataset_id, parts, checked.pages, checked.landing_page
            )
            self.state.reports[report.id] = report
            item = report.item(self.state.workspace_id)
        return self.accepted(request, item)

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.find(request).item(self.state.workspace_id))

    async def update_definition(self, request: Request) -> Response:
        parts = decode_parts(await read_json(request, self.state))
        with self.state.lock:
            report = self.find(request)
            dataset_id, checked = self._checked(parts)
            report.parts, report.dataset_id = parts, dataset_id
            report.pages, report.landing_page = checked.pages, checked.landing_page
        return self.accepted(request, None)

    async def get_definition(self, request: Request) -> Response:
        report = self.find(request)
        parts = [
            {
                "path": path,
                "payload": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                "payloadType": "InlineBase64",
            }
            for path, text in sorted(report.parts.items())
        ]
        return self.accepted(request, {"definition": {"format": "PBIR", "parts": parts}})

    async def operation_state(self, request: Request) -> Response:
        op = self.operations.get(request.path_params["operationId"])
        if op is None:
            raise ApiError(404, "OperationNotFound", "The operation was not found")
        return JSONResponse(op.state())

    async def operation_result(self, request: Request) -> Response:
        op = self.operations.get(request.path_params["operationId"])
        if op is None:
            raise ApiError(404, "OperationNotFound", "The operation was not found")
        if not op.done:
            raise ApiError(400, "OperationNotSucceeded", "The operation has not succeeded yet")
        return JSONResponse(op.result) if op.result is not None else Response(status_code=200)


def evaluate_report(
    state: PowerBIState, report: Report, tenant: str | None, only: str | None = None
) -> dict[str, Any]:
    """The report as the control API lists it: pages, visuals and each visual's value
    (of page `only` alone when given)."""
    dataset = state.datasets.get(report.dataset_id)
    tables = {n: t.row_dicts() for n, t in dataset.tables.items()} if dataset else {}
    relationships = [
        (r.from_table, r.from_column, r.to_table, r.to_column)
        for r in (dataset.relationships if dataset else [])
    ]
    organisations = [str(r["tenant_id"]) for r in tables.get("organisations", [])]
    chosen = tenant if tenant in organisations else (organisations[0] if organisations else None)
    today = state.clock.now().date()
    pages = []
    for page in report.pages:
        if only is not None and page.name != only:
            continue
        visuals = []
        for visual in page.visuals:
            value: Any = None
            error = None
            if chosen is not None and dataset is not None:
                try:
                    value = Evaluator(tables, chosen, today, relationships).visual(visual)
                except (KeyError, TypeError, ValueError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            visuals.append(
                {
                    "name": visual.name,
                    "type": visual.type,
                    "title": visual.title,
                    "measures": list(visual.measures),
                    "by": f"{visual.by[0]}[{visual.by[1]}]" if visual.by else None,
                    "value": value,
                    **({"error": error} if error else {}),
                }
            )
        pages.append({"name": page.name, "title": page.title, "visuals": visuals})
    return {
        "id": report.id,
        "name": report.name,
        "datasetId": report.dataset_id,
        "datasetFound": dataset is not None,
        "organisation": chosen,
        "today": today.isoformat(),
        "landingPage": report.landing_page,
        "pages": pages,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class ReportsControl:
    """`GET /_sandbox/reports` and a report's parts, for tests and the demo."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state

    async def reports(self, request: Request) -> Response:
        tenant = request.query_params.get("organisation")
        with self.state.lock:
            body = [evaluate_report(self.state, r, tenant) for r in self.state.reports.values()]
        return JSONResponse({"reports": _jsonable(body)})

    async def definition(self, request: Request) -> Response:
        report = self.state.reports.get(request.path_params["reportId"])
        if report is None:
            return JSONResponse({"error": {"message": "no such report"}}, status_code=404)
        parts = [
            {
                "path": p,
                "payload": base64.b64encode(t.encode()).decode(),
                "payloadType": "InlineBase64",
            }
            for p, t in sorted(report.parts.items())
        ]
        return JSONResponse({"definition": {"parts": parts}})


def routes(state: PowerBIState) -> list[Route]:
    api = ReportsApi(state)
    control = ReportsControl(state)
    op = api.operation
    reports = "/v1/workspaces/{workspaceId}/reports"
    one = reports + "/{reportId}"
    operation = "/v1/operations/{operationId}"
    return [
        Route(reports, op("ListReports", api.list_reports), methods=["GET"]),
        Route(reports, op("CreateReport", api.create), methods=["POST"]),
        Route(one, op("GetReport", api.get), methods=["GET"]),
        Route(
            f"{one}/updateDefinition",
            op("UpdateReportDefinition", api.update_definition),
            methods=["POST"],
        ),
        Route(
            f"{one}/getDefinition", op("GetReportDefinition", api.get_definition), methods=["POST"]
        ),
        Route(operation, op("GetOperationState", api.operation_state), methods=["GET"]),
        Route(
            f"{operation}/result", op("GetOperationResult", api.operation_result), methods=["GET"]
        ),
        Route("/_sandbox/reports", control.reports, methods=["GET"]),
        Route("/_sandbox/reports/{reportId}/definition", control.definition, methods=["GET"]),
    ]

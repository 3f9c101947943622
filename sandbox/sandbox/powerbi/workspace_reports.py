"""Reports of the workspace: `Reports - Get Reports In Group` and `Reports - Rebind Report In
Group` (Microsoft's swagger: Reports_GetReportsInGroup, Reports_RebindReportInGroup), and a
control endpoint that makes a report bound to a dataset (a person would publish one).

A report lives as long as the dataset it is bound to: Power BI deletes a semantic model's
reports with it, so reports of a deleted dataset are not listed and cannot be rebound.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.errors import ApiError, bad_request, not_found
from sandbox.powerbi.state import PowerBIState


@dataclass
class Report:
    id: str
    name: str
    dataset_id: str

    def to_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "reportType": "PowerBIReport",
            "datasetId": self.dataset_id,
            "webUrl": f"{base}/reports/{self.id}",
            "embedUrl": f"{base}/reportEmbed?reportId={self.id}",
        }


_REPORTS: weakref.WeakKeyDictionary[PowerBIState, dict[str, Report]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def reports_of(state: PowerBIState) -> dict[str, Report]:
    """The live reports of the workspace (those whose dataset still exists)."""
    with _LOCK:
        reports = _REPORTS.setdefault(state, {})
        with state.lock:
            for gone in [r.id for r in reports.values() if r.dataset_id not in state.datasets]:
                del reports[gone]
        return reports


def add_report(state: PowerBIState, name: str, dataset_id: str) -> Report:
    with state.lock:
        if dataset_id not in state.datasets:
            raise not_found(f"Dataset {dataset_id} is not found")
    report = Report(str(uuid.uuid4()), name, dataset_id)
    reports_of(state)[report.id] = report
    return report


Endpoint = Callable[[Request], Awaitable[Response]]


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None


def workspace_operation(state: PowerBIState, name: str, handler: Endpoint) -> Endpoint:
    """A REST operation of the workspace: authentication and access, faults, stats."""

    async def endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            principal = state.principal_for(request.headers.get("authorization"))
            state.authorize_workspace(principal, request.path_params["groupId"])
            injected = state.injected_error(name)
            if injected is not None:
                raise injected
            response = await handler(request)
            response.headers["RequestId"] = request_id
        except ApiError as exc:
            response = exc.response(request_id)
        state.record(name, response.status_code)
        return response

    return endpoint


def rebind_report(state: PowerBIState, report_id: str, body: Any) -> None:
    """RebindReportRequest `{"datasetId"}`: the report now shows that dataset."""
    report = reports_of(state).get(report_id)
    if report is None:
        raise not_found(f"Report {report_id} is not found")
    dataset_id = body.get("datasetId") if isinstance(body, dict) else None
    if not isinstance(dataset_id, str) or not dataset_id:
        raise bad_request("RebindReportRequest needs datasetId")
    with state.lock:
        if dataset_id not in state.datasets:
            raise not_found(f"Dataset {dataset_id} is not found")
    report.dataset_id = dataset_id


def routes(state: PowerBIState) -> list[Route]:
    """The two Reports operations under /v1.0/myorg/groups/{groupId}/ and the control one."""

    def base(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/v1.0/myorg/groups/{state.workspace_id}"

    async def list_reports(request: Request) -> Response:
        value = [r.to_json(base(request)) for r in reports_of(state).values()]
        return JSONResponse(
            {"@odata.context": f"{base(request)}/$metadata#reports", "value": value}
        )

    async def rebind(request: Request) -> Response:
        body = await read_json(request)
        rebind_report(state, request.path_params["reportId"], body)
        return Response(status_code=200)

    async def control_reports(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            try:
                report = add_report(state, str(body["name"]), str(body["datasetId"]))
            except (KeyError, TypeError):
                return JSONResponse({"error": "name and datasetId are required"}, 400)
            except ApiError as exc:
                return exc.response(str(uuid.uuid4()))
            return JSONResponse(report.to_json(base(request)), status_code=201)
        value = [r.to_json(base(request)) for r in reports_of(state).values()]
        return JSONResponse({"reports": value})

    group = "/v1.0/myorg/groups/{groupId}"
    return [
        Route(
            f"{group}/reports",
            workspace_operation(state, "GetReportsInGroup", list_reports),
            methods=["GET"],
        ),
        Route(
            f"{group}/reports/{{reportId}}/Rebind",
            workspace_operation(state, "RebindReportInGroup", rebind),
            methods=["POST"],
        ),
        Route("/_sandbox/published-reports", control_reports, methods=["GET", "POST"]),
    ]

"""The Fabric REST calls a publisher makes: mirrored databases, mirroring, semantic models, LROs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.fabric.errors import DroppedResponse, FabricError
from sandbox.fabric.state import FABRIC_RESOURCE, FabricState, Item, utc
from sandbox.fabric.tmdl import TmdlError, check_direct_lake, read_model
from sandbox.powerbi.errors import ApiError
from sandbox.powerbi.limits import retry_after_header
from sandbox.powerbi.reports import DefinitionError, bound_dataset, parse_pages
from sandbox.powerbi.state import POWERBI_RESOURCE, Principal

Handler = Callable[[Request], Awaitable[Response]]
MIRRORED = "MirroredDatabase"
SEMANTIC = "SemanticModel"
REPORT = "Report"
_WORKSPACE_CODES = {401: "PrincipalTypeNotSupported", 403: "InsufficientPrivileges"}


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise FabricError(400, "InvalidInput", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise FabricError(400, "InvalidInput", "The request body must be a JSON object.")
    return body


def decode_parts(definition: Any) -> dict[str, bytes]:
    """`definition.parts` as path -> bytes; CorruptedPayload for anything else."""
    parts = definition.get("parts") if isinstance(definition, dict) else None
    if not isinstance(parts, list) or not parts:
        raise FabricError(400, "InvalidDefinition", "definition.parts must be a non-empty list.")
    decoded: dict[str, bytes] = {}
    for part in parts:
        if not isinstance(part, dict) or part.get("payloadType") != "InlineBase64":
            raise FabricError(
                400,
                "CorruptedPayload",
                "Each part needs path, payload and payloadType InlineBase64.",
            )
        try:
            decoded[str(part["path"])] = base64.b64decode(str(part["payload"]), validate=True)
        except (KeyError, binascii.Error):
            raise FabricError(
                400, "CorruptedPayload", "The provided payload is corrupted."
            ) from None
    return decoded


def _mirroring_schema(parts: dict[str, bytes]) -> str:
    """The default schema of an open mirroring (GenericMirror) definition."""
    try:
        mirroring = json.loads(parts["mirroring.json"])
        source = mirroring["properties"]["source"]["type"]
        target = mirroring["properties"]["target"]
    except (KeyError, TypeError, ValueError):
        raise FabricError(
            400,
            "CorruptedPayload",
            "mirroring.json must hold properties.source.type and properties.target.",
        ) from None
    if source != "GenericMirror":
        raise FabricError(
            400,
            "InvalidDefinition",
            f"The sandbox mirrors only open mirroring sources (GenericMirror), not {source}.",
        )
    schema = (target.get("typeProperties") or {}).get("defaultSchema") or "dbo"
    return str(schema)


def _check_semantic_model(parts: dict[str, bytes]) -> None:
    """The parts a semantic model definition needs (the documented structure)."""
    if "definition.pbism" not in parts:
        raise FabricError(400, "InvalidDefinition", "A semantic model needs definition.pbism.")
    tmdl = any(p.startswith("definition/") for p in parts)
    if ("model.bim" in parts) == tmdl:
        raise FabricError(
            400,
            "InvalidDefinition",
            "A semantic model needs either model.bim (TMSL) or a definition/ folder (TMDL).",
        )


def _dropped(state: FabricState, operation: str) -> Response:
    state.record(operation, 0)
    state.record("DroppedConnection", 0)
    return DroppedResponse()


class FabricApi:
    """The handlers of Fabric's REST API, over one sandbox's state."""

    def __init__(self, state: FabricState) -> None:
        self.state = state

    def operation(self, name: str, handler: Handler) -> Handler:
        """Authorization, workspace, latency, injected faults, request counts."""
        state = self.state

        async def endpoint(request: Request) -> Response:
            request_id = str(uuid.uuid4())
            await request.body()  # read (and cached) before the handler runs under the lock
            try:
                if state.faults.latency_ms > 0:
                    await asyncio.sleep(state.faults.latency_ms / 1000)
                principal = self._principal(request)
                if "workspaceId" in request.path_params:
                    self._workspace(principal, request.path_params["workspaceId"])
                injected = state.injected_error(name)
                if injected is not None:
                    raise FabricError(
                        injected.status, injected.code, injected.message, headers=injected.headers
                    )
                drop = state.should_drop(name)
                if drop and not state.drops.drop_after_apply:
                    return _dropped(state, name)
                with state.lock:
                    response = await handler(request)
                if drop:
                    return _dropped(state, name)
                response.headers["requestId"] = request_id
            except FabricError as exc:
                response = exc.response(request_id)
            state.record(name, response.status_code)
            return response

        return endpoint

    def _principal(self, request: Request) -> Principal:
        """Fabric accepts tokens for its own resource and for Power BI's."""
        authorization = request.headers.get("authorization")
        try:
            return self.state.principal_for(authorization, FABRIC_RESOURCE)
        except ApiError as first:
            try:
                return self.state.principal_for(authorization, POWERBI_RESOURCE)
            except ApiError:
                code = "TokenExpired" if first.code == "TokenExpired" else "Unauthorized"
                raise FabricError(401, code, first.message, headers=first.headers) from None

    def _workspace(self, principal: Principal, workspace_id: str) -> None:
        try:
            self.state.authorize_workspace(principal, workspace_id)
        except ApiError as exc:
            code = _WORKSPACE_CODES.get(exc.status, "WorkspaceNotFound")
            raise FabricError(exc.status, code, exc.message) from None

    def _summary(self, item: Item) -> dict[str, Any]:
        return item.summary(self.state.workspace_id, self.state.onelake_url)

    def _list(self, item_type: str) -> Response:
        items = [self._summary(i) for i in self.state.items.values() if i.type == item_type]
        return JSONResponse({"value": items, "continuationToken": None, "continuationUri": None})

    def _accepted(self, request: Request, result: dict[str, Any] | None) -> Response:
        """202 with the Location of the operation's state (Fabric's LRO pattern)."""
        operation = self.state.start_operation(result)
        base = str(request.base_url).rstrip("/")
        return Response(
            status_code=202,
            headers={
                "Location": f"{base}/v1/operations/{operation.id}",
                "x-ms-operation-id": operation.id,
                "Retry-After": retry_after_header(1, self.state.clock.time_scale),
            },
        )

    # ---- mirrored databases -------------------------------------------------------------
    async def list_mirrored(self, request: Request) -> Response:
        return self._list(MIRRORED)

    async def create_mirrored(self, request: Request) -> Response:
        body = await _json(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise FabricError(400, "InvalidInput", "displayName is required.")
        definition = body.get("definition")
        if definition is None:
            raise FabricError(
                400,
                "InvalidDefinition",
                "Creating a mirrored database without a definition is not supported.",
            )
        parts = decode_parts(definition)
        schema = _mirroring_schema(parts)
        item = Item(
            id=str(uuid.uuid4()),
            type=MIRRORED,
            display_name=name,
            description=str(body.get("description") or ""),
            parts=list(definition["parts"]),
            default_schema=schema,
        )
        self.state.add_item(item)
        now = self.state.clock.timestamp()
        base = f"{self.state.workspace_id}/{item.id}"
        self.state.store.ensure_dir(f"{base}/Files/LandingZone", now)
        self.state.store.ensure_dir(f"{base}/Tables", now)
        return JSONResponse(self._summary(item), status_code=201)

    async def get_mirrored(self, request: Request) -> Response:
        return JSONResponse(self._summary(self._mirrored(request)))

    async def update_mirrored(self, request: Request) -> Response:
        item = self._mirrored(request)
        body = await _json(request)
        if "displayName" in body:
            item.display_name = str(body["displayName"])
        if "description" in body:
            item.description = str(body["description"])
        return JSONResponse(self._summary(item))

    async def delete_mirrored(self, request: Request) -> Response:
        self.state.delete_item(self._mirrored(request))
        return Response(status_code=200)

    async def get_definition(self, request: Request) -> Response:
        item_type = MIRRORED if "mirroredDatabases" in request.url.path else SEMANTIC
        item = self.state.item(request.path_params["itemId"], item_type)
        return JSONResponse({"definition": {"parts": item.parts}})

    async def update_mirrored_definition(self, request: Request) -> Response:
        item = self._mirrored(request)
        body = await _json(request)
        parts = decode_parts(body.get("definition"))
        item.default_schema = _mirroring_schema(parts)
        item.parts = list(body["definition"]["parts"])
        return Response(status_code=200)

    def _mirrored(self, request: Request) -> Item:
        return self.state.item(request.path_params["itemId"], MIRRORED)

    async def start_mirroring(self, request: Request) -> Response:
        item = self._mirrored(request)
        if item.mirroring_status == "Initializing":
            raise FabricError(400, "MirroringNotReady", "Mirroring can't start while Initializing.")
        item.mirroring_status = "Running"
        self.state.replicate(item.id)
        return Response(status_code=200)

    async def stop_mirroring(self, request: Request) -> Response:
        self._mirrored(request).mirroring_status = "Stopped"
        return Response(status_code=200)

    async def mirroring_status(self, request: Request) -> Response:
        return JSONResponse({"status": self._mirrored(request).mirroring_status})

    async def tables_status(self, request: Request) -> Response:
        item = self._mirrored(request)
        prefix = f"{self.state.workspace_id}/{item.id}/"
        data: list[dict[str, Any]] = []
        if item.mirroring_status == "Running":
            self.state.replicate(item.id)
            for folder, table in self.state.replicator.tables.items():
                if not folder.startswith(prefix):
                    continue
                entry: dict[str, Any] = {
                    "sourceSchemaName": table.schema,
                    "sourceTableName": table.name,
                    "status": table.status,
                    "metrics": {
                        "processedBytes": table.processed_bytes,
                        "processedRows": table.processed_rows,
                        "lastSyncDateTime": table.last_sync or utc(self.state.clock.timestamp()),
                    },
                }
                if table.error:
                    entry["error"] = {"errorCode": "TableReplicationFailed", "message": table.error}
                data.append(entry)
        return JSONResponse({"continuationToken": None, "continuationUri": None, "data": data})

    # ---- semantic models ----------------------------------------------------------------
    def _check_definition(self, definition: Any) -> None:
        """The parts, then the TMDL: it reads, its relationships name its columns, and each
        Direct Lake partition binds to a replicated table (columns and types)."""
        parts = decode_parts(definition)
        _check_semantic_model(parts)
        if "model.bim" in parts:
            return
        self.state.replicate()
        try:
            check_direct_lake(read_model(parts), self.state.delta_tables)
        except TmdlError as exc:
            raise FabricError(400, "InvalidDefinition", str(exc)) from None

    async def list_semantic(self, request: Request) -> Response:
        return self._list(SEMANTIC)

    async def create_semantic(self, request: Request) -> Response:
        body = await _json(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise FabricError(400, "InvalidInput", "displayName is required.")
        definition: Any = body.get("definition")
        self._check_definition(definition)
        item = self.state.add_item(
            Item(
                id=str(uuid.uuid4()),
                type=SEMANTIC,
                display_name=name,
                description=str(body.get("description") or ""),
                parts=list(definition["parts"]),
            )
        )
        if self.state.lro_polls == 0:
            return JSONResponse(self._summary(item), status_code=201)
        return self._accepted(request, self._summary(item))

    async def get_semantic(self, request: Request) -> Response:
        return JSONResponse(self._summary(self.state.item(request.path_params["itemId"], SEMANTIC)))

    async def update_semantic_definition(self, request: Request) -> Response:
        item = self.state.item(request.path_params["itemId"], SEMANTIC)
        body = await _json(request)
        self._check_definition(body.get("definition"))
        item.parts = list(body["definition"]["parts"])
        item.versions += 1
        if self.state.lro_polls == 0:
            return Response(status_code=200)
        return self._accepted(request, None)

    async def delete_semantic(self, request: Request) -> Response:
        self.state.delete_item(self.state.item(request.path_params["itemId"], SEMANTIC))
        return Response(status_code=200)

    # ---- reports (PBIR bound to a semantic model of this workspace) ---------------------
    def _check_report(self, definition: Any) -> str:
        """The semantic model the PBIR definition is bound to (byConnection), which must be
        an item here holding every measure and column its visuals show."""
        parts = decode_parts(definition)
        try:
            text = {path: raw.decode("utf-8") for path, raw in parts.items()}
            model_id = bound_dataset(text)
            pages, _ = parse_pages(text)
        except (DefinitionError, UnicodeDecodeError) as exc:
            raise FabricError(400, "InvalidDefinition", str(exc)) from None
        model = self.state.items.get(model_id)
        if model is None or model.type != SEMANTIC:
            msg = f"The semantic model {model_id} is not in the workspace."
            raise FabricError(400, "InvalidDefinition", msg)
        try:
            tables = read_model(
                {p["path"]: base64.b64decode(p["payload"]) for p in model.parts}
            ).tables
        except TmdlError as exc:
            raise FabricError(400, "InvalidDefinition", str(exc)) from None
        measures = {m.name for t in tables.values() for m in t.of("measure")}
        for visual in (v for page in pages for v in page.visuals):
            missing = [m for m in (*visual.measures, visual.top or "") if m and m not in measures]
            if visual.by is not None:
                table, column = visual.by
                if table not in tables or column not in {
                    c.name for c in tables[table].of("column")
                }:
                    missing.append(f"{table}[{column}]")
            if missing:
                msg = f"Visual {visual.name} shows what the semantic model lacks: {missing}"
                raise FabricError(400, "InvalidDefinition", msg)
        return model_id

    async def list_reports(self, request: Request) -> Response:
        return self._list(REPORT)

    async def create_report(self, request: Request) -> Response:
        body = await _json(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise FabricError(400, "InvalidInput", "displayName is required.")
        definition: Any = body.get("definition")
        bound = self._check_report(definition)
        item = self.state.add_item(
            Item(
                id=str(uuid.uuid4()),
                type=REPORT,
                display_name=name,
                description=str(body.get("description") or ""),
                parts=list(definition["parts"]),
                bound_to=bound,
            )
        )
        if self.state.lro_polls == 0:
            return JSONResponse(self._summary(item), status_code=201)
        return self._accepted(request, self._summary(item))

    async def update_report_definition(self, request: Request) -> Response:
        item = self.state.item(request.path_params["itemId"], REPORT)
        body = await _json(request)
        item.bound_to = self._check_report(body.get("definition"))
        item.parts = list(body["definition"]["parts"])
        item.versions += 1
        if self.state.lro_polls == 0:
            return Response(status_code=200)
        return self._accepted(request, None)

    # ---- long-running operations --------------------------------------------------------
    async def operation_state(self, request: Request) -> Response:
        operation = self.state.operations.get(request.path_params["operationId"])
        if operation is None:
            raise FabricError(404, "OperationNotFound", "The operation was not found.")
        base = str(request.base_url).rstrip("/")
        headers = {"x-ms-operation-id": operation.id}
        if operation.status == "Running":
            operation.polls_left -= 1
            headers["Location"] = f"{base}/v1/operations/{operation.id}"
            headers["Retry-After"] = retry_after_header(1, self.state.clock.time_scale)
        if operation.polls_left <= 0:
            operation.status = "Succeeded"
        if operation.status == "Succeeded" and operation.result is not None:
            headers["Location"] = f"{base}/v1/operations/{operation.id}/result"
        body = {
            "status": operation.status,
            "createdTimeUtc": utc(operation.created),
            "lastUpdatedTimeUtc": utc(self.state.clock.timestamp()),
            "percentComplete": 100 if operation.status == "Succeeded" else 50,
            "error": None,
        }
        return JSONResponse(body, headers=headers)

    async def operation_result(self, request: Request) -> Response:
        operation = self.state.operations.get(request.path_params["operationId"])
        if operation is None or operation.status != "Succeeded" or operation.result is None:
            raise FabricError(400, "OperationHasNoResult", "The operation has no result (yet).")
        return JSONResponse(operation.result)


def routes(state: FabricState) -> list[Route]:
    api = FabricApi(state)
    op = api.operation
    ws = "/v1/workspaces/{workspaceId}"
    mirrored = f"{ws}/mirroredDatabases/{{itemId}}"
    semantic = f"{ws}/semanticModels/{{itemId}}"
    return [
        Route(f"{ws}/mirroredDatabases", op("ListMirroredDatabases", api.list_mirrored)),
        Route(
            f"{ws}/mirroredDatabases",
            op("CreateMirroredDatabase", api.create_mirrored),
            methods=["POST"],
        ),
        Route(mirrored, op("GetMirroredDatabase", api.get_mirrored), methods=["GET"]),
        Route(mirrored, op("UpdateMirroredDatabase", api.update_mirrored), methods=["PATCH"]),
        Route(mirrored, op("DeleteMirroredDatabase", api.delete_mirrored), methods=["DELETE"]),
        Route(
            f"{mirrored}/getDefinition",
            op("GetMirroredDatabaseDefinition", api.get_definition),
            methods=["POST"],
        ),
        Route(
            f"{mirrored}/updateDefinition",
            op("UpdateMirroredDatabaseDefinition", api.update_mirrored_definition),
            methods=["POST"],
        ),
        Route(
            f"{mirrored}/startMirroring",
            op("StartMirroring", api.start_mirroring),
            methods=["POST"],
        ),
        Route(
            f"{mirrored}/stopMirroring", op("StopMirroring", api.stop_mirroring), methods=["POST"]
        ),
        Route(
            f"{mirrored}/getMirroringStatus",
            op("GetMirroringStatus", api.mirroring_status),
            methods=["POST"],
        ),
        Route(
            f"{mirrored}/getTablesMirroringStatus",
            op("GetTablesMirroringStatus", api.tables_status),
            methods=["POST"],
        ),
        Route(f"{ws}/semanticModels", op("ListSemanticModels", api.list_semantic)),
        Route(
            f"{ws}/semanticModels",
            op("CreateSemanticModel", api.create_semantic),
            methods=["POST"],
        ),
        Route(semantic, op("GetSemanticModel", api.get_semantic), methods=["GET"]),
        Route(semantic, op("DeleteSemanticModel", api.delete_semantic), methods=["DELETE"]),
        Route(
            f"{semantic}/getDefinition",
            op("GetSemanticModelDefinition", api.get_definition),
            methods=["POST"],
        ),
        Route(
            f"{semantic}/updateDefinition",
            op("UpdateSemanticModelDefinition", api.update_semantic_definition),
            methods=["POST"],
        ),
        Route(f"{ws}/reports", op("ListReports", api.list_reports)),
        Route(f"{ws}/reports", op("CreateReport", api.create_report), methods=["POST"]),
        Route(
            f"{ws}/reports/{{itemId}}/updateDefinition",
            op("UpdateReportDefinition", api.update_report_definition),
            methods=["POST"],
        ),
        Route("/v1/operations/{operationId}", op("GetOperationState", api.operation_state)),
        Route(
            "/v1/operations/{operationId}/result",
            op("GetOperationResult", api.operation_result),
        ),
    ]

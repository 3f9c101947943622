"""The push dataset REST API under /v1.0/myorg/groups/{groupId}/, with its limits and refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.powerbi.errors import ApiError, bad_request, not_found
from sandbox.powerbi.limits import retry_after_header
from sandbox.powerbi.model import (
    TableSchema,
    TableState,
    check_object,
    parse_dataset,
    parse_retention,
    parse_table,
)
from sandbox.powerbi.state import Dataset, PowerBIState, Principal

Handler = Callable[[Request, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

RETIRED_CODE = "PushDatasetCreationRetired"
RETIRED_MESSAGE = (
    "Creating new push semantic models is no longer supported. Existing push semantic models "
    "keep working; use Microsoft Fabric Real-Time Intelligence instead."
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, state: PowerBIState) -> Any:
    """The body as JSON; 413 above the request size limit (the body is drained first)."""
    limit = state.limits.max_request_bytes
    declared = request.headers.get("content-length")
    too_large = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
        if not too_large:
            chunks.append(chunk)
    if too_large:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            f"The request body is larger than the {limit} bytes a request may carry",
        )
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


class PushDatasetApi:
    """The handlers of the push dataset operations, over one sandbox's state."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state
        self.limits = state.limits

    def operation(self, name: str, handler: Handler) -> Endpoint:
        """The endpoint around `handler`: authorization, pending posts, faults, stats."""
        state = self.state

        async def endpoint(request: Request) -> Response:
            request_id = str(uuid.uuid4())
            dataset: Dataset | None = None
            try:
                principal = state.principal_for(request.headers.get("authorization"))
                state.authorize_workspace(principal, request.path_params["groupId"])
                if name == "PostRowsInGroup":
                    dataset = self.claim_pending(request)
                if state.faults.latency_ms > 0:
                    await asyncio.sleep(state.faults.latency_ms / 1000)
                injected = state.injected_error(name)
                if injected is not None:
                    raise injected
                response = await handler(request, principal)
                response.headers["RequestId"] = request_id
            except ApiError as exc:
                response = exc.response(request_id)
            finally:
                if dataset is not None:
                    dataset.pending -= 1
            state.record(name, response.status_code)
            return response

        return endpoint

    def claim_pending(self, request: Request) -> Dataset | None:
        """Count a POST rows request as pending on its dataset; 429 above the pending limit."""
        dataset = self.state.datasets.get(request.path_params["datasetId"])
        if dataset is None:
            return None
        limits = self.limits
        if dataset.pending >= limits.max_pending_posts:
            raise ApiError(
                429,
                "TooManyRequests",
                f"More than {limits.max_pending_posts} POST rows requests "
                "are pending on this dataset",
                headers={"Retry-After": retry_after_header(1, self.state.clock.time_scale)},
            )
        dataset.pending += 1
        return dataset

    def api_base(self, request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/v1.0/myorg/groups/{self.state.workspace_id}"

    def find_dataset(self, request: Request) -> Dataset:
        dataset_id = request.path_params["datasetId"]
        dataset = self.state.datasets.get(dataset_id)
        if dataset is None:
            raise not_found(
                f"Dataset {dataset_id} is not found! please verify datasetId is correct "
                "and user have sufficient permissions."
            )
        return dataset

    @staticmethod
    def find_table(dataset: Dataset, request: Request) -> TableState:
        name = request.path_params["tableName"]
        table = dataset.table(name)
        if table is None:
            raise not_found(
                f"Table '{name}' is not in dataset {dataset.id}; tables cannot be added "
                "after a push dataset is created"
            )
        return table

    async def list_datasets(self, request: Request, principal: Principal) -> Response:
        state = self.state
        with state.lock:
            value = [ds.summary() for ds in state.datasets.values()]
        return JSONResponse(
            {"@odata.context": f"{self.api_base(request)}/$metadata#datasets", "value": value}
        )

    async def create_dataset(self, request: Request, principal: Principal) -> Response:
        state = self.state
        if state.faults.push_dataset_creation_retired:
            raise ApiError(400, RETIRED_CODE, RETIRED_MESSAGE)
        retention = parse_retention(request.query_params.get("defaultRetentionPolicy"))
        body = await read_json(request, state)
        schema = parse_dataset(body, self.limits)
        dataset = state.create_dataset(schema, retention, principal)
        return JSONResponse(
            {
                "@odata.context": f"{self.api_base(request)}/$metadata#datasets/$entity",
                "id": dataset.id,
                "name": dataset.name,
                "defaultRetentionPolicy": dataset.retention,
            },
            status_code=201,
        )

    async def get_dataset(self, request: Request, principal: Principal) -> Response:
        dataset = self.find_dataset(request)
        with self.state.lock:
            body = dataset.summary()
        return JSONResponse(
            {"@odata.context": f"{self.api_base(request)}/$metadata#datasets/$entity", **body}
        )

    async def delete_dataset(self, request: Request, principal: Principal) -> Response:
        dataset = self.find_dataset(request)
        with self.state.lock:
            self.state.datasets.pop(dataset.id, None)
        return Response(status_code=200)

    async def get_tables(self, request: Request, principal: Principal) -> Response:
        dataset = self.find_dataset(request)
        with self.state.lock:
            value = [t.schema.to_json() for t in dataset.tables.values()]
        return JSONResponse(
            {"@odata.context": f"{self.api_base(request)}/$metadata#tables", "value": value}
        )

    async def put_table(self, request: Request, principal: Principal) -> Response:
        dataset = self.find_dataset(request)
        table = self.find_table(dataset, request)
        body = await read_json(request, self.state)
        schema = parse_table(body, "table", self.limits)
        if schema.name != table.schema.name:
            raise bad_request(
                f"the table in the body is named '{schema.name}', the URL names "
                f"'{table.schema.name}'; a table cannot be renamed"
            )
        if schema.initial_rows:
            raise bad_request("PUT a table changes its schema only; POST rows to add rows")
        _check_relationships_kept(dataset, schema)
        with self.state.lock:
            table.replace_schema(schema)
        return JSONResponse(schema.to_json())

    async def post_rows(self, request: Request, principal: Principal) -> Response:
        state = self.state
        limits = self.limits
        dataset = self.find_dataset(request)
        table = self.find_table(dataset, request)
        body = await read_json(request, state)
        check_object(body, {"rows": list}, ("rows",), "request")
        raw_rows: list[Any] = body["rows"]
        count = len(raw_rows)
        if count > limits.max_rows_per_post:
            raise bad_request(
                f"The request has {count} rows; at most {limits.max_rows_per_post} rows "
                "may be added per request"
            )
        with state.lock:
            self.check_throttles(dataset, count)
            rows = table.convert_rows(raw_rows, limits)
            if dataset.retention != "basicFIFO" and table.count + count > limits.max_rows_none:
                raise bad_request(
                    f"Table '{table.schema.name}' would hold {table.count + count} rows; a push "
                    f"table without a retention policy holds at most {limits.max_rows_none}"
                )
            state.store_rows(dataset, table, rows)
            self.record_post(dataset, count)
        return Response(status_code=200)

    def throttled(self, wait: float, message: str) -> ApiError:
        return ApiError(
            429,
            "TooManyRequests",
            message,
            headers={"Retry-After": retry_after_header(wait, self.state.clock.time_scale)},
        )

    def check_throttles(self, dataset: Dataset, count: int) -> None:
        limits = self.limits
        now = self.state.clock.timestamp()
        wait = dataset.posts_minute.wait_for_room(now, limits.posts_per_minute)
        if wait > 0:
            raise self.throttled(
                wait,
                f"Rate limit exceeded: at most {limits.posts_per_minute} POST rows requests "
                "a minute per dataset",
            )
        if any(t.count >= limits.big_table_rows for t in dataset.tables.values()):
            wait = dataset.posts_hour.wait_for_room(now, limits.posts_per_hour_big_table)
            if wait > 0:
                raise self.throttled(
                    wait,
                    f"Rate limit exceeded: at most {limits.posts_per_hour_big_table} POST rows "
                    f"requests an hour once a table holds {limits.big_table_rows} rows",
                )
        wait = dataset.rows_hour.wait_for_room(now, limits.rows_per_hour, count)
        if wait > 0:
            raise self.throttled(wait, "Maximum number of rows exceeded in time window")

    def record_post(self, dataset: Dataset, count: int) -> None:
        now = self.state.clock.timestamp()
        dataset.posts_minute.add(now)
        dataset.posts_hour.add(now)
        if count:
            dataset.rows_hour.add(now, count)
        dataset.max_posts_in_a_minute = max(
            dataset.max_posts_in_a_minute, dataset.posts_minute.used(now)
        )
        stats = self.state.stats
        stats.posts_minute.add(now)
        stats.max_posts_in_a_minute = max(stats.max_posts_in_a_minute, stats.posts_minute.used(now))
        stats.rows_per_post.append(count)
        stats.rows_posted += count

    async def delete_rows(self, request: Request, principal: Principal) -> Response:
        dataset = self.find_dataset(request)
        table = self.find_table(dataset, request)
        with self.state.lock:
            table.rows.clear()
            table.synthetic = 0
        return Response(status_code=200)

    async def my_workspace(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            self.state.principal_for(request.headers.get("authorization"))
            raise ApiError(
                403,
                "PowerBINotAuthorizedException",
                "A service principal cannot use 'My workspace': "
                "call /v1.0/myorg/groups/{groupId}/... instead",
            )
        except ApiError as exc:
            response = exc.response(request_id)
        self.state.record("MyWorkspace", response.status_code)
        return response


def _check_relationships_kept(dataset: Dataset, schema: TableSchema) -> None:
    """A new table schema keeps every column a relationship of the dataset uses."""
    for rel in dataset.relationships:
        for rel_table, rel_column in (
            (rel.from_table, rel.from_column),
            (rel.to_table, rel.to_column),
        ):
            if rel_table == schema.name and schema.column(rel_column) is None:
                raise bad_request(
                    f"relationship '{rel.name}' uses column '{rel_column}', "
                    "which the new schema drops"
                )


def routes(state: PowerBIState) -> list[Route]:
    """Every push dataset operation, named by its Swagger operationId (for the stats)."""
    api = PushDatasetApi(state)
    op = api.operation
    group = "/v1.0/myorg/groups/{groupId}"
    table = f"{group}/datasets/{{datasetId}}/tables/{{tableName}}"
    return [
        Route(f"{group}/datasets", op("GetDatasetsInGroup", api.list_datasets), methods=["GET"]),
        Route(f"{group}/datasets", op("PostDatasetInGroup", api.create_dataset), methods=["POST"]),
        Route(
            f"{group}/datasets/{{datasetId}}",
            op("GetDatasetInGroup", api.get_dataset),
            methods=["GET"],
        ),
        Route(
            f"{group}/datasets/{{datasetId}}",
            op("DeleteDatasetInGroup", api.delete_dataset),
            methods=["DELETE"],
        ),
        Route(
            f"{group}/datasets/{{datasetId}}/tables",
            op("GetTablesInGroup", api.get_tables),
            methods=["GET"],
        ),
        Route(table, op("PutTableInGroup", api.put_table), methods=["PUT"]),
        Route(f"{table}/rows", op("PostRowsInGroup", api.post_rows), methods=["POST"]),
        Route(f"{table}/rows", op("DeleteRowsInGroup", api.delete_rows), methods=["DELETE"]),
        Route(
            "/v1.0/myorg/datasets{rest:path}",
            api.my_workspace,
            methods=["GET", "POST", "PUT", "DELETE"],
        ),
    ]

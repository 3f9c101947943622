"""OneLake's Data Lake Storage Gen2 endpoint: the subset the Azure SDK uses for files.

Served under `/onelake/`, so `DataLakeServiceClient("https://127.0.0.1:<port>/onelake")` names
the account `onelake` (the SDK's path-style addressing for loopback hosts) and its file system
is the workspace id, as on `https://onelake.dfs.fabric.microsoft.com/<workspace>/<item>/...`.
The SDK sends some calls (properties, download) through its blob client; on loopback both go to
this one URL space, so HEAD and GET answer with the headers of both APIs.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.fabric.errors import (
    STORAGE_VERSION,
    DroppedResponse,
    StorageError,
    path_not_found,
)
from sandbox.fabric.onelake import Node
from sandbox.fabric.state import STORAGE_RESOURCE, FabricState
from sandbox.powerbi.errors import ApiError
from sandbox.powerbi.state import Principal

MAX_RESULTS = 5000
# Windows FILETIME (100 ns ticks since 1601) of the Unix epoch, as the list answer uses.
_EPOCH_FILETIME = 116_444_736_000_000_000

Handler = Callable[[Request, str, str], Awaitable[Response]]


def _http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def _path_headers(node: Node) -> dict[str, str]:
    headers = {
        "ETag": node.etag,
        "Last-Modified": _http_date(node.modified),
        "x-ms-creation-time": _http_date(node.created),
        "x-ms-resource-type": "directory" if node.is_dir else "file",
        "x-ms-blob-type": "BlockBlob",
        "x-ms-owner": "$superuser",
        "x-ms-group": "$superuser",
        "x-ms-permissions": "---------",
        "x-ms-server-encrypted": "true",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
        "Accept-Ranges": "bytes",
        "Content-Type": node.content_type,
    }
    if node.is_dir:
        headers["x-ms-meta-hdi_isfolder"] = "true"
    return headers


class OneLakeApi:
    """The DFS handlers over one sandbox's state."""

    def __init__(self, state: FabricState) -> None:
        self.state = state

    async def endpoint(self, request: Request) -> Response:
        state = self.state
        request_id = str(uuid.uuid4())
        filesystem, _, path = request.path_params["path"].strip("/").partition("/")
        operation, handler = self._route(request, path)
        head = request.method == "HEAD"
        try:
            if state.faults.latency_ms > 0:
                await asyncio.sleep(state.faults.latency_ms / 1000)
            self._authorize(request, filesystem)
            injected = state.injected_error(operation)
            if injected is not None:
                raise StorageError(
                    injected.status,
                    "ServerBusy" if injected.status == 503 else "InternalError",
                    injected.message,
                    headers=injected.headers,
                )
            drop = state.should_drop(operation)
            if drop and not state.drops.drop_after_apply:
                return self._dropped(operation)
            response = await handler(request, filesystem, path)
            if drop:
                return self._dropped(operation)
        except StorageError as exc:
            response = exc.response(request_id, head=head)
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-version"] = STORAGE_VERSION
        state.record(operation, response.status_code)
        return response

    def _dropped(self, operation: str) -> Response:
        self.state.record(operation, 0)
        self.state.record("DroppedConnection", 0)
        return DroppedResponse()

    def _route(self, request: Request, path: str) -> tuple[str, Handler]:
        query = request.query_params
        method = request.method
        if method == "PUT":
            if "x-ms-rename-source" in request.headers:
                return "RenamePath", self.rename
            return "CreatePath", self.create
        if method == "PATCH":
            action = query.get("action", "")
            return {
                "append": ("AppendData", self.append),
                "flush": ("FlushData", self.flush),
                "setProperties": ("SetPathProperties", self.set_properties),
            }.get(action, (f"UpdatePath:{action}", self.refuse_update))
        if method == "DELETE":
            return "DeletePath", self.delete
        if method == "HEAD":
            return "GetPathProperties", self.properties
        if not path:
            return "ListPaths", self.list_paths
        return "ReadPath", self.read

    def _authorize(self, request: Request, filesystem: str) -> Principal:
        state = self.state
        challenge = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{state.tenant_id}"
            f"/oauth2/authorize resource_id={STORAGE_RESOURCE}"
        )
        try:
            principal = state.principal_for(request.headers.get("authorization"), STORAGE_RESOURCE)
        except ApiError as exc:
            raise StorageError(
                401,
                "InvalidAuthenticationInfo",
                f"Server failed to authenticate the request: {exc.message}",
                headers={"WWW-Authenticate": challenge},
            ) from None
        if filesystem.lower() != state.workspace_id:
            raise StorageError(
                404, "FilesystemNotFound", "The specified filesystem does not exist."
            )
        if principal.client_id not in state.members:
            raise StorageError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        return principal

    def _full(self, filesystem: str, path: str) -> str:
        return f"{filesystem.lower()}/{path}" if path else filesystem.lower()

    def _writable(self, filesystem: str, path: str) -> str:
        """Writes go under an item's Files/ folder; items and their top folders are Fabric's."""
        parts = path.split("/")
        item = self.state.items.get(parts[0].lower())
        if item is None or item.type != "MirroredDatabase":
            raise StorageError(404, "ItemNotFound", f"No item {parts[0]} in this workspace.")
        if len(parts) < 3 or parts[1] != "Files":
            raise StorageError(
                403,
                "OperationNotAllowedOnItemFolder",
                "Items and their Files and Tables folders are managed by Fabric; write under "
                f"{parts[0]}/Files/.",
            )
        return self._full(filesystem, path)

    def _after_write(self, path: str) -> None:
        self.state.replicate(path.split("/")[0].lower())

    def _now(self) -> float:
        return self.state.clock.timestamp()

    async def create(self, request: Request, filesystem: str, path: str) -> Response:
        resource = request.query_params.get("resource")
        if resource not in ("file", "directory"):
            raise StorageError(
                400, "InvalidQueryParameterValue", "resource must be file or directory"
            )
        if_none_match = request.headers.get("if-none-match") == "*"
        with self.state.lock:
            full = self._writable(filesystem, path)
            node = self.state.store.create(
                full,
                directory=resource == "directory",
                if_none_match=if_none_match,
                now=self._now(),
            )
            content_type = request.headers.get("x-ms-content-type")
            if content_type and not node.is_dir:
                node.content_type = content_type
            self._after_write(path)
            return Response(status_code=201, headers=_write_headers(node))

    async def rename(self, request: Request, filesystem: str, path: str) -> Response:
        source = unquote(request.headers["x-ms-rename-source"].split("?")[0]).strip("/")
        source_fs, _, source_path = source.partition("/")
        if source_fs.lower() != filesystem.lower() or not source_path:
            raise StorageError(
                400, "InvalidRenameSourcePath", "The source must be /<workspace>/<path>."
            )
        if_none_match = request.headers.get("if-none-match") == "*"
        with self.state.lock:
            source_full = self._writable(source_fs, source_path)
            full = self._writable(filesystem, path)
            self.state.store.rename(source_full, full, if_none_match=if_none_match, now=self._now())
            node = self.state.store.require(full)
            self._after_write(path)
            self._after_write(source_path)
            return Response(status_code=201, headers=_write_headers(node))

    async def append(self, request: Request, filesystem: str, path: str) -> Response:
        position = _position(request)
        body = await request.body()
        with self.state.lock:
            full = self._writable(filesystem, path)
            self.state.store.append(full, position, body, self._now())
        return Response(status_code=202, headers={"x-ms-request-server-encrypted": "true"})

    async def flush(self, request: Request, filesystem: str, path: str) -> Response:
        position = _position(request)
        with self.state.lock:
            full = self._writable(filesystem, path)
            node = self.state.store.flush(full, position, self._now())
            content_type = request.headers.get("x-ms-content-type")
            if content_type:
                node.content_type = content_type
            self._after_write(path)
            return Response(status_code=200, headers=_write_headers(node))

    async def set_properties(self, request: Request, filesystem: str, path: str) -> Response:
        with self.state.lock:
            node = self.state.store.require(self._writable(filesystem, path))
            return Response(status_code=200, headers=_write_headers(node))

    async def refuse_update(self, request: Request, filesystem: str, path: str) -> Response:
        """OneLake rejects setAccessControl(Recursive) and anything else unknown."""
        action = request.query_params.get("action", "")
        raise StorageError(
            400, "InvalidQueryParameterValue", f"action={action} is not supported by OneLake"
        )

    async def delete(self, request: Request, filesystem: str, path: str) -> Response:
        recursive = request.query_params.get("recursive", "").lower() == "true"
        with self.state.lock:
            full = self._writable(filesystem, path)
            self.state.store.delete(full, recursive=recursive)
            self._after_write(path)
        return Response(status_code=200)

    async def properties(self, request: Request, filesystem: str, path: str) -> Response:
        with self.state.lock:
            if not path:
                return Response(
                    status_code=200,
                    headers={"ETag": '"0x8D000000000000"', "Last-Modified": _http_date(0)},
                )
            node = self.state.store.get(self._full(filesystem, path))
            if node is None:
                raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
            headers = _path_headers(node)
            headers["Content-Length"] = str(len(node.content))
            return Response(status_code=200, headers=headers)

    async def read(self, request: Request, filesystem: str, path: str) -> Response:
        with self.state.lock:
            node = self.state.store.get(self._full(filesystem, path))
            if node is None:
                raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
            content = node.content
            headers = _path_headers(node)
        span = request.headers.get("x-ms-range") or request.headers.get("range")
        if not span or not content:
            return Response(content, status_code=200, headers=headers)
        start_text, _, end_text = span.removeprefix("bytes=").partition("-")
        start = int(start_text)
        end = min(int(end_text) if end_text else len(content) - 1, len(content) - 1)
        if start >= len(content):
            raise StorageError(416, "InvalidRange", "The range specified is invalid.")
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        return Response(content[start : end + 1], status_code=206, headers=headers)

    async def list_paths(self, request: Request, filesystem: str, path: str) -> Response:
        query = request.query_params
        if query.get("resource") != "filesystem":
            raise StorageError(
                400, "InvalidQueryParameterValue", "listing needs resource=filesystem"
            )
        directory = query.get("directory", "").strip("/")
        recursive = query.get("recursive", "").lower() == "true"
        limit = min(int(query.get("maxResults") or MAX_RESULTS), MAX_RESULTS)
        start = (
            int(base64.b64decode(query["continuation"]) or 0) if query.get("continuation") else 0
        )
        with self.state.lock:
            root = self._full(filesystem, directory)
            if directory and self.state.store.get(root) is None:
                raise path_not_found(directory)
            entries = list(self.state.store.children(root, recursive=recursive))
            page = entries[start : start + limit]
            paths = [_list_entry(name.partition("/")[2], node) for name, node in page]
        headers: dict[str, str] = {}
        if start + limit < len(entries):
            headers["x-ms-continuation"] = base64.b64encode(str(start + limit).encode()).decode()
        return JSONResponse({"paths": paths}, headers=headers)


def _position(request: Request) -> int:
    raw = request.query_params.get("position", "")
    if not raw.isdigit():
        raise StorageError(400, "InvalidQueryParameterValue", "position must be a number >= 0")
    return int(raw)


def _write_headers(node: Node) -> dict[str, str]:
    return {
        "ETag": node.etag,
        "Last-Modified": _http_date(node.modified),
        "x-ms-request-server-encrypted": "true",
        "Content-Length": "0",
    }


def _list_entry(name: str, node: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "contentLength": str(len(node.content)),
        "lastModified": _http_date(node.modified),
        "etag": node.etag.strip('"'),
        "owner": "$superuser",
        "group": "$superuser",
        "permissions": "---------",
        "creationTime": str(int(node.created * 10_000_000) + _EPOCH_FILETIME),
    }
    if node.is_dir:
        entry["isDirectory"] = "true"
    return entry


def routes(state: FabricState) -> list[Route]:
    api = OneLakeApi(state)
    return [
        Route(
            "/onelake/{path:path}",
            api.endpoint,
            methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"],
        )
    ]

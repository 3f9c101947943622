"""Refusals in the two shapes the emulated services use: Fabric REST and Data Lake Storage."""

from __future__ import annotations

from email.utils import formatdate

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from typing_extensions import override


class FabricError(Exception):
    """A Fabric REST refusal: `{"requestId", "errorCode", "message"}` (Fabric's ErrorResponse)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, request_id: str) -> Response:
        body = {"requestId": request_id, "errorCode": self.code, "message": self.message}
        headers = {**self.headers, "requestId": request_id, "x-ms-public-api-error-code": self.code}
        return JSONResponse(body, status_code=self.status, headers=headers)


class StorageError(Exception):
    """A Data Lake Storage refusal: `x-ms-error-code` and `{"error": {"code", "message"}}`.

    The Azure SDK reads the header first (HEAD responses carry no body).
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, request_id: str, *, head: bool = False) -> Response:
        headers = {
            **self.headers,
            "x-ms-error-code": self.code,
            "x-ms-request-id": request_id,
            "x-ms-version": STORAGE_VERSION,
            "Date": formatdate(usegmt=True),
        }
        if head:
            return Response(status_code=self.status, headers=headers)
        message = f"{self.message}\nRequestId:{request_id}\nTime:{formatdate(usegmt=True)}"
        body = {"error": {"code": self.code, "message": message}}
        return JSONResponse(body, status_code=self.status, headers=headers)


STORAGE_VERSION = "2025-01-05"


def path_not_found(path: str) -> StorageError:
    return StorageError(404, "PathNotFound", f"The specified path does not exist: {path}")


class DroppedResponse(Response):
    """The dropped-connection fault: headers promise a body that never comes.

    Returning with the body unfinished makes uvicorn close the connection; the client sees a
    broken read, not an HTTP status.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    @override
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1024"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})

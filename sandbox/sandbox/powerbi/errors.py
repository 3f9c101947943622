"""Errors answered the way Power BI answers them: `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A refusal of the REST API; becomes one JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, request_id: str) -> JSONResponse:
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(
            body, status_code=self.status, headers={**self.headers, "RequestId": request_id}
        )


def bad_request(message: str) -> ApiError:
    """The service's generic refusal of a malformed body."""
    return ApiError(400, "InvalidRequest", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "ItemNotFound", message)

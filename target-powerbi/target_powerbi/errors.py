"""Errors of the Power BI client that tell the user what to do; they never carry secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove bearer tokens and the given secret values from a message."""
    cleaned = _BEARER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            cleaned = cleaned.replace(secret, "***")
    return cleaned


class PowerBIError(Exception):
    """A Power BI or Entra ID failure, with a message that says what to do next."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AuthenticationError(PowerBIError):
    """Entra ID refused the service principal's credentials (AADSTS errors)."""


class TokenServiceError(PowerBIError):
    """The token service stayed unreachable or failing after the retries."""


class WorkspaceAccessError(PowerBIError):
    """The principal is not a Member or Admin of the workspace (HTTP 403)."""


class ServicePrincipalsDisabledError(PowerBIError):
    """The Fabric tenant setting that lets service principals call the APIs is off."""


class DatasetNotFoundError(PowerBIError):
    """A dataset the target created or found is gone (deleted outside the target)."""

    def __init__(self, message: str, *, dataset_id: str, status: int | None = 404) -> None:
        super().__init__(message, status=status, code="DatasetNotFound")
        self.dataset_id = dataset_id


class TableNotFoundError(PowerBIError):
    """The dataset exists but lacks the table (tables cannot be added after creation)."""

    def __init__(self, message: str, *, dataset_id: str, table: str) -> None:
        super().__init__(message, status=404, code="TableNotFound")
        self.dataset_id = dataset_id
        self.table = table


class PushDatasetsRetiredError(PowerBIError):
    """Power BI no longer creates push datasets (real-time streaming retirement)."""


class RequestRejectedError(PowerBIError):
    """Power BI refused a request as invalid (HTTP 4xx other than the cases above)."""


class ThrottledError(PowerBIError):
    """Power BI kept answering 429 beyond the bounded number of waits."""


class ServiceUnavailableError(PowerBIError):
    """5xx answers, timeouts or dropped connections outlasted the bounded retries."""

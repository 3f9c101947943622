"""OneLake files through Azure's own Data Lake Storage client: the landing zone's folders,
``_metadata.json``, the sequence of data files and their atomic publication.

Publication is upload-then-rename (Open mirroring best practices, "Publish files
atomically"): the file is uploaded as ``_<name>`` (the replicator ignores names that
start with an underscore) and renamed to its final name. When the answer to the rename
is lost, the SDK's retry finds the source gone (404 SourcePathNotFound) although the
file is published: the final path is checked before anything is published again
("verify-before-retry"). The next number comes from the folder's listing (the last
applied file stays in the folder, older ones move to ``_ProcessedFiles``), so a crash
at any point never reuses or skips a number.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.filedatalake import DataLakeServiceClient, ExponentialRetry
from typing_extensions import override

from target_powerbi.audit import AuditLog
from target_powerbi.auth import TokenProvider
from target_powerbi.errors import PowerBIError

STORAGE_SCOPE = "https://storage.azure.com/.default"
PROCESSED = "_ProcessedFiles"
METADATA = "_metadata.json"
DATA_FILE = re.compile(r"^(\d{20})\.parquet$")

# The SDK logs every request's headers at INFO: keep the run's log about the run.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


class FabricError(PowerBIError):
    """OneLake or Fabric refused or failed a call; the message says what to do."""


class ExpiringTokenProvider(TokenProvider):
    """`TokenProvider` that also keeps the token's lifetime, which Azure's SDK needs."""

    expires_in: float = 0.0

    @override
    def _acquire(self) -> dict[str, Any]:
        result = super()._acquire()
        if "expires_in" in result:
            self.expires_in = float(result["expires_in"])
        return result


class MsalCredential:
    """An azure-core ``TokenCredential`` over the target's MSAL token provider (one scope)."""

    def __init__(self, provider: ExpiringTokenProvider) -> None:
        self.provider = provider

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            token = self.provider.token()
        except PowerBIError as exc:
            raise ClientAuthenticationError(message=exc.message) from None
        return AccessToken(token, int(time.time() + self.provider.expires_in))


def _number(name: str) -> int | None:
    found = DATA_FILE.match(name.rsplit("/", 1)[-1])
    return int(found.group(1)) if found else None


class LandingZone:
    """One mirrored database's landing zone in OneLake."""

    def __init__(
        self,
        *,
        onelake_url: str,
        workspace_id: str,
        credential: MsalCredential,
        ca_bundle: str | None,
        max_retries: int,
        timeout: float,
        audit: AuditLog,
    ) -> None:
        self.workspace_id = workspace_id
        self.audit = audit
        self.service = DataLakeServiceClient(
            onelake_url,
            credential=credential,
            connection_verify=ca_bundle or True,
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=max_retries
            ),
            connection_timeout=timeout,
            read_timeout=timeout,
        )
        self.fs = self.service.get_file_system_client(workspace_id)
        self.database_id = ""

    def close(self) -> None:
        self.service.close()

    def folder(self, table: str) -> str:
        return f"{self.database_id}/Files/LandingZone/{table}"

    def last_number(self, table: str) -> int | None:
        """The highest data file number of a table folder (0: none yet; None: no folder)."""
        folder = self.folder(table)
        numbers = [0]
        for path in (folder, f"{folder}/{PROCESSED}"):
            try:
                for item in self.fs.get_paths(path=path, recursive=False):
                    number = _number(str(item.name))
                    if number is not None:
                        numbers.append(number)
            except ResourceNotFoundError:
                if path == folder:
                    return None
            except AzureError as exc:
                raise self._error("list", table, exc) from None
        return max(numbers)

    def key_columns(self, table: str) -> list[str] | None:
        """The ``keyColumns`` of a table folder's ``_metadata.json`` (None: no such file)."""
        client = self.fs.get_file_client(f"{self.folder(table)}/{METADATA}")
        try:
            text = client.download_file().readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error("read metadata", table, exc) from None
        try:
            found = json.loads(text or b"{}")
        except ValueError:
            return None
        keys = found.get("keyColumns") if isinstance(found, dict) else None
        return [str(k) for k in keys] if isinstance(keys, list) else None

    def create_table(self, table: str, key_columns: list[str]) -> None:
        """The table folder with its ``_metadata.json`` (keyColumns cannot change later)."""
        body = json.dumps({"keyColumns": key_columns}).encode()
        try:
            self.fs.get_directory_client(self.folder(table)).create_directory()
            self.fs.get_file_client(f"{self.folder(table)}/{METADATA}").upload_data(
                body, overwrite=True
            )
        except AzureError as exc:
            raise self._error("create table folder", table, exc) from None
        self._audit("put_metadata", table, 0)

    def drop_table(self, table: str) -> None:
        """Delete a table folder: Fabric drops the table; a new folder starts it again."""
        try:
            self.fs.get_directory_client(self.folder(table)).delete_directory()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._error("drop table folder", table, exc) from None
        self._audit("drop_table", table, 0)

    def publish(self, table: str, number: int, data: bytes, rows: int) -> None:
        """Upload ``_<name>``, then rename it to ``<name>``: the atomic publication."""
        name = f"{number:020d}.parquet"
        final = f"{self.folder(table)}/{name}"
        staged = self.fs.get_file_client(f"{self.folder(table)}/_{name}")
        try:
            staged.upload_data(data, overwrite=True)
            self._audit("upload_file", table, rows, name)
            try:
                staged.rename_file(f"{self.workspace_id}/{final}")
            except ResourceNotFoundError:
                # verify-before-retry: a lost answer to a rename that was done
                if not self.fs.get_file_client(final).exists():
                    raise
        except AzureError as exc:
            raise self._error("publish", table, exc) from None
        self._audit("publish_file", table, rows, name)

    def _audit(self, operation: str, table: str, rows: int, name: str | None = None) -> None:
        self.audit.write(
            operation=operation,
            dataset_id=self.database_id,
            table=table if name is None else f"{table}/{name}",
            rows=rows,
            status="ok",
            attempt=1,
        )

    def _error(self, what: str, table: str, exc: AzureError) -> FabricError:
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        code = getattr(exc, "error_code", None)
        first = str(exc.message or exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if status == 403:
            hint = "give the service principal the Contributor role (or higher) in the workspace"
        elif isinstance(exc, ClientAuthenticationError):
            hint = "check tenant_id, client_id, client_secret and authority_url"
        else:
            hint = "run again; nothing is lost (the next run lands what is still pending)"
        detail = f"{status or ''} {code or ''} {first}".strip()
        msg = f"OneLake could not {what} of table {table!r} ({detail}): {hint}."
        return FabricError(msg, status=status, code=str(code) if code else None)

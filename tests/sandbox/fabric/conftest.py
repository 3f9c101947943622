"""Fixtures: one Fabric sandbox over loopback TLS, reset between tests, driven by the real clients.

Files go through Azure's own `azure-storage-file-datalake` with an MSAL-backed TokenCredential,
REST calls through requests with an MSAL token: what a publisher runs against Fabric.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import msal
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.filedatalake import DataLakeServiceClient, FileSystemClient, LinearRetry
from msal.exceptions import MsalServiceError
from sandbox.fabric import FabricSandbox

STORAGE_SCOPE = "https://storage.azure.com/.default"
FABRIC_SCOPE = "https://api.fabric.microsoft.com/.default"
OPEN_MIRRORING = {
    "properties": {
        "source": {"type": "GenericMirror", "typeProperties": {}},
        "target": {
            "type": "MountedRelationalDatabase",
            "typeProperties": {"defaultSchema": "dbo", "format": "Delta"},
        },
    }
}


class PinnedSession(requests.Session):
    """A session whose `verify` wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify if verify is None or verify is True else verify
        return settings


class MsalCredential:
    """An azure-core TokenCredential over MSAL's client-credentials flow (MSAL caches)."""

    def __init__(self, app: msal.ConfidentialClientApplication) -> None:
        self.app = app

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            result = self.app.acquire_token_for_client(scopes=list(scopes))
        except MsalServiceError as exc:
            raise ClientAuthenticationError(message=str(exc)) from exc
        if "access_token" not in result:
            raise ClientAuthenticationError(message=str(result.get("error_description")))
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))


def parquet(rows: list[dict[str, Any]] | pa.Table, schema: pa.Schema | None = None) -> bytes:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def seq(number: int) -> str:
    return f"{number:020d}.parquet"


class Fabric:
    """The test's publisher: Fabric REST, OneLake files and the control API."""

    def __init__(
        self, sbx: FabricSandbox, client_id: str | None = None, secret: str | None = None
    ) -> None:
        self.sbx = sbx
        self.config = sbx.config
        self.session = PinnedSession()
        self.session.verify = self.config["ca_bundle"]
        self.app = msal.ConfidentialClientApplication(
            client_id or self.config["client_id"],
            client_credential=secret or self.config["client_secret"],
            authority=f"{self.config['authority_url']}/{self.config['tenant_id']}",
            http_client=self.session,
            instance_discovery=False,
        )
        self.credential = MsalCredential(self.app)
        self.service = DataLakeServiceClient(
            self.config["onelake_url"],
            credential=self.credential,
            connection_verify=self.config["ca_bundle"],
            # The SDK's default exponential retry waits 15 s first; the sandbox is local.
            retry_policy=LinearRetry(backoff=0.1, random_jitter_range=0, retry_total=3),
        )
        self.fs: FileSystemClient = self.service.get_file_system_client(self.config["workspace_id"])
        self.workspace = f"{self.config['fabric_api_url']}/workspaces/{self.config['workspace_id']}"

    def rest(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        token = self.credential.get_token(FABRIC_SCOPE).token
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("https://") else self.workspace + path
        return self.session.request(method, url, headers=headers, **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.sbx.url}/_sandbox{path}", **kwargs)

    def create_database(self, name: str = "Xero", *, start: bool = True) -> str:
        payload = base64.b64encode(json.dumps(OPEN_MIRRORING).encode()).decode()
        body = {
            "displayName": name,
            "definition": {
                "parts": [
                    {"path": "mirroring.json", "payload": payload, "payloadType": "InlineBase64"}
                ]
            },
        }
        response = self.rest("POST", "/mirroredDatabases", json=body)
        assert response.status_code == 201, response.text
        database = str(response.json()["id"])
        if start:
            started = self.rest("POST", f"/mirroredDatabases/{database}/startMirroring")
            assert started.status_code == 200, started.text
        return database

    @staticmethod
    def folder(database: str, table: str) -> str:
        return f"{database}/Files/LandingZone/{table}"

    def write_metadata(self, database: str, table: str, metadata: dict[str, Any]) -> None:
        self.fs.get_directory_client(self.folder(database, table)).create_directory()
        client = self.fs.get_file_client(f"{self.folder(database, table)}/_metadata.json")
        client.upload_data(json.dumps(metadata), overwrite=True)

    def publish(self, database: str, table: str, number: int | str, data: bytes) -> None:
        """Upload under an underscore name, then rename: the documented atomic publication."""
        name = seq(number) if isinstance(number, int) else number
        folder = self.folder(database, table)
        temporary = self.fs.get_file_client(f"{folder}/_{name}")
        temporary.upload_data(data, overwrite=True)
        temporary.rename_file(f"{self.config['workspace_id']}/{folder}/{name}")

    def tables(self) -> dict[str, dict[str, Any]]:
        body = self.control("GET", "/tables").json()
        return {f"{t['schema']}.{t['table']}": t for t in body["tables"]}

    def rows(self, table: str, **params: Any) -> list[dict[str, Any]]:
        response = self.control("GET", f"/tables/{table}/rows", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["rows"])

    def stats(self) -> dict[str, Any]:
        return dict(self.control("GET", "/stats").json())

    def faults(self, **faults: Any) -> None:
        """Set faults, with tokens for both resources already cached (so they hit the call)."""
        self.credential.get_token(STORAGE_SCOPE)
        self.credential.get_token(FABRIC_SCOPE)
        response = self.control("POST", "/faults", json=faults)
        assert response.status_code == 200, response.text

    def names(self, database: str, table: str) -> list[str]:
        folder = self.folder(database, table)
        return sorted(
            p.name[len(folder) + 1 :] for p in self.fs.get_paths(path=folder, recursive=True)
        )


@pytest.fixture(scope="session")
def sandbox() -> Iterator[FabricSandbox]:
    with FabricSandbox(time_scale=60.0) as sbx:
        yield sbx


@pytest.fixture
def fabric(sandbox: FabricSandbox) -> Fabric:
    sandbox.state.reset()
    return Fabric(sandbox)

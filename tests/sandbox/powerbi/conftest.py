"""Fixtures: one Power BI sandbox over real loopback TLS, reset between tests, and MSAL clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msal
import pytest
import requests
from sandbox.powerbi import PowerBISandbox

SCOPE = "https://analysis.windows.net/powerbi/api/.default"
TIME_SCALE = 60.0  # a sandbox minute lasts one real second


class PinnedSession(requests.Session):
    """A session whose `verify` wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.

    requests lets those variables override `Session.verify`; clients of the sandbox must pin it.
    """

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify if verify is None or verify is True else verify
        return settings


def session_for(config: dict[str, Any]) -> PinnedSession:
    session = PinnedSession()
    session.verify = config["ca_bundle"]
    return session


def msal_app(config: dict[str, Any], client_id: str, client_secret: str, session: requests.Session):
    """Exactly how target-powerbi builds its MSAL client."""
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret,
        authority=f"{config['authority_url']}/{config['tenant_id']}",
        http_client=session,
        instance_discovery=False,
    )


class Client:
    """A thin API client for the tests: an MSAL token and the workspace's base URL."""

    def __init__(
        self, sbx: PowerBISandbox, client_id: str | None = None, secret: str | None = None
    ):
        self.sbx = sbx
        self.config = sbx.config
        self.session = session_for(self.config)
        self.app = msal_app(
            self.config,
            client_id or self.config["client_id"],
            secret or self.config["client_secret"],
            self.session,
        )
        self.base = f"{self.config['api_url']}/groups/{self.config['workspace_id']}"

    def renew(self) -> None:
        """A new MSAL application: its cache counts real seconds, not the advanced sandbox clock."""
        self.app = msal_app(
            self.config, self.app.client_id, self.app.client_credential, self.session
        )

    def token(self) -> str:
        result = self.app.acquire_token_for_client(scopes=[SCOPE])
        assert "access_token" in result, result
        return str(result["access_token"])

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return self.session.request(method, self.base + path, headers=headers, **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.sbx.url + path, **kwargs)

    def create(self, body: dict[str, Any], retention: str | None = None) -> requests.Response:
        query = f"?defaultRetentionPolicy={retention}" if retention else ""
        return self.request("POST", f"/datasets{query}", json=body)

    def create_ok(self, body: dict[str, Any], retention: str | None = None) -> str:
        response = self.create(body, retention)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def post_rows(self, dataset_id: str, table: str, rows: list[Any]) -> requests.Response:
        path = f"/datasets/{dataset_id}/tables/{table}/rows"
        return self.request("POST", path, json={"rows": rows})


def simple_dataset(name: str = "Sales", **table: Any) -> dict[str, Any]:
    return {
        "name": name,
        "defaultMode": "Push",
        "tables": [
            {
                "name": "Invoices",
                "columns": [
                    {"name": "id", "dataType": "Int64"},
                    {"name": "amount", "dataType": "Decimal"},
                    {"name": "paid", "dataType": "Boolean"},
                    {"name": "date", "dataType": "DateTime"},
                    {"name": "contact", "dataType": "String"},
                    {"name": "rate", "dataType": "Double"},
                ],
                **table,
            }
        ],
    }


@pytest.fixture(scope="session")
def powerbi_sandbox() -> Iterator[PowerBISandbox]:
    with PowerBISandbox(time_scale=TIME_SCALE, token_lifetime_seconds=3600) as sbx:
        yield sbx


@pytest.fixture
def sbx(powerbi_sandbox: PowerBISandbox) -> PowerBISandbox:
    powerbi_sandbox.state.reset()
    return powerbi_sandbox


@pytest.fixture
def client(sbx: PowerBISandbox) -> Client:
    return Client(sbx)

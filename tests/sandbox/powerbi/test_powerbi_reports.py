"""The Power BI sandbox's Fabric report calls and its viewer (issue 17).

Create, updateDefinition and getDefinition answer 202 with a Location to poll; a
definition must reference a dataset of the workspace byConnection; the viewer computes
each visual with the measures' Python reference and answers over plain HTTP.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import requests
from sandbox.powerbi import PowerBISandbox
from target_powerbi.model import Model
from target_powerbi.report import (
    Page,
    ReportSpec,
    Visual,
    connection_string,
    definition_body,
    pbir_parts,
)

from .conftest import Client, simple_dataset

MODEL = Model(measures={"Sales": [{"name": "Total", "expression": "SUM(Sales[Amount])"}]})
SPEC = ReportSpec(
    name="Sales report",
    pages=(Page("totals", "Totals", (Visual("card", "Total", ("Total",)),)),),
    slicer=None,
    landing_page="totals",
)


def _fabric(client: Client) -> str:
    return f"{client.sbx.url}/v1/workspaces/{client.config['workspace_id']}"


def _definition(client: Client, dataset_id: str) -> dict[str, Any]:
    connection = connection_string(client.config["workspace_id"], "Sales", dataset_id)
    return definition_body(pbir_parts(SPEC, MODEL, connection))


def _finish(client: Client, response: requests.Response) -> Any:
    """Poll a 202's Location until the operation succeeds; its result."""
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert response.headers["x-ms-operation-id"] in location
    auth = {"Authorization": f"Bearer {client.token()}"}
    early = client.session.get(f"{location}/result", headers=auth)
    assert early.status_code == 400  # not before it succeeded
    assert client.session.get(location, headers=auth).json()["status"] == "Running"
    for _ in range(20):
        state = client.session.get(location, headers=auth).json()
        if state["status"] == "Succeeded":
            result = client.session.get(f"{location}/result", headers=auth)
            return result.json() if result.content else None
        time.sleep(0.1)
    raise AssertionError(state)


def _post(client: Client, path: str, body: Any, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or client.token()}"}
    return client.session.post(_fabric(client) + path, json=body, headers=headers)


def test_create_list_update_and_get_definition(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset("Sales"))
    body = {"displayName": "Sales report", "definition": _definition(client, dataset_id)}
    item = _finish(client, _post(client, "/reports", body))
    assert item["displayName"] == "Sales report" and item["type"] == "Report"
    listed = client.session.get(
        _fabric(client) + "/reports", headers={"Authorization": f"Bearer {client.token()}"}
    ).json()["value"]
    assert [r["id"] for r in listed] == [item["id"]]
    again = _post(client, "/reports", body)
    assert again.status_code == 409
    assert again.json()["errorCode"] == "ItemDisplayNameAlreadyInUse"

    other = client.create_ok(simple_dataset("Sales"))
    path = f"/reports/{item['id']}/updateDefinition"
    assert _finish(client, _post(client, path, {"definition": _definition(client, other)})) is None
    (report,) = client.control("GET", "/_sandbox/reports").json()["reports"]
    assert report["datasetId"] == other
    assert report["pages"][0]["visuals"][0]["measures"] == ["Total"]

    got = _finish(client, _post(client, f"/reports/{item['id']}/getDefinition", None))
    parts = {p["path"]: base64.b64decode(p["payload"]).decode() for p in got["definition"]["parts"]}
    assert (
        other
        in json.loads(parts["definition.pbir"])["datasetReference"]["byConnection"][
            "connectionString"
        ]
    )


def test_a_definition_must_bind_a_dataset_of_the_workspace_by_connection(client: Client) -> None:
    dataset_id = client.create_ok(simple_dataset("Sales"))
    definition = _definition(client, dataset_id)
    by_path = {
        "$schema": "x",
        "version": "4.0",
        "datasetReference": {"byPath": {"path": "../Sales.SemanticModel"}},
    }
    for part in definition["parts"]:
        if part["path"] == "definition.pbir":
            part["payload"] = base64.b64encode(json.dumps(by_path).encode()).decode()
    refused = _post(client, "/reports", {"displayName": "R", "definition": definition})
    assert refused.status_code == 400
    assert "byConnection" in refused.json()["message"]
    unknown = _definition(client, "00000000-0000-0000-0000-000000000000")
    refused = _post(client, "/reports", {"displayName": "R", "definition": unknown})
    assert refused.status_code == 400
    assert "not in the workspace" in refused.json()["message"]
    assert client.control("GET", "/_sandbox/reports").json()["reports"] == []


def test_report_calls_need_a_member_token(client: Client, sbx: PowerBISandbox) -> None:
    anonymous = client.session.get(_fabric(client) + "/reports")
    assert anonymous.status_code == 401
    outsider = Client(
        sbx, **dict(zip(("client_id", "secret"), sbx.outsider().values(), strict=True))
    )
    refused = client.session.get(
        _fabric(client) + "/reports", headers={"Authorization": f"Bearer {outsider.token()}"}
    )
    assert refused.status_code in (401, 403)


def test_the_viewer_answers_over_plain_http(client: Client, sbx: PowerBISandbox) -> None:
    dataset_id = client.create_ok(simple_dataset("Sales"))
    body = {"displayName": "Sales report", "definition": _definition(client, dataset_id)}
    item = _finish(client, _post(client, "/reports", body))
    plain = requests.Session()
    plain.trust_env = False
    assert sbx.viewer_url.startswith("http://127.0.0.1:")
    index = plain.get(sbx.viewer_url, timeout=10)
    assert f"/reports/{item['id']}" in index.text
    page = plain.get(f"{sbx.viewer_url}reports/{item['id']}", timeout=10)
    assert page.status_code == 200
    assert page.url.endswith("/pages/totals")
    assert "data-visual='totals_01'" in page.text

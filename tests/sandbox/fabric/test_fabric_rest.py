"""Fabric REST: mirrored databases, definitions, semantic models, long-running operations."""

from __future__ import annotations

import base64
import json
import time

import pytest
from azure.core.exceptions import HttpResponseError

from .conftest import FABRIC_SCOPE, OPEN_MIRRORING, STORAGE_SCOPE, Fabric, parquet


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_mirrored_database_lifecycle(fabric: Fabric):
    db = fabric.create_database("Xero", start=False)
    listed = fabric.rest("GET", "/mirroredDatabases").json()["value"]
    assert [(d["id"], d["displayName"], d["type"]) for d in listed] == [
        (db, "Xero", "MirroredDatabase")
    ]
    item = fabric.rest("GET", f"/mirroredDatabases/{db}").json()
    assert item["workspaceId"] == fabric.config["workspace_id"]
    assert item["properties"]["oneLakeTablesPath"] == (
        f"{fabric.config['onelake_url']}/{fabric.config['workspace_id']}/{db}/Tables"
    )
    assert item["properties"]["defaultSchema"] == "dbo"
    definition = fabric.rest("POST", f"/mirroredDatabases/{db}/getDefinition").json()
    [part] = definition["definition"]["parts"]
    mirroring = json.loads(base64.b64decode(part["payload"]))
    assert mirroring["properties"]["source"]["type"] == "GenericMirror"
    # The landing zone exists as soon as the item does.
    names = [p.name for p in fabric.fs.get_paths(path=f"{db}/Files")]
    assert names == [f"{db}/Files/LandingZone"]

    assert fabric.rest("DELETE", f"/mirroredDatabases/{db}").status_code == 200
    missing = fabric.rest("GET", f"/mirroredDatabases/{db}")
    assert (missing.status_code, missing.json()["errorCode"]) == (404, "ItemNotFound")


def test_create_refusals(fabric: Fabric):
    fabric.create_database("Xero", start=False)
    valid = b64(json.dumps(OPEN_MIRRORING))
    again = fabric.rest(
        "POST",
        "/mirroredDatabases",
        json={
            "displayName": "Xero",
            "definition": {
                "parts": [
                    {"path": "mirroring.json", "payload": valid, "payloadType": "InlineBase64"}
                ]
            },
        },
    )
    assert again.status_code == 409
    assert again.json()["errorCode"] == "ItemDisplayNameAlreadyInUse"
    no_definition = fabric.rest("POST", "/mirroredDatabases", json={"displayName": "Other"})
    assert no_definition.status_code == 400
    corrupt = fabric.rest(
        "POST",
        "/mirroredDatabases",
        json={
            "displayName": "Other",
            "definition": {
                "parts": [
                    {"path": "mirroring.json", "payload": "%%%", "payloadType": "InlineBase64"}
                ]
            },
        },
    )
    assert (corrupt.status_code, corrupt.json()["errorCode"]) == (400, "CorruptedPayload")
    assert len(fabric.rest("GET", "/mirroredDatabases").json()["value"]) == 1


def semantic_model_parts() -> list[dict[str, str]]:
    files = {
        "definition.pbism": json.dumps({"version": "4.0"}),
        "definition/model.tmdl": "model Model\n\tculture: en-US\n",
        "definition/tables/Invoices.tmdl": "table Invoices\n\tcolumn InvoiceID\n",
    }
    return [{"path": p, "payload": b64(t), "payloadType": "InlineBase64"} for p, t in files.items()]


def test_semantic_model_creation_is_a_long_running_operation(fabric: Fabric):
    fabric.faults(lro_polls=2)
    created = fabric.rest(
        "POST",
        "/semanticModels",
        json={"displayName": "Xero", "definition": {"parts": semantic_model_parts()}},
    )
    assert created.status_code == 202
    location = created.headers["Location"]
    assert created.headers["x-ms-operation-id"] in location
    assert int(created.headers["Retry-After"]) >= 1

    states = []
    while True:
        state = fabric.rest("GET", location)
        states.append(state.json()["status"])
        if states[-1] != "Running":
            break
        location = state.headers["Location"]
    assert states == ["Running", "Succeeded"]
    result = fabric.rest("GET", state.headers["Location"]).json()
    assert (result["type"], result["displayName"]) == ("SemanticModel", "Xero")

    items = fabric.control("GET", "/items").json()["items"]
    [model] = [i for i in items if i["type"] == "SemanticModel"]
    assert model["definition"]["definition/tables/Invoices.tmdl"].startswith("table Invoices")

    refused = fabric.rest(
        "POST",
        f"/semanticModels/{result['id']}/updateDefinition",
        json={"definition": {"parts": semantic_model_parts()[1:]}},
    )
    assert (refused.status_code, refused.json()["errorCode"]) == (400, "InvalidDefinition")
    both = [
        *semantic_model_parts(),
        {"path": "model.bim", "payload": b64("{}"), "payloadType": "InlineBase64"},
    ]
    refused = fabric.rest(
        "POST",
        f"/semanticModels/{result['id']}/updateDefinition",
        json={"definition": {"parts": both}},
    )
    assert refused.status_code == 400  # TMSL and TMDL are mutually exclusive
    updated = fabric.rest(
        "POST",
        f"/semanticModels/{result['id']}/updateDefinition",
        json={"definition": {"parts": semantic_model_parts()[:2]}},
    )
    assert updated.status_code == 202
    kept = fabric.rest("POST", f"/semanticModels/{result['id']}/getDefinition").json()
    assert [p["path"] for p in kept["definition"]["parts"]] == [
        "definition.pbism",
        "definition/model.tmdl",
    ]


def test_semantic_model_answers_201_when_done_at_once(fabric: Fabric):
    fabric.faults(lro_polls=0)
    created = fabric.rest(
        "POST",
        "/semanticModels",
        json={"displayName": "Xero", "definition": {"parts": semantic_model_parts()}},
    )
    assert created.status_code == 201
    assert created.json()["type"] == "SemanticModel"


def test_tokens_are_per_resource_and_per_workspace_member(fabric: Fabric, sandbox):
    storage_token = fabric.credential.get_token(STORAGE_SCOPE).token
    wrong = fabric.session.get(
        f"{fabric.workspace}/mirroredDatabases",
        headers={"Authorization": f"Bearer {storage_token}"},
    )
    assert wrong.status_code == 401

    outsider = Fabric(
        sandbox,
        **{
            "client_id": sandbox.outsider()["client_id"],
            "secret": sandbox.outsider()["client_secret"],
        },
    )
    assert outsider.rest("GET", "/mirroredDatabases").status_code == 403
    db = fabric.create_database()
    with pytest.raises(HttpResponseError) as refused:
        outsider.fs.get_directory_client(f"{db}/Files/LandingZone/T").create_directory()
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"

    fabric_token = fabric.credential.get_token(FABRIC_SCOPE).token
    assert fabric_token != storage_token
    stats = fabric.stats()["requests"]
    assert stats["CreatePath"] == {"403": 1}


def test_items_and_their_top_folders_are_fabric_managed(fabric: Fabric):
    db = fabric.create_database()
    for path in (f"{db}/Tables/x", f"{db}/Files", "not-an-item/Files/x"):
        with pytest.raises(HttpResponseError) as refused:
            fabric.fs.get_directory_client(path).create_directory()
        assert refused.value.status_code in (403, 404), path


def test_token_expiry_is_enforced(fabric: Fabric, sandbox):
    db = fabric.create_database()
    token = fabric.credential.get_token(FABRIC_SCOPE).token
    sandbox.advance(3600 + 1)
    expired = fabric.session.get(
        f"{fabric.workspace}/mirroredDatabases/{db}", headers={"Authorization": f"Bearer {token}"}
    )
    assert (expired.status_code, expired.json()["errorCode"]) == (401, "TokenExpired")


def test_file_reads_list_and_properties(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    metadata = fabric.fs.get_file_client(f"{db}/Files/LandingZone/Invoices/_metadata.json")
    assert json.loads(metadata.download_file().readall()) == {"keyColumns": ["InvoiceID"]}
    properties = metadata.get_file_properties()
    assert properties.size == len(b'{"keyColumns": ["InvoiceID"]}')
    assert metadata.exists()
    assert not fabric.fs.get_file_client(f"{db}/Files/LandingZone/Invoices/nothing").exists()
    data = parquet([{"InvoiceID": "a"}])
    fabric.publish(db, "Invoices", 1, data)
    before = time.monotonic()
    paths = {p.name: p for p in fabric.fs.get_paths(path=f"{db}/Files/LandingZone", max_results=1)}
    assert time.monotonic() - before < 30
    assert paths[f"{db}/Files/LandingZone/Invoices"].is_directory
    assert paths[
        f"{db}/Files/LandingZone/Invoices/00000000000000000001.parquet"
    ].content_length == len(data)

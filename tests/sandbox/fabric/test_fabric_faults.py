"""Faults on demand: 5xx, latency, dropped connections, token outage; and reset."""

from __future__ import annotations

import time

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

from .conftest import Fabric, parquet, seq

ROWS = [{"InvoiceID": "a", "Total": 1.0}]


def test_injected_5xx_is_retried_by_the_azure_sdk(fabric: Fabric):
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.faults(fail_next=1, fail_next_status=503, operations=["RenamePath"])
    fabric.publish(db, "Invoices", 1, parquet(ROWS))

    assert fabric.stats()["requests"]["RenamePath"] == {"503": 1, "201": 1}
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 1


def test_injected_5xx_on_fabric_rest(fabric: Fabric):
    fabric.faults(fail_next=1, fail_next_status=500, retry_after=60)
    failed = fabric.rest("GET", "/mirroredDatabases")
    assert failed.status_code == 500
    assert failed.json()["errorCode"] == "InternalServerError"
    assert failed.headers["Retry-After"] == "1"  # 60 sandbox seconds at time scale 60
    assert fabric.rest("GET", "/mirroredDatabases").status_code == 200


def test_latency(fabric: Fabric):
    db = fabric.create_database()
    fabric.faults(latency_ms=300)
    started = time.monotonic()
    fabric.fs.get_directory_client(f"{db}/Files/LandingZone/T").create_directory()
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_before_the_request_is_served(fabric: Fabric):
    db = fabric.create_database()
    directory = fabric.fs.get_directory_client(f"{db}/Files/LandingZone/T")
    fabric.faults(drop_next=1, operations=["CreatePath"])
    directory.create_directory()  # the Azure SDK retries a broken response by itself
    assert directory.exists()
    stats = fabric.stats()["requests"]
    assert stats["DroppedConnection"] == {"0": 1}
    assert stats["CreatePath"] == {"0": 1, "201": 1}


def test_dropped_connection_after_the_request_is_served(fabric: Fabric):
    """The answer is lost, the effect stays: a blind retry of the rename finds no source."""
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    folder = fabric.folder(db, "Invoices")
    temporary = fabric.fs.get_file_client(f"{folder}/_{seq(1)}")
    temporary.upload_data(parquet(ROWS), overwrite=True)
    fabric.faults(drop_next=1, drop_after_apply=True, operations=["RenamePath"])
    final = f"{fabric.config['workspace_id']}/{folder}/{seq(1)}"
    with pytest.raises(ResourceNotFoundError) as retried:
        temporary.rename_file(final)  # the SDK's own retry finds the source gone
    assert retried.value.error_code == "SourcePathNotFound"
    assert fabric.stats()["requests"]["RenamePath"] == {"0": 1, "404": 1}
    assert fabric.fs.get_file_client(f"{folder}/{seq(1)}").exists()
    assert fabric.tables()["dbo.Invoices"]["rowCount"] == 1


def test_dropped_connection_on_rest(fabric: Fabric):
    fabric.faults(drop_next=1, drop_after_apply=True)
    with pytest.raises(requests.exceptions.RequestException):
        fabric.create_database("Lost answer", start=False)
    names = [d["displayName"] for d in fabric.rest("GET", "/mirroredDatabases").json()["value"]]
    assert names == ["Lost answer"]


def test_token_outage(fabric: Fabric, sandbox):
    fabric.faults(token_outage=True)
    fresh = Fabric(sandbox)
    with pytest.raises(ClientAuthenticationError):
        fresh.credential.get_token("https://storage.azure.com/.default")
    fabric.control("POST", "/faults", json={"token_outage": False})
    time.sleep(1.1)  # MSAL honours the outage's Retry-After (1 s) before asking again
    assert fresh.credential.get_token("https://storage.azure.com/.default").token


def test_faults_are_validated_and_reset_forgets_everything(fabric: Fabric):
    assert fabric.control("POST", "/faults", json={"drop_rate": 2}).status_code == 400
    assert fabric.control("POST", "/faults", json={"nonsense": 1}).status_code == 400
    db = fabric.create_database()
    fabric.write_metadata(db, "Invoices", {"keyColumns": ["InvoiceID"]})
    fabric.publish(db, "Invoices", 1, parquet(ROWS))
    fabric.faults(latency_ms=5, drop_rate=0.5, lro_polls=3)
    assert fabric.control("GET", "/faults").json()["lro_polls"] == 3

    assert fabric.control("POST", "/reset").json() == {"reset": True}
    assert fabric.tables() == {}
    stats = fabric.stats()
    assert (stats["rows_landed"], stats["files"]["applied"], stats["refused_files"]) == (0, 0, [])
    faults = fabric.control("GET", "/faults").json()
    assert (faults["latency_ms"], faults["drop_rate"], faults["lro_polls"]) == (0.0, 0.0, 1)
    assert fabric.rest("GET", "/mirroredDatabases").json()["value"] == []

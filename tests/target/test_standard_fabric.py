"""The Singer SDK's standard target tests with `destination: fabric`, against the Fabric sandbox.

Every suite of `get_target_test_class` is included. Each test gets its own mirrored
database and local store; after each one every mirrored table equals the local store,
no landed file was refused or waits, and the duplicate-records test kept the last row
of each key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox.fabric import FabricSandbox
from singer_sdk.testing import get_target_test_class
from target_powerbi.target import TargetPowerBI

from tests.target.fabric import Fabric
from tests.target.test_standard import EXPECTED_DUPLICATES

# filled per test by the fixture below, before the SDK's runner reads it
CONFIG: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fabric_sandbox() -> Iterator[FabricSandbox]:
    with FabricSandbox() as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _sandbox_config(
    fabric_sandbox: FabricSandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[None]:
    fabric = Fabric(fabric_sandbox, tmp_path)
    fabric.control("POST", "/reset")
    CONFIG.clear()
    CONFIG.update(fabric.config)
    CONFIG["dataset_name"] = request.node.name[:90]
    yield
    if request.node.name == "test_target_duplicate_records":
        rows = fabric.mirrored("test_duplicate_records")
        assert sorted((r["id"], r["metric"]) for r in rows) == EXPECTED_DUPLICATES
    fabric.assert_mirrors_store()  # every table equal to the store; nothing refused or waiting
    LANDED[request.node.name] = int(fabric.stats()["rows_landed"])


LANDED: dict[str, int] = {}


StandardTargetTests = get_target_test_class(TargetPowerBI, config=CONFIG)


class TestTargetPowerBIFabric(StandardTargetTests):  # type: ignore[misc, valid-type]
    """The SDK's standard target tests, destination fabric."""


def test_the_standard_tests_landed_rows() -> None:
    """Runs after the class above (file order): the suites really went to OneLake."""
    assert sum(LANDED.values()) > 0, LANDED

"""The Singer SDK's standard target tests, run against the Power BI sandbox over loopback TLS.

Every suite of `get_target_test_class` is included. Each test gets its own
dataset and local store; the sandbox's stats are checked after each one.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class, target_test_streams
from target_powerbi.target import TargetPowerBI

from tests.target.conftest import PowerBI

# filled per test by the fixture below, before the SDK's runner reads it
CONFIG: dict[str, Any] = {}
# filled below from the SDK's own input file
EXPECTED_DUPLICATES: list[tuple[int, int]] = []


@pytest.fixture(autouse=True)
def _sandbox_config(
    powerbi: PowerBI, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[None]:
    CONFIG.clear()
    CONFIG.update(powerbi.config)
    CONFIG["dataset_name"] = request.node.name[:90]
    CONFIG["store_path"] = str(tmp_path / "standard.sqlite3")
    yield
    if request.node.name == "test_target_duplicate_records":
        # upsert keeps one row per key: the last one of each
        rows = powerbi.rows("test_duplicate_records", CONFIG["dataset_name"])
        assert sorted((r["id"], r["metric"]) for r in rows) == EXPECTED_DUPLICATES
    stats = powerbi.stats()
    assert stats["throttled"] == 0
    assert stats["rows_per_post_summary"]["max"] <= 10_000
    for operation, counts in stats["requests"].items():
        assert set(counts) <= {"200", "201"}, f"{operation}: {counts}"


def _last_per_key() -> list[tuple[int, int]]:
    source = importlib.resources.files(target_test_streams) / "duplicate_records.singer"
    last: dict[int, int] = {}
    for line in source.read_text().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            last[message["record"]["id"]] = message["record"]["metric"]
    return sorted(last.items())


EXPECTED_DUPLICATES.extend(_last_per_key())

StandardTargetTests = get_target_test_class(TargetPowerBI, config=CONFIG)


class TestTargetPowerBI(StandardTargetTests):  # type: ignore[misc, valid-type]
    """The SDK's standard target tests."""

"""Throttling honoured end to end: at Power BI's hourly row cap the target waits, then loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox.powerbi import PowerBISandbox

from tests.target.conftest import PowerBI, by_key

SCALE = 240.0  # a sandbox hour passes in 15 wall seconds


@pytest.fixture
def fast_powerbi(tmp_path: Path) -> Iterator[PowerBI]:
    with PowerBISandbox(time_scale=SCALE) as sandbox:
        yield PowerBI(sandbox, tmp_path)


def test_the_hourly_row_cap_is_waited_out_not_failed(fast_powerbi: PowerBI) -> None:
    powerbi = fast_powerbi
    powerbi.run("invoices_run1", time_scale=SCALE)
    dataset_id = powerbi.dataset()["id"]
    # someone else pushed almost a million rows into this dataset within the hour
    powerbi.control(
        "POST",
        f"/datasets/{dataset_id}/tables/contacts/seed",
        {"count": 999_999, "in_time_window": True},
    )
    run = powerbi.run("invoices_run2", time_scale=SCALE)
    stats = powerbi.stats()
    assert stats["throttled"] >= 1
    assert "429" in run.stderr and "waiting" in run.stderr
    invoices = by_key(powerbi.rows("invoices"), "InvoiceID")
    assert set(invoices) == {("INV-1",), ("INV-2",), ("INV-3",)}
    assert run.states[-1]["bookmarks"]["invoices"]["replication_key_value"] == "2024-01-04"

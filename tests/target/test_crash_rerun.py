"""Kill target-powerbi (SIGKILL) at chosen points, run it again: nothing lost, nothing doubled.

The target runs as a subprocess; `TARGET_POWERBI_TEST_KILL_AT=<point>:<n>` makes it
kill itself at the n-th pass of a point: after a batch is stored, after the
dataset is created, after the push markers are set, after a wave of POSTs, after
a table is emptied for a reload, mid-reload, and after the push but before STATE.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.target.conftest import PowerBI, by_key

SCHEMA = {
    "type": "SCHEMA",
    "stream": "orders",
    "key_properties": ["OrderID"],
    "schema": {
        "type": "object",
        "properties": {
            "OrderID": {"type": "string"},
            "Amount": {"type": "number"},
            "Lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"Sku": {"type": "string"}}},
            },
        },
    },
}


def order(n: int, amount: float, lines: int) -> dict[str, Any]:
    record = {
        "OrderID": f"O{n:02d}",
        "Amount": amount,
        "Lines": [{"Sku": f"S{n}-{i}"} for i in range(lines)],
    }
    return {"type": "RECORD", "stream": "orders", "record": record}


def run_a() -> list[dict[str, Any]]:
    return [
        SCHEMA,
        *[order(n, float(n), 1 + n % 2) for n in range(1, 31)],
        {"type": "STATE", "value": {"orders": "a"}},
    ]


def run_b(*, changes: bool = True) -> list[dict[str, Any]]:
    changed = [order(n, n + 0.5, 1) for n in range(25, 31)]  # new amounts, fewer lines
    new = [order(n, float(n), 2) for n in range(31, 41)]
    if not changes:  # only new keys: appended, no reload
        changed = []
    return [SCHEMA, *changed, *new, {"type": "STATE", "value": {"orders": "b"}}]


def expected(*runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    current: dict[str, dict[str, Any]] = {}
    for messages in runs:
        for m in messages:
            if m["type"] == "RECORD":
                current[m["record"]["OrderID"]] = m["record"]
    return current


def write(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def assert_converged(powerbi: PowerBI, want: dict[str, dict[str, Any]]) -> None:
    orders = by_key(powerbi.rows("orders"), "OrderID")
    assert {k[0]: v["Amount"] for k, v in orders.items()} == {
        k: v["Amount"] for k, v in want.items()
    }
    lines = by_key(powerbi.rows("orders__Lines"), "OrderID", "Sku")
    assert set(lines) == {(k, line["Sku"]) for k, v in want.items() for line in v["Lines"]}
    stats = powerbi.stats()
    assert stats["throttled"] == 0 and stats["rows_per_post_summary"]["max"] <= 10


CONFIG = {"batch_size": 10, "parallelism": 1}


@pytest.mark.parametrize(
    "point",
    ["stored:2", "created:1", "push-begun:1", "posted:3"],
)
def test_killed_during_the_first_run_then_rerun_converges(
    powerbi: PowerBI, tmp_path: Path, point: str
) -> None:
    a = write(tmp_path / "a.singer", run_a())
    killed = powerbi.run(a, config=CONFIG, env={"TARGET_POWERBI_TEST_KILL_AT": point}, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert killed.states == []
    again = powerbi.run(a, config=CONFIG)
    assert again.states == [{"orders": "a"}]
    assert_converged(powerbi, expected(run_a()))


@pytest.mark.parametrize(
    ("changes", "point"),
    [(False, "posted:2"), (False, "pushed:1"), (True, "emptied:1"), (True, "reloading:2")],
)
def test_killed_during_an_incremental_run_then_rerun_converges(
    powerbi: PowerBI, tmp_path: Path, changes: bool, point: str
) -> None:
    a = write(tmp_path / "a.singer", run_a())
    b = write(tmp_path / "b.singer", run_b(changes=changes))
    powerbi.run(a, config=CONFIG)
    killed = powerbi.run(b, config=CONFIG, env={"TARGET_POWERBI_TEST_KILL_AT": point}, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert killed.states == []
    again = powerbi.run(b, config=CONFIG)
    assert again.states == [{"orders": "b"}]
    assert_converged(powerbi, expected(run_a(), run_b(changes=changes)))
    if point == "emptied:1":  # and a rerun after convergence changes nothing
        posted = powerbi.stats()["rows_posted"]
        powerbi.run(b, config=CONFIG)
        assert powerbi.stats()["rows_posted"] == posted

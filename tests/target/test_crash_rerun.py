"""Kill target-powerbi (SIGKILL) at chosen points, run it again: nothing lost, nothing doubled.

The target runs as a subprocess and is killed from outside (`Kill`): after a batch
is stored (its input held back), while a proxy stalls a request to Power BI (the
dataset created but its answer lost, a POST not sent, a POST stored but its answer
lost, the first POST after a table was emptied, mid-reload), and as its STATE
comes out after the push (the STATE then never reaches the orchestrator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.target.conftest import Kill, PowerBI, by_key
from tests.target.stall import Hold, StallingProxy

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


def nth(operation: str, n: int, hold: Hold, *, after: str | None = None) -> Any:
    """Stall the n-th `operation` request (counted after the first `after` one, if given)."""

    def rule(method: str, path: str, seen: Any) -> Hold | None:
        from tests.target.stall import kind

        if after is not None and not seen[after]:
            return None
        if kind(method, path) == operation and seen[operation] == n:
            return hold
        return None

    return rule


def killer(point: str, proxy: StallingProxy) -> Kill:
    """The outside kill for each point the target's old in-process hook named."""
    if point == "stored:2":  # two batches stored, the rest of the input not yet sent
        return Kill(input_lines=26, log_text="Stored 10 records of orders", log_count=2)
    if point == "pushed:1":
        return Kill(at_first_state=True)
    rules = {
        "created:1": nth("create_dataset", 1, "after"),  # created, the answer lost
        "push-begun:1": nth("post_rows", 1, "before"),  # in flight, nothing posted yet
        "posted:3": nth("post_rows", 3, "after"),  # third POST stored, its answer lost
        "posted:2": nth("post_rows", 3, "before"),  # two POSTs in, the third not sent
        "emptied:1": nth("post_rows", 1, "before", after="delete_rows"),
        "reloading:2": nth("post_rows", 2, "after", after="delete_rows"),
    }
    proxy.stall(rules[point])
    return Kill(proxy=proxy)


@pytest.mark.parametrize(
    "point",
    ["stored:2", "created:1", "push-begun:1", "posted:3"],
)
def test_killed_during_the_first_run_then_rerun_converges(
    powerbi: PowerBI, proxy: StallingProxy, tmp_path: Path, point: str
) -> None:
    a = write(tmp_path / "a.singer", run_a())
    config = {**CONFIG, "api_url": proxy.api_url}
    killed = powerbi.run(a, config=config, kill=killer(point, proxy), check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert killed.states == []
    proxy.stall(lambda method, path, seen: None)
    again = powerbi.run(a, config=config)
    assert again.states == [{"orders": "a"}]
    assert_converged(powerbi, expected(run_a()))


@pytest.mark.parametrize(
    ("changes", "point"),
    [(False, "posted:2"), (False, "pushed:1"), (True, "emptied:1"), (True, "reloading:2")],
)
def test_killed_during_an_incremental_run_then_rerun_converges(
    powerbi: PowerBI, proxy: StallingProxy, tmp_path: Path, changes: bool, point: str
) -> None:
    a = write(tmp_path / "a.singer", run_a())
    b = write(tmp_path / "b.singer", run_b(changes=changes))
    config = {**CONFIG, "api_url": proxy.api_url}
    powerbi.run(a, config=config)
    killed = powerbi.run(b, config=config, kill=killer(point, proxy), check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert killed.states == []
    proxy.stall(lambda method, path, seen: None)
    again = powerbi.run(b, config=config)
    assert again.states == [{"orders": "b"}]
    assert_converged(powerbi, expected(run_a(), run_b(changes=changes)))
    if point == "emptied:1":  # and a rerun after convergence changes nothing
        posted = powerbi.stats()["rows_posted"]
        powerbi.run(b, config=config)
        assert powerbi.stats()["rows_posted"] == posted

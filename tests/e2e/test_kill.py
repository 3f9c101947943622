"""A power cut at the worst moments: `meltano run` SIGKILLed (Meltano, tap and target at
once), then run again, converges to Xero's truth with nothing lost or doubled.

Each case has its own sandboxes (one organisation, to stay quick), state and stores.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.pipeline import Pipeline, Sandboxes
from tests.e2e.truth import compare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def sandboxes() -> Iterator[Sandboxes]:
    sandboxes = Sandboxes(seed=31, tenants=1)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()


def problems(sandboxes: Sandboxes) -> list[str]:
    datasets = sandboxes.powerbi_get("datasets")["datasets"]
    if not datasets:
        return ["no dataset"]
    return compare(sandboxes, sandboxes.tables())[1]


def rows_posted(sandboxes: Sandboxes) -> int:
    return int(sandboxes.powerbi_get("stats")["rows_posted"])


def rerun_converges(pipeline: Pipeline, sandboxes: Sandboxes) -> None:
    # A killed Meltano leaves its job marked running (stale after 5 minutes without a
    # heartbeat); after a crash one reruns at once with --force, as the README says.
    result = pipeline.run("--force", "xero-to-powerbi")
    assert result.returncode == 0, result.stderr[-4000:]
    found = problems(sandboxes)
    assert not found, "\n".join(found[:40])


def session_processes(leader: int) -> dict[int, str]:
    """Processes of a session (Meltano's, started with its own session): pid -> command."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == leader:  # fields after the name: state, ppid, pgrp, session
            found[int(entry.name)] = command
    return found


def when_the_target_dies() -> Callable[[int], bool]:
    """True once the target ran and is gone (it killed itself at the hook's point)."""
    seen: set[int] = set()

    def check(leader: int) -> bool:
        targets = {p for p, c in session_processes(leader).items() if "target-powerbi" in c}
        if targets:
            seen.update(targets)
            return False
        return bool(seen)

    return check


def test_killed_during_extraction(sandboxes: Sandboxes, tmp_path: Path) -> None:
    pipeline = Pipeline(sandboxes, tmp_path, TAP_XERO_PAGE_SIZE="100")
    killed = pipeline.run(kill_when=lambda: sandboxes.api_calls() >= 40)
    assert killed.killed
    assert rows_posted(sandboxes) == 0  # nothing reached Power BI yet
    rerun_converges(pipeline, sandboxes)


def test_killed_during_a_push(sandboxes: Sandboxes, tmp_path: Path) -> None:
    pipeline = Pipeline(sandboxes, tmp_path, TARGET_POWERBI_BATCH_SIZE="500")
    killed = pipeline.run(kill_when=lambda: rows_posted(sandboxes) > 0)
    assert killed.killed
    assert problems(sandboxes), "the kill came after the push: nothing was tested"
    rerun_converges(pipeline, sandboxes)


def powerbi_calls(sandboxes: Sandboxes) -> int:
    requests = sandboxes.powerbi_get("stats")["requests"]
    return sum(sum(counts.values()) for counts in requests.values())


def test_killed_between_a_push_and_its_state(sandboxes: Sandboxes, tmp_path: Path) -> None:
    pipeline = Pipeline(sandboxes, tmp_path)
    target_gone = when_the_target_dies()
    frozen: list[int] = []

    def pushed_but_state_unsaved() -> bool:
        # A first run calls Power BI only once its input has ended (it creates the dataset
        # then), so Meltano has relayed everything: freeze Meltano (SIGSTOP) there. The
        # target pushes, writes its STATE into a pipe nobody reads and exits; then the kill.
        if not frozen and powerbi_calls(sandboxes) > 0:
            os.kill(pipeline.pid, signal.SIGSTOP)
            frozen.append(pipeline.pid)
        return target_gone(pipeline.pid) and bool(frozen)

    killed = pipeline.run(kill_when=pushed_but_state_unsaved)
    assert killed.killed
    assert not problems(sandboxes)  # everything pushed ...
    assert not pipeline.saved_state(), "... but no STATE reached Meltano"
    posted = rows_posted(sandboxes)
    rerun_converges(pipeline, sandboxes)  # the tap sends it all again: nothing doubled
    assert rows_posted(sandboxes) == posted  # and nothing is pushed twice


def test_killed_while_an_incremental_run_reloads_a_table(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    pipeline = Pipeline(sandboxes, tmp_path, TARGET_POWERBI_BATCH_SIZE="100")
    first = pipeline.run()
    assert first.returncode == 0, first.stderr[-4000:]
    tenant = sandboxes.tenants[0]
    for action in ("pay", "void", "edit", "add_invoice", "archive_contact", "add_contact"):
        sandboxes.xero_post("clock", {"advance_seconds": 60})
        sandboxes.xero_post("mutate", {"tenant_id": tenant, "action": action})
    posted = rows_posted(sandboxes)
    killed = pipeline.run(kill_when=lambda: rows_posted(sandboxes) > posted + 150)
    assert killed.killed
    assert problems(sandboxes), "the kill came after the push: nothing was tested"
    rerun_converges(pipeline, sandboxes)

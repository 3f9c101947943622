"""A power cut while the pipeline lands files in OneLake: `meltano run` SIGKILLed (Meltano, tap
and target at once) right after a write of the target's audit log, then run again, converges
to Xero's truth in the Fabric sandbox with nothing lost or doubled and no file refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.fabric import FabricSandboxes
from tests.e2e.pipeline import Pipeline
from tests.e2e.truth import compare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


@pytest.fixture
def sandboxes() -> Iterator[FabricSandboxes]:
    sandboxes = FabricSandboxes(seed=31, tenants=1)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()


def problems(sandboxes: FabricSandboxes) -> list[str]:
    return compare(sandboxes, sandboxes.tables())[1]


def at_audit(pipeline: Pipeline, operation: str, count: int) -> Callable[[], bool]:
    def due() -> bool:
        return sum(e["operation"] == operation for e in pipeline.audit()) >= count

    return due


def slow_fabric(sandboxes: FabricSandboxes, latency_ms: int) -> None:
    """Every Fabric call takes a while, so that the kill comes before the next write."""
    response = sandboxes.http.post(
        f"{sandboxes.fabric.url}/_sandbox/faults",
        json={"clear": True, "latency_ms": latency_ms},
        verify=sandboxes.fabric.ca_bundle,
        timeout=30,
    )
    response.raise_for_status()


def rerun_converges(pipeline: Pipeline, sandboxes: FabricSandboxes) -> None:
    slow_fabric(sandboxes, 0)
    result = pipeline.run("--force", "xero-to-powerbi")
    assert result.returncode == 0, result.stderr[-4000:]
    found = problems(sandboxes)
    assert not found, "\n".join(found[:40])
    stats = sandboxes.stats()
    assert stats["refused_files"] == [], stats["refused_files"]
    assert stats["files"]["waiting"] == 0


# One write point here: the day of business below is killed right after a publish_file, and
# tests/target/test_fabric.py kills the target after every kind of write (both of these
# included) and proves each converges; what this adds is the Meltano layer (the whole process
# group killed, no STATE saved, `--force` rerun), the same whichever write the kill follows.
@pytest.mark.parametrize("operation", ["upload_file"])
def test_killed_while_landing_the_first_run(
    sandboxes: FabricSandboxes, tmp_path: Path, operation: str
) -> None:
    pipeline = Pipeline(sandboxes, tmp_path, TARGET_POWERBI_ROWS_PER_FILE="200")
    slow_fabric(sandboxes, 100)
    killed = pipeline.run(kill_when=at_audit(pipeline, operation, 5))
    assert killed.killed
    assert problems(sandboxes), "the kill came after the landing: nothing was tested"
    assert not pipeline.saved_state(), "no STATE may pass before its rows are landed"
    rerun_converges(pipeline, sandboxes)


def test_killed_while_landing_a_day_of_business(sandboxes: FabricSandboxes, tmp_path: Path) -> None:
    pipeline = Pipeline(sandboxes, tmp_path)
    first = pipeline.run()
    assert first.returncode == 0, first.stderr[-4000:]
    tenant = sandboxes.tenants[0]
    for action in ("pay", "void", "edit", "add_invoice", "archive_contact", "delete_item"):
        sandboxes.xero_post("clock", {"advance_seconds": 60})
        sandboxes.xero_post("mutate", {"tenant_id": tenant, "action": action})
    published = sum(e["operation"] == "publish_file" for e in pipeline.audit())
    slow_fabric(sandboxes, 100)
    killed = pipeline.run(
        kill_when=at_audit(pipeline, "publish_file", published + 2),
        env={"TARGET_POWERBI_ROWS_PER_FILE": "5"},  # the day's changes in several files
    )
    assert killed.killed
    assert problems(sandboxes), "the kill came after the landing: nothing was tested"
    rerun_converges(pipeline, sandboxes)

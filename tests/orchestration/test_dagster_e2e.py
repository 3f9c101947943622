"""The Dagster deployment end to end: partitions found from `tap-xero auth tenants`, each
materialised in-process (`materialize`) as a real `meltano run` against the
sandboxes, then every organisation's dataset equal to its truth in Xero."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from orchestration.definitions import (
    ORGANISATIONS,
    MeltanoProject,
    defs,
    xero_organisations,
    xero_powerbi,
)
from tests.e2e.pipeline import MELTANO, ROOT, Pipeline, Sandboxes
from tests.e2e.truth import compare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NOT_GRANTED = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Sandboxes, Pipeline]]:
    """The sandboxes, and this process's environment as a deployment's would be for them."""
    sandboxes = Sandboxes(seed=23, tenants=2)
    try:
        pipeline = Pipeline(sandboxes, tmp_path, TAP_XERO_PAGE_SIZE="100")
        for key in list(os.environ):
            if key.startswith(("TAP_", "TARGET_", "MELTANO_")):
                monkeypatch.delenv(key)
        for key, value in pipeline.env.items():
            monkeypatch.setenv(key, value)
        # No tenant_ids: the partitions come from `tap-xero auth tenants`.
        monkeypatch.delenv("TAP_XERO_TENANT_IDS")
        yield sandboxes, pipeline
    finally:
        sandboxes.stop()


def _partitions(instance: DagsterInstance, resource: MeltanoProject) -> list[str]:
    """Evaluate the organisations sensor and apply what it asks for, as the daemon would."""
    result = xero_organisations(
        build_sensor_context(instance=instance, resources={"meltano": resource})
    )
    assert isinstance(result, SensorResult), result
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(ORGANISATIONS.name, list(request.partition_keys))
    return sorted(instance.get_dynamic_partitions(ORGANISATIONS.name))


def test_each_partition_lands_its_organisation_equal_to_xero(
    project: tuple[Sandboxes, Pipeline], tmp_path: Path
) -> None:
    sandboxes, pipeline = project
    resource = MeltanoProject(
        executable=MELTANO,
        store_dir=str(tmp_path / "stores"),
        log_dir=str(tmp_path / "logs"),
        list_timeout_seconds=300,  # a loaded test machine, outside a sensor's 60 s
    )
    home = tmp_path / "dagster"
    home.mkdir()
    config = yaml.safe_load((ROOT / "orchestration" / "dagster.yaml").read_text())
    with instance_for_test(overrides=config, temp_dir=str(home)) as instance:
        _materialise(sandboxes, pipeline, resource, instance)


def _materialise(
    sandboxes: Sandboxes, pipeline: Pipeline, resource: MeltanoProject, instance: DagsterInstance
) -> None:
    tenants = _partitions(instance, resource)
    assert tenants == sorted(sandboxes.tenants)  # one partition per organisation granted

    nightly = defs.resolve_schedule_def("xero_to_powerbi_nightly")
    tick = datetime(2026, 12, 1, 2, tzinfo=timezone.utc)
    requests = nightly.evaluate_tick(
        build_schedule_context(
            instance=instance,
            scheduled_execution_time=tick,
            repository_def=defs.get_repository_def(),
        )
    ).run_requests
    assert sorted(r.partition_key for r in requests or []) == tenants

    # An organisation the connection does not grant: its run fails, and is not retried.
    instance.add_dynamic_partitions(ORGANISATIONS.name, [NOT_GRANTED])

    def run(tenant: str) -> ExecuteInProcessResult:
        return materialize(
            [xero_powerbi],
            partition_key=tenant,
            instance=instance,
            resources={"meltano": resource},
            raise_on_error=False,
        )

    # One after another: Dagster's in-process execution is not thread-safe (its logging
    # setup deadlocks); in a deployment the run queue starts them side by side.
    results = {tenant: run(tenant) for tenant in [*tenants, NOT_GRANTED]}

    for tenant in tenants:
        assert results[tenant].success, _failure(results[tenant])
    refused = results[NOT_GRANTED]
    assert not refused.success
    assert "not granted" in _failure(refused)
    events = {e.event_type for e in refused.all_events}
    assert DagsterEventType.STEP_UP_FOR_RETRY not in events  # needs a person: not retried

    union: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tenant in tenants:
        tables = sandboxes.tables(f"Xero {tenant}")  # its own dataset
        for name, rows in tables.items():
            assert {row["tenant_id"] for row in rows} <= {tenant}, name
            union[name] += rows
        state = pipeline.saved_state(f"sandbox:tap-xero-to-target-powerbi:{tenant}")
        assert state, f"no state under the organisation's state id suffix {tenant}"
    compared, problems = compare(sandboxes, dict(union))
    assert not problems, "\n".join(problems[:40])
    assert compared["invoices"] > 0 and compared["journal_lines"] > 0
    stats = sandboxes.xero_get("stats")
    assert set(stats["methods"]) == {"GET"}
    assert not stats["rate_limited"]


def _failure(result: ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return "\n".join(str(e.step_failure_data.error) for e in failures) or "no step failure"

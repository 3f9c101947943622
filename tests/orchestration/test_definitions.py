"""The Dagster deployment's definitions, without Meltano runs: schedules equal to
meltano.yml's, one partition (and one scheduled run) per organisation, the app-wide and
machine caps of the instance config, and which failures are retried."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)
from tap_xero.settings import CONFIG_SCHEMA

from orchestration.definitions import (
    MELTANO_JOB,
    PARTITIONS,
    POOL,
    MeltanoProject,
    defs,
    xero_organisations,
    xero_powerbi,
)
from orchestration.meltano_project import (
    APP_WIDE_ORGANISATIONS,
    Meltano,
    MeltanoRunError,
    meltano_schedules,
    organisation_env,
)

ROOT = Path(__file__).resolve().parents[2]
DAGSTER_YAML = ROOT / "orchestration" / "dagster.yaml"
TENANTS = ["b1d5c3e0-0000-4000-8000-000000000002", "a1d5c3e0-0000-4000-8000-000000000001"]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """An instance configured by the deployment's dagster.yaml (which this also validates)."""
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    with instance_for_test(overrides=config, temp_dir=str(tmp_path)) as instance:
        yield instance


def test_the_schedules_are_meltano_ymls() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    want = {s["name"].replace("-", "_"): s["interval"] for s in project["schedules"]}
    got = {s.name: s.cron_schedule for s in defs.schedules or []}
    assert got == want
    assert {s["job"] for s in project["schedules"]} == {MELTANO_JOB}
    for name in want:
        schedule = defs.resolve_schedule_def(name)
        assert schedule.execution_timezone == "UTC"
        assert schedule.job_name == "xero_to_powerbi"


def test_each_schedule_tick_asks_for_one_run_per_organisation(instance: DagsterInstance) -> None:
    instance.add_dynamic_partitions(PARTITIONS, TENANTS)
    repository = defs.get_repository_def()
    for schedule in repository.schedule_defs:
        keys: list[str] = []
        for tick in (
            datetime(2026, 12, 1, 2, tzinfo=timezone.utc),
            datetime(2026, 12, 2, 2, tzinfo=timezone.utc),
        ):
            context = build_schedule_context(
                instance=instance, scheduled_execution_time=tick, repository_def=repository
            )
            requests = schedule.evaluate_tick(context).run_requests or []
            assert sorted(r.partition_key or "" for r in requests) == sorted(TENANTS)
            keys += [r.run_key or "" for r in requests]
        assert len(set(keys)) == 2 * len(TENANTS)  # each tick runs each organisation again


def _fake_meltano(tmp_path: Path, config: dict[str, object], connections: list[object]) -> str:
    """A stand-in `meltano` answering `config print tap-xero` and `invoke ... auth tenants`."""
    fake = tmp_path / "meltano"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"answer = {config!r} if sys.argv[1:3] == ['config', 'print'] else {connections!r}\n"
        "print(json.dumps(answer))\n"
    )
    fake.chmod(0o700)
    return str(fake)


CONNECTIONS = [
    {"tenantId": TENANTS[0], "tenantType": "ORGANISATION", "tenantName": "B"},
    {"tenantId": "practice", "tenantType": "PRACTICEMANAGER"},
    {"tenantId": TENANTS[1], "tenantName": "A"},
]


def _sensor_requests(
    instance: DagsterInstance, resource: MeltanoProject
) -> tuple[list[list[str]], list[list[str]]]:
    result = xero_organisations(
        build_sensor_context(instance=instance, resources={"meltano": resource})
    )
    assert isinstance(result, SensorResult), result
    requests = result.dynamic_partitions_requests or []
    added = [list(r.partition_keys) for r in requests if isinstance(r, AddDynamicPartitionsRequest)]
    deleted = [
        list(r.partition_keys) for r in requests if isinstance(r, DeleteDynamicPartitionsRequest)
    ]
    return added, deleted


def test_the_sensor_keeps_one_partition_per_organisation_granted(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    instance.add_dynamic_partitions(PARTITIONS, [TENANTS[0], "gone"])
    fake = _fake_meltano(tmp_path, {"tenant_ids": None}, CONNECTIONS)
    added, deleted = _sensor_requests(instance, MeltanoProject(executable=fake))
    assert added == [[TENANTS[1]]]  # organisations only, not the practice
    assert deleted == [["gone"]]


def test_the_taps_tenant_ids_narrow_the_partitions(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    fake = _fake_meltano(tmp_path, {"tenant_ids": [TENANTS[1]]}, CONNECTIONS)
    added, deleted = _sensor_requests(instance, MeltanoProject(executable=fake))
    assert (added, deleted) == ([[TENANTS[1]]], [])


def test_the_app_wide_limit_caps_organisations_in_flight(instance: DagsterInstance) -> None:
    per_organisation = CONFIG_SCHEMA["properties"]["calls_per_minute"]["default"]
    assert APP_WIDE_ORGANISATIONS == 10_000 // per_organisation == 166
    assert xero_powerbi.op.pool == POOL
    config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == APP_WIDE_ORGANISATIONS
    queue = config.run_queue_config
    assert queue is not None
    assert 0 < queue.max_concurrent_runs < APP_WIDE_ORGANISATIONS  # the machine's cap
    (per_partition,) = queue.tag_concurrency_limits
    assert per_partition["key"] == "dagster/partition" and per_partition["limit"] == 1


def test_a_partition_reads_one_organisation_into_its_own_dataset_and_store(tmp_path: Path) -> None:
    first, second = (organisation_env(t, tmp_path, "Xero") for t in TENANTS)
    assert json.loads(first["TAP_XERO_TENANT_IDS"]) == [TENANTS[0]]
    for key in (
        "TARGET_POWERBI_DATASET_NAME",
        "TARGET_POWERBI_STORE_PATH",
        "TARGET_POWERBI_AUDIT_LOG_PATH",
    ):
        assert first[key] != second[key], key
    policy = xero_powerbi.op.retry_policy
    assert policy is not None and policy.max_retries > 0


@pytest.mark.parametrize(
    ("line", "retryable"),
    [
        (
            "tap-xero: error: Xero refused the refresh token (invalid_grant): "
            "run `tap-xero auth login` again",
            False,
        ),
        ("tap-xero: error: setting page_size must be 1-1000; fix it in the tap's config", False),
        ("target-powerbi: error: Power BI answered HTTP 503 five times: try again later", True),
    ],
)
def test_a_failed_run_says_whether_a_retry_can_help(
    tmp_path: Path, line: str, retryable: bool
) -> None:
    """A stand-in for the `meltano` executable that fails as a run would, with `line`."""
    fake = tmp_path / "meltano"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint({line!r}, file=sys.stderr)\nsys.exit(1)\n"
    )
    fake.chmod(0o700)
    with pytest.raises(MeltanoRunError) as failed:
        Meltano(tmp_path, str(fake)).run(MELTANO_JOB, TENANTS[0], {}, tmp_path / "logs")
    assert failed.value.retryable is retryable
    assert line in str(failed.value)  # the one line that says what to do


def test_a_schedule_without_a_job_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "meltano.yml"
    bad.write_text("schedules:\n- name: nightly\n  interval: '0 2 * * *'\n")
    with pytest.raises(ValueError, match="needs a job"):
        meltano_schedules(bad)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


def test_a_run_over_its_time_is_ended_with_the_plugins_it_started(tmp_path: Path) -> None:
    """A stand-in `meltano` that starts a plugin-like child and hangs: both end, retryable."""
    fake = tmp_path / "meltano"
    child = tmp_path / "child.pid"
    fake.write_text(
        f"#!{sys.executable}\nimport subprocess, sys, time\n"
        "plugin = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(child)!r}, 'w').write(str(plugin.pid))\n"
        "time.sleep(600)\n"
    )
    fake.chmod(0o700)
    meltano = Meltano(tmp_path, str(fake), timeout_seconds=3)
    with pytest.raises(MeltanoRunError, match="ran over 3 s") as failed:
        meltano.run(MELTANO_JOB, TENANTS[0], {}, tmp_path / "logs")
    assert failed.value.retryable
    pid = int(child.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the plugin outlived its run"

"""The Dagster deployment: one partition per Xero organisation, each a `meltano run`.

- Partitions: dynamic, one per organisation, kept equal to `tap-xero auth tenants` (or to
  the tap's `tenant_ids` setting when set) by the `xero_organisations` sensor.
- A partition runs the job of `meltano.yml`'s schedules with `--state-id-suffix <tenant>`,
  the tap restricted to that organisation and the target writing that organisation's
  dataset and store (`meltano_project.organisation_env`).
- Concurrency: the asset is in the pool `xero_app`, whose limit (dagster.yaml beside this
  file) is the organisations Xero's app-wide minute allows in flight; the run queue caps
  the machine and allows one run per organisation at a time.
- Retries: a failure running again may cure is retried with exponential backoff; one that
  needs a person (revoked connection, bad setting) is not. A spent day's budget is a
  clean, successful stop (tap-xero saves its bookmarks), so nothing retries it.
- Schedules: those of `meltano.yml`, each asking for every organisation's partition.
"""

import sys
from pathlib import Path

from dagster import (
    AddDynamicPartitionsRequest,
    AssetExecutionContext,
    Backoff,
    ConfigurableResource,
    DefaultSensorStatus,
    Definitions,
    DeleteDynamicPartitionsRequest,
    DynamicPartitionsDefinition,
    Failure,
    Jitter,
    MaterializeResult,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    schedule,
    sensor,
)
from pydantic import Field

from orchestration.meltano_project import (
    ROOT,
    Meltano,
    MeltanoRunError,
    MeltanoSchedule,
    meltano_schedules,
    organisation_env,
)

PARTITIONS = "xero_organisation"
ORGANISATIONS = DynamicPartitionsDefinition(name=PARTITIONS)
POOL = "xero_app"
RETRY = RetryPolicy(max_retries=3, delay=300, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
SCHEDULES = meltano_schedules()


def _one_job(schedules: list[MeltanoSchedule]) -> str:
    """The Meltano job the schedules run: a partition is that job for one organisation."""
    jobs = {s.job for s in schedules}
    if len(jobs) != 1:
        msg = f"meltano.yml's schedules run {sorted(jobs) or 'no job'}: expected exactly one job"
        raise ValueError(msg)
    return jobs.pop()


MELTANO_JOB = _one_job(SCHEDULES)


class MeltanoProject(ConfigurableResource):  # type: ignore[type-arg]  # its own value
    """Where and how the partitions run Meltano (paths relative to `project_dir`)."""

    project_dir: str = Field(default=str(ROOT), description="The Meltano project.")
    executable: str = Field(
        default=str(Path(sys.executable).with_name("meltano")),
        description="Meltano's executable (default: the one beside Dagster's Python).",
    )
    dataset_prefix: str = Field(
        default="Xero", description="Each organisation's dataset is '<prefix> <tenant id>'."
    )
    store_dir: str = Field(
        default=".target-powerbi/organisations",
        description="target-powerbi's store and audit log of each organisation (durable).",
    )
    log_dir: str = Field(default=".meltano/logs/organisations", description="Run logs.")
    timeout_seconds: float = Field(default=6 * 3600, description="Longest one run may take.")
    list_timeout_seconds: float = Field(
        default=55,  # within the 60 s a sensor has (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS)
        description="Longest listing the organisations may take (config, `auth tenants`).",
    )

    def _path(self, value: str) -> Path:
        return Path(self.project_dir) / value

    @property
    def meltano(self) -> Meltano:
        return Meltano(
            Path(self.project_dir),
            self.executable,
            self.timeout_seconds,
            self.list_timeout_seconds,
        )

    def organisations(self) -> list[str]:
        """The partitions there should be: the tap's `tenant_ids`, else all it is granted."""
        return self.meltano.organisations()

    def run(self, tenant_id: str) -> MaterializeResult[None]:
        """One organisation's `meltano run`; a failure says whether a retry may cure it."""
        env = organisation_env(tenant_id, self._path(self.store_dir), self.dataset_prefix)
        try:
            done = self.meltano.run(MELTANO_JOB, tenant_id, env, self._path(self.log_dir))
        except MeltanoRunError as exc:
            raise Failure(description=str(exc), allow_retries=exc.retryable) from None
        return MaterializeResult(
            metadata={
                "seconds": round(done.seconds, 1),
                "dataset": env["TARGET_POWERBI_DATASET_NAME"],
                "log": str(done.log),
            }
        )


@asset(
    partitions_def=ORGANISATIONS,
    pool=POOL,
    retry_policy=RETRY,
    kinds={"meltano"},
    description=f"Xero into Power BI for one organisation: `meltano run {MELTANO_JOB}`.",
)
def xero_powerbi(
    context: AssetExecutionContext, meltano: MeltanoProject
) -> MaterializeResult[None]:
    return meltano.run(context.partition_key)


xero_to_powerbi = define_asset_job("xero_to_powerbi", selection=[xero_powerbi])


def every_organisation(entry: MeltanoSchedule) -> ScheduleDefinition:
    """A schedule of meltano.yml as a Dagster schedule asking for each organisation's run."""

    @schedule(
        name=entry.name.replace("-", "_"),
        cron_schedule=entry.cron,
        job=xero_to_powerbi,
        execution_timezone="UTC",  # Meltano's schedules are UTC
        description=f"meltano.yml schedule {entry.name}: {entry.cron}",
    )
    def _every_organisation(context: ScheduleEvaluationContext) -> list[RunRequest]:
        tick = context.scheduled_execution_time.isoformat()
        return [
            RunRequest(run_key=f"{tick}:{tenant}", partition_key=tenant)
            for tenant in context.instance.get_dynamic_partitions(PARTITIONS)
        ]

    return _every_organisation


# Running from the start (it only lists the organisations, one call to Xero's
# /connections an hour); the schedules wait for a person to turn them on.
@sensor(minimum_interval_seconds=3600, default_status=DefaultSensorStatus.RUNNING)
def xero_organisations(
    context: SensorEvaluationContext, meltano: MeltanoProject
) -> SensorResult | SkipReason:
    """Partitions equal to the organisations granted: new ones added, disconnected ones gone."""
    try:
        wanted = set(meltano.organisations())
    except MeltanoRunError as exc:
        return SkipReason(str(exc))
    have = set(context.instance.get_dynamic_partitions(PARTITIONS))
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if wanted - have:
        requests.append(ORGANISATIONS.build_add_request(sorted(wanted - have)))
    if have - wanted:
        requests.append(ORGANISATIONS.build_delete_request(sorted(have - wanted)))
    return SensorResult(dynamic_partitions_requests=requests)


defs = Definitions(
    assets=[xero_powerbi],
    jobs=[xero_to_powerbi],
    schedules=[every_organisation(entry) for entry in SCHEDULES],
    sensors=[xero_organisations],
    resources={"meltano": MeltanoProject()},
)

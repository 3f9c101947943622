"""target-powerbi: the Target class and its settings."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.target_base import Target
from typing_extensions import override

from target_powerbi.client import PowerBIClient
from target_powerbi.dataset import DatasetSync, checkpoint
from target_powerbi.limits import MAX_PENDING, MAX_ROWS_PER_POST
from target_powerbi.mapping import Shape, TableMap, ValuePolicy, map_stream
from target_powerbi.model import Model, load_model
from target_powerbi.sinks import PowerBISink
from target_powerbi.store import Store

POWERBI_API_URL = "https://api.powerbi.com/v1.0/myorg"
ENTRA_AUTHORITY_URL = "https://login.microsoftonline.com"
POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"


class TargetPowerBI(Target):
    """Loads Singer streams into a Power BI push dataset."""

    name = "target-powerbi"
    default_sink_class = PowerBISink
    capabilities = [  # noqa: RUF012 - the SDK declares it a plain class attribute
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        PluginCapabilities.ACTIVATE_VERSION,
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "tenant_id",
            th.StringType,
            required=True,
            title="Tenant ID",
            description="Microsoft Entra tenant (directory) id of the service principal.",
        ),
        th.Property(
            "client_id",
            th.StringType,
            required=True,
            title="Client ID",
            description="Application (client) id of the service principal.",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            required=True,
            secret=True,
            title="Client secret",
            description="Client secret of the service principal.",
        ),
        th.Property(
            "workspace_id",
            th.StringType,
            required=True,
            title="Workspace ID",
            description="Power BI workspace (group) id; the principal must be a Member.",
        ),
        th.Property(
            "dataset_name",
            th.StringType,
            required=True,
            title="Dataset name",
            description="Push dataset to find by name or create.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=POWERBI_API_URL,
            title="API URL",
            description="Power BI REST base URL (sovereign clouds, the sandbox).",
        ),
        th.Property(
            "authority_url",
            th.StringType,
            default=ENTRA_AUTHORITY_URL,
            title="Authority URL",
            description="Entra ID authority host; the tenant id is appended.",
        ),
        th.Property(
            "scope",
            th.StringType,
            default=POWERBI_SCOPE,
            title="Scope",
            description="OAuth scope of the Power BI API.",
        ),
        th.Property(
            "ca_bundle",
            th.StringType,
            title="CA bundle",
            description="PEM file of extra certificate authorities to trust (the sandbox's).",
        ),
        th.Property(
            "viewer_url",
            th.StringType,
            title="Viewer URL",
            description="Ignored: the Power BI sandbox prints it with its config line.",
        ),
        th.Property(
            "load_method",
            th.StringType,
            default="upsert",
            allowed_values=["upsert", "append-only", "overwrite"],
            title="Load method",
            description=(
                "upsert: keep each table equal to the source's current rows by key; "
                "append-only: append rows, never the same row twice; "
                "overwrite: empty each table once per run, then load."
            ),
        ),
        th.Property(
            "retention_policy",
            th.StringType,
            default="None",
            allowed_values=["None", "basicFIFO"],
            title="Retention policy",
            description=(
                "defaultRetentionPolicy of a dataset the target creates: None (5,000,000 rows "
                "a table) or basicFIFO (200,000 rows, oldest dropped)."
            ),
        ),
        th.Property(
            "store_path",
            th.StringType,
            title="Store path",
            description=(
                "SQLite file mirroring every table's current rows. Keep it on durable storage. "
                "Default: .target-powerbi/<dataset_name>.sqlite3 in the working directory."
            ),
        ),
        th.Property(
            "batch_size",
            th.IntegerType(minimum=1, maximum=MAX_ROWS_PER_POST),
            default=MAX_ROWS_PER_POST,
            title="Batch size",
            description="Rows per POST to Power BI (1-10,000) and records per batch to the store.",
        ),
        th.Property(
            "parallelism",
            th.IntegerType(minimum=1, maximum=MAX_PENDING),
            default=2,
            title="Parallelism",
            description="POST rows requests in flight at once (1-5, Power BI's pending limit).",
        ),
        th.Property(
            "model_file",
            th.StringType,
            title="Model file",
            description="YAML file of relationships, DAX measures and column types.",
        ),
        th.Property(
            "object_depth",
            th.IntegerType(minimum=0, maximum=10),
            default=1,
            title="Object depth",
            description=(
                "Levels of nested objects flattened into parent__child columns; deeper objects "
                "become JSON text."
            ),
        ),
        th.Property(
            "child_table_depth",
            th.IntegerType(minimum=0, maximum=10),
            default=1,
            title="Child table depth",
            description=(
                "Levels of arrays of objects that become child tables keyed to their parent "
                "(0: none); deeper arrays become JSON text."
            ),
        ),
        th.Property(
            "child_tables",
            th.ArrayType(th.StringType),
            title="Child tables",
            description=(
                "Only these arrays become child tables, as <stream>.<field> (e.g. "
                "Invoices.LineItems); every other array becomes JSON text."
            ),
        ),
        th.Property(
            "rebuild_dataset_on_new_tables",
            th.BooleanType,
            default=False,
            title="Rebuild dataset on new tables",
            description=(
                "When the run carries tables the existing dataset lacks, delete and recreate "
                "the dataset from the local store (reports must then be rebound) instead of "
                "stopping with an error."
            ),
        ),
        th.Property(
            "on_invalid_value",
            th.StringType,
            default="warn",
            allowed_values=["warn", "fail"],
            title="On invalid value",
            description=(
                "A value Power BI cannot hold (string over 4,000 characters, Int64 out of range, "
                "NaN): warn (truncate or send null, and log stream, record and column) or fail."
            ),
        ),
        th.Property(
            "audit_log_path",
            th.StringType,
            title="Audit log path",
            description="JSON-lines file recording every call that changes Power BI.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            title="Max retries",
            description="Retries of a throttled or failed request before the run stops.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType,
            title="Request timeout",
            description="Seconds to wait for one Power BI response.",
        ),
        th.Property(
            "time_scale",
            th.NumberType,
            title="Time scale",
            description="Speed of the client's clock for waits (tests with a time-scaled sandbox).",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Sinks only write to the local store; one at a time keeps SQLite simple.
        self.max_parallelism = 1
        self.run_id = uuid.uuid4().hex
        self.message_version: int | None = None
        self._store: Store | None = None
        self._sync: DatasetSync | None = None
        self._client: PowerBIClient | None = None
        self.model: Model = load_model(self.config.get("model_file"))
        self.policy = ValuePolicy(str(self.config.get("on_invalid_value") or "warn"), self.logger)
        self._stream_tables: dict[str, list[str]] = {}
        self.activations: dict[tuple[str, int], int] = {}
        self._ending = False
        allow = self.config.get("child_tables")
        self.shape = Shape(
            object_depth=int(self.config.get("object_depth", 1)),
            child_table_depth=int(self.config.get("child_table_depth", 1)),
            child_tables=frozenset(allow) if allow is not None else None,
        )

    # ------------------------------------------------------------------ resources

    @property
    def store(self) -> Store:
        """The local store, opened on first use; tables interrupted mid-push become dirty."""
        if self._store is None:
            path = self.config.get("store_path") or (
                Path(".target-powerbi") / f"{self.config['dataset_name']}.sqlite3"
            )
            self._store = Store(path)
            interrupted = self._store.recover_unclean()
            if interrupted:
                self.logger.warning(
                    "The last run stopped while pushing to %s; these tables will be emptied "
                    "and reloaded from the local store: %s",
                    self.config["dataset_name"],
                    interrupted,
                )
        return self._store

    @property
    def dataset_sync(self) -> DatasetSync:
        """The Power BI client and the dataset sync, created on first push."""
        if self._sync is None:
            self._client = PowerBIClient(self.config, self.logger)
            self._sync = DatasetSync(
                self._client,
                self.store,
                dataset_name=str(self.config["dataset_name"]),
                retention_policy=str(self.config.get("retention_policy") or "None"),
                batch_size=int(self.config.get("batch_size") or MAX_ROWS_PER_POST),
                parallelism=int(self.config.get("parallelism") or 2),
                rebuild=bool(self.config.get("rebuild_dataset_on_new_tables")),
                model=self.model,
                logger=self.logger,
            )
        return self._sync

    def map_stream(
        self, stream: str, schema: dict[str, Any], key_properties: list[str]
    ) -> TableMap:
        """Map a stream to tables with names unique across the dataset, and register them."""
        store = self.store
        own = {t.name.lower() for t in store.tables() if t.stream == stream}
        used = {t.name.lower() for t in store.tables()} - own
        for other, names in self._stream_tables.items():
            if other != stream:
                used |= {n.lower() for n in names}
        root = map_stream(
            stream,
            schema,
            key_properties,
            used,
            type_overrides=self.model.column_types,
            shape=self.shape,
            logger=self.logger,
        )
        self._stream_tables[stream] = [t.name for t in root.walk()]
        relationships = root.relationships()
        for table in root.walk():
            definition = table.to_powerbi()
            definition["relationships"] = [r for r in relationships if r["fromTable"] == table.name]
            store.register_table(table.name, stream, definition)
        return root

    # ------------------------------------------------------------------ messages

    @override
    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        # The sink stores each row with its record's table version (ACTIVATE_VERSION).
        version = message_dict.get("version")
        self.message_version = int(version) if isinstance(version, int) else None
        super()._process_record_message(message_dict)

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        # STATE only once the rows it covers are in the store and in Power BI.
        if not self._ending and self._store is not None and not self.store.get_meta("dataset_id"):
            # No dataset yet: create it at the end of the input, once every stream has sent
            # its SCHEMA (tables cannot be added later). A later STATE supersedes this one.
            self.logger.info("Holding STATE until the dataset is created at the end of the input")
            return
        self.push()
        checkpoint("pushed")
        super()._write_state_message(state)

    @override
    def process_endofpipe(self) -> None:
        self._ending = True
        super().process_endofpipe()
        self.push()
        for (table, column), count in sorted(self.policy.summary().items()):
            self.logger.warning(
                "%d values of %s.%s could not be held by Power BI as sent (see above)",
                count,
                table,
                column,
            )
        self.close()

    def push(self) -> None:
        """Bring Power BI level with the store (create, reload, append)."""
        if self._store is None or not self.store.tables():
            return
        sync = self.dataset_sync
        sync.sync()
        if self._client is not None and sync.dataset_id:
            # a POST retried after a 5xx, timeout or dropped connection may have landed twice
            uncertain = self._client.uncertain_tables()
            doubtful = sorted(t for d, t in uncertain if d == sync.dataset_id)
            if doubtful:
                self.logger.warning(
                    "A retried POST may have landed twice in %s; reloading them", doubtful
                )
                self.store.mark_dirty(doubtful)
                sync.sync()

    def close(self) -> None:
        """Close the client and the store."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._sync = None
        if self._store is not None:
            self._store.close()
            self._store = None
        logging.getLogger(__name__).debug("target-powerbi closed")


if __name__ == "__main__":
    TargetPowerBI.cli()

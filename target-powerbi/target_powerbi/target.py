"""target-powerbi: the Target class and its settings."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.target_base import Target
from typing_extensions import override

from target_powerbi.client import PowerBIClient
from target_powerbi.dataset import DatasetSync
from target_powerbi.limits import Clock, MonotonicClock
from target_powerbi.mapping import Shape, TableMap, ValuePolicy, map_stream
from target_powerbi.model import Model, load_model
from target_powerbi.report import Deployment, deploy_report
from target_powerbi.settings import SCHEMA, Settings
from target_powerbi.sinks import PowerBISink
from target_powerbi.store import Store


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

    config_jsonschema = SCHEMA
    # What the target builds its Power BI client from; a test subclass may swap either.
    client_class: type[PowerBIClient] = PowerBIClient
    clock: Clock = MonotonicClock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Sinks only write to the local store; one at a time keeps SQLite simple.
        self.max_parallelism = 1
        self.settings = Settings.from_config(self.config)
        self.run_id = uuid.uuid4().hex
        self.message_version: int | None = None
        self._store: Store | None = None
        self._sync: DatasetSync | None = None
        self._client: PowerBIClient | None = None
        self.model: Model = load_model(self.settings.model_file)
        self.policy = ValuePolicy(self.settings.on_invalid_value, self.logger)
        self._stream_tables: dict[str, list[str]] = {}
        self.activations: dict[tuple[str, int], int] = {}
        self._ending = False
        self.shape = Shape(
            object_depth=self.settings.object_depth,
            child_table_depth=self.settings.child_table_depth,
            child_tables=self.settings.child_tables,
        )

    # ------------------------------------------------------------------ resources

    @property
    def store(self) -> Store:
        """The local store, opened on first use; tables interrupted mid-push become dirty."""
        if self._store is None:
            self._store = Store(self.settings.store_path)
            interrupted = self._store.recover_unclean()
            if interrupted:
                self.logger.warning(
                    "The last run stopped while pushing to %s; these tables will be emptied "
                    "and reloaded from the local store: %s",
                    self.settings.dataset_name,
                    interrupted,
                )
        return self._store

    @property
    def dataset_sync(self) -> DatasetSync:
        """The Power BI client and the dataset sync, created on first push."""
        if self._sync is None:
            self._client = self.client_class(self.settings, self.logger, clock=self.clock)
            self._sync = DatasetSync(
                self._client, self.store, self.settings, model=self.model, logger=self.logger
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
        if self.settings.report_file and self._client is not None and sync.dataset_id:
            deploy_report(
                Deployment.of(self.settings, self.model, self._client, self.run_id),
                self.store,
                sync.dataset_id,
                self.logger,
            )
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

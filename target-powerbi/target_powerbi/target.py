"""target-powerbi: the Target class: Singer messages in, the store and Power BI kept level."""

from __future__ import annotations

import io
import logging
import sqlite3
import sys
import uuid
from collections import Counter
from typing import IO, TYPE_CHECKING, Any

from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.target_base import Target
from typing_extensions import override

from target_powerbi import heal
from target_powerbi.client import PowerBIClient
from target_powerbi.dataset import DatasetSync
from target_powerbi.errors import PowerBIError
from target_powerbi.limits import Clock, MonotonicClock
from target_powerbi.mapping import InvalidValueError, Shape, TableMap, ValuePolicy, map_stream
from target_powerbi.model import Model, ModelFileError, load_model
from target_powerbi.report import Deployment, deploy_report
from target_powerbi.settings import SCHEMA, Settings, SettingsError
from target_powerbi.sinks import PowerBISink
from target_powerbi.store import Store

if TYPE_CHECKING:
    from target_powerbi.destinations.fabric import FabricDestination


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
    # Set by the command line for the run it starts: sign-in, workspace and store are
    # checked before the first line of input is read (fail fast, not after the extract).
    check_access_first = False

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
        self._fabric: FabricDestination | None = None  # destination: fabric
        self.model: Model = load_model(self.settings.model_file)
        self.policy = ValuePolicy(self.settings.on_invalid_value, self.logger)
        # Rows already stored are repaired, never refused: refusing would stop every run.
        self.repair_policy = ValuePolicy("warn", self.logger)
        self._stream_tables: dict[str, list[str]] = {}
        self.activations: dict[tuple[str, int], int] = {}
        self.settled: set[tuple[str, int]] = set()  # versions whose old rows are removed
        self.occurrences: dict[str, Counter[str]] = {}  # identical keyless records this run
        # partition values seen, not yet swept: stream -> value -> position of its last record
        self.partitions: dict[str, dict[str, int]] = {}
        # positions in the input (RECORD and STATE messages, counted), to tell whether the
        # tap got past a stream's records (a STATE after them) or stopped among them
        self.messages_seen = 0
        self.last_state_at = 0
        self.last_record_at: dict[str, int] = {}
        self._ending = False
        # the dataset whose report this run already checked: once a run, not at every push
        self._report_checked_for: str | None = None
        self.shape = Shape(
            object_depth=self.settings.object_depth,
            child_table_depth=self.settings.child_table_depth,
            child_tables=self.settings.child_tables,
        )
        if self.check_access_first:
            self.check_access()

    # ------------------------------------------------------------------ resources

    @property
    def store(self) -> Store:
        """The local store, opened on first use; tables interrupted mid-push become dirty."""
        if self._store is None:
            self._store = Store(self.settings.store_path)
            heal.repair(self._store, self.repair_policy, self.logger)
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

    @property
    def fabric(self) -> FabricDestination:
        """The open mirrored database in OneLake (destination: fabric), opened on first use."""
        if self._fabric is None:
            # imported here: pyarrow and Azure's SDK load only for this destination
            from target_powerbi.destinations.fabric import FabricDestination

            self._fabric = FabricDestination(self.settings, self.store, self.logger, self.model)
        return self._fabric

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
        self._migrate(root)
        relationships = root.relationships()
        for table in root.walk():
            definition = table.to_powerbi()
            definition["relationships"] = [r for r in relationships if r["fromTable"] == table.name]
            keys = table.key_properties if table is root else []
            store.register_table(table.name, stream, definition, keys)
        if self.settings.destination == "fabric":
            self.fabric.register(root)
        return root

    def _migrate(self, root: TableMap) -> None:
        """Bring stored rows level with a changed layout: column types, then the key."""
        store = self.store
        known = {t.name: t for t in store.tables()}
        for table in root.walk():
            if table.name in known:
                old = known[table.name].definition
                heal.migrate_types(store, table, old, self.repair_policy, self.logger)
        old_keys = store.keys(root.name) if root.name in known else None
        if (
            old_keys is None
            or old_keys == root.key_properties
            or self.settings.load_method != "upsert"
            or not store.count(root.name)
        ):
            return
        heal.rekey(store, root, old_keys, self.logger)

    # ------------------------------------------------------------------ messages

    @override
    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        # The sink stores each row with its record's table version (ACTIVATE_VERSION).
        self.messages_seen += 1
        self.last_record_at[str(message_dict.get("stream"))] = self.messages_seen
        version = message_dict.get("version")
        self.message_version = int(version) if isinstance(version, int) else None
        super()._process_record_message(message_dict)

    @override
    def _process_state_message(self, message_dict: dict[str, Any]) -> None:
        # Where the last STATE was read: records before it were followed by the tap's STATE.
        self.messages_seen += 1
        self.last_state_at = self.messages_seen
        super()._process_state_message(message_dict)

    def complete(self, position: int) -> bool:
        """Whether the tap got past what it sent up to `position` (a STATE came after it).

        A tap that stops among a stream's records (a crash, a budget spent) must not
        make the rows it did not send yet look deleted: without a STATE after them,
        nothing is removed.
        """
        return position < self.last_state_at

    def check_access(self) -> None:
        """Fail fast: the store's folder, the credentials and the workspace, in seconds."""
        if self.settings.destination == "fabric":
            self.fabric.check_access()
            return
        _ = self.dataset_sync  # opens the store, makes the client
        assert self._client is not None
        self._client.check_access()

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: IO[str] | None = None,
    ) -> None:
        """The SDK's run, with every expected failure told in one line (traceback at debug)."""
        cls.check_access_first = True
        try:
            super().invoke(
                about=about,
                about_format=about_format,
                config=config,
                file_input=None if about else _tolerant(file_input or sys.stdin),
            )
        except EXPECTED_FAILURES as exc:
            cls.logger.debug("target-powerbi stopped", exc_info=True)
            cls.logger.error("%s", one_line(exc))
            sys.exit(1)
        finally:
            cls.check_access_first = False

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        # STATE only once the rows it covers are in the store and in Power BI.
        if (
            not self._ending
            and self.settings.destination == "push"
            and not self.store.get_meta("dataset_id")
        ):
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
        store = self.store
        if self._ending:
            self._settle_opened_versions()
        self._sweep_partitions()
        if self.settings.destination == "fabric":
            if store.tables():
                self.fabric.sync()
                if self._ending:
                    self.fabric.finish()  # the semantic model, once the input is done
            return
        if not store.tables() or not (store.get_meta("dataset_id") or store.has_rows()):
            return  # nothing to push: no dataset is created for no rows
        sync = self.dataset_sync
        sync.sync()
        if (
            self.settings.report_file
            and self._client is not None
            and sync.dataset_id
            and sync.dataset_id != self._report_checked_for
        ):
            self._report_checked_for = sync.dataset_id
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

    def _settle_opened_versions(self) -> None:
        """An ACTIVATE_VERSION that opened a stream and was never closed (Singer SDK taps):
        at the end of the input, the rows the new version lacks go, once the tap got past
        the stream's records."""
        for (stream, version), _ in sorted(self.activations.items()):
            if (stream, version) in self.settled or stream not in self._stream_tables:
                continue
            if not self.complete(self.last_record_at.get(stream, 0)):
                self.logger.warning(
                    "The input ended among the records of %s (no STATE after them): rows "
                    "the new version %s lacks are kept until a complete run",
                    stream,
                    version,
                )
                continue
            self.settled.add((stream, version))
            gone = self.store.activate_version(self._stream_tables[stream], version, self.run_id)
            if gone:
                self.logger.info(
                    "ACTIVATE_VERSION %s of %s: %d rows the new version lacks are removed",
                    version,
                    stream,
                    gone,
                )

    def _sweep_partitions(self) -> None:
        """replace_partitions: stored rows of a partition value this run brought (and the
        tap got past), that it did not bring again, go."""
        for stream, parts in self.partitions.items():
            done = sorted(part for part, at in parts.items() if self.complete(at))
            if not done or stream not in self._stream_tables:
                continue
            gone = self.store.sweep_partitions(self._stream_tables[stream], done, self.run_id)
            for part in done:
                del parts[part]
            if gone:
                self.logger.info(
                    "%s: %d rows no longer in their partition are removed", stream, gone
                )

    def close(self) -> None:
        """Close the client and the store."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._sync = None
        if self._fabric is not None:
            self._fabric.close()
            self._fabric = None
        if self._store is not None:
            self._store.close()
            self._store = None
        logging.getLogger(__name__).debug("target-powerbi closed")


EXPECTED_FAILURES = (
    PowerBIError,
    SettingsError,
    ModelFileError,
    InvalidValueError,
    heal.KeyChangeError,
    OSError,
    sqlite3.Error,
)


def one_line(exc: BaseException) -> str:
    """The failure as one line that names what to fix."""
    if isinstance(exc, OSError) and exc.filename:
        return (
            f"Cannot use {exc.filename} ({exc.strerror}): fix store_path or audit_log_path, "
            "or the folder's permissions."
        )
    if isinstance(exc, sqlite3.Error):
        return f"The local store cannot be used ({exc}): check store_path and its disk."
    return " ".join(str(exc).split())


def _tolerant(stream: IO[str]) -> IO[str]:
    """The input as UTF-8 that keeps invalid bytes (as lone surrogates the mapping replaces)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return stream
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape")


if __name__ == "__main__":
    TargetPowerBI.cli()

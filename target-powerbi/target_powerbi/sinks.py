"""Sinks: one Power BI table (and its child tables) per Singer stream.

A sink never calls Power BI: it maps each batch of records to rows and writes
them to the local store in one transaction. The target pushes the store's
pending work to Power BI before it emits STATE and at the end of the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override

from target_powerbi.mapping import Row, build_rows, record_key

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk.target_base import Target

    from target_powerbi.target import TargetPowerBI


class PowerBISink(BatchSink):
    """Maps a stream's records to rows and writes them to the local store."""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.pbi: TargetPowerBI = target  # type: ignore[assignment]
        self.load_method = self.pbi.settings.load_method
        self.by_content = self.load_method == "append-only" or not self.key_properties
        self.root = self.pbi.map_stream(stream_name, self.schema, list(self.key_properties))
        self.table_names = [t.name for t in self.root.walk()]

    @property
    @override
    def max_size(self) -> int:
        settings = self.pbi.settings
        return settings.batch_size_rows or settings.batch_size

    @override
    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        context.setdefault("records", []).append((record, self.pbi.message_version))

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        items: list[tuple[dict[str, Any], int | None]] = context.get("records", [])
        if not items:
            return
        store = self.pbi.store
        if self.load_method == "overwrite" and store.reset_for_overwrite(
            self.table_names, self.pbi.run_id
        ):
            self.logger.info(
                "overwrite: tables %s are emptied once in this run and loaded again",
                self.table_names,
            )
        by_version: dict[int | None, list[tuple[str, list[Row]]]] = {}
        for record, version in items:
            key = record_key(self.root, record, by_content=self.by_content)
            rows = build_rows(self.root, record, key, self.pbi.policy)
            by_version.setdefault(version, []).append((key, rows))
        for version, records in by_version.items():
            result = store.write(records, self.table_names, version=version, run=self.pbi.run_id)
            self.logger.info(
                "Stored %d records of %s: %d new rows, %d unchanged, %d changed, %d removed",
                len(records),
                self.stream_name,
                result.appended,
                result.unchanged,
                result.changed,
                result.removed,
            )

    @override
    def activate_version(self, new_version: int) -> None:
        """Drop rows of older versions of a full-table stream (the table is then reloaded)."""
        if self.current_size:
            context = self.start_drain()
            self.process_batch(context)
            self.mark_drained()
        store = self.pbi.store
        seen = self.pbi.activations.get((self.stream_name, new_version), 0) + 1
        self.pbi.activations[(self.stream_name, new_version)] = seen
        if seen == 1 and not store.version_rows(self.root.name, new_version, self.pbi.run_id):
            # The opening ACTIVATE_VERSION of a full-table sync: its rows are still to come.
            return
        gone = store.activate_version(self.table_names, new_version, self.pbi.run_id)
        if gone:
            self.logger.info(
                "ACTIVATE_VERSION %s of %s: %d rows of older versions removed; the table "
                "will be reloaded",
                new_version,
                self.stream_name,
                gone,
            )

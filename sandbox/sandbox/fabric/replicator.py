"""The replicator: landed files, in sequence order, applied to Delta tables (deltalake).

Open mirroring scans the landing zone on its own schedule; the sandbox scans a database after
every change to its files, so it sees every intermediate state a publisher exposes (a file
uploaded under its final name is seen empty first) and tests need no waiting.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from sandbox.fabric.landing import (
    DELETE,
    INSERT,
    SEQUENCE_NAME,
    Changes,
    LandingError,
    Metadata,
    check_types,
    kind,
    parse_metadata,
    read_changes,
)
from sandbox.fabric.onelake import Node, OneLakeStore

PROCESSED = "_ProcessedFiles"


@dataclass
class RefusedFile:
    database: str
    table: str
    file: str
    reason: str
    at: str

    def to_json(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class MirroredTable:
    """One table folder of a landing zone and its Delta table."""

    database: str
    schema: str
    name: str
    folder: str
    folder_node: Node
    delta_path: Path
    metadata: Metadata | None = None
    metadata_etag: str | None = None
    next_sequence: int = 1
    last_applied: tuple[str, str] | None = None
    error: str | None = None
    blocker: tuple[str, str] | None = None
    landed_types: dict[str, str] = field(default_factory=dict)
    delta_types: dict[str, pa.DataType] = field(default_factory=dict)
    row_count: int = 0
    processed_rows: int = 0
    processed_bytes: int = 0
    last_sync: str | None = None
    waiting: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def status(self) -> str:
        return "Failed" if self.error else "Replicating"

    @property
    def key_columns(self) -> tuple[str, ...] | None:
        return self.metadata.key_columns if self.metadata else None

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(str(self.delta_path))

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        table = DeltaTable(str(self.delta_path)).to_pyarrow_table()
        return list(table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist())

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.schema,
            "table": self.name,
            "rowCount": self.row_count,
            "status": self.status,
            "error": self.error,
            "keyColumns": list(self.key_columns) if self.key_columns else None,
            "columns": dict(self.landed_types),
            "lastAppliedFile": self.last_applied[0] if self.last_applied else None,
            "nextSequence": f"{self.next_sequence:020d}.parquet",
            "waitingFiles": list(self.waiting),
            "deltaPath": str(self.delta_path),
        }


@dataclass
class ReplicationStats:
    rows_landed: int = 0
    files_applied: int = 0
    bytes_applied: int = 0
    refused: list[RefusedFile] = field(default_factory=list)


class Replicator:
    """Applies landing zones to Delta tables under `root`; callers hold the sandbox lock."""

    def __init__(self, store: OneLakeStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.tables: dict[str, MirroredTable] = {}
        self.stats = ReplicationStats()
        self._recorded: set[tuple[str, str]] = set()

    def reset(self) -> None:
        self.tables.clear()
        self.stats = ReplicationStats()
        self._recorded.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def drop_database(self, item_path: str) -> None:
        for folder in [f for f in self.tables if f.startswith(f"{item_path}/")]:
            self._drop(folder)

    def scan(self, item_path: str, default_schema: str) -> None:
        """Follow one mirrored database's landing zone: dropped, new and changed tables."""
        landing = f"{item_path}/Files/LandingZone"
        folders = dict(self._table_folders(landing, default_schema))
        for folder in [f for f in self.tables if f.startswith(f"{landing}/")]:
            current = self.store.get(folder)
            if folder not in folders or current is not self.tables[folder].folder_node:
                self._drop(folder)
        for folder, (schema, name) in folders.items():
            table = self.tables.get(folder)
            if table is None:
                node = self.store.require(folder)
                table = MirroredTable(
                    database=item_path.partition("/")[2],
                    schema=schema,
                    name=name,
                    folder=folder,
                    folder_node=node,
                    delta_path=self.root / item_path / "Tables" / schema / name,
                )
                self.tables[folder] = table
            self._follow(table)

    def _table_folders(
        self, landing: str, default_schema: str
    ) -> list[tuple[str, tuple[str, str]]]:
        """Table folders: `LandingZone/<table>` or `LandingZone/<schema>.schema/<table>`."""
        found: list[tuple[str, tuple[str, str]]] = []
        if self.store.get(landing) is None:
            return found
        for path, node in self.store.children(landing, recursive=False):
            name = path.rpartition("/")[2]
            if not node.is_dir or name.startswith("_"):
                continue
            if name.endswith(".schema"):
                for inner, child in self.store.children(path, recursive=False):
                    table = inner.rpartition("/")[2]
                    if child.is_dir and not table.startswith("_"):
                        found.append((inner, (name[: -len(".schema")], table)))
            else:
                found.append((path, (default_schema, name)))
        return found

    def _drop(self, folder: str) -> None:
        table = self.tables.pop(folder)
        shutil.rmtree(table.delta_path, ignore_errors=True)

    def _refuse(self, table: MirroredTable, name: str, etag: str, error: LandingError) -> None:
        key = (f"{table.folder}/{name}", etag)
        if key in self._recorded:
            return
        self._recorded.add(key)
        self.stats.refused.append(
            RefusedFile(
                database=table.database,
                table=f"{table.schema}.{table.name}",
                file=name,
                reason=error.reason,
                at=_now(),
            )
        )

    def _follow(self, table: MirroredTable) -> None:
        if table.stopped or not self._follow_metadata(table):
            return  # a stopped table waits for its folder to be recreated
        if table.blocker is not None:
            name, etag = table.blocker
            node = self.store.get(f"{table.folder}/{name}")
            if node is not None and node.etag == etag:
                return  # still the file that stopped the table
            table.blocker = None
            table.error = None
        files = self._files(table)
        while True:
            name = f"{table.next_sequence:020d}.parquet"
            node = files.pop(name, None)
            if node is None:
                break
            try:
                self._apply(table, name, node)
            except LandingError as error:
                self._refuse(table, name, node.etag, error)
                table.error = f"{name}: {error.reason}"
                table.blocker = (name, node.etag)
                table.stopped = error.fatal
                break
        table.waiting = sorted(files)

    def _follow_metadata(self, table: MirroredTable) -> bool:
        """Read a new or changed _metadata.json; False while it stops the table."""
        node = self.store.get(f"{table.folder}/_metadata.json")
        if node is not None and not node.content:
            node = None  # created, not flushed yet: the Azure SDK's upload is create-append-flush
        if node is None or node.etag == table.metadata_etag:
            return table.blocker is None or table.blocker[0] != "_metadata.json"
        table.metadata_etag = node.etag
        try:
            metadata = parse_metadata(node.content)
            if table.metadata is not None and metadata.key_columns != table.metadata.key_columns:
                previous = table.metadata.key_columns
                raise LandingError(
                    f"keyColumns can't be changed once set (was {list(previous or [])}, "
                    f"now {list(metadata.key_columns or [])})"
                )
        except LandingError as error:
            self._refuse(table, "_metadata.json", node.etag, error)
            table.error = f"_metadata.json: {error.reason}"
            table.blocker = ("_metadata.json", node.etag)
            return False
        table.metadata = metadata
        if table.blocker is not None:  # new metadata: the refused file gets another try
            table.blocker = None
            table.error = None
        return True

    def _files(self, table: MirroredTable) -> dict[str, Node]:
        """Data files still in the folder; misnamed or republished ones are refused."""
        files: dict[str, Node] = {}
        for path, node in self.store.children(table.folder, recursive=False):
            name = path.rpartition("/")[2]
            if node.is_dir or name.startswith("_"):
                continue
            match = SEQUENCE_NAME.match(name)
            if match is None:
                self._refuse(
                    table,
                    name,
                    node.etag,
                    LandingError(
                        "not a data file name: 20 digits and .parquet "
                        "(00000000000000000001.parquet); never read"
                    ),
                )
                continue
            sequence = int(match.group(1))
            if sequence >= table.next_sequence:
                files[name] = node
            elif table.last_applied != (name, node.etag):
                self._refuse(
                    table,
                    name,
                    node.etag,
                    LandingError(
                        f"sequence {sequence} was already processed; published files are "
                        "immutable and a sequence number is never reused"
                    ),
                )
        return files

    def _apply(self, table: MirroredTable, name: str, node: Node) -> None:
        changes = read_changes(node.content, table.metadata)
        check_types(changes.data, table.landed_types)
        data = _for_delta(changes.data, table.delta_types)
        try:
            if table.exists() and all(op == INSERT for op in changes.operations):
                write_deltalake(str(table.delta_path), data, mode="append", schema_mode="merge")
                table.row_count += data.num_rows
            else:
                result = _merged(table, data, changes)
                write_deltalake(
                    str(table.delta_path), result, mode="overwrite", schema_mode="overwrite"
                )
                table.row_count = result.num_rows
        except (DeltaError, pa.ArrowException, ValueError, TypeError) as exc:
            # Never a 500 on every later request: the file is refused like any other.
            raise LandingError(f"the sandbox could not apply it to Delta ({exc})") from None
        for column in changes.data.schema:
            if not pa.types.is_null(column.type):
                table.landed_types.setdefault(column.name, kind(column.type))
                table.delta_types.setdefault(column.name, data.schema.field(column.name).type)
        self._processed(table, name)
        table.last_applied = (name, node.etag)
        table.next_sequence += 1
        table.processed_rows += changes.data.num_rows
        table.processed_bytes += len(node.content)
        table.last_sync = _now()
        self.stats.rows_landed += changes.data.num_rows
        self.stats.files_applied += 1
        self.stats.bytes_applied += len(node.content)

    def _processed(self, table: MirroredTable, name: str) -> None:
        """Processed files move to _ProcessedFiles; the last one stays for the publisher."""
        if table.last_applied is None:
            return
        previous = table.last_applied[0]
        node = self.store.get(f"{table.folder}/{previous}")
        if node is not None and previous != name:
            self.store.rename(
                f"{table.folder}/{previous}",
                f"{table.folder}/{PROCESSED}/{previous}",
                if_none_match=False,
                now=node.modified,
            )


def _for_delta(data: pa.Table, stored: dict[str, pa.DataType]) -> pa.Table:
    """Delta keeps microsecond timestamps and has no null or time type: cast, keeping values."""
    fields: list[Any] = []
    for fld in data.schema:
        target = fld.type
        if pa.types.is_null(target):
            if fld.name not in stored:
                continue  # all null and never typed: added when a file gives it a type
            target = stored[fld.name]
        elif pa.types.is_timestamp(target) and target.unit != "us":
            target = pa.timestamp("us", tz=target.tz)
        elif pa.types.is_time(target):
            target = pa.string()
        fields.append(pa.field(fld.name, target, nullable=True))
    schema = pa.schema(fields)
    columns = [data.column(f.name).cast(f.type) for f in fields]
    return pa.Table.from_arrays(columns, schema=schema)


def _merged(table: MirroredTable, data: pa.Table, changes: Changes) -> pa.Table:
    """The table after the file's operations, applied in row order (update and delete by key)."""
    current = (
        DeltaTable(str(table.delta_path)).to_pyarrow_table()
        if table.exists()
        else data.schema.empty_table()
    )
    schema = pa.unify_schemas([current.schema, data.schema], promote_options="permissive")
    keys = table.key_columns or ()
    groups: dict[Any, list[dict[str, Any]]] = {}
    for index, row in enumerate(current.to_pylist()):
        groups.setdefault(tuple(row.get(k) for k in keys) if keys else index, []).append(row)
    serial = len(groups)
    for row, operation in zip(data.to_pylist(), changes.operations, strict=True):
        serial += 1
        key = tuple(row.get(k) for k in keys) if keys else serial
        if operation == INSERT:
            groups.setdefault(key, []).append(row)
        elif operation == DELETE:
            groups.pop(key, None)
        else:  # update and upsert: replace the row with that key, or insert it
            groups[key] = [row]
    rows = [row for group in groups.values() for row in group]
    return pa.Table.from_pylist(rows, schema=schema)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

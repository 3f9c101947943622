"""The dataset's lifecycle and bringing Power BI level with the local store.

``DatasetSync.sync()`` runs before every STATE the target emits and once at the
end of the run (never per batch), so:

- the dataset is created (when it is not found by name) with every table the
  store knows at that moment: every SCHEMA received so far in this run plus the
  tables of earlier runs. Sinks only write to the store, so by the time a STATE
  is emitted or the input ends, every stream of the run has sent its SCHEMA;
- a table whose rows Power BI holds wrongly (``dirty``) is emptied and reloaded
  from the store, once per sync;
- every other table gets its pending rows appended, ``batch_size`` rows a POST,
  up to ``parallelism`` POSTs at a time.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from target_powerbi.errors import DatasetNotFoundError, PowerBIError
from target_powerbi.mapping import MAX_COLUMNS, MAX_TABLES, dumps
from target_powerbi.model import Model
from target_powerbi.settings import Settings
from target_powerbi.store import Store, TableState


class Client(Protocol):
    """The part of ``target_powerbi.client.PowerBIClient`` the sync uses."""

    def find_dataset(self, name: str, prefer: str | None = None) -> dict[str, Any] | None: ...

    def list_reports(self) -> list[dict[str, Any]]: ...

    def rebind_report(self, report_id: str, dataset_id: str) -> None: ...

    def list_dashboards(self) -> list[dict[str, Any]]: ...

    def list_tiles(self, dashboard_id: str) -> list[dict[str, Any]]: ...

    def clone_tile(
        self, dashboard_id: str, tile: dict[str, Any], dataset_id: str
    ) -> dict[str, Any]: ...

    def create_dataset(
        self, body: dict[str, Any], retention_policy: str = "None"
    ) -> dict[str, Any]: ...

    def delete_dataset(self, dataset_id: str) -> None: ...

    def list_tables(self, dataset_id: str) -> list[dict[str, Any]]: ...

    def put_table(self, dataset_id: str, table: dict[str, Any]) -> Any: ...

    def post_rows_many(
        self, dataset_id: str, batches: Sequence[tuple[str, list[dict[str, Any]], int]]
    ) -> Any: ...

    def delete_rows(self, dataset_id: str, table_name: str) -> Any: ...


class DatasetLayoutError(PowerBIError):
    """The run carries tables the existing dataset lacks, and rebuilding is not allowed."""


class DatasetSync:
    """Creates or finds the dataset and pushes the store's pending work to it."""

    def __init__(
        self,
        client: Client,
        store: Store,
        settings: Settings,
        *,
        model: Model | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.dataset_name = settings.dataset_name
        self.retention_policy = settings.retention_policy
        self.batch_size = settings.batch_size
        self.parallelism = max(1, settings.parallelism)
        self.on_new_tables = settings.on_new_tables
        self.model = model or Model()
        self.log = logger or logging.getLogger(__name__)
        self.dataset_id: str | None = None
        self.rows_posted = 0

    # ------------------------------------------------------------ public

    def sync(self) -> None:
        """Bring Power BI level with the store (dataset, schemas, reloads, appends)."""
        if not self.store.tables():
            return
        try:
            self._sync_once()
        except DatasetNotFoundError:
            self.log.warning(
                "Dataset %r was deleted while the target was running; creating it again "
                "and loading every table from the local store",
                self.dataset_name,
            )
            self.store.set_meta("dataset_id", None)
            self.dataset_id = None
            self._sync_once()

    # ------------------------------------------------------------ dataset

    def _sync_once(self) -> None:
        dataset_id = self.ensure_dataset()
        for table in self.store.tables():
            if table.dirty:
                self._reload(dataset_id, table)
        pending = [t for t in self.store.tables() if self.store.max_seq(t.name) > t.pushed_seq]
        if pending:
            self._append(dataset_id, pending)
        retired = self.store.get_meta("retired_dataset_id")
        if retired and retired != dataset_id:
            self._retire(retired, dataset_id)

    def _retire(self, old_id: str, new_id: str) -> None:
        """Move the workspace's reports and dashboard tiles to the new dataset, then delete
        the old one.

        Runs once the new dataset holds every row; a run stopped before the end does it
        on the next run (the old id stays in the store until then). Deleting a dataset
        deletes every tile that shows it, so the old one stays until its tiles are copied.
        """
        rebound = []
        for report in self.client.list_reports():
            if str(report.get("datasetId")) == old_id:
                self.client.rebind_report(str(report["id"]), new_id)
                rebound.append(str(report.get("name") or report["id"]))
        try:
            moved = self._move_tiles(old_id, new_id)
        except PowerBIError as exc:
            self.log.warning(
                "Dataset %r was rebuilt as %s (reports rebound to it: %s), but its dashboard "
                "tiles could not be moved (%s); the old dataset %s is kept so they stay, and "
                "the next run tries again. To give them up, delete dataset %s in the workspace.",
                self.dataset_name,
                new_id,
                rebound or "none",
                exc,
                old_id,
                old_id,
            )
            return
        self.client.delete_dataset(old_id)
        self.store.set_meta("retired_dataset_id", None)
        self.log.warning(
            "Dataset %r was rebuilt as %s: reports rebound to it: %s; dashboard tiles "
            "copied to it (each at the end of its dashboard): %s. The old dataset %s and "
            "its tiles are deleted.",
            self.dataset_name,
            new_id,
            rebound or "none",
            moved or "none",
            old_id,
        )

    def _move_tiles(self, old_id: str, new_id: str) -> list[str]:
        """Clone every tile showing the old dataset onto its dashboard, bound to the new one.

        Power BI has no call to rebind a tile; `Clone Tile` with `targetModelId` makes a
        bound copy. Copies made by an earlier, interrupted run are counted, never repeated.
        """
        moved = []
        for dashboard in self.client.list_dashboards():
            dashboard_id = str(dashboard["id"])
            tiles = self.client.list_tiles(dashboard_id)
            copied = Counter(
                (t.get("title"), t.get("reportId"))
                for t in tiles
                if str(t.get("datasetId")) == new_id
            )
            for tile in tiles:
                if str(tile.get("datasetId")) != old_id:
                    continue
                key = (tile.get("title"), tile.get("reportId"))
                if copied[key] > 0:
                    copied[key] -= 1
                else:
                    self.client.clone_tile(dashboard_id, tile, new_id)
                name = dashboard.get("displayName") or dashboard_id
                moved.append(f"{name}: {tile.get('title') or tile.get('id')}")
        return moved

    def ensure_dataset(self) -> str:
        """Find the dataset by name, or create it with every table of the store."""
        tables = self.store.tables()
        remembered = self.store.get_meta("dataset_id")
        found = self.client.find_dataset(self.dataset_name, prefer=remembered)
        if found is None:
            if remembered:
                self.log.warning(
                    "Dataset %r (%s) is gone from the workspace; creating it again and "
                    "loading every table from the local store",
                    self.dataset_name,
                    remembered,
                )
            self.dataset_id = self._create(tables)
            return self.dataset_id
        dataset_id = str(found["id"])
        if dataset_id != remembered:
            self.log.warning(
                "Dataset %r (%s) was not created from this local store (%s); every table "
                "will be emptied and reloaded from the store",
                self.dataset_name,
                dataset_id,
                self.store.path,
            )
            self.store.mark_dirty([t.name for t in tables])
            self.store.set_meta("dataset_id", dataset_id)
        existing = {str(t["name"]): t for t in self.client.list_tables(dataset_id)}
        missing = [t.name for t in tables if t.name not in existing]
        if missing:
            return self._rebuild(dataset_id, tables, missing)
        self.dataset_id = dataset_id
        self._update_schemas(dataset_id, tables, known=existing)
        return dataset_id

    def _rebuild(self, old_id: str, tables: list[TableState], missing: list[str]) -> str:
        """A new dataset with every table (Power BI cannot add tables to a push dataset)."""
        if self.on_new_tables != "rebuild":
            msg = (
                f"Dataset {self.dataset_name!r} lacks table(s) {missing} and Power BI cannot "
                "add tables to a push dataset; on_new_tables is 'fail'. Set on_new_tables: "
                "rebuild (a new dataset from the local store, reports rebound), or load these "
                "streams into another dataset_name, or deselect them."
            )
            raise DatasetLayoutError(msg, code="NewTables")
        self.log.warning(
            "Dataset %r lacks table(s) %s: creating a new dataset with every table from the "
            "local store; the workspace's reports are rebound to it and the old one deleted",
            self.dataset_name,
            missing,
        )
        self.store.set_meta("retired_dataset_id", old_id)
        self.dataset_id = self._create(tables)
        return self.dataset_id

    def _table_body(self, table: TableState, *, merge: dict[str, Any] | None) -> dict[str, Any]:
        columns = list(table.definition["columns"])
        if merge:
            have = {c["name"] for c in columns}
            columns = [c for c in merge.get("columns", []) if c["name"] not in have] + columns
            # keep Power BI's order: old columns first, then new ones
            order = [c["name"] for c in merge.get("columns", [])]
            columns.sort(key=lambda c: order.index(c["name"]) if c["name"] in order else 10**6)
        if len(columns) > MAX_COLUMNS:
            msg = (
                f"Table {table.name!r} (stream {table.stream!r}) would have {len(columns)} "
                f"columns with those Power BI already holds, over the limit of {MAX_COLUMNS}. "
                "Deselect properties in the tap's catalog, or load into a new dataset."
            )
            raise DatasetLayoutError(msg, code="TooManyColumns")
        body: dict[str, Any] = {"name": table.name, "columns": columns}
        measures = self.model.measures.get(table.name)
        if measures:
            body["measures"] = measures
        return body

    def _create(self, tables: list[TableState]) -> str:
        if len(tables) > MAX_TABLES:
            msg = (
                f"The run carries {len(tables)} tables, over Power BI's {MAX_TABLES} a dataset: "
                "make fewer child tables (child_table_depth: 0, or list the ones you need in "
                "child_tables), deselect streams, or split the streams over two datasets (two "
                "target-powerbi loaders with different dataset_name)."
            )
            raise DatasetLayoutError(msg, code="TooManyTables")
        bodies = [self._table_body(t, merge=None) for t in tables]
        columns = {b["name"]: {c["name"] for c in b["columns"]} for b in bodies}
        relationships: dict[str, dict[str, Any]] = {}
        for rel in self._relationships():
            if rel["fromColumn"] in columns.get(rel["fromTable"], ()) and rel[
                "toColumn"
            ] in columns.get(rel["toTable"], ()):
                relationships[rel["name"]] = rel
            else:
                self.log.warning(
                    "Relationship %r names a table or column the dataset does not have: %s",
                    rel["name"],
                    rel,
                )
        body: dict[str, Any] = {
            "name": self.dataset_name,
            "defaultMode": "Push",
            "tables": bodies,
        }
        if relationships:
            body["relationships"] = list(relationships.values())[:75]
        created = self.client.create_dataset(body, retention_policy=self.retention_policy)
        dataset_id = str(created["id"])
        self.log.info(
            "Created push dataset %r (%s) with tables %s",
            self.dataset_name,
            dataset_id,
            [t.name for t in tables],
        )
        self.store.dataset_created(dataset_id)
        for table, tbody in zip(tables, bodies, strict=True):
            self.store.schema_pushed(table.name, tbody)
        return dataset_id

    def _relationships(self) -> list[dict[str, Any]]:
        rels: list[dict[str, Any]] = []
        for table in self.store.tables():
            rels.extend(table.definition.get("relationships", []))
        rels.extend(self.model.relationships)
        return [json.loads(dumps(r)) for r in rels]

    def _update_schemas(
        self,
        dataset_id: str,
        tables: list[TableState],
        known: dict[str, dict[str, Any]],
    ) -> None:
        for table in tables:
            current = table.pushed_definition
            if current is None and known.get(table.name, {}).get("columns"):
                current = {"name": table.name, "columns": known[table.name]["columns"]}
            body = self._table_body(table, merge=current)
            if current is not None and _same_table(current, body):
                continue
            self.log.info("Updating the schema of table %r (PUT)", table.name)
            self.client.put_table(dataset_id, body)
            self.store.schema_pushed(table.name, body)
            if current is not None and _retyped(current, body):
                # Power BI keeps no value across a change of type: reload from the store
                self.log.info("Columns of table %r changed type; reloading it", table.name)
                self.store.mark_dirty([table.name])

    # ------------------------------------------------------------ rows

    def _waves(
        self, jobs: Sequence[tuple[str, int]]
    ) -> Iterator[list[tuple[str, int, list[dict[str, Any]]]]]:
        """Chunks of every (table, after_seq) job, ``parallelism`` chunks at a time."""
        wave: list[tuple[str, int, list[dict[str, Any]]]] = []
        for name, after in jobs:
            for last, rows in self.store.chunks(name, after, self.batch_size):
                wave.append((name, last, rows))
                if len(wave) >= self.parallelism:
                    yield wave
                    wave = []
        if wave:
            yield wave

    def _post(
        self,
        dataset_id: str,
        wave: list[tuple[str, int, list[dict[str, Any]]]],
        counts: dict[str, int],
    ) -> None:
        batches = []
        for name, _, rows in wave:
            batches.append((name, rows, counts[name]))
            counts[name] += len(rows)
        self.client.post_rows_many(dataset_id, batches)
        self.rows_posted += sum(len(r) for _, _, r in wave)

    def _reload(self, dataset_id: str, table: TableState) -> None:
        """Empty the Power BI table and load every stored row (the table is dirty)."""
        self.log.info(
            "Reloading table %r from the local store (%d rows): keys changed or vanished, "
            "or the last push was interrupted",
            table.name,
            self.store.count(table.name),
        )
        self.client.delete_rows(dataset_id, table.name)
        top = self.store.max_seq(table.name)
        counts = {table.name: 0}
        for wave in self._waves([(table.name, 0)]):
            self._post(dataset_id, wave, counts)
        self.store.reloaded(table.name, top, counts[table.name])

    def _append(self, dataset_id: str, tables: list[TableState]) -> None:
        """Append rows Power BI does not hold yet; in flight until recorded."""
        self.store.begin_push([t.name for t in tables])
        counts = {t.name: t.pbi_rows for t in tables}
        pushed = {t.name: t.pushed_seq for t in tables}
        for wave in self._waves([(t.name, t.pushed_seq) for t in tables]):
            self._post(dataset_id, wave, counts)
            for name, last, _ in wave:
                pushed[name] = max(pushed[name], last)
        for t in tables:
            self.store.end_push(t.name, pushed[t.name], counts[t.name] - t.pbi_rows)


def _retyped(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a column both tables have changed its data type."""
    before = {c["name"]: str(c.get("dataType", "")).lower() for c in old.get("columns", [])}
    after = {c["name"]: str(c.get("dataType", "")).lower() for c in new.get("columns", [])}
    return any(before[n] != t for n, t in after.items() if n in before)


def _same_table(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(t: dict[str, Any]) -> str:
        cols = [(c["name"], str(c.get("dataType", "")).lower()) for c in t.get("columns", [])]
        return dumps([cols, t.get("measures") or []])

    return norm(a) == norm(b)

"""The durable local store: each Power BI table's current rows, by key.

Power BI push datasets can only append rows or delete all of a table's rows, so
the target keeps the truth here (SQLite, WAL, one transaction per batch) and
tells Power BI only what it must:

- ``rows`` holds every current row of every table with a sequence number; a
  table's ``pushed_seq`` says which rows Power BI already holds.
- ``dirty`` means Power BI's copy is wrong (a key changed or vanished, an
  overwrite, an unclean stop): the table is emptied and reloaded from here.
- ``inflight`` is set, durably, before rows are posted and cleared after the
  push is recorded: a table found in flight at start-up was interrupted mid-push,
  so Power BI may hold some of those rows; it is marked dirty and reloaded.

Every write that changes what must reach Power BI commits before the POST, and
the push markers commit after it, so a kill at any line leaves either rows still
pending (pushed on the next run) or a dirty table (reloaded on the next run).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_powerbi.files import FILE_MODE, private_file
from target_powerbi.mapping import Row, dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS tables (
    name TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    definition TEXT NOT NULL,
    pushed_definition TEXT,
    pushed_seq INTEGER NOT NULL DEFAULT 0,
    pbi_rows INTEGER NOT NULL DEFAULT 0,
    dirty INTEGER NOT NULL DEFAULT 0,
    inflight INTEGER NOT NULL DEFAULT 0,
    reset_run TEXT
);
CREATE TABLE IF NOT EXISTS rows (
    tbl TEXT NOT NULL,
    k TEXT NOT NULL,
    root TEXT NOT NULL,
    hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER,
    run TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (tbl, k)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_seq ON rows (tbl, seq);
CREATE INDEX IF NOT EXISTS rows_root ON rows (tbl, root);
"""
# Columns later versions added; a store of an earlier version gets them at open.
ADDED_COLUMNS = {
    "rows": {"part": "TEXT"},  # the record's partition value (replace_partitions)
    "tables": {"keys": "TEXT"},  # the stream's key properties (JSON), for a re-key
}


@dataclass
class TableState:
    """What the store knows about one Power BI table."""

    name: str
    stream: str
    definition: dict[str, Any]
    pushed_definition: dict[str, Any] | None
    pushed_seq: int
    pbi_rows: int
    dirty: bool
    inflight: bool
    reset_run: str | None


@dataclass
class WriteResult:
    """What a batch changed: rows to append, and tables that now need a reload."""

    appended: int = 0
    unchanged: int = 0
    changed: int = 0
    removed: int = 0


class Store:
    """SQLite mirror of the dataset's tables; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # SQLite gives the -wal and -shm files the database file's mode: 0600 too.
        private_file(self.path)
        for sidecar in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            if sidecar.exists():
                sidecar.chmod(FILE_MODE)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS rows_part ON rows (tbl, part)")

    def close(self) -> None:
        """Checkpoint and close."""
        with self._lock:
            self._db.close()

    # -------------------------------------------------------------- helpers

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    def get_meta(self, key: str) -> str | None:
        """A value of the meta table (e.g. the dataset id)."""
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) a meta value."""
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE k=?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # -------------------------------------------------------------- tables

    def register_table(
        self,
        name: str,
        stream: str,
        definition: dict[str, Any],
        keys: Sequence[str] | None = None,
    ) -> None:
        """Record (or update) a table's Power BI definition and its stream's key."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO tables (name, stream, definition, keys) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET stream=excluded.stream, "
                "definition=excluded.definition, keys=excluded.keys",
                (name, stream, dumps(definition), dumps(list(keys or []))),
            )

    def keys(self, name: str) -> list[str] | None:
        """The key properties a table was last registered with (None: never, or unknown)."""
        with self._lock:
            row = self._db.execute("SELECT keys FROM tables WHERE name=?", (name,)).fetchone()
        return None if row is None or row[0] is None else list(json.loads(row[0]))

    def has_rows(self) -> bool:
        """Whether any table holds a row (something to push)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is not None

    def stored(self, table: str) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
        """Every stored row of a table: (key, root key, seq, data); for migrations."""
        with self._lock:
            got = self._db.execute(
                "SELECT k, root, seq, data FROM rows WHERE tbl=? ORDER BY seq", (table,)
            ).fetchall()
        for k, root, seq, data in got:
            yield str(k), str(root), int(seq), json.loads(data)

    def rewrite(
        self,
        table: str,
        changes: Sequence[tuple[str, str, str, dict[str, Any]]],
        drop: Sequence[str] = (),
    ) -> None:
        """Migrate stored rows: (old key, new key, new root key, new data); drop keys; dirty.

        Power BI's copy is reloaded from the result (the table is marked dirty).
        """
        with self._tx() as db:
            db.executemany("DELETE FROM rows WHERE tbl=? AND k=?", [(table, k) for k in drop])
            # two steps, so a new key may be another row's old one
            moved = [(old, new) for old, new, _, _ in changes if old != new]
            db.executemany(
                "UPDATE rows SET k=? WHERE tbl=? AND k=?",
                [("\x00" + old, table, old) for old, _ in moved],
            )
            renamed = {old for old, _ in moved}
            for old, new, root, data in changes:
                text = dumps(data)
                digest = hashlib.sha256(text.encode()).hexdigest()
                db.execute(
                    "UPDATE rows SET k=?, root=?, hash=?, data=? WHERE tbl=? AND k=?",
                    (new, root, digest, text, table, "\x00" + old if old in renamed else old),
                )
            db.execute("UPDATE tables SET dirty=1 WHERE name=?", (table,))

    def tables(self) -> list[TableState]:
        """Every table the store knows, in registration order."""
        with self._lock:
            cur = self._db.execute(
                "SELECT name, stream, definition, pushed_definition, pushed_seq, pbi_rows, "
                "dirty, inflight, reset_run FROM tables ORDER BY rowid"
            )
            return [
                TableState(
                    r[0],
                    r[1],
                    json.loads(r[2]),
                    json.loads(r[3]) if r[3] else None,
                    r[4],
                    r[5],
                    bool(r[6]),
                    bool(r[7]),
                    r[8],
                )
                for r in cur.fetchall()
            ]

    def table(self, name: str) -> TableState:
        """One table's state."""
        for t in self.tables():
            if t.name == name:
                return t
        msg = f"table {name!r} is not in the store"
        raise KeyError(msg)

    def recover_unclean(self) -> list[str]:
        """Mark tables interrupted mid-push dirty (Power BI may hold part of the push)."""
        with self._tx() as db:
            names = [r[0] for r in db.execute("SELECT name FROM tables WHERE inflight=1")]
            db.execute("UPDATE tables SET dirty=1, inflight=0 WHERE inflight=1")
        return names

    def mark_dirty(self, names: Sequence[str]) -> None:
        """Power BI's copy of these tables is wrong: reload them."""
        with self._tx() as db:
            db.executemany("UPDATE tables SET dirty=1 WHERE name=?", [(n,) for n in names])

    def dataset_created(self, dataset_id: str) -> None:
        """A new, empty dataset holds every table: every stored row is pending."""
        with self._tx() as db:
            db.execute(
                "UPDATE tables SET pushed_seq=0, pbi_rows=0, dirty=0, inflight=0, "
                "pushed_definition=definition"
            )
            db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('dataset_id', ?)", (dataset_id,))

    def schema_pushed(self, name: str, definition: dict[str, Any]) -> None:
        """Power BI now has this table definition."""
        with self._tx() as db:
            db.execute(
                "UPDATE tables SET pushed_definition=? WHERE name=?", (dumps(definition), name)
            )

    # -------------------------------------------------------------- rows

    def write(
        self,
        records: Sequence[tuple[str, list[Row]]],
        tables: Sequence[str],
        *,
        version: int | None,
        run: str,
        parts: Sequence[str | None] | None = None,
    ) -> WriteResult:
        """Upsert the rows of whole records (root key, rows) in one transaction.

        ``tables`` are the root table and its descendants. Rows with the same key and
        content change nothing; new keys are appended; a changed row, or a child row
        that a record no longer carries, marks its table dirty.
        """
        result = WriteResult()
        dirty: set[str] = set()
        with self._tx() as db:
            seq = self._next_seq(db)
            pushed = {r[0]: int(r[1]) for r in db.execute("SELECT name, pushed_seq FROM tables")}
            for index, (root_key, rows) in enumerate(records):
                part = parts[index] if parts is not None else None
                seen: dict[str, set[str]] = {t: set() for t in tables}
                for row in rows:
                    seen.setdefault(row.table, set()).add(row.key)
                    text = dumps(row.data)
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    old = db.execute(
                        "SELECT hash, seq FROM rows WHERE tbl=? AND k=?", (row.table, row.key)
                    ).fetchone()
                    if old is None:
                        seq += 1
                        db.execute(
                            "INSERT INTO rows (tbl, k, root, hash, seq, version, run, data, "
                            "part) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (row.table, row.key, root_key, digest, seq, version, run, text, part),
                        )
                        result.appended += 1
                    elif old[0] == digest:
                        db.execute(
                            "UPDATE rows SET version=?, run=?, part=? WHERE tbl=? AND k=?",
                            (version, run, part, row.table, row.key),
                        )
                        result.unchanged += 1
                    else:
                        seq += 1
                        db.execute(
                            "UPDATE rows SET hash=?, seq=?, version=?, run=?, data=?, part=? "
                            "WHERE tbl=? AND k=?",
                            (digest, seq, version, run, text, part, row.table, row.key),
                        )
                        if old[1] <= pushed.get(row.table, 0):
                            dirty.add(row.table)  # Power BI holds the old row
                        result.changed += 1
                for tbl in tables[1:]:
                    keys = seen.get(tbl, set())
                    stale = [
                        (r[0], int(r[1]))
                        for r in db.execute(
                            "SELECT k, seq FROM rows WHERE tbl=? AND root=?", (tbl, root_key)
                        )
                        if r[0] not in keys
                    ]
                    if stale:
                        db.executemany(
                            "DELETE FROM rows WHERE tbl=? AND k=?", [(tbl, k) for k, _ in stale]
                        )
                        if any(s <= pushed.get(tbl, 0) for _, s in stale):
                            dirty.add(tbl)
                        result.removed += len(stale)
            db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (str(seq),))
            db.executemany("UPDATE tables SET dirty=1 WHERE name=?", [(t,) for t in dirty])
        return result

    def _next_seq(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT v FROM meta WHERE k='seq'").fetchone()
        return int(row[0]) if row else 0

    def reset_for_overwrite(self, tables: Sequence[str], run: str) -> bool:
        """Empty these tables once per run (``overwrite``); True when it happened now."""
        with self._tx() as db:
            todo = [
                n
                for n in tables
                if db.execute("SELECT reset_run FROM tables WHERE name=?", (n,)).fetchone()[0]
                != run
            ]
            for name in todo:
                db.execute("DELETE FROM rows WHERE tbl=?", (name,))
                db.execute("UPDATE tables SET dirty=1, reset_run=? WHERE name=?", (run, name))
        return bool(todo)

    def activate_version(self, tables: Sequence[str], version: int, run: str) -> int:
        """Drop root rows of older versions not written this run, with their children."""
        with self._tx() as db:
            gone = [
                r[0]
                for r in db.execute(
                    "SELECT k FROM rows WHERE tbl=? AND (version IS NULL OR version<>?) "
                    "AND (run IS NULL OR run<>?)",
                    (tables[0], version, run),
                )
            ]
            self._remove_roots(db, tables, gone)
        return len(gone)

    def sweep_partitions(self, tables: Sequence[str], parts: Sequence[str], run: str) -> int:
        """Drop root rows of these partitions not written this run, with their children."""
        with self._tx() as db:
            gone: list[str] = []
            for part in parts:
                gone += [
                    r[0]
                    for r in db.execute(
                        "SELECT k FROM rows WHERE tbl=? AND part=? AND (run IS NULL OR run<>?)",
                        (tables[0], part, run),
                    )
                ]
            self._remove_roots(db, tables, gone)
        return len(gone)

    def _remove_roots(
        self, db: sqlite3.Connection, tables: Sequence[str], gone: Sequence[str]
    ) -> None:
        """Delete root rows (by key) and their children; tables Power BI holds them in: dirty."""
        if not gone:
            return
        root = tables[0]
        pushed = {r[0]: int(r[1]) for r in db.execute("SELECT name, pushed_seq FROM tables")}
        dirty = []
        for tbl in tables:
            column = "k" if tbl == root else "root"
            doomed = [(tbl, k) for k in gone]
            oldest = [
                db.execute(
                    f"SELECT MIN(seq) FROM rows WHERE tbl=? AND {column}=?",  # noqa: S608
                    pair,
                ).fetchone()[0]
                for pair in doomed
            ]
            if any(s is not None and s <= pushed.get(tbl, 0) for s in oldest):
                dirty.append(tbl)  # Power BI holds rows that must go
            db.executemany(
                f"DELETE FROM rows WHERE tbl=? AND {column}=?",  # noqa: S608 - fixed names
                doomed,
            )
        db.executemany("UPDATE tables SET dirty=1 WHERE name=?", [(t,) for t in dirty])

    def version_rows(self, table: str, version: int, run: str) -> int:
        """Rows of a table written with ``version`` in this run."""
        with self._lock:
            got = self._db.execute(
                "SELECT COUNT(*) FROM rows WHERE tbl=? AND version=? AND run=?",
                (table, version, run),
            ).fetchone()
        return int(got[0])

    def count(self, table: str) -> int:
        """Rows of a table in the store."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM rows WHERE tbl=?", (table,)).fetchone()[0]
            )

    def max_seq(self, table: str) -> int:
        """Highest sequence number of a table's rows (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM rows WHERE tbl=?", (table,)).fetchone()
        return int(row[0] or 0)

    def chunks(
        self, table: str, after_seq: int, size: int
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Rows with seq > ``after_seq`` in seq order, ``size`` at a time, with the last seq."""
        last = after_seq
        while True:
            with self._lock:
                got = self._db.execute(
                    "SELECT seq, data FROM rows WHERE tbl=? AND seq>? ORDER BY seq LIMIT ?",
                    (table, last, size),
                ).fetchall()
            if not got:
                return
            last = int(got[-1][0])
            yield last, [json.loads(r[1]) for r in got]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every current row of a table (for tests and small tables)."""
        return [row for _, chunk in self.chunks(table, 0, 10_000) for row in chunk]

    # -------------------------------------------------------------- push markers

    def begin_push(self, names: Sequence[str]) -> None:
        """Durably note that rows of these tables are about to be posted."""
        with self._tx() as db:
            db.executemany("UPDATE tables SET inflight=1 WHERE name=?", [(n,) for n in names])

    def end_push(self, name: str, pushed_seq: int, added: int) -> None:
        """Power BI accepted the rows up to ``pushed_seq``."""
        with self._tx() as db:
            db.execute(
                "UPDATE tables SET pushed_seq=?, pbi_rows=pbi_rows+?, inflight=0 WHERE name=?",
                (pushed_seq, added, name),
            )

    def reloaded(self, name: str, pushed_seq: int, rows: int) -> None:
        """Power BI's table was emptied and now holds exactly the store's rows."""
        with self._tx() as db:
            db.execute(
                "UPDATE tables SET pushed_seq=?, pbi_rows=?, dirty=0, inflight=0 WHERE name=?",
                (pushed_seq, rows, name),
            )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``) under the store's lock."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        self.store._db.execute("BEGIN IMMEDIATE")
        return self.store._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()

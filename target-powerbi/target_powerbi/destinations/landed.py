"""What the Fabric destination has published, kept beside the store's rows (same SQLite file).

The store says what every table holds now; these tables say what OneLake was last
told: the highest store sequence number landed (rows changed since are upserts), the
keys landed (keys gone from the store since are deletes), the column types of the
table folder, and its key columns. They change only after a file is published, in
one transaction, so a crash before that re-lands the same changes (upserts and
deletes are idempotent) under the next sequence number found in the folder.

The queries read the store's ``rows`` table (``tbl``, ``k``, ``seq``, ``data``)
read-only: this module never writes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS fabric_meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS fabric_tables (
    name TEXT PRIMARY KEY,
    key_columns TEXT NOT NULL,
    landed_columns TEXT,
    landed_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fabric_landed (
    tbl TEXT NOT NULL,
    k TEXT NOT NULL,
    keys TEXT NOT NULL,
    PRIMARY KEY (tbl, k)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class LandedTable:
    """One table as OneLake was last told."""

    name: str
    key_columns: list[str]
    landed_columns: dict[str, str] | None  # None: no file published in the folder yet
    landed_seq: int


@dataclass(frozen=True)
class Change:
    """One row to upsert (``data``) or delete (``data`` None), with its store key."""

    k: str
    keys: list[Any]
    data: dict[str, Any] | None


class Landed:
    """The Fabric destination's record of what it published, in the store's file."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT v FROM fabric_meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM fabric_meta WHERE k=?", (key,))
            return
        self._db.execute("INSERT OR REPLACE INTO fabric_meta (k, v) VALUES (?, ?)", (key, value))

    def register(self, name: str, key_columns: list[str]) -> None:
        """Record a table's key columns; the sync re-lands a folder whose keys differ."""
        self._db.execute(
            "INSERT INTO fabric_tables (name, key_columns) VALUES (?, ?) ON CONFLICT(name) "
            "DO UPDATE SET key_columns=excluded.key_columns",
            (name, json.dumps(key_columns)),
        )

    def table(self, name: str) -> LandedTable | None:
        row = self._db.execute(
            "SELECT key_columns, landed_columns, landed_seq FROM fabric_tables WHERE name=?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        columns = json.loads(row[1]) if row[1] else None
        return LandedTable(name, json.loads(row[0]), columns, int(row[2]))

    def forget(self, names: Sequence[str] | None = None) -> None:
        """OneLake holds nothing of these tables (all when None): land them whole again."""
        with self._tx():
            if names is None:
                self._db.execute("UPDATE fabric_tables SET landed_columns=NULL, landed_seq=0")
                self._db.execute("DELETE FROM fabric_landed")
                return
            for name in names:
                self._db.execute(
                    "UPDATE fabric_tables SET landed_columns=NULL, landed_seq=0 WHERE name=?",
                    (name,),
                )
                self._db.execute("DELETE FROM fabric_landed WHERE tbl=?", (name,))

    def deletes(self, table: LandedTable) -> list[Change]:
        """Landed keys the store no longer has (removed by any means: versions, deletes)."""
        got = self._db.execute(
            "SELECT l.k, l.keys FROM fabric_landed l WHERE l.tbl=? AND NOT EXISTS "
            "(SELECT 1 FROM rows r WHERE r.tbl=l.tbl AND r.k=l.k) ORDER BY l.k",
            (table.name,),
        ).fetchall()
        return [Change(str(k), json.loads(keys), None) for k, keys in got]

    def has_changes(self, table: LandedTable) -> bool:
        """Rows changed since the last landing, or landed keys gone from the store."""
        changed = self._db.execute(
            "SELECT 1 FROM rows WHERE tbl=? AND seq>? LIMIT 1", (table.name, table.landed_seq)
        ).fetchone()
        gone = self._db.execute(
            "SELECT 1 FROM fabric_landed l WHERE l.tbl=? AND NOT EXISTS "
            "(SELECT 1 FROM rows r WHERE r.tbl=l.tbl AND r.k=l.k) LIMIT 1",
            (table.name,),
        ).fetchone()
        return changed is not None or gone is not None

    def upserts(
        self, table: LandedTable, size: int, deletes: Sequence[Change] = ()
    ) -> Iterator[tuple[int, list[Change]]]:
        """Rows changed since the last landing, in sequence order, ``size`` at a time.

        With ``deletes`` to land, at least one (possibly empty) chunk is yielded to carry them.
        """
        last = table.landed_seq
        key_columns = table.key_columns
        while True:
            got = self._db.execute(
                "SELECT seq, k, data FROM rows WHERE tbl=? AND seq>? ORDER BY seq LIMIT ?",
                (table.name, last, size),
            ).fetchall()
            if not got:
                if deletes:
                    yield last, []
                return
            deletes = ()
            last = int(got[-1][0])
            changes = []
            for _, k, text in got:
                data = json.loads(text)
                changes.append(Change(str(k), key_values(key_columns, str(k), data), data))
            yield last, changes

    def published(
        self,
        name: str,
        *,
        landed_seq: int,
        columns: dict[str, str],
        changes: Sequence[Change],
    ) -> None:
        """A file is published: record its changes, its columns and how far it reached."""
        with self._tx():
            self._db.execute(
                "UPDATE fabric_tables SET landed_seq=?, landed_columns=? WHERE name=?",
                (landed_seq, json.dumps(columns, sort_keys=True), name),
            )
            self._db.executemany(
                "DELETE FROM fabric_landed WHERE tbl=? AND k=?",
                [(name, c.k) for c in changes if c.data is None],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO fabric_landed (tbl, k, keys) VALUES (?, ?, ?)",
                [(name, c.k, json.dumps(c.keys)) for c in changes if c.data is not None],
            )

    def landed_count(self, name: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM fabric_landed WHERE tbl=?", (name,))
        return int(row.fetchone()[0])

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


ROW_KEY = "_row_key"


def key_values(key_columns: list[str], k: str, data: dict[str, Any]) -> list[Any]:
    """The values of a row's key columns (the store key for the synthetic ``_row_key``)."""
    return [k if c == ROW_KEY else data.get(c) for c in key_columns]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")

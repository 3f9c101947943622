"""Xero's rotating refresh token in PostgreSQL, for runs of one connection on several machines.

A file lock guards only one machine. Here a rotation is one transaction under a row lock:
`load` (inside `locked`) takes the app's row with `SELECT ... FOR UPDATE`, so a run on any
machine waits there; the caller refreshes with Xero; `save` writes the new state and
COMMITs; only then does the caller use the new access token. The next run in line then
reads the fresh access token and does not refresh at all (one refresh per rotation).

A connection that drops before the COMMIT rolls the transaction back on the server: the
old refresh token stays stored, the lock is released, and Xero accepts that token again
within its 30-minute grace, so repeating the rotation loses nothing. A drop during the
COMMIT leaves the outcome unknown; repeating the rotation reads whichever token is
stored. `save` and `load` therefore raise `TokenStoreConnectionLostError` for a lost
connection, and the token manager repeats the whole rotation.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tap_xero.token_store import (
    TokenState,
    TokenStoreConnectionLostError,
    TokenStoreError,
)

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = 120
APPLICATION_NAME = "tap-xero token store"
# Serialises the first CREATE TABLE of concurrent runs (two would race on the catalog).
_SCHEMA_LOCK_KEY = 0x7A9_0C3E

_CREATE = (
    "CREATE TABLE IF NOT EXISTS tap_xero_tokens ("
    " client_id text PRIMARY KEY,"
    " state jsonb NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now())"
)


def redacted(url: str) -> str:
    """The URL without its password (and query), fit for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _reason(exc: BaseException) -> str:
    """The first line of a driver error: what went wrong, without connection strings."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


class PostgresTokenStore:
    """`TokenState` per client id in table `tap_xero_tokens` of the URL's database."""

    def __init__(self, url: str, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        try:
            import psycopg  # noqa: F401 - only to say early which extra is missing
        except ImportError:
            msg = (
                "token_store_url is a PostgreSQL URL but psycopg is not installed: "
                "pip install 'tap-xero[postgres]'"
            )
            raise TokenStoreError(msg) from None
        self._url = url
        self._where = redacted(url)
        self._lock_timeout = lock_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._rotation: psycopg.Connection[Any] | None = None

    @property
    def where(self) -> str:
        """The database, without its password."""
        return self._where

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one with the table in place."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self._url,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=APPLICATION_NAME,
                options=f"-c lock_timeout={int(self._lock_timeout * 1000)}",
            )
        except psycopg.Error as exc:
            msg = (
                f"cannot reach the token store {self.where} ({_reason(exc)}): check "
                "token_store_url and that the PostgreSQL server is up and reachable from here"
            )
            raise TokenStoreError(msg) from None
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute(_CREATE)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            msg = (
                f"cannot create the table tap_xero_tokens in {self.where} ({_reason(exc)}): "
                "grant the user of token_store_url CREATE on the database, or create it"
            )
            raise TokenStoreError(msg) from None
        self._conn = conn
        return conn

    def _current(self) -> psycopg.Connection[Any]:
        """The rotation's own connection (never a silent reconnect mid-rotation: the lock
        would be gone), or outside a rotation any open one."""
        return self._rotation if self._rotation is not None else self._connection()

    def _lost(self, exc: BaseException) -> TokenStoreConnectionLostError:
        """Forget a dropped connection; the rotation is to be repeated."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        msg = (
            f"the connection to the token store {self.where} dropped ({_reason(exc)}); nothing "
            "is lost: run again within 30 minutes and the rotation is repeated with the old "
            "token, which Xero still accepts"
        )
        return TokenStoreConnectionLostError(msg)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One transaction: `load` locks the app's row; `save` commits; anything else rolls back."""
        conn = self._connection()
        self._rotation = conn
        try:
            yield
        finally:
            self._rotation = None
            with contextlib.suppress(Exception):  # a dropped connection has nothing to undo
                conn.rollback()

    def load(self, client_id: str) -> TokenState | None:
        """The app's state; inside `locked`, its row stays locked until `save` or the end."""
        import psycopg

        conn = self._current()
        try:
            if self._rotation is not None:
                # A row to lock even on the first run (an empty state reads as "none").
                conn.execute(
                    "INSERT INTO tap_xero_tokens (client_id, state) VALUES (%s, '{}')"
                    " ON CONFLICT (client_id) DO NOTHING",
                    (client_id,),
                )
                row = conn.execute(
                    "SELECT state FROM tap_xero_tokens WHERE client_id = %s FOR UPDATE",
                    (client_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT state FROM tap_xero_tokens WHERE client_id = %s", (client_id,)
                ).fetchone()
                conn.rollback()
        except psycopg.errors.LockNotAvailable:
            msg = (
                f"another tap-xero run held this app's token row in {self.where} for over "
                f"{self._lock_timeout:.0f} s; is one stuck? Stop it and retry"
            )
            raise TokenStoreError(msg) from None
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            msg = f"cannot read the token store {self.where} ({_reason(exc)})"
            raise TokenStoreError(msg) from None
        data = row[0] if row else None
        if not isinstance(data, dict) or not data.get("refresh_token"):
            return None
        return TokenState.from_json(data)

    def save(self, state: TokenState) -> None:
        """Write and COMMIT: durable when this returns, and the row lock is released."""
        import psycopg
        from psycopg.types.json import Jsonb

        state.updated_at = time.time()
        conn = self._current()
        try:
            conn.execute(
                "INSERT INTO tap_xero_tokens (client_id, state, updated_at)"
                " VALUES (%s, %s, now()) ON CONFLICT (client_id)"
                " DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
                (state.client_id, Jsonb(state.to_json())),
            )
            conn.commit()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                conn.rollback()
            msg = f"cannot write the token store {self.where} ({_reason(exc)})"
            raise TokenStoreError(msg) from None

    def close(self) -> None:
        """Close the connection (a new one opens on the next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

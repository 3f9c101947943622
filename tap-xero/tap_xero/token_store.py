"""Durable, lock-guarded storage of Xero's rotating refresh token.

Xero retires a refresh token as soon as it is used (after a 30-minute grace), so the
new one must reach stable storage before anything else happens, and two runs must
never refresh at the same time. Meltano regenerates the config file on every run,
hence a file of our own: written to a temporary file, fsynced, then renamed over the
old one (mode 0600), all under an OS file lock that dies with its process.

`token_store_url` chooses the store: a file path (this module's `TokenStore`, for runs on
one machine) or a `postgresql://` URL (`token_store_pg.PostgresTokenStore`, for runs of
one connection on several machines). Both keep the contract of `TokenStoreLike`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

STORE_VERSION = 1
# How many retired token fingerprints to remember (to tell a stale config seed from a new one).
_SEEN_LIMIT = 50


class TokenStoreError(Exception):
    """The token store cannot be read, written or locked; the message says what to fix."""


class TokenStoreConnectionLostError(TokenStoreError):
    """The store's connection dropped mid-rotation: whether the write landed is unknown.

    Retrying the whole rotation is safe: it reads the store again, and either finds the
    new token (the write landed) or refreshes the old one again within Xero's grace.
    """


class TokenStoreLike(Protocol):
    """One token store: an exclusive lock, then read, refresh with Xero, write.

    `save` is durable when it returns; the caller uses the new access token only after.
    `where` names the store for messages, never with a password.
    """

    @property
    def where(self) -> str: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def load(self, client_id: str) -> TokenState | None: ...

    def save(self, state: TokenState) -> None: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_token_store(location: str) -> TokenStoreLike:
    """The store a `token_store_url` (or `token_store_path`) names: Postgres URL or file."""
    if location.startswith(POSTGRES_SCHEMES):
        from tap_xero.token_store_pg import PostgresTokenStore

        return PostgresTokenStore(location)
    return TokenStore(location)


def fingerprint(token: str) -> str:
    """A one-way fingerprint of a token: lets us compare seeds without keeping them."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class TokenState:
    """What the store holds for one Xero app."""

    client_id: str
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0  # epoch seconds when access_token expires
    lifetime: float = 1800.0  # seconds the access token was issued for
    scope: str = ""
    # Fingerprints of refresh tokens this chain has used or superseded, config seeds included.
    seen: list[str] = field(default_factory=list)
    updated_at: float = field(default_factory=time.time)

    def remember(self, *tokens: str | None) -> None:
        """Record tokens as used or superseded, keeping the most recent few."""
        for token in tokens:
            if not token:
                continue
            mark = fingerprint(token)
            if mark in self.seen:
                self.seen.remove(mark)
            self.seen.append(mark)
        del self.seen[:-_SEEN_LIMIT]

    def has_seen(self, token: str) -> bool:
        return fingerprint(token) in self.seen or token == self.refresh_token

    def to_json(self) -> dict[str, Any]:
        return {"version": STORE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenState:
        return cls(
            client_id=str(data.get("client_id", "")),
            refresh_token=str(data.get("refresh_token", "")),
            access_token=str(data.get("access_token", "")),
            expires_at=float(data.get("expires_at", 0.0)),
            lifetime=float(data.get("lifetime", 1800.0)),
            scope=str(data.get("scope", "")),
            seen=[str(s) for s in data.get("seen", [])],
            updated_at=float(data.get("updated_at", 0.0)),
        )


class TokenStore:
    """A JSON file of `TokenState` per client id, replaced atomically under a file lock."""

    def __init__(self, path: str | os.PathLike[str], lock_timeout: float = 120.0) -> None:
        self.path = Path(path).expanduser()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_timeout = lock_timeout
        self._lock: FileLock | None = None

    @property
    def where(self) -> str:
        """The file, for messages."""
        return str(self.path)

    def _ensure_dir(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            msg = (
                f"cannot create the token store directory {self.path.parent} ({exc.strerror}): "
                "set token_store_path to a writable location"
            )
            raise TokenStoreError(msg) from None

    def _check_lock_file(self) -> None:
        """Fail at once in a folder where the lock file cannot be made (filelock would
        retry until its timeout and then blame another run)."""
        try:
            os.close(os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            msg = (
                f"cannot create the lock file in {self.path.parent} ({exc.strerror}): the "
                "token store's folder must be writable; set token_store_path to a writable "
                "location"
            )
            raise TokenStoreError(msg) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock: other runs wait, never fail, while we refresh."""
        self._ensure_dir()
        self._check_lock_file()
        if self._lock is None:
            self._lock = FileLock(str(self.lock_path), mode=0o600, thread_local=False)
        try:
            self._lock.acquire(timeout=self._lock_timeout)
        except Timeout:
            msg = (
                f"another tap-xero run held the token store lock {self.lock_path} for over "
                f"{self._lock_timeout:.0f} s; is one stuck? Stop it and retry"
            )
            raise TokenStoreError(msg) from None

        try:
            yield
        finally:
            self._lock.release()

    def load(self, client_id: str) -> TokenState | None:
        """The stored state of `client_id`'s app, or None when there is none."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"cannot read the token store {self.path} ({exc.strerror})"
            raise TokenStoreError(msg) from None
        try:
            data = json.loads(raw)
        except ValueError:
            msg = (
                f"the token store {self.path} is not valid JSON; move it aside and run "
                "`tap-xero auth login` again"
            )
            raise TokenStoreError(msg) from None
        apps = data.get("apps", {}) if isinstance(data, dict) else {}
        entry = apps.get(client_id) if isinstance(apps, dict) else None
        if not isinstance(entry, dict) or not entry.get("refresh_token"):
            return None
        return TokenState.from_json(entry)

    def save(self, state: TokenState) -> None:
        """Write durably: temp file, fsync, rename over, fsync the directory. Mode 0600."""
        self._ensure_dir()
        try:
            existing = json.loads(self.path.read_text(encoding="utf-8"))
            apps = dict(existing.get("apps", {})) if isinstance(existing, dict) else {}
        except (OSError, ValueError):
            apps = {}
        state.updated_at = time.time()
        apps[state.client_id] = state.to_json()
        payload = json.dumps({"version": STORE_VERSION, "apps": apps}, indent=2, sort_keys=True)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        except OSError as exc:
            msg = f"cannot write the token store in {self.path.parent} ({exc.strerror})"
            raise TokenStoreError(msg) from None
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            msg = f"cannot write the token store {self.path} ({exc.strerror})"
            raise TokenStoreError(msg) from None
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

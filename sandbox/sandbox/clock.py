"""A sandbox clock that can run faster than real time and be advanced by hand.

`time_scale` F makes every window, ``Retry-After`` and token lifetime pass F times
faster in real seconds, while the API keeps speaking in sandbox seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


class SandboxClock:
    """Sandbox time = start + scaled real elapsed time + manual advances."""

    def __init__(self, start: datetime | None = None, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            msg = f"time_scale must be positive, got {time_scale}"
            raise ValueError(msg)
        self.time_scale = time_scale
        self._start = start or datetime.now(timezone.utc).replace(microsecond=0)
        self._real_start = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def timestamp(self) -> float:
        """Sandbox seconds since the epoch."""
        elapsed = (time.monotonic() - self._real_start) * self.time_scale
        with self._lock:
            return self._start.timestamp() + elapsed + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), tz=timezone.utc)

    def advance(self, seconds: float) -> datetime:
        """Jump the clock forward (a day of business: 86400)."""
        with self._lock:
            self._offset += seconds
        return self.now()

    def to_real_seconds(self, sandbox_seconds: float) -> float:
        """How long `sandbox_seconds` last on the wall clock."""
        return sandbox_seconds / self.time_scale

    def shift(self, seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

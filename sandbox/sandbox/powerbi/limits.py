"""The service's published limits, in one place (sandbox seconds for every window)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Power BI push dataset limits (FACTS.md); tests may shrink none of them."""

    max_tables: int = 75
    max_columns: int = 75
    max_relationships: int = 75
    max_rows_per_post: int = 10_000
    max_request_bytes: int = 16 * 1024 * 1024
    posts_per_minute: int = 120
    posts_per_hour_big_table: int = 120
    big_table_rows: int = 250_000
    rows_per_hour: int = 1_000_000
    max_pending_posts: int = 5
    max_rows_none: int = 5_000_000
    max_rows_fifo: int = 200_000
    max_string_length: int = 4_000


MINUTE = 60.0
HOUR = 3600.0


class Window:
    """Sliding window of (sandbox time, weight) events; answers how long until room is made."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.span:
            _, weight = self.events.popleft()
            self.total -= weight

    def used(self, now: float) -> int:
        self._expire(now)
        return self.total

    def add(self, now: float, weight: int = 1) -> None:
        self._expire(now)
        self.events.append((now, weight))
        self.total += weight

    def wait_for_room(self, now: float, limit: int, weight: int = 1) -> float:
        """Sandbox seconds until `weight` more fits under `limit` (0 if it fits now)."""
        self._expire(now)
        excess = self.total + weight - limit
        if excess <= 0:
            return 0.0
        freed = 0
        for at, event_weight in self.events:
            freed += event_weight
            if freed >= excess:
                return max(at + self.span - now, 0.0)
        return self.span

    def count_within(self, now: float, span: float) -> int:
        """Events in the last `span` seconds (span <= self.span)."""
        self._expire(now)
        return sum(w for at, w in self.events if at > now - span)


def retry_after_header(sandbox_seconds: float, time_scale: float) -> str:
    """`Retry-After` in whole real seconds (never 0): the client sleeps on the wall clock."""
    return str(max(1, math.ceil(sandbox_seconds / time_scale)))

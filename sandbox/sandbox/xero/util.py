"""Small helpers shared by the Xero sandbox: Microsoft JSON dates, ids and money."""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timezone
from typing import Any

Record = dict[str, Any]

DAY_MS = 86_400_000
_MSDATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


def msdate(ms: int) -> str:
    """Xero's Microsoft JSON date, e.g. ``/Date(1573755038314+0000)/``."""
    return f"/Date({ms}+0000)/"


def parse_msdate(value: str) -> int:
    """Milliseconds since the epoch of a Microsoft JSON date (the offset is informative)."""
    match = _MSDATE.fullmatch(value)
    if match is None:
        msg = f"not a Microsoft JSON date: {value!r}"
        raise ValueError(msg)
    return int(match.group(1))


def ms_of(d: date) -> int:
    """Midnight UTC of a calendar date, in milliseconds."""
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)


def date_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date()


def iso_of(ms: int) -> str:
    """ISO-8601 date-time without zone, the way Xero writes ``DateString``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def new_id(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng`, so that ids follow from the seed (formatted by hand:
    `uuid.UUID` is the generator's hot spot at benchmark size)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def money(cents: int) -> float:
    """Cents to the decimal amount Xero returns."""
    return round(cents / 100, 2)


def cents(amount: float) -> int:
    return round(amount * 100)


def split_cents(total: int, weights: list[int]) -> list[int]:
    """Split `total` cents in proportion to `weights`, the parts summing exactly to `total`."""
    base = sum(weights)
    if base == 0:
        return [0 for _ in weights]
    parts = [total * w // base for w in weights]
    parts[-1] += total - sum(parts)
    return parts

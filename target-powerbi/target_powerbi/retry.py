"""The one retry policy of the target, on the `backoff` library: Power BI calls and tokens.

An attempt raises `Retry` when trying again can help; this module decides how long
to wait (the service's Retry-After, else exponential backoff with full jitter) and
when to give up (failures and throttles are bounded separately, so a 429 storm
never eats the retries of a 5xx, and neither multiplies the other).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from typing import Any, Literal, TypeVar

import backoff

T = TypeVar("T")
# 429s are waited out, not failed on, but a service that never relents must end the run.
MAX_THROTTLE_WAITS = 30

Kind = Literal["failure", "throttle", "refresh"]


class Retry(Exception):  # noqa: N818 - it is a signal, not an error
    """An attempt that may succeed when tried again.

    ``kind``: ``failure`` (5xx, timeout, lost connection: bounded by max_retries),
    ``throttle`` (429: bounded by MAX_THROTTLE_WAITS) or ``refresh`` (a 401 retried
    once, at once, with a new token). ``wait``: seconds the service asked for.
    ``final``: the error raised when the retries run out.
    """

    def __init__(
        self,
        problem: str,
        *,
        kind: Kind = "failure",
        wait: float | None = None,
        final: Exception | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.kind = kind
        self.wait = wait
        self.final = final


def _waits(factor: float, max_wait: float) -> Generator[float, Any, None]:
    """backoff's wait generator: Retry-After when given, else expo with full jitter."""
    expo = backoff.expo(factor=factor, max_value=max_wait)
    next(expo)
    retry = yield 0.0
    while True:
        if isinstance(retry, Retry) and retry.kind == "refresh":
            delay = 0.0
        elif isinstance(retry, Retry) and retry.wait is not None:
            delay = retry.wait
        else:
            delay = float(backoff.full_jitter(next(expo)))
        retry = yield delay


def call(
    attempt: Callable[[], T],
    *,
    max_retries: int,
    on_retry: Callable[[Retry, float], None],
    factor: float = 1.0,
    max_wait: float = 60.0,
    refreshes: int = 1,
) -> T:
    """Run ``attempt`` until it returns, retrying each `Retry` it raises within bounds.

    ``on_retry(retry, seconds)`` runs before each wait (it logs; it may also look
    whether a failed attempt landed after all). Giving up raises ``retry.final``.
    """
    bounds = {"failure": max_retries, "throttle": MAX_THROTTLE_WAITS, "refresh": refreshes}
    counts: Counter[str] = Counter()

    def give_up(exc: Exception) -> bool:
        assert isinstance(exc, Retry)
        counts[exc.kind] += 1
        return counts[exc.kind] > bounds[exc.kind]

    def backing_off(details: Any) -> None:
        on_retry(details["exception"], float(details["wait"]))

    retrying = backoff.on_exception(
        _waits,
        Retry,
        max_tries=None,
        jitter=None,
        giveup=give_up,
        on_backoff=backing_off,
        raise_on_giveup=True,
        logger=None,
        factor=factor,
        max_wait=max_wait,
    )(attempt)
    try:
        return retrying()
    except Retry as exc:
        if exc.final is not None:
            raise exc.final from None
        raise

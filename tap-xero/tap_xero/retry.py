"""What a stream retries, and how long it waits before each retry: the one place that decides.

`XeroStream.validate_response` sorts an answer into one of these exceptions; the SDK's
backoff decorator (`request_decorator`) retries the `RetriableAPIError`s, and
`RetryWaits` (handed to the SDK's `backoff_runtime`) sets each wait from the exception:

- 401, first time: no wait, the retry carries a fresh token;
- 429 for the minute or app limit: exactly `Retry-After`, no jitter, never multiplied;
- 5xx, timeouts, dropped connections: exponential backoff with full jitter.

A 429 for the day is not retried at all (`DailyBudgetExhaustedError`, a clean stop).
"""

from __future__ import annotations

import weakref
from collections.abc import Generator

import backoff
import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

MAX_BACKOFF_SECONDS = 60


class ReauthoriseError(RetriableAPIError):
    """Xero answered 401 to a token: retry at once, once, with a fresh one."""


class RetryAfterError(RetriableAPIError):
    """Xero answered 429 for its minute (or app-wide minute) limit: wait `Retry-After`."""

    def __init__(
        self, message: str, response: requests.Response, *, wait: float, problem: str
    ) -> None:
        super().__init__(message, response)
        self.wait = wait
        self.problem = problem


class TooManyRetriesError(FatalAPIError):
    """429s kept coming after `max_retries` waits."""


def retry_after(response: requests.Response, default: float) -> float:
    """Seconds Xero asks us to wait (`Retry-After`), or `default` when it says nothing usable."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return default


# The SDK's backoff re-sends the same PreparedRequest object on each try, so a request
# that already met one 401 is known by identity: its second 401 is final.
_REAUTHORISED: weakref.WeakSet[requests.PreparedRequest] = weakref.WeakSet()


def first_401(request: requests.PreparedRequest) -> bool:
    """True the first time this request gets a 401 (retry it), False after (give up)."""
    if request in _REAUTHORISED:
        return False
    _REAUTHORISED.add(request)
    return True


class RetryWaits:
    """The wait before each retry of one request, chosen from the exception that caused it."""

    def __init__(self, backoff_seconds: float) -> None:
        self._expo: Generator[float, None, None] = backoff.expo(
            base=2, factor=backoff_seconds, max_value=MAX_BACKOFF_SECONDS
        )
        next(self._expo)  # backoff's generators start with a bare `yield`

    def __call__(self, exception: BaseException) -> float:
        if isinstance(exception, RetryAfterError):
            return exception.wait
        if isinstance(exception, ReauthoriseError):
            return 0.0
        return backoff.full_jitter(next(self._expo))

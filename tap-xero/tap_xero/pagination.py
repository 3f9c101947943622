"""Xero's two ways of paging, on the SDK's paginators, stopping without a wasted call."""

from __future__ import annotations

from typing import Any

import requests
from singer_sdk.pagination import BaseAPIPaginator, PageNumberPaginator
from typing_extensions import override

# Journals answer 100 a call, whatever is asked; LinkedTransactions and Quotes page by 100.
JOURNALS_PER_CALL = 100
FIXED_PAGE_SIZE = 100


def response_body(response: requests.Response) -> dict[str, Any]:
    """The parsed JSON envelope, parsed once per response (pages can hold 1000 records)."""
    cached = getattr(response, "_tap_xero_body", None)
    if cached is None:
        cached = response.json()
        setattr(response, "_tap_xero_body", cached)  # noqa: B010
    body: dict[str, Any] = cached
    return body


def page_count(response: requests.Response) -> int | None:
    """`pagination.pageCount` of a page-sized answer (None: Xero did not say)."""
    pagination = response_body(response).get("pagination")
    if isinstance(pagination, dict) and "pageCount" in pagination:
        return int(pagination["pageCount"])
    return None


class XeroPagePaginator(PageNumberPaginator):
    """`page=1,2,...`: stops on the last page by `pagination.pageCount`, or on a short page."""

    def __init__(self, records_key: str, page_size: int) -> None:
        super().__init__(start_value=1)
        self._records_key = records_key
        self._page_size = page_size

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = response_body(response)
        pagination = body.get("pagination")
        if isinstance(pagination, dict) and "pageCount" in pagination:
            return int(pagination.get("page", self.current_value)) < int(pagination["pageCount"])
        return len(body.get(self._records_key) or []) >= self._page_size


class JournalOffsetPaginator(BaseAPIPaginator[int | None]):
    """`offset=N` returns journals with JournalNumber > N: the next offset is the last seen.

    The first page's token is None: the stream reads its offset from the partition's
    bookmark (`XeroStream.get_url_params`), which a paginator cannot see.
    """

    def __init__(self, start_value: int | None = None) -> None:
        super().__init__(start_value)

    @override
    def has_more(self, response: requests.Response) -> bool:
        return len(response_body(response).get("Journals") or []) >= JOURNALS_PER_CALL

    @override
    def get_next(self, response: requests.Response) -> int | None:
        journals = response_body(response).get("Journals") or []
        return max(int(j["JournalNumber"]) for j in journals) if journals else None

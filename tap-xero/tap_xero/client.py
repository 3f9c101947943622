"""The one base class of every tap-xero stream, and of the child streams derived from them.

A stream class only states facts about its endpoint (path, records key, key, paging,
incremental support, extra parameters); everything else lives here: partitions per
organisation, the shared per-organisation limiter, 401/429 handling, retries,
If-Modified-Since, Microsoft-date conversion, the daily-budget stop, and handing each
page's records to the child streams without any extra call.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote

import backoff
import requests
from singer_sdk import Stream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_xero.connections import forbidden_error, unauthorized_error
from tap_xero.limits import DailyBudgetExhaustedError
from tap_xero.pagination import (
    FIXED_PAGE_SIZE,
    JournalOffsetPaginator,
    XeroPagePaginator,
    response_body,
)
from tap_xero.schema import Plan, convert_msdates, derive
from tap_xero.webhooks.consume import WEBHOOK_POSITION_KEY, batched

if TYPE_CHECKING:
    from collections.abc import Generator

    from backoff.types import Details
    from requests.auth import AuthBase
    from singer_sdk.helpers.types import Context

    from tap_xero.limits import OrgLimiter
    from tap_xero.tap import TapXero

TENANT_KEY = "tenant_id"


def _instant(value: str) -> datetime:
    """An ISO-8601 timestamp as an aware datetime (`Z` accepted on Python 3.10)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


WEBHOOK_IDS_PER_CALL = 50  # ids in one `IDs` filter: about 1,900 characters of URL
TENANT_PROPERTY = {"type": "string", "description": "Xero organisation (tenant) id."}


class TooManyRetriesError(FatalAPIError):
    """429s kept coming after `max_retries` waits."""


class XeroStream(RESTStream[Any]):
    """A Xero Accounting collection, read for every organisation of the run."""

    # Records are JSON from Xero, dates already converted: conforming every nested value to
    # the (large, inlined) schema cost 40% of the run for nothing.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    # Facts each stream states (see streams/).
    collection: ClassVar[str]  # generated schema file, e.g. "Invoices"
    records_key: ClassVar[str] = ""  # envelope key holding records; default `collection`
    id_field: ClassVar[str]  # e.g. "InvoiceID"
    paging: ClassVar[str | None] = None  # None | "page" | "page_size" | "offset"
    modified_since: ClassVar[bool] = False  # Xero honours If-Modified-Since here
    ordered: ClassVar[bool] = False  # `order=<replication key> ASC` is reliable here
    include_archived: ClassVar[bool] = False  # `includeArchived=true`
    include_deleted: ClassVar[bool] = False  # `includeDeleted=true`
    payments_only: ClassVar[bool] = False  # `paymentsOnly=true` (cash-basis journals)
    # Webhooks name this stream's records: fetch them by "IDs" (batched filter) or by
    # "path" (`GET /{path}/{id}`, where the spec has no `IDs`); None: not consumed.
    webhook_fetch: ClassVar[str | None] = None

    @override
    def __init__(self, tap: TapXero) -> None:
        schema, plan = derive(self.collection)
        schema["properties"][TENANT_KEY] = TENANT_PROPERTY
        self._msdate_plan: Plan = plan
        super().__init__(tap=tap, schema=schema)
        self.xero_tap = tap
        self.primary_keys = [TENANT_KEY, self.id_field]
        page_size = int(self.config.get("page_size", 1000))
        # A bookmark per page: STATE after every full page, so a killed run loses nothing.
        self.STATE_MSG_FREQUENCY = page_size if self.paging == "page_size" else FIXED_PAGE_SIZE
        self._page_last: dict[str, Any] | None = None
        self._page_buffer: list[dict[str, Any]] = []
        self._bookmarks: dict[str, datetime | None] = {}  # starting bookmark per organisation
        self._webhook_ids: list[str] | None = None  # set while fetching records by id

    # -- endpoint --------------------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return str(self.config.get("api_url", "")).rstrip("/")

    @property
    def incremental(self) -> bool:
        """Read only what changed (a catalog may force FULL_TABLE instead)."""
        return bool(self.replication_key) and self.replication_method == "INCREMENTAL"

    @property
    @override
    def is_sorted(self) -> bool:
        return bool(self.replication_key) and self.ordered

    @property
    @override
    def partitions(self) -> list[dict[str, Any]] | None:
        return [{TENANT_KEY: tenant} for tenant in self.xero_tap.tenant_ids]

    @property
    @override
    def authenticator(self) -> AuthBase:
        return self.xero_tap.bearer_auth

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # ACTIVATE_VERSION tells a target to drop rows the new version lacks (on by default:
        # it is how hard deletes reach a destination); never send it for a table an
        # organisation's spent budget will leave unread.
        spent = any(limiter.exhausted for _, limiter in self.xero_tap.limiters.items())
        return bool(self.config.get("emit_activate_version_messages", True)) and not spent

    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        yield from super()._sync_records(context, write_messages=write_messages)
        if (
            context is None
            and write_messages
            and self.selected
            and self.replication_method == REPLICATION_FULL_TABLE
            and self.emit_activate_version_messages  # False once a budget ran out
            and self._stream_version is not None
        ):
            # The closing ACTIVATE_VERSION: every organisation was read whole, so rows the
            # new version lacks were deleted in Xero (items, tracking options...). The SDK
            # sends only the opening one, before any record.
            self._write_activate_version_message(self._stream_version)

    @property
    @override
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", 60))

    def headers_for(self, context: Context | None) -> dict[str, str]:
        """The headers of one organisation's request (the bearer token is added last)."""
        headers = {"Accept": "application/json", "User-Agent": "tap-xero"}
        if context is not None:
            headers["xero-tenant-id"] = str(context[TENANT_KEY])
            since = self._modified_since(context)
            if since is not None:
                headers["If-Modified-Since"] = since
        return headers

    def _modified_since(self, context: Context) -> str | None:
        """The bookmark (or start date) as Xero wants it, a second early for ties."""
        if not (self.modified_since and self.incremental) or self._webhook_ids is not None:
            return None
        start = self.get_starting_timestamp(context)
        if start is None:
            return None
        start = start.astimezone(timezone.utc) - timedelta(seconds=1)
        return start.strftime("%Y-%m-%dT%H:%M:%S")

    @override
    def get_url(self, context: Context | None) -> str:
        url = super().get_url(context)
        if self._webhook_ids is not None and self.webhook_fetch == "path":
            url = f"{url}/{quote(self._webhook_ids[0], safe='')}"
        return url

    @override
    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self._webhook_ids is not None:
            if self.webhook_fetch == "path":
                return params
            params["IDs"] = ",".join(self._webhook_ids)
        for flag, name in (
            (self.include_archived, "includeArchived"),
            (self.include_deleted, "includeDeleted"),
            (self.payments_only, "paymentsOnly"),
        ):
            if flag:
                params[name] = "true"
        if self.paging in ("page", "page_size"):
            params["page"] = next_page_token or 1
        if self.paging == "page_size":
            params["pageSize"] = int(self.config.get("page_size", 1000))
        if self.paging == "offset":
            params["offset"] = next_page_token or 0
        if self.ordered and self.replication_key and self.paging != "offset":
            params["order"] = f"{self.replication_key} ASC"
        return params

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[Any] | None:
        key = self.records_key or self.collection
        if self.paging == "page_size":
            return XeroPagePaginator(key, int(self.config.get("page_size", 1000)))
        if self.paging == "page":
            return XeroPagePaginator(key, FIXED_PAGE_SIZE)
        if self.paging == "offset":
            start = (
                self.get_starting_replication_key_value(self._partition)
                if self.incremental
                else None
            )
            # Without a bookmark the SDK offers `start_date` text: journal numbers start at 0.
            return JournalOffsetPaginator(start if isinstance(start, int) else 0)
        return None

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        if response.status_code == 404:  # a record named by a webhook that no longer exists
            self._page_last = None
            return
        records: list[dict[str, Any]] = (
            response_body(response).get(self.records_key or self.collection) or []
        )
        # The last record of a page releases the page to the child streams.
        self._page_last = records[-1] if records else None
        yield from records

    @override
    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        convert_msdates(row, self._msdate_plan)
        if context is not None:
            row[TENANT_KEY] = context[TENANT_KEY]
            if self._before_bookmark(row, context):
                return None
        return row

    def _before_bookmark(self, row: dict[str, Any], context: Context) -> bool:
        """A record older than the bookmark, which the previous run already sent.

        Xero reads If-Modified-Since to the second (and we ask a second early for ties),
        so the first page may repeat records from just before the bookmark; the SDK's sort
        check would reject them, and they carry nothing new.
        """
        if not (self.is_sorted and self.incremental) or self._webhook_ids is not None:
            return False
        value = row.get(self.replication_key or "")
        bookmark = self._bookmark_instant(context)
        return isinstance(value, str) and bookmark is not None and _instant(value) < bookmark

    def _bookmark_instant(self, context: Context) -> datetime | None:
        """The partition's starting bookmark, parsed once per partition (not per record)."""
        tenant = str(context[TENANT_KEY])
        if tenant not in self._bookmarks:
            start = self.get_starting_replication_key_value(context)
            self._bookmarks[tenant] = _instant(start) if isinstance(start, str) else None
        return self._bookmarks[tenant]

    # -- requests: limits, 401, 429, retries ------------------------------------------

    def _limiter(self, context: Context | None) -> OrgLimiter:
        tenant = str((context or {}).get(TENANT_KEY, ""))
        return self.xero_tap.limiters.for_tenant(tenant)

    @override
    def _request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        if prepared_request.method != "GET":  # only GET may ever reach Xero
            msg = f"tap-xero refuses to send {prepared_request.method} to Xero"
            raise FatalAPIError(msg)
        prepared_request.headers.update(self.headers_for(context))
        limiter = self._limiter(context)
        reauthorised = False
        waits = 0
        while True:
            request = self.authenticator(prepared_request.copy())
            with limiter.slot():
                response = self.requests_session.send(
                    request, timeout=self.timeout, allow_redirects=False
                )
                limiter.observe(response.headers)
            if response.status_code == 401 and not reauthorised:
                # Revoked or expired early: one fresh token, once.
                token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
                self.xero_tap.token_manager.invalidate(token)
                reauthorised = True
                continue
            if response.status_code == 429:
                problem = response.headers.get("X-Rate-Limit-Problem", "").lower()
                if problem == "day":
                    limiter.exhaust()
                    raise DailyBudgetExhaustedError
                waits += 1
                if waits > self.max_retries:
                    msg = f"Xero kept answering 429 ({problem or 'unknown'} limit) for {self.path}"
                    raise TooManyRetriesError(msg)
                retry_after = self._retry_after(response)
                self.logger.warning(
                    "429 (%s limit) on %s: waiting Retry-After %.3f s",
                    problem or "unknown",
                    self.path,
                    retry_after,
                )
                limiter.block_for(retry_after)
                continue
            break
        self._write_request_duration_log(
            endpoint=self.path, response=response, context=context, extra_tags=None
        )
        if response.status_code == 401:
            raise unauthorized_error()
        if response.status_code == 403:
            tenant = str((context or {}).get(TENANT_KEY, ""))
            raise forbidden_error(tenant, self.xero_tap.organisations, f"GET {self.path}")
        self.validate_response(response)
        return response

    def _retry_after(self, response: requests.Response) -> float:
        try:
            return max(0.0, float(response.headers.get("Retry-After", "")))
        except ValueError:
            return float(self.config.get("rate_limit_window_seconds", 60))

    @property
    def max_retries(self) -> int:
        return int(self.config.get("max_retries", 5))

    @override
    def backoff_wait_generator(self) -> Generator[float, None, None]:
        base = float(self.config.get("retry_backoff_seconds", 1.0))
        return cast("Generator[float, None, None]", backoff.expo(base=2, factor=base, max_value=60))

    @override
    def backoff_max_tries(self) -> int:
        return self.max_retries + 1

    @override
    def backoff_jitter(self, value: float) -> float:
        return backoff.full_jitter(value)

    @override
    def backoff_handler(self, details: Details) -> None:
        exc = details.get("exception")
        self.logger.warning(
            "Retrying %s in %.2f s after try %d: %s",
            self.path,
            details.get("wait") or 0.0,
            details.get("tries") or 0,
            type(exc).__name__ if exc is not None else "error",
        )

    @override
    def response_error_message(self, response: requests.Response) -> str:
        # Never echo request headers (the bearer token); Xero's body says what went wrong.
        detail = response.text[:500] if response.content else ""
        return f"{response.status_code} {response.reason} for {self.path}: {detail}"

    @override
    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == 404 and self._webhook_ids is not None:
            return  # gone since its event: nothing to emit, and no reason to fail the run
        if response.status_code in (500, 502, 503, 504):
            raise RetriableAPIError(self.response_error_message(response), response)
        super().validate_response(response)

    # -- stopping cleanly when the day's budget is spent ------------------------------

    @override
    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        self._partition = context
        try:
            yield from self._webhook_records(context)
            yield from super().request_records(context)
        except DailyBudgetExhaustedError:
            limiter = self._limiter(context)
            tenant = (context or {}).get(TENANT_KEY)
            if limiter.announce_stop():
                self.logger.warning(
                    "Daily call budget reached for organisation %s (%d calls today, budget %d): "
                    "stopping its streams here; bookmarks are saved and the next run carries on.",
                    tenant,
                    limiter.used_today,
                    limiter.settings.daily_call_budget,
                )
            self.logger.info("Stopped %s for organisation %s: budget spent", self.name, tenant)
            if not self.is_sorted:
                # Records arrived in no order: the highest value seen is not a safe
                # bookmark for a partial read. Keep the previous one.
                self.get_context_state(context).pop("progress_markers", None)

    # -- webhooks: the records named by pending events, before the poll ---------------

    def _webhook_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Records named by events after this partition's position, then the new position.

        They go through the usual request path (limiter, auth, retries) and the usual
        emission (children included), but never move the replication bookmark: they are
        out of order, and the poll that follows still has to read from the old bookmark.
        The position is written to the partition's state only once they are all emitted.
        """
        consumer = self.xero_tap.webhook_consumer
        if consumer is None or self.webhook_fetch is None or context is None:
            return
        state = self.get_context_state(context)
        after = int(state.get(WEBHOOK_POSITION_KEY) or 0)
        pending = consumer.pending_for(self.name, str(context[TENANT_KEY]), after)
        if pending.position <= after:
            return
        size = WEBHOOK_IDS_PER_CALL if self.webhook_fetch == "IDs" else 1
        self.logger.info(
            "Fetching %d %s named by webhooks for organisation %s (events %d-%d)",
            len(pending.resource_ids),
            self.name,
            context[TENANT_KEY],
            after + 1,
            pending.position,
        )
        try:
            for batch in batched(pending.resource_ids, size):
                self._webhook_ids = batch
                yield from super().request_records(context)
        finally:
            self._webhook_ids = None
        state[WEBHOOK_POSITION_KEY] = pending.position
        self.state_manager.is_flushed = False

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        if self._webhook_ids is not None:
            return  # a record named by a webhook: the bookmark belongs to the poll
        super()._increment_stream_state(latest_record, context=context)

    # -- child streams: one hand-over per page, no extra call -------------------------

    @override
    def generate_child_contexts(
        self, record: dict[str, Any], context: Context | None
    ) -> Iterable[Context | None]:
        if not any(c.selected or c.has_selected_descendents for c in self.child_streams):
            return
        # A copy: writing the record drops deselected properties (e.g. LineItems) in place.
        self._page_buffer.append(dict(record))
        # A dry run may stop mid-page: hand each record over at once then.
        page_done = record is self._page_last or self.ABORT_AT_RECORD_COUNT is not None
        if page_done and context is not None:
            yield {TENANT_KEY: context[TENANT_KEY]}
            self._page_buffer = []

    def take_page(self) -> list[dict[str, Any]]:
        """The current page's parent records, for a child stream."""
        return self._page_buffer


class XeroChildStream(Stream):
    """Rows nested in a parent's records (e.g. invoice line items): no API call at all."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    parent_type: ClassVar[type[XeroStream]]  # the stream whose records hold the lines
    lines_field: ClassVar[str]  # array property of the parent, e.g. "LineItems"
    id_field: ClassVar[str | None] = None  # line id; None: number the lines from 1
    state_partitioning_keys: ClassVar[list[str]] = [TENANT_KEY]

    @override
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.parent_stream_type = cls.parent_type  # the SDK syncs us from the parent

    @override
    def __init__(self, tap: TapXero) -> None:
        parent = self.parent_type
        schema, plan = derive(parent.collection, self.lines_field)
        schema["properties"][TENANT_KEY] = TENANT_PROPERTY
        schema["properties"][parent.id_field] = {"type": "string", "format": "uuid"}
        keys = [TENANT_KEY, parent.id_field]
        if self.id_field is None:
            schema["properties"]["LineNumber"] = {"type": "integer"}
            keys.append("LineNumber")
        else:
            keys = [TENANT_KEY, self.id_field]
        self._msdate_plan = plan
        super().__init__(tap=tap, schema=schema)
        self.xero_tap = tap
        self.primary_keys = keys

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        return False  # each page's lines arrive on their own: never replace the table

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        parent = next(s for s in self.xero_tap.streams.values() if type(s) is self.parent_type)
        assert isinstance(parent, XeroStream)
        parent_key = parent.id_field
        for record in parent.take_page():
            for number, line in enumerate(record.get(self.lines_field) or [], start=1):
                row = dict(line)
                convert_msdates(row, self._msdate_plan)
                row[TENANT_KEY] = record.get(TENANT_KEY)
                row[parent_key] = record.get(parent_key)
                if self.id_field is None:
                    row["LineNumber"] = number
                yield row

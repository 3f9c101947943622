"""The base class of every tap-xero stream: a Xero collection read for each organisation.

A stream class only states facts about its endpoint (collection, key, paging, incremental
support, extra parameters); this class turns them into requests on the SDK's public
hooks:

- `get_http_request`: the organisation's headers and If-Modified-Since;
- `get_url` / `get_url_params`: paging, filters, and the ids a webhook names;
- `request_decorator`: the organisation's limiter slot around each try;
- `validate_response`: what an answer means (see `tap_xero.retry` for the waits);
- `get_records`: the webhook records first, then the poll, and the daily-budget stop.

Everything a hook needs comes in its arguments: the partition context (organisation,
webhook mode, the ids of one webhook batch) or the response's own request.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn
from urllib.parse import parse_qs, quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from singer_sdk.exceptions import FatalAPIError, SyncLifecycleSignal
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_xero import access
from tap_xero.access import StreamRefusedError
from tap_xero.auth import XeroAuthError
from tap_xero.connections import (
    connection_error,
    forbidden_error,
    organisation_label,
    unauthorized_error,
)
from tap_xero.limits import DailyBudgetExhaustedError
from tap_xero.pagination import (
    FIXED_PAGE_SIZE,
    JournalOffsetPaginator,
    XeroPagePaginator,
    page_count,
    response_body,
)
from tap_xero.retry import (
    ReauthoriseError,
    RetryAfterError,
    RetryWaits,
    TooManyRetriesError,
    first_401,
    retry_after,
)
from tap_xero.schema import Plan, convert_msdates, derive
from tap_xero.webhooks.consume import (
    WEBHOOK_CONTEXT_KEY,
    WEBHOOK_POSITION_KEY,
    batched,
    partition_state,
    position_of,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from backoff.types import Details
    from requests.auth import AuthBase
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest

    from tap_xero.base import XeroTapBase
    from tap_xero.limits import OrgLimiter
    from tap_xero.settings import TapSettings

TENANT_KEY = "tenant_id"
WEBHOOK_KEY = WEBHOOK_CONTEXT_KEY  # in a partition context: read what webhooks named
IDS_KEY = "ids"  # in a request context: the ids of one webhook batch
WEBHOOK_IDS_PER_CALL = 50  # ids in one `IDs` filter: about 1,900 characters of URL
TENANT_PROPERTY = {"type": "string", "description": "Xero organisation (tenant) id."}

Paging = Literal["page", "page_size", "offset"]
WebhookFetch = Literal["IDs", "path"]
RequestFunc = Callable[[requests.PreparedRequest, "Context | None"], requests.Response]


def _instant(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime (`Z` accepted on Python 3.10); else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _tenant_of(request: requests.PreparedRequest | None) -> str:
    return str((request.headers if request is not None else {}).get("xero-tenant-id", ""))


class XeroStream(RESTStream[Any]):
    """A Xero Accounting collection, read for every organisation of the run."""

    # Records are JSON from Xero, dates already converted: conforming every nested value to
    # the (large, inlined) schema cost 40% of the run for nothing.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY
    allow_redirects = False  # a redirect would carry the bearer token elsewhere

    # Facts each stream states (see streams/). `path` defaults to `/{collection}`.
    collection: ClassVar[str]  # generated schema file, e.g. "Invoices"
    records_key: ClassVar[str] = ""  # envelope key holding records; default `collection`
    id_field: ClassVar[str]  # e.g. "InvoiceID"
    paging: ClassVar[Paging | None] = None
    modified_since: ClassVar[bool] = False  # Xero honours If-Modified-Since here
    ordered: ClassVar[bool] = False  # `order=<replication key> ASC` is reliable here
    include_archived: ClassVar[bool] = False  # `includeArchived=true`
    include_deleted: ClassVar[bool] = False  # `includeDeleted=true`
    payments_only: ClassVar[bool] = False  # `paymentsOnly=true` (cash-basis journals)
    scopes: ClassVar[tuple[str, str]]  # read scopes (granular, broad): see tap_xero.access
    tier: ClassVar[str | None] = None  # the app tier the endpoint needs, beyond Starter
    # Webhooks name this stream's records: fetch them by "IDs" (batched filter) or by
    # "path" (`GET /{path}/{id}`, where the spec has no `IDs`); None: not consumed.
    webhook_fetch: ClassVar[WebhookFetch | None] = None

    @override
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "collection" in cls.__dict__ and "path" not in cls.__dict__:
            cls.path = f"/{cls.collection}"

    @override
    def __init__(self, tap: XeroTapBase) -> None:
        schema, plan = derive(self.collection)
        schema["properties"][TENANT_KEY] = TENANT_PROPERTY
        self._msdate_plan: Plan = plan
        super().__init__(tap=tap, schema=schema)
        self.xero_tap = tap
        self.primary_keys = [TENANT_KEY, self.id_field]
        # A bookmark per page: STATE after every full page, so a killed run loses nothing.
        self.STATE_MSG_FREQUENCY = (
            self.settings.page_size if self.paging == "page_size" else FIXED_PAGE_SIZE
        )
        # The page handed to child streams (see generate_child_contexts), per thread: each
        # organisation's thread hands its own pages to the children it syncs.
        self._pages = threading.local()
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()
        self._bookmarks: dict[str, datetime | None] = {}  # parsed starting bookmarks

    @property
    def settings(self) -> TapSettings:
        return self.xero_tap.settings

    # -- endpoint --------------------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return self.settings.api_url.rstrip("/")

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
        """Per organisation: the records its webhooks named (when consumed), then the poll.

        The webhook partition keeps its own state (its `webhook_position`), so the poll's
        bookmark never sees the out-of-order records it reads.
        """
        webhooks = bool(self.webhook_fetch and self.settings.webhook_event_store_path)
        contexts: list[dict[str, Any]] = []
        for tenant in self.xero_tap.tenant_ids:
            if webhooks:
                contexts.append({TENANT_KEY: tenant, WEBHOOK_KEY: True})
            contexts.append({TENANT_KEY: tenant})
        return contexts

    @property
    @override
    def authenticator(self) -> AuthBase:
        return self.xero_tap.bearer_auth

    @property
    @override
    def timeout(self) -> int:
        return int(self.settings.request_timeout)

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # ACTIVATE_VERSION tells a target to drop rows the new version lacks (on by default:
        # it is how hard deletes reach a destination); never send it for a table an
        # organisation's spent budget will leave unread.
        spent = any(limiter.exhausted for _, limiter in self.xero_tap.limiters.items())
        refused = any(r.stream == self.name for r in self.xero_tap.refusals)
        failed = bool(self.xero_tap.failures)  # an organisation's rows were left unread
        return self.settings.emit_activate_version_messages and not (spent or refused or failed)

    # Private: the SDK reads partitions one after another and sends only the opening
    # ACTIVATE_VERSION; it has no hook to read them side by side, nor for a closing
    # ACTIVATE_VERSION after every partition was read.
    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        if context is not None:  # one partition (a child's page, or one organisation's)
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        if self.partitions:
            self._sync_organisations(write_messages)
            # What the SDK does after its own partition loop.
            self._finalize_state(self.stream_state)
            if write_messages:
                self._write_state_message()
        else:
            yield from super()._sync_records(None, write_messages=write_messages)
        if (
            write_messages
            and self.selected
            and self.replication_method == REPLICATION_FULL_TABLE
            and self.emit_activate_version_messages  # False once a budget ran out
            and self._stream_version is not None
        ):
            # Every organisation was read whole, so rows the new version lacks were
            # deleted in Xero (items, tracking options...).
            self._closing_version = True
            try:
                self._write_activate_version_message(self._stream_version)
            finally:
                self._closing_version = False

    _closing_version = False

    @override
    def _write_activate_version_message(self, full_table_version: int) -> None:
        # Only the closing one. The SDK also sends one as the stream opens; a target that
        # sees a version opened but never closed settles it at the end of its input
        # (target-powerbi does, for taps that send only the opening one), which would
        # drop the rows of an organisation that failed after the stream opened.
        if self._closing_version:
            super()._write_activate_version_message(full_table_version)

    def _sync_organisations(self, write_messages: bool) -> None:
        """Each organisation's partitions in a thread, `max_parallel_organisations` at once.

        Streams still run one after another (`Tap.sync_all` is final and runs them so), and
        within a stream the organisations run side by side: a run takes about its largest
        organisation's time, not the sum. The threads take turns at the stream code
        (`Turn`) and overlap while they wait on Xero, each within its organisation's
        limiter and all within the app's. With one thread this is the SDK's loop.
        """
        by_tenant: dict[str, list[Context]] = {}
        for partition in self.partitions or []:
            by_tenant.setdefault(str(partition[TENANT_KEY]), []).append(partition)
        workers = max(1, min(self.settings.max_parallel_organisations, len(by_tenant)))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"tap-xero-{self.name}") as pool:
            futures = [
                pool.submit(self._sync_organisation, contexts, write_messages)
                for contexts in by_tenant.values()
            ]
        for future in futures:
            future.result()  # an SDK signal (e.g. a dry run's record limit) ends the stream

    def _sync_organisation(self, contexts: list[Context], write_messages: bool) -> None:
        """One organisation's partitions, in order; its failure ends it alone.

        The error is recorded on the tap (`organisation_failed`): its later streams are
        skipped, the run goes on for the others and ends non-zero saying what failed. The
        partition keeps only a bookmark its emitted records justify.
        """
        tap = self.xero_tap
        with tap.turn.held():
            for context in contexts:
                tenant = str(context[TENANT_KEY])
                if tenant in tap.failures:
                    return
                try:
                    for _ in super()._sync_records(context, write_messages=write_messages):
                        pass
                except SyncLifecycleSignal:
                    raise
                except Exception as exc:  # one organisation's failure: recorded, the others go on
                    self._keep_safe_bookmark(context)
                    tap.organisation_failed(tenant, self.name, exc)
                    return

    # -- the request -----------------------------------------------------------------

    @override
    def build_prepared_request(self, *args: Any, **kwargs: Any) -> requests.PreparedRequest:
        # Every request of the stream is built here (the SDK has no hook on the method):
        # only GET may ever reach Xero.
        method = str(kwargs.get("method", args[0] if args else "GET")).upper()
        if method != "GET":
            msg = f"tap-xero refuses to send {method} to Xero"
            raise FatalAPIError(msg)
        return super().build_prepared_request(*args, **kwargs)

    @override
    def get_http_request(self, *, page: PageContext[Any]) -> HTTPRequest:
        request = super().get_http_request(page=page)
        request.headers.update(self.headers_for(page.stream_context))
        return request

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
        if not (self.modified_since and self.incremental) or IDS_KEY in context:
            return None
        start = self.get_starting_timestamp(context)
        if start is None:
            return None
        start = start.astimezone(timezone.utc) - timedelta(seconds=1)
        return start.strftime("%Y-%m-%dT%H:%M:%SZ")  # the spec's date-time, with its offset

    @override
    def get_url(self, context: Context | None) -> str:
        url = super().get_url(context)
        ids = (context or {}).get(IDS_KEY)
        if ids and self.webhook_fetch == "path":
            url = f"{url}/{quote(ids[0], safe='')}"
        return url

    @override
    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        ids = (context or {}).get(IDS_KEY)
        if ids:
            return {"IDs": ",".join(ids)} if self.webhook_fetch == "IDs" else {}
        params: dict[str, Any] = {
            name: "true"
            for flag, name in (
                (self.include_archived, "includeArchived"),
                (self.include_deleted, "includeDeleted"),
                (self.payments_only, "paymentsOnly"),
            )
            if flag
        }
        if self.paging in ("page", "page_size"):
            params["page"] = next_page_token or 1
        if self.paging == "page_size":
            params["pageSize"] = self.settings.page_size
        if self.paging == "offset":
            params["offset"] = (
                next_page_token if next_page_token is not None else self._offset_start(context)
            )
        if self.ordered and self.replication_key and self.paging != "offset":
            params["order"] = f"{self.replication_key} ASC"
        return params

    def _offset_start(self, context: Context | None) -> int:
        """The journal number to read after: the bookmark (the SDK may offer `start_date`)."""
        start = self.get_starting_replication_key_value(context) if self.incremental else None
        return start if isinstance(start, int) else 0

    @property
    @override
    def requests_session(self) -> requests.Session:
        """One session per stream, made once though organisations start at the same time.

        Its connection pool holds every call the stream may have in flight (organisations
        side by side, each up to `max_in_flight`), so no connection is thrown away.
        """
        with self._session_lock:
            if self._session is None:
                size = self.settings.max_in_flight * self.settings.max_parallel_organisations
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(10, size))
                session = requests.Session()
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    @override
    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Pages by number, up to `max_in_flight` asked at once; else the SDK's one by one."""
        by_number = self.paging == "page_size" and self.settings.max_in_flight > 1
        if context and by_number and IDS_KEY not in context:
            yield from self._pipelined_pages(context)
        else:
            yield from super().request_records(context)

    def _page_request(self, context: Context, page: int) -> requests.PreparedRequest:
        """Page `page`'s request, built as the SDK builds it (public hooks only)."""
        http = self.get_http_request(page=PageContext(stream_context=context, next_page_token=page))
        return self.build_prepared_request(
            method=http.method, url=http.url, params=http.encode_params(), headers=http.headers
        )

    def _pipelined_pages(self, context: Context) -> Iterable[dict[str, Any]]:
        """Page 1; then, by its `pageCount`, the next pages up to `max_in_flight` at once.

        Pages by number do not depend on each other once their count is known, so the
        calls overlap (within the organisation's limiter) while records are still emitted
        in page order: a bookmark moves only with records already written. It stops at
        the last page or at the first short one (the data shrank meanwhile). Hand-written:
        the SDK's `request_records` asks for one page after the other.
        """
        send = self.request_decorator(self._request)
        turn = self.xero_tap.turn
        size = self.settings.page_size
        ahead: deque[tuple[requests.PreparedRequest, Future[requests.Response]]] = deque()
        pool = ThreadPoolExecutor(self.settings.max_in_flight, thread_name_prefix="tap-xero-page")
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            request = self._page_request(context, 1)
            response = send(request, context)
            try:
                page, last = 1, page_count(response)
                while True:
                    counter.increment()
                    self.update_sync_costs(request, response, context)
                    while (
                        last is not None
                        and last > page + len(ahead)
                        and len(ahead) < self.settings.max_in_flight
                    ):
                        ahead_request = self._page_request(context, page + len(ahead) + 1)
                        ahead.append((ahead_request, pool.submit(send, ahead_request, context)))
                    records = list(self.parse_response(response))
                    yield from records
                    if len(records) < size:
                        return
                    if last is None:  # no count (Xero left it out): the next page, if full
                        next_request = self._page_request(context, page + 1)
                        ahead.append((next_request, pool.submit(send, next_request, context)))
                    if not ahead:
                        return
                    request, future = ahead.popleft()
                    with turn.paused():
                        response = future.result()
                    page += 1
            finally:
                with turn.paused():
                    pool.shutdown(wait=True, cancel_futures=True)

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[Any] | None:
        key = self.records_key or self.collection
        if self.paging == "page_size":
            return XeroPagePaginator(key, self.settings.page_size)
        if self.paging == "page":
            return XeroPagePaginator(key, FIXED_PAGE_SIZE)
        if self.paging == "offset":
            return JournalOffsetPaginator()
        return None

    def _limiter(self, tenant: str) -> OrgLimiter:
        return self.xero_tap.limiters.for_tenant(tenant)

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """The SDK's backoff around each try, each try inside its organisation's limiter slot.

        The slot is held only while the call is in flight: the waits between tries (see
        `backoff_wait_generator`) happen outside it.
        """

        def limited(
            request: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            with self._limiter(_tenant_of(request)).slot():
                return func(request, context)

        retrying: RequestFunc = super().request_decorator(limited)

        def send(request: requests.PreparedRequest, context: Context | None) -> requests.Response:
            try:
                with self.xero_tap.turn.paused():  # other organisations run meanwhile
                    return retrying(request, context)
            except RetryAfterError as exc:
                msg = f"Xero kept answering 429 ({exc.problem} limit) for {self.path}"
                raise TooManyRetriesError(msg) from None

        return send

    @override
    def validate_response(self, response: requests.Response) -> None:
        """What an answer means: fine, retried (`tap_xero.retry`), a clean stop, or fatal."""
        request = response.request
        tenant = _tenant_of(request)
        limiter = self._limiter(tenant)
        limiter.observe(response.headers)
        limiter.received(_wire_size(response))
        status = response.status_code
        if status == 404 and self._by_id(request):
            return  # a record named by a webhook that no longer exists: nothing to emit
        if status == 401 and "insufficient_scope" in response.headers.get("WWW-Authenticate", ""):
            raise StreamRefusedError(response)  # the token lacks this endpoint's scope
        if status == 401:
            if request is not None and first_401(request):
                self.xero_tap.token_manager.invalidate(_bearer(request))
                raise ReauthoriseError(self.response_error_message(response), response)
            raise unauthorized_error()
        if status == 403:
            self._refused(response, tenant)
        if status == 429:
            problem = response.headers.get("X-Rate-Limit-Problem", "").lower() or "unknown"
            if problem == "day":
                limiter.exhaust()
                raise DailyBudgetExhaustedError
            wait = retry_after(response, self.settings.rate_limit_window_seconds)
            raise RetryAfterError(
                self.response_error_message(response), response, wait=wait, problem=problem
            )
        super().validate_response(response)  # 5xx retried, other 4xx fatal

    def _refused(self, response: requests.Response, tenant: str) -> NoReturn:
        """A 403: one stream refused (skipped by `get_records`), or the whole connection."""
        endpoint = self._endpoint_of(response.request)
        kind = access.kind_of(response, report=endpoint.startswith("/Reports/"))
        if kind == "stream":
            raise StreamRefusedError(response)
        if kind == "proxy":
            raise XeroAuthError(access.proxy_message(endpoint, self.url_base))
        if kind == "connection":
            raise connection_error(tenant, self.xero_tap.organisations)
        raise forbidden_error(tenant, self.xero_tap.organisations, f"GET {endpoint}")

    def _endpoint_of(self, request: requests.PreparedRequest | None) -> str:
        """The API path a request was for, e.g. `/Invoices` (without the base URL's path)."""
        path = urlsplit((request.url if request is not None else None) or "").path
        return path.removeprefix(urlsplit(self.url_base).path) or self.path

    def probe_params(self) -> dict[str, Any]:
        """The query of the smallest answer this endpoint gives (for `auth check`)."""
        if self.paging == "page_size":
            return {"page": 1, "pageSize": 1}
        if self.paging == "offset":
            return {"offset": 2**31 - 1}  # past every journal: an empty page
        return {}

    def refusal_facts(self, endpoint: str) -> tuple[tuple[str, ...], str | None]:
        """The scopes and tier that open `endpoint`, for the message of a refusal."""
        return self.scopes, self.tier if endpoint == self.path else None

    def _by_id(self, request: requests.PreparedRequest | None) -> bool:
        """A request for records by id (as webhooks name them), not for the collection."""
        if request is None or request.url is None:
            return False
        url = urlsplit(request.url)
        return "IDs" in parse_qs(url.query) or not url.path.rstrip("/").endswith(self.path)

    @override
    def backoff_wait_generator(self) -> Generator[float, None, None]:
        # One per request: the wait before each retry, chosen from its exception.
        return self.backoff_runtime(value=RetryWaits(self.settings.retry_backoff_seconds))

    @override
    def backoff_jitter(self, value: float) -> float:
        return value  # RetryWaits jitters the backoff it computes; Retry-After is exact

    @override
    def backoff_max_tries(self) -> int:
        return self.settings.max_retries + 1

    @override
    def backoff_handler(self, details: Details) -> None:
        exc = details.get("exception")
        wait = details.get("wait") or 0.0
        if isinstance(exc, RetryAfterError):
            self.logger.warning(
                "429 (%s limit) on %s: waiting Retry-After %.3f s", exc.problem, self.path, wait
            )
        elif isinstance(exc, ReauthoriseError):
            self.logger.info("401 on %s: retrying once with a fresh access token", self.path)
        else:
            self.logger.warning(
                "Retrying %s in %.2f s after try %d: %s",
                self.path,
                wait,
                details.get("tries") or 0,
                type(exc).__name__ if exc is not None else "error",
            )

    @override
    def response_error_message(self, response: requests.Response) -> str:
        # Never echo request headers (the bearer token); Xero's body says what went wrong.
        detail = response.text[:500] if response.content else ""
        return f"{response.status_code} {response.reason} for {self.path}: {detail}"

    # -- records ---------------------------------------------------------------------

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        self.xero_tap.start_run()
        try:
            yield from self.read(context)
        except DailyBudgetExhaustedError:
            self._budget_stop(context)
        except StreamRefusedError as exc:
            self._skip_refused(context, exc)

    @override
    def log_sync_costs(self) -> None:
        super().log_sync_costs()
        self.xero_tap.stream_costs_logged()

    def read(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """One partition's records: those its webhooks named, or the poll."""
        if context is not None and context.get(WEBHOOK_KEY):
            yield from self._webhook_records(context)
        else:
            yield from self.request_records(context)

    def _budget_stop(self, context: Context | None) -> None:
        tenant = str((context or {}).get(TENANT_KEY, ""))
        limiter = self._limiter(tenant)
        if limiter.announce_stop():
            self.logger.warning(
                "Daily call budget reached for organisation %s (%s calls left today by Xero, "
                "reserve %d, %d calls this run): stopping its streams here; bookmarks are "
                "saved and the next run carries on.",
                tenant,
                "unknown" if limiter.day_left is None else limiter.day_left,
                limiter.settings.daily_call_reserve,
                limiter.calls,
            )
        self.logger.info("Stopped %s for organisation %s: budget spent", self.name, tenant)
        self._keep_safe_bookmark(context)

    def _skip_refused(self, context: Context | None, exc: StreamRefusedError) -> None:
        """The connection may not read this stream for this organisation: skip it, or fail."""
        tenant = str((context or {}).get(TENANT_KEY, ""))
        endpoint = self._endpoint_of(exc.response.request)
        scopes, tier = self.refusal_facts(endpoint)
        refusal = access.Refusal(
            self.name,
            tenant,
            organisation_label(tenant, self.xero_tap.organisations),
            endpoint,
            access.cause(endpoint, scopes, tier),
            exc.response.status_code,
        )
        if self.settings.on_forbidden_stream == "fail":
            msg = f"{refusal.line()} (on_forbidden_stream is 'fail')"
            raise XeroAuthError(msg)
        self.xero_tap.refusals.append(refusal)
        self.logger.warning(
            "%s. Skipped; the other streams and organisations go on.", refusal.line()
        )
        self._keep_safe_bookmark(context)

    def _keep_safe_bookmark(self, context: Context | None) -> None:
        if not self.is_sorted:
            # Records arrived in no order: the highest value seen is not a safe
            # bookmark for a partial read. Keep the previous one.
            self.get_context_state(context).pop("progress_markers", None)

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        if response.status_code == 404:  # a record named by a webhook that no longer exists
            self._pages.last = None
            return
        records: list[dict[str, Any]] = (
            response_body(response).get(self.records_key or self.collection) or []
        )
        # The last record of a page releases the page to the child streams.
        self._pages.last = records[-1] if records else None
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
        if not (self.is_sorted and self.incremental) or context.get(WEBHOOK_KEY):
            return False
        value = _instant(row.get(self.replication_key or ""))
        bookmark = self._bookmark_instant(context)
        return value is not None and bookmark is not None and value < bookmark

    def _bookmark_instant(self, context: Context) -> datetime | None:
        """The partition's starting bookmark, parsed once per partition (not per record)."""
        tenant = str(context[TENANT_KEY])
        if tenant not in self._bookmarks:
            self._bookmarks[tenant] = _instant(self.get_starting_replication_key_value(context))
        return self._bookmarks[tenant]

    # -- webhooks: the records named by pending events, before the poll ---------------

    def _webhook_records(self, context: Context) -> Iterable[dict[str, Any]]:
        """Records named by events after this partition's position, then the new position.

        They go through the usual request path (limiter, auth, retries) and the usual
        emission (children included), but never move the replication bookmark: they are
        out of order, and the poll that follows still has to read from the old bookmark.
        The position is written to the partition's state only once they are all emitted.
        """
        consumer = self.xero_tap.webhook_consumer
        if consumer is None:
            return
        state = self.get_context_state(context)
        # (A STATE from before webhook partitions kept it in the poll's partition.)
        tenant = str(context[TENANT_KEY])
        after = position_of(state) or position_of(
            partition_state(self.tap_state, self.name, tenant)
        )
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
        for batch in batched(pending.resource_ids, size):
            yield from self.request_records({**context, IDS_KEY: batch})
        state[WEBHOOK_POSITION_KEY] = pending.position
        self.state_manager.is_flushed = False

    # Private: the SDK has no public hook to decide which records may move a bookmark.
    @override
    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        """Move the bookmark only with a record that can safely carry it.

        Never with a record named by a webhook (out of order; the bookmark belongs to the
        poll), nor with one whose replication value is missing or not a date-time (it is
        emitted, but the next run could not start from it). A record older than the
        bookmark of a sorted stream leaves it where it is instead of stopping the run: the
        bookmark is the highest value of whole pages, which Xero orders among themselves.
        """
        if context is not None and context.get(WEBHOOK_KEY):
            return
        key = self.replication_key or ""
        value = latest_record.get(key)
        if not self._bookmarkable(value):
            self.logger.warning(
                "%s: a record has no usable %s (%r); it is emitted, the bookmark stays",
                self.name,
                key,
                value,
            )
            return
        if self.is_sorted and self._behind_bookmark(value, context):
            self.logger.warning(
                "%s: records out of %s order; the bookmark keeps its highest value", self.name, key
            )
            return
        super()._increment_stream_state(latest_record, context=context)

    def _bookmarkable(self, value: Any) -> bool:
        """A replication value the next run can start from."""
        if isinstance(value, bool) or value is None:
            return False
        if isinstance(value, int):
            return True
        return _instant(value) is not None

    def _behind_bookmark(self, value: Any, context: Context | None) -> bool:
        current = self.get_context_state(context).get("replication_key_value")
        if current is None:
            return False
        if isinstance(value, int) and isinstance(current, int):
            return value < current
        new, old = _instant(value), _instant(current)
        return new is not None and old is not None and new < old

    # -- child streams: one hand-over per page, no extra call -------------------------

    @override
    def generate_child_contexts(
        self, record: dict[str, Any], context: Context | None
    ) -> Iterable[Context | None]:
        if not any(c.selected or c.has_selected_descendents for c in self.child_streams):
            return
        # A copy: writing the record drops deselected properties (e.g. LineItems) in place.
        buffer = self.take_page()
        buffer.append(dict(record))
        # A dry run may stop mid-page: hand each record over at once then.
        last = getattr(self._pages, "last", None)
        page_done = record is last or self.ABORT_AT_RECORD_COUNT is not None
        if page_done and context is not None:
            yield {TENANT_KEY: context[TENANT_KEY]}
            self._pages.buffer = []

    def take_page(self) -> list[dict[str, Any]]:
        """The current page's parent records (this thread's organisation), for a child stream."""
        buffer: list[dict[str, Any]] | None = getattr(self._pages, "buffer", None)
        if buffer is None:
            buffer = self._pages.buffer = []
        return buffer


def _wire_size(response: requests.Response) -> int:
    """Bytes of the body as sent (compressed when Xero compressed it), or as decoded."""
    declared = response.headers.get("Content-Length", "")
    return int(declared) if declared.isdigit() else len(response.content)


def _bearer(request: requests.PreparedRequest) -> str:
    return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")

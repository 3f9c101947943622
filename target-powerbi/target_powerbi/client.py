"""Power BI REST client for push datasets: limits, retries, tokens, audit and clear errors.

One place per concern: `limits` paces POST rows, `auth` hands out tokens, `audit`
records every write, `errors` says what to do; this module sends the requests.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from typing_extensions import override

from target_powerbi import retry
from target_powerbi.audit import AuditLog
from target_powerbi.auth import TokenProvider
from target_powerbi.errors import (
    AuthenticationError,
    DatasetNotFoundError,
    PowerBIError,
    PushDatasetsRetiredError,
    RequestRejectedError,
    ServicePrincipalsDisabledError,
    ServiceUnavailableError,
    TableNotFoundError,
    ThrottledError,
    WorkspaceAccessError,
    redact,
)
from target_powerbi.limits import (
    MAX_BODY_BYTES,
    MAX_PENDING,
    MAX_ROWS_PER_POST,
    Clock,
    MonotonicClock,
    PushLimiter,
    RowTooLargeError,
    encode_row,
    format_duration,
    rows_body,
    split_rows,
)
from target_powerbi.settings import Settings

WRITE_OPERATIONS = frozenset(
    {
        "create_dataset",
        "delete_dataset",
        "put_table",
        "post_rows",
        "delete_rows",
        "rebind_report",
        "clone_tile",
    }
)

# How Power BI words the Fabric tenant setting that bars service principals.
_TENANT_SETTING = re.compile(
    r"(?i)tenant ?setting|admin ?setting|principals? (are|is) not allowed|disabled"
)
_WORKSPACE_MISSING = re.compile(r"(?i)workspace|group")
_RETIRED = re.compile(r"(?i)retire|no longer|deprecat|real-time intelligence")


class _AlreadyCreatedError(Exception):
    """A retried create found that its first attempt had succeeded after all."""

    def __init__(self, value: dict[str, Any]) -> None:
        super().__init__("recovered")
        self.value = value


class _Session(requests.Session):
    """A Session whose `verify` wins over REQUESTS_CA_BUNDLE (requests lets the env override it)."""

    @override
    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: bool | None,
        verify: Any,
        cert: Any,
    ) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


@dataclass
class _Request:
    """One logical request and what its attempts have done so far."""

    method: str
    url: str
    operation: str
    dataset_id: str | None
    table: str | None
    json_body: Any
    body: bytes | None
    params: Mapping[str, str] | None
    rows: int
    what: str | None
    label: str
    before_retry: Callable[[], None] | None
    attempts: int = 0
    started: float = 0.0


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _error_details(response: requests.Response) -> tuple[str | None, str]:
    """Power BI's `{"error": {"code", "message"}}` (or the raw text), shortened."""
    try:
        payload = response.json()
    except ValueError:
        return None, response.text[:300]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message") or ""
        details = error.get("details")
        if not message and isinstance(details, list) and details:
            message = "; ".join(str(d.get("message", d)) for d in details if d)
        return (str(code) if code else None), str(message)[:300]
    if isinstance(error, str):
        return error, str(payload.get("error_description", ""))[:300]
    return None, str(payload)[:300]


class PowerBIClient:
    """Calls the push-dataset API of one workspace as one service principal.

    Writes are paced below Power BI's limits, retried when that can help,
    written to the audit log, and failures raise `PowerBIError` subclasses whose
    message says what to do.
    """

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        *,
        clock: Clock | None = None,
        backoff_factor: float = 1.0,
    ) -> None:
        self.logger = logger
        self._client_id = settings.client_id
        self._secret = settings.client_secret
        self.workspace_id = settings.workspace_id
        self._base = f"{settings.api_url}/groups/{quote(self.workspace_id, safe='')}"
        self.parallelism = min(MAX_PENDING, max(1, settings.parallelism))
        self.max_retries = max(0, settings.max_retries)
        self.timeout = settings.request_timeout
        self.backoff_factor = backoff_factor
        self.clock: Clock = clock or MonotonicClock()
        self.limiter = PushLimiter(self.clock, logger)
        self._ca_file: str | None = None
        self.session = self._make_session(settings.ca_bundle)
        self.auth = TokenProvider(
            tenant_id=settings.tenant_id,
            client_id=self._client_id,
            client_secret=self._secret,
            authority_url=settings.authority_url,
            scope=settings.scope,
            session=self.session,
            logger=logger,
            max_retries=self.max_retries,
            backoff_factor=backoff_factor,
            timeout=self.timeout,
        )
        self.audit = AuditLog(settings.audit_log_path, secrets=(self._secret,))
        self._known_datasets: dict[str, str] = {}
        self._uncertain: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- session
    def _make_session(self, ca_bundle: str | None) -> requests.Session:
        session = _Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, self.parallelism * 2))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = "target-powerbi"
        if ca_bundle:
            try:
                extra = Path(str(ca_bundle)).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"ca_bundle {ca_bundle} cannot be read ({exc.strerror}): fix the path"
                raise PowerBIError(msg) from None
            if "BEGIN CERTIFICATE" not in extra:
                msg = f"ca_bundle {ca_bundle} holds no PEM certificate"
                raise PowerBIError(msg)
            # Trust the extra authorities *and* the public ones (requests' bundle), never neither.
            with tempfile.NamedTemporaryFile(
                "w", suffix=".pem", prefix="target-powerbi-ca-", delete=False, encoding="utf-8"
            ) as handle:
                handle.write(Path(DEFAULT_CA_BUNDLE_PATH).read_text(encoding="utf-8"))
                handle.write("\n")
                handle.write(extra)
            self._ca_file = handle.name
            session.verify = handle.name
            # Removed by close(), or when the client is collected without it.
            weakref.finalize(self, Path(handle.name).unlink, missing_ok=True)
        else:
            session.verify = DEFAULT_CA_BUNDLE_PATH
        return session

    def close(self) -> None:
        """Close connections and remove the temporary CA bundle."""
        self.session.close()
        if self._ca_file:
            Path(self._ca_file).unlink(missing_ok=True)
            self._ca_file = None

    def __enter__(self) -> PowerBIClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- datasets
    def list_datasets(self) -> list[dict[str, Any]]:
        response = self._send("GET", "/datasets", operation="list_datasets")
        datasets = list(response.json().get("value", []))
        with self._lock:
            for dataset in datasets:
                self._known_datasets[str(dataset["id"])] = str(dataset.get("name", ""))
        return datasets

    def find_dataset(self, name: str, prefer: str | None = None) -> dict[str, Any] | None:
        """The dataset called `name` in the workspace (the one with id `prefer` first), or None."""
        matches = [d for d in self.list_datasets() if d.get("name") == name]
        preferred = [d for d in matches if prefer is not None and str(d.get("id")) == prefer]
        if preferred:
            return preferred[0]
        if len(matches) > 1:
            self.logger.warning(
                "Workspace %s holds %d datasets named %r; using %s",
                self.workspace_id,
                len(matches),
                name,
                matches[0]["id"],
            )
        return matches[0] if matches else None

    def create_dataset(
        self, body: dict[str, Any], retention_policy: str = "None"
    ) -> dict[str, Any]:
        """Create a push dataset with all its tables; returns `{"id", "name", ...}`."""
        name = str(body.get("name"))

        def created_after_all() -> None:
            # A create that timed out or failed with a 5xx may have succeeded: never make two.
            existing = self.find_dataset(name)
            if existing is not None:
                self.logger.warning(
                    "Dataset %r was created by an attempt that seemed to fail", name
                )
                raise _AlreadyCreatedError(existing)

        try:
            response = self._send(
                "POST",
                "/datasets",
                operation="create_dataset",
                json_body=body,
                params={"defaultRetentionPolicy": retention_policy},
                what=f"dataset {name!r}",
                before_retry=created_after_all,
            )
        except _AlreadyCreatedError as recovered:
            return recovered.value
        dataset = dict(response.json())
        with self._lock:
            self._known_datasets[str(dataset["id"])] = str(dataset.get("name", ""))
        return dataset

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset; one already gone counts as deleted."""
        try:
            self._send(
                "DELETE",
                f"/datasets/{quote(dataset_id, safe='')}",
                operation="delete_dataset",
                dataset_id=dataset_id,
            )
        except DatasetNotFoundError:
            self.logger.warning("Dataset %s was already deleted", dataset_id)
        with self._lock:
            self._known_datasets.pop(dataset_id, None)
            self._uncertain = {item for item in self._uncertain if item[0] != dataset_id}
        self.limiter.dataset_gone(dataset_id)

    def list_reports(self) -> list[dict[str, Any]]:
        """The workspace's reports (`Reports - Get Reports In Group`)."""
        response = self._send("GET", "/reports", operation="list_reports")
        return list(response.json().get("value", []))

    def rebind_report(self, report_id: str, dataset_id: str) -> None:
        """Bind a report to another dataset (`Reports - Rebind Report In Group`)."""
        self._send(
            "POST",
            f"/reports/{quote(report_id, safe='')}/Rebind",
            operation="rebind_report",
            json_body={"datasetId": dataset_id},
            what=f"report {report_id}",
        )

    def list_dashboards(self) -> list[dict[str, Any]]:
        """The workspace's dashboards (`Dashboards - Get Dashboards In Group`)."""
        response = self._send("GET", "/dashboards", operation="list_dashboards")
        return list(response.json().get("value", []))

    def list_tiles(self, dashboard_id: str) -> list[dict[str, Any]]:
        """A dashboard's tiles (`Dashboards - Get Tiles In Group`), each with its datasetId."""
        response = self._send(
            "GET", f"/dashboards/{quote(dashboard_id, safe='')}/tiles", operation="list_tiles"
        )
        return list(response.json().get("value", []))

    def clone_tile(
        self, dashboard_id: str, tile: dict[str, Any], dataset_id: str
    ) -> dict[str, Any]:
        """Copy a tile onto its own dashboard, bound to another dataset (`Clone Tile In Group`).

        The copy goes to the dashboard's tail (Power BI's position-conflict default). An
        attempt that seemed to fail may have cloned it: a retry first looks for the copy.
        """
        title, report_id = tile.get("title"), tile.get("reportId")

        def cloned_after_all() -> None:
            for existing in self.list_tiles(dashboard_id):
                if (
                    existing.get("datasetId") == dataset_id
                    and existing.get("title") == title
                    and existing.get("reportId") == report_id
                ):
                    raise _AlreadyCreatedError(existing)

        body: dict[str, Any] = {"targetDashboardId": dashboard_id, "targetModelId": dataset_id}
        if report_id:
            body["targetReportId"] = report_id
        try:
            response = self._send(
                "POST",
                f"/dashboards/{quote(dashboard_id, safe='')}/tiles/"
                f"{quote(str(tile['id']), safe='')}/Clone",
                operation="clone_tile",
                json_body=body,
                what=f"tile {title!r}",
                before_retry=cloned_after_all,
            )
        except _AlreadyCreatedError as recovered:
            return recovered.value
        return dict(response.json())

    def check_access(self) -> None:
        """Sign in and read the workspace: fails fast on credentials, tenant setting, access."""
        self.list_datasets()

    def list_tables(self, dataset_id: str) -> list[dict[str, Any]]:
        response = self._send(
            "GET",
            f"/datasets/{quote(dataset_id, safe='')}/tables",
            operation="list_tables",
            dataset_id=dataset_id,
        )
        return list(response.json().get("value", []))

    def put_table(self, dataset_id: str, table: dict[str, Any]) -> None:
        """Replace a table's schema (new columns); the table must already exist."""
        name = str(table["name"])
        self._send(
            "PUT",
            f"/datasets/{quote(dataset_id, safe='')}/tables/{quote(name, safe='')}",
            operation="put_table",
            dataset_id=dataset_id,
            table=name,
            json_body=table,
        )

    # ----------------------------------------------------------------- rows
    def delete_rows(self, dataset_id: str, table: str) -> None:
        """Delete every row of a table (Power BI has no filtered delete)."""
        self._send(
            "DELETE",
            f"/datasets/{quote(dataset_id, safe='')}/tables/{quote(table, safe='')}/rows",
            operation="delete_rows",
            dataset_id=dataset_id,
            table=table,
        )
        self.limiter.table_emptied(dataset_id, table)
        with self._lock:
            self._uncertain.discard((dataset_id, table))

    def post_rows_many(
        self,
        dataset_id: str,
        batches: Sequence[tuple[str, Sequence[Mapping[str, Any]], int]],
    ) -> None:
        """Post several tables' rows, up to `parallelism` requests at once."""
        chunks: list[tuple[str, bytes, int]] = []
        for table, rows, table_row_count in batches:
            if table_row_count:
                self.limiter.note_table_rows(dataset_id, table, table_row_count)
            chunks.extend(self._chunks(table, rows))
        if not chunks:
            return
        if self.parallelism == 1 or len(chunks) == 1:
            for table, body, count in chunks:
                self._post_chunk(dataset_id, table, body, count)
            return
        with ThreadPoolExecutor(
            max_workers=min(self.parallelism, len(chunks)), thread_name_prefix="powerbi-post"
        ) as pool:
            futures: list[Future[None]] = [
                pool.submit(self._post_chunk, dataset_id, table, body, count)
                for table, body, count in chunks
            ]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and f.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                wait(futures)
                error = failed[0].exception()
                assert error is not None
                raise error

    def uncertain_tables(self) -> set[tuple[str, str]]:
        """(dataset_id, table) pairs where a retried POST may have landed twice.

        A POST that timed out, lost its connection or got a 5xx may still have
        been stored before it was retried; such a table may hold duplicates until
        it is emptied and reloaded. `delete_rows` clears the mark.
        """
        with self._lock:
            return set(self._uncertain)

    def _chunks(
        self, table: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, bytes, int]]:
        try:
            encoded = [encode_row(row) for row in rows]
        except (TypeError, ValueError) as exc:
            msg = f"A row for table {table!r} cannot be sent to Power BI as JSON: {exc}"
            raise RequestRejectedError(msg) from exc
        try:
            spans = split_rows(encoded, MAX_ROWS_PER_POST, MAX_BODY_BYTES)
        except RowTooLargeError as exc:
            msg = f"Table {table!r}: {exc}; shorten its string values (Power BI keeps 4,000 chars)"
            raise RequestRejectedError(msg) from exc
        return [(table, rows_body(encoded[a:b]), b - a) for a, b in spans]

    def _post_chunk(self, dataset_id: str, table: str, body: bytes, count: int) -> None:
        self._send(
            "POST",
            f"/datasets/{quote(dataset_id, safe='')}/tables/{quote(table, safe='')}/rows",
            operation="post_rows",
            dataset_id=dataset_id,
            table=table,
            body=body,
            rows=count,
        )

    # ----------------------------------------------------------------- transport
    def _send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        dataset_id: str | None = None,
        table: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        rows: int = 0,
        what: str | None = None,
        before_retry: Callable[[], None] | None = None,
    ) -> requests.Response:
        """Send one logical request: fresh token, pacing, retries, audit, classified errors."""
        request = _Request(
            method=method,
            url=self._base + path,
            operation=operation,
            dataset_id=dataset_id,
            table=table,
            json_body=json_body,
            body=body,
            params=params,
            rows=rows,
            what=what,
            label=what or table or path,
            before_retry=before_retry,
        )
        return retry.call(
            lambda: self._attempt(request),
            max_retries=self.max_retries,
            on_retry=lambda signal, seconds: self._pause(request, signal, seconds),
            factor=self.backoff_factor,
        )

    def _attempt(self, request: _Request) -> requests.Response:
        """One attempt: the response, a `Retry` when trying again can help, or an error."""
        if request.attempts and request.before_retry is not None:
            request.before_retry()
        request.attempts += 1
        request.started = time.monotonic()
        try:
            response = self._transmit(request)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise self._connection_failed(request, exc) from None
        status = response.status_code
        if request.operation in WRITE_OPERATIONS:
            error = None if status < 400 else self._short_error(response)
            self._audit(request, status, error)
        if status < 400:
            return response
        if status == 401:
            self.auth.invalidate()
            final = self._classify(response, request)
            raise retry.Retry("401", kind="refresh", final=final)
        if status == 429:
            raise self._throttled(response, request)
        if status >= 500:
            if request.operation == "post_rows":
                self._mark_uncertain(request.dataset_id, request.table)
            problem = f"HTTP {status} {self._short_error(response)}"
            raise retry.Retry(problem, final=self._unavailable(request, problem))
        raise self._classify(response, request)

    def _transmit(self, request: _Request) -> requests.Response:
        if request.operation == "post_rows" and request.dataset_id and request.table:
            with self.limiter.post(request.dataset_id, request.table, request.rows):
                request.started = time.monotonic()
                return self._http(request)
        return self._http(request)

    def _connection_failed(self, request: _Request, exc: Exception) -> retry.Retry:
        problem = self._describe_exception(exc)
        if request.operation in WRITE_OPERATIONS:
            self._audit(request, type(exc).__name__, problem)
        if request.operation == "post_rows" and not isinstance(exc, requests.ConnectTimeout):
            self._mark_uncertain(request.dataset_id, request.table)
        return retry.Retry(problem, final=self._unavailable(request, problem))

    def _http(self, request: _Request) -> requests.Response:
        # The token is taken last, after any wait: MSAL's cache or a new one, never stale.
        headers = {"Authorization": f"Bearer {self.auth.token()}"}
        if request.body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return self.session.request(
            request.method,
            request.url,
            headers=headers,
            json=request.json_body,
            data=request.body,
            params=request.params,
            timeout=(min(30.0, self.timeout), self.timeout),
        )

    def _pause(self, request: _Request, signal: retry.Retry, seconds: float) -> None:
        """Say why the request is tried again (retry.call waits, then calls `_attempt`)."""
        where = f" on table {request.table}" if request.table else ""
        if signal.kind == "refresh":
            self.logger.info("Power BI answered 401; retrying once with a new token")
        elif signal.kind == "throttle" and signal.wait is None:
            self.logger.warning(
                "Power BI throttled %s%s (429): waiting %s",
                request.operation,
                where,
                format_duration(seconds),
            )
        elif signal.kind == "failure":
            self.logger.warning(
                "%s%s failed (%s); retrying in %s",
                request.operation,
                where,
                signal.problem,
                format_duration(seconds),
            )

    def _throttled(self, response: requests.Response, request: _Request) -> retry.Retry:
        """A 429: wait as long as Retry-After says (the limiter holds the dataset's POSTs)."""
        retry_after = _retry_after_seconds(response)
        msg = (
            f"Power BI kept throttling {request.operation} ({retry.MAX_THROTTLE_WAITS + 1} "
            "times in a row); another client may be writing to the same dataset. Run again later."
        )
        final = ThrottledError(msg, status=429)
        if retry_after is None:
            return retry.Retry("429", kind="throttle", final=final)
        _, message = _error_details(response)
        self.logger.warning(
            "Power BI throttled %s%s (429%s): waiting %s as its Retry-After asks",
            request.operation,
            f" on table {request.table}" if request.table else "",
            f": {message}" if message else "",
            format_duration(retry_after),
        )
        if request.operation == "post_rows" and request.dataset_id is not None:
            self.limiter.block(request.dataset_id, self.clock_seconds(retry_after))
            return retry.Retry("429", kind="throttle", wait=0.0, final=final)
        return retry.Retry("429", kind="throttle", wait=retry_after, final=final)

    def clock_seconds(self, wall_seconds: float) -> float:
        """Seconds of the pacing clock in a wait the service gives in seconds (Retry-After).

        One to one against Power BI; a client on a faster clock (a time-scaled
        sandbox's tests) overrides it.
        """
        return wall_seconds

    def _mark_uncertain(self, dataset_id: str | None, table: str | None) -> None:
        if dataset_id is not None and table is not None:
            with self._lock:
                self._uncertain.add((dataset_id, table))

    def _audit(self, request: _Request, status: int | str, error: str | None) -> None:
        self.audit.write(
            operation=request.operation,
            dataset_id=request.dataset_id,
            table=request.table,
            rows=request.rows,
            status=status,
            attempt=request.attempts,
            error=error,
            duration_ms=(time.monotonic() - request.started) * 1000,
        )

    def _describe_exception(self, exc: Exception) -> str:
        if isinstance(exc, requests.Timeout):
            return f"timed out after {self.timeout:g}s ({type(exc).__name__})"
        return f"connection failed ({type(exc).__name__}: {self._redact(str(exc))[:200]})"

    def _short_error(self, response: requests.Response) -> str:
        code, message = _error_details(response)
        text = f"{code}: {message}" if code and message else (code or message)
        return self._redact(text)

    def _redact(self, text: str) -> str:
        return redact(text, (self._secret,))

    def _unavailable(self, request: _Request, problem: str) -> ServiceUnavailableError:
        msg = (
            f"Power BI did not complete {request.operation} on {request.label} after "
            f"{request.attempts} attempts "
            f"(last: {problem}). The service or the network is failing: run the target "
            "again later (it resumes), or raise max_retries; if it never answers, check "
            "api_url and the network."
        )
        return ServiceUnavailableError(msg)

    def _classify(self, response: requests.Response, request: _Request) -> PowerBIError:
        operation, dataset_id, table = request.operation, request.dataset_id, request.table
        what = request.what
        status = response.status_code
        code, message = _error_details(response)
        code_text = f" {code}" if code else ""
        detail = self._redact(f"{status}{code_text}{': ' + message if message else ''}")
        combined = f"{code or ''} {message}"
        if operation == "create_dataset" and _RETIRED.search(combined):
            msg = (
                f"Power BI refused to create push dataset {what or ''} ({detail}). Microsoft "
                "has retired the creation of new push semantic models (existing ones keep "
                "working): set dataset_name to a push dataset that already exists in workspace "
                f"{self.workspace_id}, or move this pipeline to Microsoft Fabric Real-Time "
                "Intelligence."
            )
            return PushDatasetsRetiredError(msg, status=status, code=code)
        if status == 401 and not (
            code == "PowerBINotAuthorizedException" or _TENANT_SETTING.search(combined)
        ):
            msg = (
                f"Power BI refused a new token of service principal {self._client_id} "
                f"({detail}). Check that api_url, authority_url and scope belong to the same "
                "cloud (the scope must end with /.default)."
            )
            return AuthenticationError(msg, status=status, code=code)
        if status == 401 or (status == 403 and _TENANT_SETTING.search(combined)):
            msg = (
                f"Power BI refused service principal {self._client_id} even with a new "
                f"token ({detail}). A Fabric administrator must turn on 'Service principals "
                "can use Fabric APIs' (Admin portal > Tenant settings > Developer settings) "
                "for the organisation or a security group holding this principal (it can "
                "take 15 minutes to apply); the principal must also be Member or Admin of "
                f"workspace {self.workspace_id}."
            )
            return ServicePrincipalsDisabledError(msg, status=status, code=code)
        if status == 403:
            msg = (
                f"Service principal {self._client_id} may not {operation.replace('_', ' ')} in "
                f"workspace {self.workspace_id} ({detail}). Add it to the workspace as Member "
                "or Admin (Workspace > Manage access), or fix workspace_id; a service principal "
                "cannot use 'My workspace'."
            )
            return WorkspaceAccessError(msg, status=status, code=code)
        if status == 404 and (
            code == "PowerBIEntityNotFound" and _WORKSPACE_MISSING.search(message)
        ):
            msg = (
                f"Workspace {self.workspace_id} was not found, or service principal "
                f"{self._client_id} has no access to it ({detail}). Check workspace_id (the "
                "group id in the workspace's URL) and add the principal to the workspace as "
                "Member or Admin."
            )
            return WorkspaceAccessError(msg, status=status, code=code)
        if status == 404 and dataset_id is not None:
            return self._not_found(dataset_id, table, detail)
        msg = f"Power BI refused {operation} on {what or table or 'the workspace'} ({detail})."
        if status == 404:
            msg += f" Check workspace_id {self.workspace_id} and api_url."
        return RequestRejectedError(msg, status=status, code=code)

    def _not_found(self, dataset_id: str, table: str | None, detail: str) -> PowerBIError:
        with self._lock:
            name = self._known_datasets.get(dataset_id)
        exists = True
        if table is not None:
            try:
                exists = any(str(d.get("id")) == dataset_id for d in self.list_datasets())
            except PowerBIError:
                exists = False
        if table is not None and exists:
            msg = (
                f"Table {table!r} is not in dataset {dataset_id} ({detail}). Power BI cannot add "
                "tables to an existing push dataset: rebuild the dataset, or load this stream "
                "into another dataset_name."
            )
            return TableNotFoundError(msg, dataset_id=dataset_id, table=table)
        with self._lock:
            self._known_datasets.pop(dataset_id, None)
        self.limiter.dataset_gone(dataset_id)
        label = f"{name!r} ({dataset_id})" if name else dataset_id
        msg = (
            f"Dataset {label} is gone from workspace {self.workspace_id}: it was deleted "
            f"outside the target ({detail}). Run the target again to recreate it from the "
            "local store; reports bound to the old dataset must be rebound."
        )
        return DatasetNotFoundError(msg, dataset_id=dataset_id)

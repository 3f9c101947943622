"""PowerBIClient against the Power BI sandbox over loopback TLS: limits, retries, errors, audit."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox.powerbi import PowerBISandbox
from target_powerbi.client import PowerBIClient
from target_powerbi.errors import (
    AuthenticationError,
    DatasetNotFoundError,
    PowerBIError,
    PushDatasetsRetiredError,
    ServicePrincipalsDisabledError,
    ServiceUnavailableError,
    TableNotFoundError,
    TokenServiceError,
    WorkspaceAccessError,
)
from target_powerbi.settings import Settings

from tests.target.scaled import scaled_client

LOG = logging.getLogger("test-client")

DATASET = {
    "name": "Sales",
    "defaultMode": "Push",
    "tables": [
        {
            "name": "Invoices",
            "columns": [
                {"name": "InvoiceID", "dataType": "String"},
                {"name": "Total", "dataType": "Double"},
                {"name": "Date", "dataType": "DateTime"},
            ],
        },
        {"name": "Contacts", "columns": [{"name": "ContactID", "dataType": "String"}]},
    ],
}


def invoice_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"InvoiceID": f"INV-{i:07d}", "Total": i * 1.5, "Date": "2024-03-01T10:00:00Z"}
        for i in range(start, start + n)
    ]


# ---------------------------------------------------------------- sandboxes
@pytest.fixture(scope="module")
def real_sandbox() -> Iterator[PowerBISandbox]:
    """Real time: MSAL caches its 60-minute tokens."""
    with PowerBISandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def minute_sandbox() -> Iterator[PowerBISandbox]:
    """A minute lasts one real second."""
    with PowerBISandbox(time_scale=60.0) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def hour_sandbox() -> Iterator[PowerBISandbox]:
    """An hour lasts one real second."""
    with PowerBISandbox(time_scale=3600.0) as sandbox:
        yield sandbox


def control(
    sandbox: PowerBISandbox, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    url = f"{sandbox.url}/_sandbox/{path}"
    if body is None and path in {"stats", "datasets"}:
        response = requests.get(url, verify=sandbox.ca_bundle, timeout=10)
    else:
        response = requests.post(url, json=body or {}, verify=sandbox.ca_bundle, timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def row_count(sandbox: PowerBISandbox, dataset_id: str, table: str) -> int:
    response = requests.get(
        f"{sandbox.url}/_sandbox/datasets/{dataset_id}/tables/{table}/rows?limit=1",
        verify=sandbox.ca_bundle,
        timeout=10,
    )
    response.raise_for_status()
    return int(response.json()["rowCount"])


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Any]:
    clients: list[PowerBIClient] = []

    def make(sandbox: PowerBISandbox, **overrides: Any) -> PowerBIClient:
        if not clients:
            control(sandbox, "reset")
        time_scale = overrides.pop("time_scale", sandbox.clock.time_scale)
        config = {
            **sandbox.config,
            "dataset_name": "Sales",
            "audit_log_path": str(tmp_path / "audit.jsonl"),
            **overrides,
        }
        client = scaled_client(config, LOG, time_scale)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- lifecycle and audit
def test_dataset_lifecycle_splits_posts_and_audits_every_write(
    real_sandbox: PowerBISandbox, make_client: Any, tmp_path: Path
) -> None:
    client = make_client(real_sandbox, parallelism=1)  # one POST after the other
    assert client.find_dataset("Sales") is None
    created = client.create_dataset(DATASET, retention_policy="basicFIFO")
    assert created["name"] == "Sales"
    assert created["defaultRetentionPolicy"] == "basicFIFO"
    dataset_id = created["id"]
    found = client.find_dataset("Sales")
    assert found is not None
    assert found["id"] == dataset_id
    assert [t["name"] for t in client.list_tables(dataset_id)] == ["Invoices", "Contacts"]

    wider = {
        "name": "Contacts",
        "columns": [
            {"name": "ContactID", "dataType": "String"},
            {"name": "Name", "dataType": "String"},
        ],
    }
    client.put_table(dataset_id, wider)
    tables = {t["name"]: t for t in client.list_tables(dataset_id)}
    assert [c["name"] for c in tables["Contacts"]["columns"]] == ["ContactID", "Name"]

    client.post_rows_many(dataset_id, [("Invoices", invoice_rows(10_001), 0)])
    assert row_count(real_sandbox, dataset_id, "Invoices") == 10_001
    stats = control(real_sandbox, "stats")
    assert stats["rows_per_post"] == [10_000, 1]
    assert stats["throttled"] == 0

    client.delete_rows(dataset_id, "Invoices")
    assert row_count(real_sandbox, dataset_id, "Invoices") == 0
    client.delete_dataset(dataset_id)
    assert client.find_dataset("Sales") is None
    client.delete_dataset(dataset_id)  # already gone: not an error

    lines = audit_lines(tmp_path)
    assert [(e["operation"], e["table"], e["rows"], e["status"]) for e in lines] == [
        ("create_dataset", None, 0, 201),
        ("put_table", "Contacts", 0, 200),
        ("post_rows", "Invoices", 10_000, 200),
        ("post_rows", "Invoices", 1, 200),
        ("delete_rows", "Invoices", 0, 200),
        ("delete_dataset", None, 0, 200),
        ("delete_dataset", None, 0, 404),
    ]
    for entry in lines:
        assert set(entry) >= {"time", "table", "operation", "rows", "status", "attempt", "error"}
        assert entry["attempt"] == 1
    assert lines[-1]["error"].startswith("ItemNotFound")


def test_requests_ca_bundle_in_the_environment_does_not_override_ca_bundle(
    real_sandbox: PowerBISandbox, make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the public bundle alone does not trust the sandbox: if it won, TLS would fail
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.utils.DEFAULT_CA_BUNDLE_PATH)
    client = make_client(real_sandbox)
    assert client.list_datasets() == []


def test_tls_is_verified_without_the_sandbox_ca(
    real_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(real_sandbox, ca_bundle=None, max_retries=0)
    with pytest.raises(TokenServiceError, match="ca_bundle"):
        client.list_datasets()


def test_a_missing_ca_bundle_is_explained(real_sandbox: PowerBISandbox, tmp_path: Path) -> None:
    config = {**real_sandbox.config, "ca_bundle": str(tmp_path / "missing.pem")}
    with pytest.raises(PowerBIError, match="cannot be read"):
        PowerBIClient(Settings.from_config({**config, "dataset_name": "Sales"}), LOG)


# ---------------------------------------------------------------- limits honoured
def test_posts_are_paced_below_120_a_minute_with_parallel_requests(
    minute_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(minute_sandbox, parallelism=5)
    dataset_id = client.create_dataset(DATASET)["id"]
    batches = [("Invoices", invoice_rows(1, start=i), 0) for i in range(100)]
    batches += [("Contacts", [{"ContactID": f"C{i}"}], 0) for i in range(35)]
    started = client.clock.now()
    client.post_rows_many(dataset_id, batches)
    elapsed = client.clock.now() - started
    stats = control(minute_sandbox, "stats")
    assert stats["throttled"] == 0
    assert stats["max_posts_in_a_minute"] <= 120
    assert stats["rows_posted"] == 135
    assert row_count(minute_sandbox, dataset_id, "Invoices") == 100
    assert row_count(minute_sandbox, dataset_id, "Contacts") == 35
    # 135 POSTs cannot fit in one minute (one real second here)
    assert elapsed > 60


def test_hourly_rule_for_a_table_of_250000_rows(
    hour_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(hour_sandbox, parallelism=3)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(hour_sandbox, f"datasets/{dataset_id}/tables/Invoices/seed", {"count": 250_000})
    batches = [("Invoices", invoice_rows(1, start=i), 250_000) for i in range(121)]
    started = client.clock.now()
    client.post_rows_many(dataset_id, batches)
    elapsed = client.clock.now() - started
    stats = control(hour_sandbox, "stats")
    assert stats["throttled"] == 0
    assert row_count(hour_sandbox, dataset_id, "Invoices") == 250_121
    # 121 POSTs cannot fit in one hour (one real second here)
    assert elapsed > 3600


def test_hourly_row_cap_waits_for_retry_after_and_says_how_long(
    hour_sandbox: PowerBISandbox,
    make_client: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(hour_sandbox)
    dataset_id = client.create_dataset(DATASET)["id"]
    # another writer added 995,000 rows this hour: only the service knows
    control(
        hour_sandbox,
        f"datasets/{dataset_id}/tables/Invoices/seed",
        {"count": 995_000, "in_time_window": True},
    )
    caplog.set_level(logging.INFO, logger="test-client")
    client.post_rows_many(dataset_id, [("Invoices", invoice_rows(10_000), 995_000)])
    assert row_count(hour_sandbox, dataset_id, "Invoices") == 1_005_000
    statuses = [(e["status"], e["attempt"]) for e in audit_lines(tmp_path)[1:]]
    assert statuses == [(429, 1), (200, 2)]
    waits = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert waits
    assert "Maximum number of rows exceeded in time window" in waits[0]
    assert "waiting 1.0s as its Retry-After asks" in waits[0]


# ---------------------------------------------------------------- retries
def test_5xx_is_retried_with_backoff_and_the_table_marked_uncertain(
    minute_sandbox: PowerBISandbox, make_client: Any, tmp_path: Path
) -> None:
    client = make_client(minute_sandbox)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(
        minute_sandbox,
        "faults",
        {"fail_next": 2, "fail_next_status": 503, "operations": ["PostRowsInGroup"]},
    )
    client.post_rows_many(dataset_id, [("Invoices", invoice_rows(10), 0)])
    assert row_count(minute_sandbox, dataset_id, "Invoices") == 10
    posts = [(e["status"], e["attempt"]) for e in audit_lines(tmp_path) if e["rows"]]
    assert posts == [(503, 1), (503, 2), (200, 3)]
    assert client.uncertain_tables() == {(dataset_id, "Invoices")}
    client.delete_rows(dataset_id, "Invoices")
    assert client.uncertain_tables() == set()


def test_retries_are_bounded(minute_sandbox: PowerBISandbox, make_client: Any) -> None:
    client = make_client(minute_sandbox, max_retries=2)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(minute_sandbox, "faults", {"fail_next": 10, "operations": ["PostRowsInGroup"]})
    with pytest.raises(ServiceUnavailableError, match="after 3 attempts") as caught:
        client.post_rows_many(dataset_id, [("Invoices", invoice_rows(3), 0)])
    assert "run the target again" in str(caught.value)
    requests_made = control(minute_sandbox, "stats")["requests"]["PostRowsInGroup"]
    assert requests_made == {"503": 3}


class DroppingProxy:
    """TCP proxy to the sandbox that cuts the first connection mid-upload."""

    def __init__(self, upstream_port: int, cut_after: int = 20_000) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            cut = self.connections == 1
            threading.Thread(target=self._pump, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, cut: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                sent += len(data)
                if cut and sent > self.cut_after:
                    self.cuts += 1
                    for sock in (source, target):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_a_dropped_connection_is_retried(
    minute_sandbox: PowerBISandbox, make_client: Any, tmp_path: Path
) -> None:
    dataset_id = make_client(minute_sandbox).create_dataset(DATASET)["id"]
    port = int(minute_sandbox.url.rsplit(":", 1)[1])
    proxy = DroppingProxy(port)
    try:
        api_url = f"https://127.0.0.1:{proxy.port}/v1.0/myorg"
        client = make_client(minute_sandbox, api_url=api_url)
        client.post_rows_many(dataset_id, [("Invoices", invoice_rows(2_000), 0)])
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert row_count(minute_sandbox, dataset_id, "Invoices") == 2_000
    posts = [e for e in audit_lines(tmp_path) if e["operation"] == "post_rows"]
    assert [e["attempt"] for e in posts] == [1, 2]
    assert posts[0]["status"] in {"ConnectionError", "SSLError"}
    assert posts[1]["status"] == 200


def test_a_timeout_is_retried_and_marks_the_table_uncertain(
    real_sandbox: PowerBISandbox, make_client: Any, tmp_path: Path
) -> None:
    # real-time tokens stay in MSAL's cache; the client's fast clock shortens the backoff
    client = make_client(real_sandbox, request_timeout=0.15, time_scale=60.0)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(real_sandbox, "faults", {"latency_ms": 400, "operations": ["PostRowsInGroup"]})

    def heal_after_first_timeout() -> None:
        deadline = time.monotonic() + 10
        audit = tmp_path / "audit.jsonl"
        while time.monotonic() < deadline:
            if audit.exists() and "ReadTimeout" in audit.read_text():
                break
            time.sleep(0.02)
        control(real_sandbox, "faults", {"clear": True})

    healer = threading.Thread(target=heal_after_first_timeout)
    healer.start()
    try:
        client.post_rows_many(dataset_id, [("Invoices", invoice_rows(5), 0)])
    finally:
        healer.join()
    posts = [e for e in audit_lines(tmp_path) if e["operation"] == "post_rows"]
    assert posts[0]["status"] == "ReadTimeout"
    assert posts[-1]["status"] == 200
    assert client.uncertain_tables() == {(dataset_id, "Invoices")}
    assert row_count(real_sandbox, dataset_id, "Invoices") >= 5


def test_a_create_that_failed_but_landed_is_not_made_twice(
    real_sandbox: PowerBISandbox,
    make_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(real_sandbox, time_scale=60.0)
    witness = make_client(real_sandbox)
    control(
        real_sandbox,
        "faults",
        {"fail_next": 1, "fail_next_status": 500, "operations": ["PostDatasetInGroup"]},
    )
    pause = client._pause

    def landed_meanwhile(*args: Any) -> None:
        # as if the service had stored the first attempt before failing its answer
        pause(*args)
        witness.create_dataset(DATASET)

    monkeypatch.setattr(client, "_pause", landed_meanwhile)
    created = client.create_dataset(DATASET)
    assert [d["id"] for d in client.list_datasets()] == [created["id"]]
    creates = [e["status"] for e in audit_lines(tmp_path) if e["operation"] == "create_dataset"]
    assert creates == [500, 201]  # the client's failed attempt, the witness's create


def test_a_create_that_failed_without_landing_is_retried(
    real_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(real_sandbox, time_scale=60.0)
    control(real_sandbox, "faults", {"fail_next": 1, "operations": ["PostDatasetInGroup"]})
    created = client.create_dataset(DATASET)
    assert [d["id"] for d in client.list_datasets()] == [created["id"]]


# ---------------------------------------------------------------- tokens
def test_tokens_come_from_msal_cache_and_a_401_gets_one_new_token(
    real_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(real_sandbox)
    client.list_datasets()
    client.list_datasets()
    assert control(real_sandbox, "stats")["requests"]["Token"] == {"200": 1}
    real_sandbox.advance(2 * 3600)  # the cached token expires on the service's side
    assert client.list_datasets() == []
    stats = control(real_sandbox, "stats")["requests"]
    assert stats["GetDatasetsInGroup"] == {"200": 3, "401": 1}
    assert stats["Token"] == {"200": 2}


def test_tenant_setting_off_is_retried_once_then_explained(
    real_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(real_sandbox)
    control(real_sandbox, "faults", {"service_principals_disabled": True})
    with pytest.raises(ServicePrincipalsDisabledError) as caught:
        client.list_datasets()
    message = str(caught.value)
    assert "Service principals can use Fabric APIs" in message
    assert "Tenant settings" in message
    assert control(real_sandbox, "stats")["requests"]["GetDatasetsInGroup"] == {"401": 2}


def test_token_service_outage_is_bounded(real_sandbox: PowerBISandbox, make_client: Any) -> None:
    client = make_client(real_sandbox, max_retries=1)
    control(real_sandbox, "faults", {"token_outage": True})
    with pytest.raises(TokenServiceError, match="after 2 attempts"):
        client.list_datasets()


# ---------------------------------------------------------------- actionable errors
def test_principal_without_workspace_access(real_sandbox: PowerBISandbox, make_client: Any) -> None:
    outsider = real_sandbox.outsider()
    client = make_client(real_sandbox, **outsider)
    with pytest.raises(WorkspaceAccessError) as caught:
        client.list_datasets()
    message = str(caught.value)
    assert outsider["client_id"] in message
    assert "Member or Admin" in message
    assert caught.value.status == 403


def test_unknown_workspace(real_sandbox: PowerBISandbox, make_client: Any) -> None:
    client = make_client(real_sandbox, workspace_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(WorkspaceAccessError, match="Check workspace_id"):
        client.list_datasets()


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ({"client_secret": "not-the-secret-value"}, "AADSTS7000215"),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, "client_id"),
        ({"tenant_id": "99999999-2222-3333-4444-555555555555"}, "does not know tenant"),
    ],
)
def test_bad_credentials(
    real_sandbox: PowerBISandbox, make_client: Any, override: dict[str, str], hint: str
) -> None:
    client = make_client(real_sandbox, **override)
    with pytest.raises(AuthenticationError, match=hint) as caught:
        client.list_datasets()
    assert "not-the-secret-value" not in str(caught.value)
    assert real_sandbox.config["client_secret"] not in str(caught.value)


def test_dataset_deleted_behind_the_targets_back(
    real_sandbox: PowerBISandbox, make_client: Any
) -> None:
    client = make_client(real_sandbox)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(real_sandbox, "faults", {"delete_dataset": dataset_id})
    with pytest.raises(DatasetNotFoundError) as caught:
        client.post_rows_many(dataset_id, [("Invoices", invoice_rows(1), 0)])
    assert caught.value.dataset_id == dataset_id
    assert "'Sales'" in str(caught.value)
    assert "deleted outside the target" in str(caught.value)
    with pytest.raises(DatasetNotFoundError):
        client.list_tables(dataset_id)


def test_table_missing_from_the_dataset(real_sandbox: PowerBISandbox, make_client: Any) -> None:
    client = make_client(real_sandbox)
    dataset_id = client.create_dataset(DATASET)["id"]
    table = {"name": "Payments", "columns": [{"name": "PaymentID", "dataType": "String"}]}
    with pytest.raises(TableNotFoundError, match="cannot add tables"):
        client.put_table(dataset_id, table)


def test_push_dataset_creation_retired(real_sandbox: PowerBISandbox, make_client: Any) -> None:
    client = make_client(real_sandbox)
    control(real_sandbox, "faults", {"push_dataset_creation_retired": True})
    with pytest.raises(PushDatasetsRetiredError) as caught:
        client.create_dataset(DATASET)
    message = str(caught.value)
    assert "existing push dataset" in message or "already exists" in message
    assert "Real-Time Intelligence" in message


# ---------------------------------------------------------------- secrets
def test_no_secret_or_token_is_logged_or_audited(
    real_sandbox: PowerBISandbox,
    make_client: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = real_sandbox.config["client_secret"]
    client = make_client(real_sandbox)
    dataset_id = client.create_dataset(DATASET)["id"]
    control(real_sandbox, "faults", {"fail_next": 1, "operations": ["PostRowsInGroup"]})
    client.post_rows_many(dataset_id, [("Invoices", invoice_rows(3), 0)])
    token = client.auth.token()
    errors: list[str] = []
    for config in ({"client_secret": secret + "x"}, {"workspace_id": "nope"}):
        try:
            make_client(real_sandbox, max_retries=0, **config).list_datasets()
        except PowerBIError as exc:
            errors.append(str(exc))
    assert len(errors) == 2
    everything = "\n".join([caplog.text, *errors, (tmp_path / "audit.jsonl").read_text()])
    assert secret not in everything
    assert token not in everything


# ---------------------------------------------------------------- configuration
def default_audit_path(config: dict[str, str]) -> Path:
    base = {"tenant_id": "t", "client_id": "c", "client_secret": "s", "workspace_id": "w"}
    return Settings.from_config({"dataset_name": "Sales", **base, **config}).audit_log_path


def test_audit_log_goes_beside_the_store_unless_set(tmp_path: Path) -> None:
    assert default_audit_path({"audit_log_path": str(tmp_path / "a.jsonl")}) == tmp_path / "a.jsonl"
    store = tmp_path / "Sales.sqlite3"
    assert default_audit_path({"store_path": str(store)}) == tmp_path / "Sales.audit.jsonl"
    assert default_audit_path({"dataset_name": "Sales"}) == Path(
        ".target-powerbi/Sales.audit.jsonl"
    )


@pytest.mark.parametrize(("setting", "expected"), [(None, 2), (0, 1), (3, 3), (9, 5)])
def test_parallelism_is_kept_within_power_bis_pending_limit(
    tmp_path: Path, setting: int | None, expected: int
) -> None:
    config = {
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
        "workspace_id": "w",
        "dataset_name": "Sales",
        "audit_log_path": str(tmp_path / "audit.jsonl"),
        "parallelism": setting,
    }
    with PowerBIClient(Settings.from_config(config), LOG) as client:
        assert client.parallelism == expected

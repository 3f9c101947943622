"""The target's settings: the JSON Schema (the one place defaults are written) and the
typed, frozen `Settings` every other module reads instead of the raw config dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th

from target_powerbi.limits import MAX_PENDING, MAX_ROWS_PER_POST

POWERBI_API_URL = "https://api.powerbi.com/v1.0/myorg"
ENTRA_AUTHORITY_URL = "https://login.microsoftonline.com"
POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"
DEFAULT_STORE_FOLDER = ".target-powerbi"
ONELAKE_URL = "https://onelake.dfs.fabric.microsoft.com"
FABRIC_API_URL = "https://api.fabric.microsoft.com/v1"

SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "tenant_id",
        th.StringType,
        required=True,
        title="Tenant ID",
        description="Microsoft Entra tenant (directory) id of the service principal.",
    ),
    th.Property(
        "client_id",
        th.StringType,
        required=True,
        title="Client ID",
        description="Application (client) id of the service principal.",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        required=True,
        secret=True,
        title="Client secret",
        description="Client secret of the service principal.",
    ),
    th.Property(
        "workspace_id",
        th.StringType,
        required=True,
        title="Workspace ID",
        description="Power BI workspace (group) id; the principal must be a Member.",
    ),
    th.Property(
        "dataset_name",
        th.StringType,
        required=True,
        title="Dataset name",
        description="Push dataset to find by name or create.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=POWERBI_API_URL,
        title="API URL",
        description="Power BI REST base URL (sovereign clouds, the sandbox).",
    ),
    th.Property(
        "authority_url",
        th.StringType,
        default=ENTRA_AUTHORITY_URL,
        title="Authority URL",
        description="Entra ID authority host; the tenant id is appended.",
    ),
    th.Property(
        "scope",
        th.StringType,
        default=POWERBI_SCOPE,
        title="Scope",
        description="OAuth scope of the Power BI API.",
    ),
    th.Property(
        "ca_bundle",
        th.StringType,
        title="CA bundle",
        description="PEM file of extra certificate authorities to trust (the sandbox's).",
    ),
    th.Property(
        "load_method",
        th.StringType,
        default="upsert",
        allowed_values=["upsert", "append-only", "overwrite"],
        title="Load method",
        description=(
            "upsert: keep each table equal to the source's current rows by key; "
            "append-only: append rows, never the same row twice; "
            "overwrite: empty each table once per run, then load."
        ),
    ),
    th.Property(
        "retention_policy",
        th.StringType,
        default="None",
        allowed_values=["None", "basicFIFO"],
        title="Retention policy",
        description=(
            "defaultRetentionPolicy of a dataset the target creates: None (5,000,000 rows "
            "a table) or basicFIFO (200,000 rows, oldest dropped)."
        ),
    ),
    th.Property(
        "store_path",
        th.StringType,
        title="Store path",
        description=(
            "SQLite file mirroring every table's current rows. Keep it on durable storage. "
            "Default: .target-powerbi/<dataset_name>.sqlite3 in the working directory."
        ),
    ),
    th.Property(
        "batch_size",
        th.IntegerType(minimum=1, maximum=MAX_ROWS_PER_POST),
        default=MAX_ROWS_PER_POST,
        title="Batch size",
        description="Rows per POST to Power BI (1-10,000) and records per batch to the store.",
    ),
    th.Property(
        "parallelism",
        th.IntegerType(minimum=1, maximum=MAX_PENDING),
        default=2,
        title="Parallelism",
        description="POST rows requests in flight at once (1-5, Power BI's pending limit).",
    ),
    th.Property(
        "model_file",
        th.StringType,
        title="Model file",
        description="YAML file of relationships, DAX measures and column types.",
    ),
    th.Property(
        "report_file",
        th.StringType,
        title="Report file",
        description=(
            "YAML description of a report (pages, visuals, measures) to deploy bound to the "
            "dataset through the Fabric REST API; a failure to deploy is a warning."
        ),
    ),
    th.Property(
        "object_depth",
        th.IntegerType(minimum=0, maximum=10),
        default=1,
        title="Object depth",
        description=(
            "Levels of nested objects flattened into parent__child columns; deeper objects "
            "become JSON text."
        ),
    ),
    th.Property(
        "child_table_depth",
        th.IntegerType(minimum=0, maximum=10),
        default=1,
        title="Child table depth",
        description=(
            "Levels of arrays of objects that become child tables keyed to their parent "
            "(0: none); deeper arrays become JSON text."
        ),
    ),
    th.Property(
        "child_tables",
        th.ArrayType(th.StringType),
        title="Child tables",
        description=(
            "Only these arrays become child tables, as <stream>.<field> (e.g. "
            "Invoices.LineItems); every other array becomes JSON text."
        ),
    ),
    th.Property(
        "on_new_tables",
        th.StringType,
        default="rebuild",
        allowed_values=["rebuild", "fail"],
        title="On new tables",
        description=(
            "When the run brings tables the dataset lacks (Power BI cannot add tables to a "
            "push dataset): rebuild (create a new dataset from the local store, rebind the "
            "workspace's reports and copy its dashboard tiles to it, delete the old one) or "
            "fail (stop, changing nothing)."
        ),
    ),
    th.Property(
        "on_invalid_value",
        th.StringType,
        default="warn",
        allowed_values=["warn", "fail"],
        title="On invalid value",
        description=(
            "A value Power BI cannot hold (string over 4,000 characters or not valid Unicode, "
            "Int64 out of range, NaN, a number past a Double's precision, a date-time outside "
            "UTC years 1-9999): warn (replace it, and log stream, record and column) or fail "
            "(stop before storing)."
        ),
    ),
    th.Property(
        "replace_partitions",
        th.ObjectType(additional_properties=th.ArrayType(th.StringType)),
        title="Replace partitions",
        description=(
            "Stream -> columns of a partition (e.g. invoice_line_items: [tenant_id, "
            "InvoiceID]): the rows a run brings for one partition value replace every stored "
            "row of that value, so rows that vanished from the source leave Power BI."
        ),
    ),
    th.Property(
        "audit_log_path",
        th.StringType,
        title="Audit log path",
        description=(
            "JSON-lines file recording every call that changes Power BI. Default: beside "
            "the store, <store>.audit.jsonl."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=5,
        title="Max retries",
        description="Retries of a failed request (5xx, timeout, lost connection) before the "
        "run stops.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=120,
        title="Request timeout",
        description="Seconds to wait for one Power BI response.",
    ),
    th.Property(
        "destination",
        th.StringType,
        default="push",
        allowed_values=["push", "fabric"],
        title="Destination",
        description=(
            "push: a Power BI push dataset (whole tables reloaded on changes); fabric: "
            "Parquet files in an open mirrored database in OneLake (only changed rows, "
            "updates and deletes in place; needs a Fabric capacity)."
        ),
    ),
    th.Property(
        "onelake_url",
        th.StringType,
        default=ONELAKE_URL,
        title="OneLake URL",
        description="OneLake's Data Lake Storage endpoint (destination fabric).",
    ),
    th.Property(
        "fabric_api_url",
        th.StringType,
        default=FABRIC_API_URL,
        title="Fabric API URL",
        description="Fabric REST base URL (destination fabric).",
    ),
    th.Property(
        "rows_per_file",
        th.IntegerType(minimum=1),
        default=100_000,
        title="Rows per file",
        description="Most rows in one Parquet file landed in OneLake (destination fabric).",
    ),
    th.Property(
        "semantic_model",
        th.BooleanType,
        default=True,
        title="Semantic model",
        description=(
            "Destination fabric: deploy the model file's relationships and measures as a "
            "Direct Lake semantic model (named dataset_name) over the mirrored tables, "
            "updated when the model or the tables change; a failure to deploy is a warning."
        ),
    ),
).to_dict()


class SettingsError(ValueError):
    """A setting the target cannot use; the message names it and the fix."""


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _check_endpoint(name: str, url: str) -> None:
    """https, or http only to this machine (a local emulator): tokens never travel in clear."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and (host in _LOOPBACK or host.startswith("127.")):
        return
    msg = (
        f"Setting {name} is {url!r}: it must be an https:// URL (http:// only to this "
        "machine, 127.0.0.1 or localhost); fix it in the target's config."
    )
    raise SettingsError(msg)


def _check_partitions(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols)
        for cols in value.values()
    ):
        msg = (
            "Setting replace_partitions must map each stream to a non-empty list of column "
            'names, e.g. {"invoice_line_items": ["tenant_id", "InvoiceID"]}.'
        )
        raise SettingsError(msg)


def defaults() -> dict[str, Any]:
    """Every default of the settings schema."""
    return {
        name: spec["default"] for name, spec in SCHEMA["properties"].items() if "default" in spec
    }


@dataclass(frozen=True)
class Settings:
    """The parsed settings; built once from the config and handed to every part."""

    tenant_id: str
    client_id: str
    client_secret: str
    workspace_id: str
    dataset_name: str
    api_url: str
    authority_url: str
    scope: str
    ca_bundle: str | None
    load_method: str
    retention_policy: str
    store_path: Path
    batch_size: int
    parallelism: int
    model_file: str | None
    report_file: str | None
    object_depth: int
    child_table_depth: int
    child_tables: frozenset[str] | None
    on_new_tables: str
    on_invalid_value: str
    audit_log_path: Path
    max_retries: int
    request_timeout: float
    destination: str
    onelake_url: str
    fabric_api_url: str
    rows_per_file: int
    semantic_model: bool
    replace_partitions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    batch_size_rows: int | None = None  # the Singer SDK's own setting, when given

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse a config (the SDK's, or a plain dict: the schema's defaults fill gaps).

        Raises `SettingsError` (one line naming the setting and the fix) for what the
        JSON Schema cannot say.
        """
        given = {k: v for k, v in config.items() if v is not None}
        c = {**defaults(), **given}
        for name in ("api_url", "authority_url"):
            _check_endpoint(name, str(c[name]))
        _check_partitions(c.get("replace_partitions"))
        store = Path(
            str(c.get("store_path") or Path(DEFAULT_STORE_FOLDER) / f"{c['dataset_name']}.sqlite3")
        )
        audit = c.get("audit_log_path")
        allow = c.get("child_tables")
        rows = c.get("batch_size_rows")
        return cls(
            tenant_id=str(c["tenant_id"]),
            client_id=str(c["client_id"]),
            client_secret=str(c["client_secret"]),
            workspace_id=str(c["workspace_id"]),
            dataset_name=str(c["dataset_name"]),
            api_url=str(c["api_url"]).rstrip("/"),
            authority_url=str(c["authority_url"]),
            scope=str(c["scope"]),
            ca_bundle=str(c["ca_bundle"]) if c.get("ca_bundle") else None,
            load_method=str(c["load_method"]),
            retention_policy=str(c["retention_policy"]),
            store_path=store,
            batch_size=int(c["batch_size"]),
            parallelism=int(c["parallelism"]),
            model_file=str(c["model_file"]) if c.get("model_file") else None,
            report_file=str(c["report_file"]) if c.get("report_file") else None,
            object_depth=int(c["object_depth"]),
            child_table_depth=int(c["child_table_depth"]),
            child_tables=frozenset(allow) if allow is not None else None,
            on_new_tables=str(c["on_new_tables"]),
            on_invalid_value=str(c["on_invalid_value"]),
            audit_log_path=Path(str(audit)) if audit else store.with_suffix(".audit.jsonl"),
            max_retries=int(c["max_retries"]),
            request_timeout=float(c["request_timeout"]),
            replace_partitions={
                str(s): tuple(str(c) for c in cols)
                for s, cols in (c.get("replace_partitions") or {}).items()
            },
            batch_size_rows=int(rows) if rows else None,
            destination=str(c["destination"]),
            onelake_url=str(c["onelake_url"]).rstrip("/"),
            fabric_api_url=str(c["fabric_api_url"]).rstrip("/"),
            rows_per_file=int(c["rows_per_file"]),
            semantic_model=bool(c["semantic_model"]),
        )

"""The target's settings: the JSON Schema (the one place defaults are written) and the
typed, frozen `Settings` every other module reads instead of the raw config dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from singer_sdk import typing as th

from target_powerbi.limits import MAX_PENDING, MAX_ROWS_PER_POST

POWERBI_API_URL = "https://api.powerbi.com/v1.0/myorg"
ENTRA_AUTHORITY_URL = "https://login.microsoftonline.com"
POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"
DEFAULT_STORE_FOLDER = ".target-powerbi"

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
        "rebuild_dataset_on_new_tables",
        th.BooleanType,
        default=False,
        title="Rebuild dataset on new tables",
        description=(
            "When the run carries tables the existing dataset lacks, delete and recreate "
            "the dataset from the local store (reports must then be rebound) instead of "
            "stopping with an error."
        ),
    ),
    th.Property(
        "on_invalid_value",
        th.StringType,
        default="warn",
        allowed_values=["warn", "fail"],
        title="On invalid value",
        description=(
            "A value Power BI cannot hold (string over 4,000 characters, Int64 out of range, "
            "NaN): warn (truncate or send null, and log stream, record and column) or fail."
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
).to_dict()


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
    rebuild_dataset_on_new_tables: bool
    on_invalid_value: str
    audit_log_path: Path
    max_retries: int
    request_timeout: float
    batch_size_rows: int | None = None  # the Singer SDK's own setting, when given

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse a config (the SDK's, or a plain dict: the schema's defaults fill gaps)."""
        given = {k: v for k, v in config.items() if v is not None}
        c = {**defaults(), **given}
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
            rebuild_dataset_on_new_tables=bool(c["rebuild_dataset_on_new_tables"]),
            on_invalid_value=str(c["on_invalid_value"]),
            audit_log_path=Path(str(audit)) if audit else store.with_suffix(".audit.jsonl"),
            max_retries=int(c["max_retries"]),
            request_timeout=float(c["request_timeout"]),
            batch_size_rows=int(rows) if rows else None,
        )

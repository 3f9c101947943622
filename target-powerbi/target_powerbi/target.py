"""target-powerbi: the Target class and its settings."""

from __future__ import annotations

from singer_sdk import typing as th
from singer_sdk.target_base import Target

from target_powerbi.sinks import PowerBISink

POWERBI_API_URL = "https://api.powerbi.com/v1.0/myorg"
ENTRA_AUTHORITY_URL = "https://login.microsoftonline.com"
POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"


class TargetPowerBI(Target):
    """Loads Singer streams into a Power BI push dataset."""

    name = "target-powerbi"
    default_sink_class = PowerBISink

    config_jsonschema = th.PropertiesList(
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
    ).to_dict()


if __name__ == "__main__":
    TargetPowerBI.cli()

"""tap-xero: the Tap class and its settings."""

from __future__ import annotations

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from typing_extensions import override

XERO_API_URL = "https://api.xero.com/api.xro/2.0"
XERO_IDENTITY_URL = "https://identity.xero.com"
XERO_CONNECTIONS_URL = "https://api.xero.com/connections"


class TapXero(Tap):
    """Streams every Xero Accounting entity for one or many organisations."""

    name = "tap-xero"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.StringType,
            required=True,
            title="Client ID",
            description="Client id of the Xero app (OAuth 2.0 app or custom connection).",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            required=True,
            secret=True,
            title="Client secret",
            description="Client secret of the Xero app.",
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            title="Refresh token",
            description=(
                "Seed refresh token of an OAuth 2.0 app (from `tap-xero auth login`). "
                "Leave empty for a custom connection (client credentials)."
            ),
        ),
        th.Property(
            "token_store_path",
            th.StringType,
            default=".secrets/xero-tokens.json",
            title="Token store path",
            description=(
                "File where the rotated refresh token is persisted (atomically, mode 0600) "
                "before it is used. Keep it on durable storage."
            ),
        ),
        th.Property(
            "tenant_ids",
            th.ArrayType(th.StringType),
            title="Tenant IDs",
            description="Organisations to read. Default: every organisation the token grants.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="Earliest UpdatedDateUTC to read on the first run.",
        ),
        th.Property(
            "page_size",
            th.IntegerType,
            default=1000,
            title="Page size",
            description="Records per page where Xero pages (1-1000). 1000 uses the fewest calls.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=XERO_API_URL,
            title="API URL",
            description="Base URL of the Accounting API (the sandbox's for local runs).",
        ),
        th.Property(
            "identity_url",
            th.StringType,
            default=XERO_IDENTITY_URL,
            title="Identity URL",
            description="Base URL of Xero's identity service (token endpoint).",
        ),
        th.Property(
            "connections_url",
            th.StringType,
            default=XERO_CONNECTIONS_URL,
            title="Connections URL",
            description="URL listing the organisations a token grants.",
        ),
        th.Property(
            "scope_style",
            th.StringType,
            default="granular",
            allowed_values=["granular", "broad"],
            title="Scope style",
            description=(
                "Read-only scopes `tap-xero auth login` asks for: 'granular' (required for "
                "apps created after March 2026) or 'broad' (older apps, until September 2027)."
            ),
        ),
        th.Property(
            "scopes",
            th.ArrayType(th.StringType),
            title="Scopes",
            description="Read-only scopes for `tap-xero auth login`; overrides scope_style.",
        ),
        th.Property(
            "redirect_uri",
            th.StringType,
            default="http://localhost:8765/callback",
            title="Redirect URI",
            description=(
                "Localhost redirect URI registered on the Xero app, where `tap-xero auth login` "
                "listens for the authorization code."
            ),
        ),
    ).to_dict()

    @override
    def discover_streams(self) -> list[Stream]:
        return []


if __name__ == "__main__":
    TapXero.cli()

"""tap-xero: the Tap class, which lists the streams (run resources: `tap_xero.base`)."""

from __future__ import annotations

from singer_sdk import Stream
from typing_extensions import override

from tap_xero.base import XeroTapBase
from tap_xero.streams import REPORT_STREAM_TYPES, STREAM_TYPES


class TapXero(XeroTapBase):
    """Streams every Xero Accounting entity for one or many organisations."""

    @override
    def discover_streams(self) -> list[Stream]:
        return [stream_type(self) for stream_type in [*STREAM_TYPES, *REPORT_STREAM_TYPES]]


if __name__ == "__main__":
    TapXero.cli()

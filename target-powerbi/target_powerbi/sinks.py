"""Sinks: one Power BI table per Singer stream."""

from __future__ import annotations

from typing import Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override


class PowerBISink(BatchSink):
    """Pushes a stream's records to its Power BI table."""

    max_size = 10_000

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        msg = "target-powerbi cannot load rows yet (issue 6 builds the sink)"
        raise NotImplementedError(msg)

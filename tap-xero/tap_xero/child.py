"""Rows nested in a parent's records (e.g. invoice line items), streamed with no API call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from tap_xero.client import TENANT_KEY, TENANT_PROPERTY, XeroStream
from tap_xero.schema import convert_msdates, derive

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_xero.base import XeroTapBase


class XeroChildStream(Stream):
    """The lines of one array property of a parent stream's records, a page at a time."""

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
    def __init__(self, tap: XeroTapBase) -> None:
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

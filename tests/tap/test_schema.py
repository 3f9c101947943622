"""Singer schemas derived from the generated API schemas, and Microsoft dates converted."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from singer_sdk.helpers._typing import is_date_or_datetime_type
from tap_xero.schema import convert_msdates, derive, load_api_schema, msdate_to_iso
from tap_xero.streams import ENDPOINT_STREAM_TYPES, REPORT_STREAM_TYPES, STREAM_TYPES, collections
from tap_xero.tap import TapXero

CONFIG = {"client_id": "x", "client_secret": "y", "refresh_token": "z"}


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("/Date(1573755038314+0000)/", "2019-11-14T18:10:38.314000+00:00"),
        ("/Date(1573755038314)/", "2019-11-14T18:10:38.314000+00:00"),
        ("/Date(1573755038314+1300)/", "2019-11-14T18:10:38.314000+00:00"),
        ("/Date(0)/", "1970-01-01T00:00:00+00:00"),
        ("/Date(-86400000)/", "1969-12-31T00:00:00+00:00"),
        ("2019-11-14", "2019-11-14"),
        (None, None),
    ],
)
def test_msdate_to_iso(raw, iso):
    assert msdate_to_iso(raw) == iso


def test_every_msdate_field_of_the_api_schema_becomes_date_time():
    api = load_api_schema("Invoices")
    marked = {
        k for k, v in api["properties"].items() if v.get("x-is-msdate") or v.get("x-is-msdate-time")
    }
    assert {"Date", "DueDate", "UpdatedDateUTC"} <= marked
    schema, plan = derive("Invoices")
    for key in marked:
        prop = schema["properties"][key]
        assert (prop["type"], prop["format"]) == (["string", "null"], "date-time")
        assert plan[key] is True
    assert "$ref" not in json.dumps(schema)
    assert "x-is-msdate" not in json.dumps(schema)


def test_nested_dates_are_converted_along_the_plan():
    _, plan = derive("Invoices")
    record = {
        "UpdatedDateUTC": "/Date(1573755038314+0000)/",
        "Reference": "/Date(1)/",  # not a date field: left alone
        "Payments": [{"Date": "/Date(1573689600000+0000)/", "Amount": 5}],
    }
    convert_msdates(record, plan)
    assert record["UpdatedDateUTC"] == "2019-11-14T18:10:38.314000+00:00"
    assert record["Payments"][0]["Date"] == "2019-11-14T00:00:00+00:00"
    assert record["Reference"] == "/Date(1)/"


def test_child_schema_is_the_parent_line_item():
    schema, _ = derive("Invoices", "LineItems")
    assert "LineItemID" in schema["properties"]
    assert "InvoiceID" not in schema["properties"]


def test_streams_have_tenant_in_every_key_and_date_time_replication_keys():
    tap = TapXero(config=CONFIG, validate_config=True)
    expected = {s.name for s in STREAM_TYPES}
    reports = {s.name for s in REPORT_STREAM_TYPES}
    assert len(expected) == len(STREAM_TYPES)  # one class per stream name
    assert set(tap.streams) == expected | reports
    for stream in (tap.streams[name] for name in expected):
        assert stream.primary_keys[0] == "tenant_id", stream.name
        assert set(stream.primary_keys) <= set(stream.schema["properties"]), stream.name
        key = stream.replication_key
        if key and key != "JournalNumber":
            assert is_date_or_datetime_type(stream.schema["properties"][key]), stream.name


def test_every_generated_schema_is_a_collection_of_a_stream():
    files = {p.stem for p in resources.files("tap_xero").joinpath("schemas", "api").iterdir()}
    assert files == set(collections())
    for stream in ENDPOINT_STREAM_TYPES:
        if stream.path != "/Organisation":  # Xero's one singular path
            assert stream.path == f"/{stream.collection}", stream.name

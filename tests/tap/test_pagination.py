"""Paging stops on the last page without an extra empty call."""

from __future__ import annotations

import json

import requests
from tap_xero.pagination import JournalOffsetPaginator, XeroPagePaginator


def response(body: dict) -> requests.Response:
    r = requests.Response()
    r.status_code = 200
    r._content = json.dumps(body).encode()
    return r


def test_page_paginator_follows_page_count():
    p = XeroPagePaginator("Invoices", 2)
    p.advance(response({"pagination": {"page": 1, "pageCount": 2}, "Invoices": [{}, {}]}))
    assert not p.finished
    assert p.current_value == 2
    p.advance(response({"pagination": {"page": 2, "pageCount": 2}, "Invoices": [{}, {}]}))
    assert p.finished  # exact multiple of the page size: no extra call


def test_page_paginator_without_pagination_stops_on_a_short_page():
    p = XeroPagePaginator("Quotes", 100)
    p.advance(response({"Quotes": [{}] * 100}))
    assert not p.finished
    p.advance(response({"Quotes": [{}] * 3}))
    assert p.finished


def test_journal_offset_is_the_last_journal_number():
    p = JournalOffsetPaginator(7)
    p.advance(response({"Journals": [{"JournalNumber": n} for n in range(8, 108)]}))
    assert p.current_value == 107
    p.advance(response({"Journals": [{"JournalNumber": 108}]}))
    assert p.finished

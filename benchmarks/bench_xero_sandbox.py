"""Benchmark: the Xero sandbox serves 1000-record pages far faster than Xero lets a client ask.

Starts the benchmark-size demo company (>= 100,000 invoices over two organisations), lifts the
sandbox's rate limits so that the server, not the limiter, is measured, and reads 1000-invoice
pages with a real token over loopback (the client's own JSON parsing is
left out). Xero allows 60 calls a minute per organisation, i.e. one
page a second; the ratio printed is pages served a second over that. Fails below 10x.

The pages are read uncompressed (`Accept-Encoding: identity`): the server's own speed. A second,
shorter series with gzip, as most clients ask, prints its pages a second and the bytes on the
wire, each as a ratio to the uncompressed series of the same run.
"""

from __future__ import annotations

import statistics
import time

import httpx
from sandbox.xero import XeroSandbox

PAGES = 60
GZIP_PAGES = 10
XERO_PAGES_PER_SECOND = 60 / 60  # 60 calls a minute per organisation


def test_bench_xero_sandbox_pages_per_second() -> None:
    started = time.perf_counter()
    with XeroSandbox(seed=1, size="benchmark", tenants=2) as sbx:
        startup = time.perf_counter() - started
        config = sbx.config
        with httpx.Client(timeout=60) as http:
            http.post(
                sbx.url + "/_sandbox/faults", json={"limits": {"minute": 10**9, "day": 10**9}}
            )
            token = http.post(
                config["identity_url"] + "/connect/token",
                auth=(config["client_id"], config["client_secret"]),
                data={"grant_type": "refresh_token", "refresh_token": config["refresh_token"]},
            ).json()["access_token"]
            tenant = config["tenant_ids"][0]
            headers = {
                "Authorization": f"Bearer {token}",
                "xero-tenant-id": tenant,
                "Accept": "application/json",
                "Accept-Encoding": "identity",
            }
            first = http.get(
                config["api_url"] + "/Invoices",
                params={"page": 1, "pageSize": 1000},
                headers=headers,
            )
            pagination = first.json()["pagination"]
            total = sum(
                http.get(
                    config["api_url"] + "/Invoices",
                    params={"page": 1, "pageSize": 1000},
                    headers={**headers, "xero-tenant-id": t},
                ).json()["pagination"]["itemCount"]
                for t in config["tenant_ids"]
            )
            assert total >= 100_000
            times = []
            begin = time.perf_counter()
            for n in range(PAGES):
                page = n % pagination["pageCount"] + 1
                t0 = time.perf_counter()
                response = http.get(
                    config["api_url"] + "/Invoices",
                    params={"page": page, "pageSize": 1000},
                    headers=headers,
                )
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200
                # one top-level InvoiceID per invoice; the client's JSON parsing is not timed
                assert response.content.count(b'"InvoiceID"') == 1000
            elapsed = time.perf_counter() - begin
            plain_bytes = len(response.content)
            begin = time.perf_counter()
            for n in range(GZIP_PAGES):
                packed = http.get(
                    config["api_url"] + "/Invoices",
                    params={"page": n % pagination["pageCount"] + 1, "pageSize": 1000},
                    headers={**headers, "Accept-Encoding": "gzip"},
                )
                assert packed.headers["content-encoding"] == "gzip"
            gzip_rate = GZIP_PAGES / (time.perf_counter() - begin)
            wire_bytes = packed.num_bytes_downloaded
    rate = PAGES / elapsed
    ratio = rate / XERO_PAGES_PER_SECOND
    print(
        f"\nxero sandbox: {total} invoices generated and served in {startup:.1f} s; "
        f"{rate:.1f} pages of 1000 invoices a second "
        f"(median {statistics.median(times) * 1000:.0f} ms), "
        f"{ratio:.0f}x what Xero's 60 calls a minute per organisation allow; with gzip "
        f"{gzip_rate / rate:.2f}x the pages a second and {wire_bytes / plain_bytes:.2f}x the "
        "bytes on the wire of uncompressed pages"
    )
    assert ratio >= 10

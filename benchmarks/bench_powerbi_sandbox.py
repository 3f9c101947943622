"""Benchmark: how fast the Power BI sandbox takes rows, so it never is the bottleneck of a test.

Pushes 120 POSTs of 10,000 six-column rows (1.2 million rows: the per-minute POST cap and, past
it, the hourly row cap) over loopback TLS with a real MSAL token, into a basicFIFO table, and
reports rows a second and the median POST time. Fails if a POST is refused before the caps or if
the sandbox takes fewer than 10,000 rows a second (a loaded 2-core machine does ~15,000).
"""

from __future__ import annotations

import statistics
import time

import msal
import requests
from sandbox.powerbi import PowerBISandbox

POSTS = 120
ROWS = 10_000
SCOPE = "https://analysis.windows.net/powerbi/api/.default"


class PinnedSession(requests.Session):
    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


def test_bench_powerbi_sandbox_rows_per_second() -> None:
    with PowerBISandbox(time_scale=1.0) as sbx:
        config = sbx.config
        session = PinnedSession()
        session.verify = config["ca_bundle"]
        app = msal.ConfidentialClientApplication(
            config["client_id"],
            client_credential=config["client_secret"],
            authority=f"{config['authority_url']}/{config['tenant_id']}",
            http_client=session,
            instance_discovery=False,
        )
        token = app.acquire_token_for_client(scopes=[SCOPE])["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        base = f"{config['api_url']}/groups/{config['workspace_id']}"
        columns = [
            ("id", "Int64"),
            ("amount", "Decimal"),
            ("paid", "Boolean"),
            ("date", "DateTime"),
            ("contact", "String"),
            ("rate", "Double"),
        ]
        body = {
            "name": "Bench",
            "tables": [{"name": "T", "columns": [{"name": n, "dataType": t} for n, t in columns]}],
        }
        created = session.post(
            f"{base}/datasets?defaultRetentionPolicy=basicFIFO", json=body, headers=headers
        )
        assert created.status_code == 201, created.text
        url = f"{base}/datasets/{created.json()['id']}/tables/T/rows"
        rows = [
            {
                "id": i,
                "amount": 123.45,
                "paid": i % 2 == 0,
                "date": "2026-11-20T10:00:00Z",
                "contact": f"Contact {i}",
                "rate": 0.5,
            }
            for i in range(ROWS)
        ]
        times: list[float] = []
        statuses: list[int] = []
        started = time.perf_counter()
        for _ in range(POSTS):
            t0 = time.perf_counter()
            statuses.append(session.post(url, json={"rows": rows}, headers=headers).status_code)
            times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        accepted = statuses.count(200)
        rate = accepted * ROWS / elapsed
        print(
            f"\npowerbi sandbox: {accepted} POSTs of {ROWS} rows accepted, "
            f"{statuses.count(429)} throttled (hourly row cap), {rate:,.0f} rows/s, "
            f"median POST {statistics.median(times) * 1000:.0f} ms"
        )
        assert accepted == 100  # 1,000,000 rows an hour
        assert statuses[100:] == [429] * 20
        assert rate > 10_000

"""The report, as a finance user sees it: every page in headless Chromium (issue 17).

tap-xero piped into target-powerbi as a **Starter** app (no journals) with the model and
`report/xero.report.yml`: the target deploys the report, the Power BI sandbox's viewer
(plain HTTP on loopback) shows it. Chromium opens each page for each organisation;
every visual must show the value of the Python reference (`metrics.py`, proven against
Xero's reports by test_model.py), computed here from the rows that landed, and no
visual may be blank. Screenshots go to output/report-screenshots/ (`make demo` names
the folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox
from target_powerbi.report import Visual, load_report

from tests.e2e import metrics
from tests.e2e.test_model import MODEL, STREAM_MAPS, TIME_SCALE, _catalog, tier_run

# the run, and apt-get installing chromium the first time
pytestmark = [pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "report" / "xero.report.yml"
SCREENSHOTS = ROOT / "output" / "report-screenshots"
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """The distribution's chromium; installed with apt-get when missing and root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(
        # waits for dpkg's lock: another test or job may be installing at the same time
        ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=600", "chromium"],
        check=False,
        capture_output=True,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("chromium is not installed and cannot be (apt-get install chromium as root)")
    return found


def browse(chromium: str, url: str, *, screenshot: Path | None = None) -> str:
    """The page's DOM after load (--dump-dom), and a screenshot when asked."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        if screenshot is not None:
            subprocess.run(
                [*base, f"--screenshot={screenshot}", "--window-size=1300,860", url],
                check=True,
                capture_output=True,
                timeout=120,
            )
        done = subprocess.run(
            [*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
        )
    return done.stdout


class Shown(HTMLParser):
    """What each visual shows: {visual: {(label, measure): text}}, from the page's DOM.
    Cards and tables write values as text; charts in each point's tooltip (title)."""

    def __init__(self) -> None:
        super().__init__()
        self.visuals: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
        self.today = ""
        self._visual = ""
        self._label = ""
        self._measure = ""
        self._capture: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if "data-visual" in a:
            self._visual, self._label, self._measure = a["data-visual"], "", ""
        if "pt" in classes:
            self._label = a.get("data-label", "")
            self._measure = a.get("data-measure", self._measure)
        if "v" in classes and "data-measure" in a:
            self._measure = a["data-measure"]
            self._capture, self._text = "value", []
        elif tag == "title" and self._visual and self._label:
            self._capture, self._text = "title", []

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text.append(data)
        if data.startswith("TODAY() = "):
            self.today = data.removeprefix("TODAY() = ").strip()

    def handle_endtag(self, tag: str) -> None:
        if self._capture == "value" and tag in ("div", "td", "text"):
            self.visuals[self._visual][(self._label, self._measure)] = "".join(self._text)
            self._capture = None
        elif self._capture == "title" and tag == "title":
            text = "".join(self._text)
            self.visuals[self._visual][(self._label, self._measure)] = text.split(": ", 1)[1]
            self._capture = None


# ---------------------------------------------------------------- the reference


def _call(model: metrics.Model, measure: str) -> Any:
    method = getattr(model, metrics.REFERENCES[measure])
    try:
        return method()
    except TypeError:  # a measure over months: every month
        return method(date.min, date.max)


def _labels(value: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for key, amount in value.items():
        out[str(key[0] if isinstance(key, tuple) else key)] += amount
    return dict(out)


def _card(model: metrics.Model, measures: tuple[str, ...]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for m in measures:
        value = _call(model, m)
        if isinstance(value, dict):
            value = sum(value.values())
        elif isinstance(value, list):
            value = sum(v for _, v in value)
        out[("", m)] = value
    return out


def _monthly(model: metrics.Model, visual: Visual, rows: list[dict[str, Any]]) -> dict[Any, Any]:
    months = {r["period_start"][:7] for r in rows if r["tenant_id"] == model.tenant}
    out: dict[Any, Any] = {}
    for month in months:
        start = date.fromisoformat(f"{month}-01")
        for m in visual.measures:
            method = getattr(model, metrics.REFERENCES[m])
            out[(month, m)] = method(start, metrics.month_end(start))
    return out


def _by_invoices(
    visual: Visual, tables: dict[str, Any], model: metrics.Model, today: date
) -> dict[Any, Any]:
    """An invoice measure by a contact's name or an invoice's number: invoices filtered."""
    assert visual.by is not None
    table, column = visual.by
    names = {r["ContactID"]: r["Name"] for r in tables["contacts"]}

    def label(invoice: dict[str, Any]) -> str:
        value = names.get(invoice["Contact__ContactID"]) if table == "contacts" else invoice[column]
        return str(value or "")

    out: dict[Any, Any] = {}
    for key in {label(i) for i in model.invoices}:
        narrowed = {**tables, "invoices": [i for i in model.invoices if label(i) == key]}
        for m in visual.measures:
            value = _call(metrics.Model(narrowed, model.tenant, today), m)
            if value:
                out[(key, m)] = value
    return out


def expected(visual: Visual, tables: dict[str, Any], tenant: str, today: date) -> dict[Any, Any]:
    """{(label, measure): value} of one visual from the reference, as a report shows it."""
    model = metrics.Model(tables, tenant, today)
    if visual.by is None:
        return _card(model, visual.measures)
    if visual.by[1] == "period_start":
        return _monthly(model, visual, tables[visual.by[0]])
    if visual.top:
        spent = _labels(_call(model, visual.measures[0]))
        return {(name, visual.measures[0]): spent[name] for name, _ in _call(model, visual.top)}
    if isinstance(_call(model, visual.measures[0]), dict):
        return {
            (k, m): v for m in visual.measures for k, v in _labels(_call(model, m)).items() if v
        }
    return _by_invoices(visual, tables, model, today)


def parse_shown(text: str, fmt: str | None) -> Any:
    """The number a formatted value stands for: cents for money, a float for a ratio."""
    if text == "(Blank)":
        return None
    if text.endswith("%"):
        return float(text[:-1].replace(",", "")) / 100
    number = text.replace(",", "")
    if fmt == "#,0.00":
        return round(float(number) * 100)
    return float(number)


def agrees(shown: Any, reference: Any, fmt: str | None) -> bool:
    if shown is None or reference is None:
        return shown is None and reference is None
    if fmt == "#,0.00":
        return bool(shown == reference)
    places = {"0.0%": 3, "0.00": 2, "0.0": 1}.get(fmt or "", 6)
    return abs(float(shown) - float(reference)) <= 0.5 * 10**-places + 1e-12


# ---------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Starter run of tap-xero | target-powerbi with the model and the report."""
    options, selected = tier_run("starter")
    tmp = tmp_path_factory.mktemp("report-viewer")
    xero = XeroSandbox(
        seed=5,
        size="small",
        tenants=2,
        time_scale=TIME_SCALE,
        access_token_lifetime=1800 * TIME_SCALE,
        **options,
    ).start()
    powerbi = PowerBISandbox(time_scale=TIME_SCALE).start()
    try:
        tap_config = {
            **xero.config,
            "token_store_path": str(tmp / "tokens.json"),
            "rate_limit_window_seconds": 60.0 / TIME_SCALE,
            "retry_backoff_seconds": 0.05,
        }
        target_config = {
            **powerbi.config,
            "stream_maps": STREAM_MAPS,
            "dataset_name": "Xero",
            "store_path": str(tmp / "store.sqlite3"),
            "model_file": str(MODEL),
            "report_file": str(REPORT),
            "child_tables": [],
        }
        for name, body in (
            ("tap", tap_config),
            ("catalog", _catalog(tap_config, selected)),
            ("target", target_config),
        ):
            (tmp / f"{name}.json").write_text(json.dumps(body))
        with (tmp / "tap.log").open("w") as tap_log, (tmp / "target.log").open("w") as log:
            tap = subprocess.Popen(
                [BIN / "tap-xero", "--config", tmp / "tap.json", "--catalog", tmp / "catalog.json"],
                stdout=subprocess.PIPE,
                stderr=tap_log,
            )
            target = subprocess.run(
                [BIN / "target-powerbi", "--config", tmp / "target.json"],
                stdin=tap.stdout,
                stdout=subprocess.DEVNULL,
                stderr=log,
                timeout=300,
                check=False,
            )
            assert tap.stdout is not None
            tap.stdout.close()
            assert tap.wait(timeout=30) == 0, (tmp / "tap.log").read_text()[-3000:]
        assert target.returncode == 0, (tmp / "target.log").read_text()[-3000:]
        http = requests.Session()
        http.trust_env = False
        http.verify = powerbi.ca_bundle

        def get(path: str) -> Any:
            response = http.get(f"{powerbi.url}/_sandbox/{path}", timeout=120)
            response.raise_for_status()
            return response.json()

        (dataset,) = [d for d in get("datasets")["datasets"] if d["name"] == "Xero"]
        tables = {
            t["name"]: get(f"datasets/{dataset['id']}/tables/{t['name']}/rows")["rows"]
            for t in dataset["tables"]
        }
        formats = {
            m["name"]: m.get("formatString")
            for t in dataset["tables"]
            for m in t.get("measures") or []
        }
        yield {
            "powerbi": powerbi,
            "get": get,
            "tables": tables,
            "formats": formats,
            "target_log": (tmp / "target.log").read_text(),
        }
    finally:
        powerbi.stop()
        xero.stop()


def test_the_target_deployed_the_report_bound_to_the_dataset(deployed: Any) -> None:
    assert "Created report 'Xero'" in deployed["target_log"]
    assert "not deployed" not in deployed["target_log"]
    (report,) = deployed["get"]("reports")["reports"]
    (dataset,) = [d for d in deployed["get"]("datasets")["datasets"] if d["name"] == "Xero"]
    assert report["datasetId"] == dataset["id"]
    spec = load_report(REPORT)
    assert [p["name"] for p in report["pages"]] == [p.name for p in spec.pages]
    for page, described in zip(report["pages"], spec.pages, strict=True):
        shown = {v["name"]: tuple(v["measures"]) for v in page["visuals"] if v["type"] != "slicer"}
        assert shown == {
            f"{described.name}_{i:02d}": v.measures
            for i, v in enumerate(described.visuals, start=1)
        }
        for visual in page["visuals"]:
            assert "error" not in visual, visual
            assert visual["value"] not in (None, [], {}), (page["name"], visual["title"])


def test_every_page_in_chromium_shows_the_reference_value_of_every_visual(
    deployed: Any, chromium: str
) -> None:
    powerbi: PowerBISandbox = deployed["powerbi"]
    tables, formats = deployed["tables"], deployed["formats"]
    (report,) = deployed["get"]("reports")["reports"]
    spec = load_report(REPORT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    organisations = sorted(r["tenant_id"] for r in tables["organisations"])
    checked = 0
    for n, tenant in enumerate(organisations):
        for page in spec.pages:
            url = (
                f"{powerbi.viewer_url}reports/{report['id']}/pages/{page.name}"
                f"?organisation={tenant}"
            )
            shot = SCREENSHOTS / f"{page.name}.png" if n == 0 else None
            shown = Shown()
            shown.feed(browse(chromium, url, screenshot=shot))
            today = date.fromisoformat(shown.today)
            for i, visual in enumerate(page.visuals, start=1):
                name = f"{page.name}_{i:02d}"
                want = expected(visual, tables, tenant, today)
                got = shown.visuals[name]
                assert want, (page.name, visual.title, "the reference is empty")
                assert set(got) == set(want), (page.name, visual.title, set(got) ^ set(want))
                for key, reference in want.items():
                    fmt = formats.get(key[1])
                    value = parse_shown(got[key], fmt)
                    assert agrees(value, reference, fmt), (page.name, visual.title, key, got[key])
                    checked += 1
    assert checked > 100
    assert (SCREENSHOTS / "cash.png").stat().st_size > 10_000


def test_the_viewer_is_plain_http_on_loopback_and_links_the_raw_tables(deployed: Any) -> None:
    powerbi: PowerBISandbox = deployed["powerbi"]
    assert powerbi.viewer_url.startswith("http://127.0.0.1:")
    http = requests.Session()
    http.trust_env = False
    index = http.get(powerbi.viewer_url, timeout=30)
    assert index.status_code == 200
    assert "href='/tables'" in index.text
    assert "<h4>invoices:" in http.get(f"{powerbi.viewer_url}tables", timeout=60).text

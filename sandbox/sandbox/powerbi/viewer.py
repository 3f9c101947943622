"""The viewer: each deployed report page by page, as a finance user sees it in Power BI.

Every visual shows the value `reports_api.evaluate_report` computed over the rows the
sandbox holds (the model's measures in Python), formatted with the measure's
formatString; charts are SVG drawn here (no script, no page fetched from the internet).
The raw tables are one click away (`/tables`). Served on the TLS app and, for browsers,
on plain HTTP on loopback (`PowerBISandbox.viewer_url`).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.powerbi.control import render_viewer
from sandbox.powerbi.reports_api import evaluate_report
from sandbox.powerbi.state import PowerBIState

esc = html.escape
PAGE_WIDTH, PAGE_HEIGHT = 1280, 720
COLOURS = ("#118dff", "#12239e", "#e66c37", "#6b007b", "#e044a7")
STYLE = """
body{font-family:'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#eaeaea;color:#252423}
header{background:#13294b;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff}nav{display:flex;gap:4px;padding:6px 16px;background:#f3f2f1}
nav a{padding:4px 10px;text-decoration:none;color:#252423;border-bottom:3px solid transparent}
nav a.on{border-color:#118dff;font-weight:600}
.canvas{position:relative;background:#fff;margin:12px auto}
.visual{position:absolute;box-sizing:border-box;border:1px solid #e1dfdd;padding:6px 8px;
overflow:auto;background:#fff}.visual h3{font-size:13px;margin:0 0 4px;font-weight:600}
.card .value{font-size:34px;font-weight:300;margin-top:12px}
.card .label{color:#605e5c;font-size:12px}
table{border-collapse:collapse;font-size:12px;width:100%}td,th{padding:2px 6px;text-align:left}
td.n,th.n{text-align:right}tr.total{font-weight:600;border-top:1px solid #999}
.slicer a{margin-right:10px;font-size:13px}.slicer a.on{font-weight:700}
.legend span{font-size:11px;margin-right:8px}svg text{font-size:10px;fill:#605e5c}
"""


def format_value(value: Any, fmt: str | None) -> str:
    """A measure's value as Power BI formats it: money (cents) with thousands, ratios."""
    if value is None:
        return "(Blank)"
    if fmt == "0.0%":
        return f"{float(value) * 100:,.1f}%"
    if fmt in ("0.00", "0.0"):
        return f"{float(value):,.{len(fmt) - 2}f}"
    if fmt == "#,0.00" and isinstance(value, int):
        return f"{value / 100:,.2f}"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _formats(state: PowerBIState, dataset_id: str) -> dict[str, str]:
    dataset = state.datasets.get(dataset_id)
    out: dict[str, str] = {}
    for table in dataset.tables.values() if dataset else []:
        for measure in table.schema.measures:
            fmt = measure.extra.get("formatString")
            if isinstance(fmt, str):
                out[measure.name] = fmt
    return out


def _scaled(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _bars(
    points: list[tuple[str, dict[str, Any]]],
    measures: list[str],
    fmts: dict[str, str],
    size: tuple[float, float],
) -> str:
    """Horizontal bars: one row per label, each measure's value written beside its bar."""
    row, label_w = 18, 150
    width = max(80.0, size[0] - label_w - 130)
    top = max([abs(_scaled(v)) for _, vs in points for v in vs.values()] or [1.0]) or 1.0
    height = row * len(points) * len(measures) + 4
    out = [f"<svg width='{label_w + width + 90:.0f}' height='{height}' role='img'>"]
    y = 2
    for label, values in points:
        for i, measure in enumerate(measures):
            value = values.get(measure)
            text = format_value(value, fmts.get(measure))
            w = abs(_scaled(value)) / top * width
            out.append(
                f"<g class='pt' data-label='{esc(label)}' data-measure='{esc(measure)}'>"
                f"<title>{esc(label)}: {esc(text)}</title>"
                f"<text x='{label_w - 4}' y='{y + 12}' text-anchor='end'>{esc(label[:26])}</text>"
                f"<rect x='{label_w}' y='{y + 2}' width='{w:.1f}' height='{row - 4}' "
                f"fill='{COLOURS[i % len(COLOURS)]}'/>"
                f"<text class='v' x='{label_w + w + 4:.1f}' y='{y + 12}'>{esc(text)}</text></g>"
            )
            y += row
    out.append("</svg>")
    return "".join(out)


def _columns(
    points: list[tuple[str, dict[str, Any]]],
    measures: list[str],
    fmts: dict[str, str],
    *,
    line: bool,
    size: tuple[float, float],
) -> str:
    """Columns (or a line) over a category axis; each point's value in its tooltip."""
    width, height = max(200.0, size[0] - 20), max(100.0, size[1] - 60)
    values = [_scaled(v) for _, vs in points for v in vs.values()]
    high, low = max([*values, 0.0]), min([*values, 0.0])
    span = (high - low) or 1.0
    n = max(1, len(points))
    step = (width - 60) / n

    def ypos(v: float) -> float:
        return 6 + (high - v) / span * (height - 24)

    zero = ypos(0.0)
    out = [
        f"<svg width='{width:.0f}' height='{height:.0f}' role='img'>",
        f"<line x1='52' x2='{width:.0f}' y1='{zero:.1f}' y2='{zero:.1f}' stroke='#c8c6c4'/>",
    ]
    for i, measure in enumerate(measures):
        colour = COLOURS[i % len(COLOURS)]
        coords = []
        for j, (label, vs) in enumerate(points):
            value = vs.get(measure)
            text = format_value(value, fmts.get(measure))
            x = 56 + j * step
            y = ypos(_scaled(value))
            tip = f"<title>{esc(label)}: {esc(text)}</title>"
            attrs = f"class='pt' data-label='{esc(label)}' data-measure='{esc(measure)}'"
            if line:
                coords.append(f"{x + step / 2:.1f},{y:.1f}")
                out.append(
                    f"<g {attrs}>{tip}<circle cx='{x + step / 2:.1f}' cy='{y:.1f}' r='2' "
                    f"fill='{colour}'/></g>"
                )
            else:
                w = max(1.0, step / (len(measures) + 0.5))
                out.append(
                    f"<g {attrs}>{tip}<rect x='{x + i * w:.1f}' y='{min(y, zero):.1f}' "
                    f"width='{w:.1f}' height='{abs(zero - y):.1f}' fill='{colour}'/></g>"
                )
        if line and coords:
            out.append(
                f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' "
                f"points='{' '.join(coords)}'/>"
            )
    every = max(1, int(70 // step) + 1)
    for j, (label, _) in enumerate(points):
        if j % every == 0:
            x = 56 + j * step + step / 2
            out.append(
                f"<text x='{x:.1f}' y='{height - 4:.0f}' text-anchor='middle'>{esc(label)}</text>"
            )
    fmt = fmts.get(measures[0]) if measures else None
    money = fmt == "#,0.00"
    for v in (high, low):
        shown = format_value(round(v), fmt) if money else format_value(v, fmt)
        out.append(f"<text x='2' y='{ypos(v) + 4:.0f}'>{esc(shown.split('.')[0])}</text>")
    out.append("</svg>")
    return "".join(out)


def _table(
    points: list[tuple[str, dict[str, Any]]], by: str, measures: list[str], fmts: dict[str, str]
) -> str:
    column = by.partition("[")[2].rstrip("]") or by
    head = f"<tr><th>{esc(column)}</th>" + "".join(f"<th class='n'>{esc(m)}</th>" for m in measures)
    rows = [head + "</tr>"]
    for label, values in points:
        cells = "".join(
            f"<td class='n v' data-measure='{esc(m)}'>"
            f"{esc(format_value(values.get(m), fmts.get(m)))}</td>"
            for m in measures
        )
        rows.append(f"<tr class='pt' data-label='{esc(label)}'><td>{esc(label)}</td>{cells}</tr>")
    totals = "".join(
        f"<td class='n'>"
        f"{esc(format_value(sum(_int(vs.get(m)) for _, vs in points), fmts.get(m)))}</td>"
        for m in measures
    )
    rows.append(f"<tr class='total'><td>Total</td>{totals}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _visual_body(
    visual: dict[str, Any], fmts: dict[str, str], size: tuple[float, float], orgs: str
) -> str:
    kind, value, measures = visual["type"], visual["value"], list(visual["measures"])
    if visual.get("error"):
        return f"<p class='error'>{esc(visual['error'])}</p>"
    if kind == "slicer":
        return orgs
    if visual["by"] is None:
        return "".join(
            f"<div class='value v' data-measure='{esc(m)}'>"
            f"{esc(format_value((value or {}).get(m), fmts.get(m)))}</div>"
            f"<div class='label'>{esc(m)}</div>"
            for m in measures
        )
    points = [(str(label), dict(vs)) for label, vs in value or []]
    legend = "".join(
        f"<span style='color:{COLOURS[i % len(COLOURS)]}'>&#9632; {esc(m)}</span>"
        for i, m in enumerate(measures)
    )
    if kind == "tableEx":
        return _table(points, visual["by"], measures, fmts)
    if kind == "clusteredBarChart":
        return f"<div class='legend'>{legend}</div>" + _bars(points, measures, fmts, size)
    chart = _columns(points, measures, fmts, line=kind == "lineChart", size=size)
    return f"<div class='legend'>{legend}</div>{chart}"


class Viewer:
    """The viewer's pages over one sandbox's state."""

    def __init__(self, state: PowerBIState) -> None:
        self.state = state

    def _shell(self, title: str, body: str) -> HTMLResponse:
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>"
        )
        return HTMLResponse(page)

    async def index(self, request: Request) -> Response:
        state = self.state
        with state.lock:
            reports = [(r.id, r.name, r.dataset_id) for r in state.reports.values()]
            datasets = [(d.id, d.name) for d in state.datasets.values()]
        items = (
            "".join(
                f"<li><a href='/reports/{quote(rid)}'>{esc(name)}</a> "
                f"<small>dataset {esc(ds)}</small></li>"
                for rid, name, ds in reports
            )
            or "<li>No report deployed yet.</li>"
        )
        body = (
            f"<header><b>Power BI sandbox</b><span>{esc(state.workspace_name)}</span>"
            "<a href='/tables'>Raw tables</a></header><main style='padding:16px'>"
            f"<h2>Reports</h2><ul>{items}</ul><h2>Datasets</h2><ul>"
            + "".join(f"<li>{esc(n)} <small>{esc(i)}</small></li>" for i, n in datasets)
            + "</ul></main>"
        )
        return self._shell("Power BI sandbox", body)

    async def tables(self, request: Request) -> Response:
        return HTMLResponse(render_viewer(self.state))

    async def report(self, request: Request) -> Response:
        report = self.state.reports.get(request.path_params["reportId"])
        if report is None:
            return self._shell("Not found", "<p>No such report. <a href='/'>Reports</a></p>")
        target = f"/reports/{quote(report.id)}/pages/{quote(report.landing_page)}"
        query = request.url.query
        return RedirectResponse(target + (f"?{query}" if query else ""), status_code=302)

    async def page(self, request: Request) -> Response:
        state = self.state
        report = state.reports.get(request.path_params["reportId"])
        name = request.path_params["page"]
        if report is None or name not in {p.name for p in report.pages}:
            return self._shell("Not found", "<p>No such report page. <a href='/'>Reports</a></p>")
        tenant = request.query_params.get("organisation")
        with state.lock:
            result = evaluate_report(state, report, tenant, only=name)
            fmts = _formats(state, report.dataset_id)
            dataset = state.datasets.get(report.dataset_id)
            table = dataset.table("organisations") if dataset else None
            orgs = table.row_dicts() if table else []
        chosen = result["organisation"]
        query = "?" + urlencode({"organisation": chosen}) if chosen else ""
        base = f"/reports/{quote(report.id)}/pages"
        nav = "".join(
            f"<a class='{'on' if p.name == name else ''}' href='{base}/{quote(p.name)}{query}'>"
            f"{esc(p.title)}</a>"
            for p in report.pages
        )
        slicer = "".join(
            f"<a class='{'on' if str(o['tenant_id']) == chosen else ''}' "
            f"href='{base}/{quote(name)}?{urlencode({'organisation': o['tenant_id']})}'>"
            f"{'&#9745;' if str(o['tenant_id']) == chosen else '&#9744;'} "
            f"{esc(str(o.get('Name')))}</a>"
            for o in orgs
        )
        (page,) = result["pages"]
        defs = {v.name: v for p in report.pages if p.name == name for v in p.visuals}
        boxes = []
        for visual in page["visuals"]:
            pos = defs[visual["name"]].position
            size = (pos.get("width", 300), pos.get("height", 150))
            style = (
                f"left:{pos.get('x', 0):.0f}px;top:{pos.get('y', 0):.0f}px;"
                f"width:{size[0]:.0f}px;height:{size[1]:.0f}px"
            )
            kind = "card" if visual["type"] == "card" else visual["type"]
            body = _visual_body(visual, fmts, size, f"<div class='slicer'>{slicer}</div>")
            boxes.append(
                f"<div class='visual {esc(kind)}' style='{style}' "
                f"data-visual='{esc(visual['name'])}' "
                f"data-type='{esc(visual['type'])}'><h3>{esc(visual['title'])}</h3>{body}</div>"
            )
        header = (
            f"<header><b>{esc(report.name)}</b><span>{esc(page['title'])}</span>"
            f"<span>TODAY() = {esc(result['today'])}</span><a href='/'>Reports</a>"
            "<a href='/tables'>Raw tables</a></header>"
        )
        canvas = (
            f"<div class='canvas' style='width:{PAGE_WIDTH}px;height:{PAGE_HEIGHT}px' "
            f"data-page='{esc(name)}' data-organisation='{esc(chosen or '')}'>"
            f"{''.join(boxes)}</div>"
        )
        return self._shell(
            f"{report.name} - {page['title']}", header + f"<nav>{nav}</nav>" + canvas
        )


def routes(state: PowerBIState) -> list[Route]:
    viewer = Viewer(state)
    return [
        Route("/", viewer.index, methods=["GET"]),
        Route("/tables", viewer.tables, methods=["GET"]),
        Route("/reports/{reportId}", viewer.report, methods=["GET"]),
        Route("/reports/{reportId}/pages/{page}", viewer.page, methods=["GET"]),
    ]

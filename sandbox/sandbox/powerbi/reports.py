"""Deployed reports: their PBIR parts, read back as pages and visuals, and each visual's
value computed over the rows the sandbox holds (the model's measures in Python,
`measures.py`), the way Power BI evaluates a visual's measures in its filter context.

Filter context, as far as the content pack's visuals need it: the organisation slicer
builds the model of one organisation (`measures.Model`); an axis on a dimension column
(`contacts[Name]`) filters the fact table the dataset's relationships point from
(`invoices`), one hop, and the Model carries it on to lines and payments; monthly axes
(`*[period_start]`) call the measure month by month; measures that are by account, day or
product already return one value per label.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sandbox.powerbi.measures import REFERENCES, Model, Rows, month_end

SLICER = "slicer"
CARD_TYPES = ("card", "multiRowCard")
_MODEL_ID = re.compile(r"semanticmodelid=([0-9a-fA-F-]{36})")
# Tables a Model reads; an absent one is empty (a run without the stream).
MODEL_TABLES = (
    "organisations",
    "accounts",
    "items",
    "invoices",
    "invoice_line_items",
    "payments",
    "bank_transactions",
    "prepayments",
    "overpayments",
    "expense_claims",
    "manual_journals",
    "manual_journal_lines",
    "profit_and_loss",
    "balance_sheet",
    "bank_summary",
    "budget_summary",
)


class DefinitionError(ValueError):
    """The definition's parts are not a PBIR report the sandbox can keep."""


@dataclass(frozen=True)
class VisualDef:
    name: str
    type: str
    title: str
    measures: tuple[str, ...]
    by: tuple[str, str] | None
    top: str | None
    position: dict[str, float]


@dataclass(frozen=True)
class PageDef:
    name: str
    title: str
    visuals: tuple[VisualDef, ...]


@dataclass
class Report:
    """A Fabric report item: its name, its dataset and its definition's parts (decoded)."""

    id: str
    name: str
    dataset_id: str
    parts: dict[str, str]
    pages: list[PageDef] = field(default_factory=list)
    landing_page: str = ""

    def item(self, workspace_id: str) -> dict[str, Any]:
        """The report as Fabric's List Reports gives it."""
        return {
            "id": self.id,
            "type": "Report",
            "displayName": self.name,
            "description": "",
            "workspaceId": workspace_id,
        }


def _json(parts: dict[str, str], path: str) -> Any:
    try:
        return json.loads(parts[path])
    except KeyError:
        msg = f"the definition has no part {path}"
        raise DefinitionError(msg) from None
    except ValueError as exc:
        msg = f"the part {path} is not JSON: {exc}"
        raise DefinitionError(msg) from None


def bound_dataset(parts: dict[str, str]) -> str:
    """The dataset id of definition.pbir's byConnection (the only reference the API takes)."""
    reference = _json(parts, "definition.pbir").get("datasetReference") or {}
    if "byConnection" not in reference:
        msg = "definition.pbir must reference its semantic model byConnection"
        raise DefinitionError(msg)
    found = _MODEL_ID.search(str(reference["byConnection"].get("connectionString", "")))
    if found is None:
        msg = "the byConnection connectionString names no semanticmodelid"
        raise DefinitionError(msg)
    return found.group(1).lower()


def _field(projection: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, table, name) of a projection's field."""
    for kind in ("Measure", "Column"):
        spec = projection["field"].get(kind)
        if spec:
            return kind, str(spec["Expression"]["SourceRef"]["Entity"]), str(spec["Property"])
    msg = f"a projection names neither a measure nor a column: {projection}"
    raise DefinitionError(msg)


def _title(visual: dict[str, Any], default: str) -> str:
    try:
        literal = visual["visualContainerObjects"]["title"][0]["properties"]["text"]["expr"]
        return str(literal["Literal"]["Value"]).strip("'").replace("''", "'")
    except (KeyError, IndexError, TypeError):
        return default


def _top(container: dict[str, Any]) -> str | None:
    for item in (container.get("filterConfig") or {}).get("filters", []):
        measure = (item.get("field") or {}).get("Measure")
        if measure:
            return str(measure["Property"])
    return None


def _visual(container: dict[str, Any]) -> VisualDef:
    visual = container.get("visual") or {}
    measures: list[str] = []
    by: tuple[str, str] | None = None
    for state in (visual.get("query") or {}).get("queryState", {}).values():
        for projection in state.get("projections", []):
            kind, table, name = _field(projection)
            if kind == "Measure":
                measures.append(name)
            else:
                by = (table, name)
    return VisualDef(
        name=str(container["name"]),
        type=str(visual.get("visualType", "")),
        title=_title(visual, str(container["name"])),
        measures=tuple(measures),
        by=by,
        top=_top(container),
        position={k: float(v) for k, v in container.get("position", {}).items()},
    )


def parse_pages(parts: dict[str, str]) -> tuple[list[PageDef], str]:
    """The pages in their order, each with its visuals, and the page to open first."""
    order = _json(parts, "definition/pages/pages.json")
    names = list(order.get("pageOrder") or [])
    if not names:
        names = sorted({p.split("/")[2] for p in parts if p.startswith("definition/pages/")})
        names = [n for n in names if n != "pages.json"]
    pages = []
    for name in names:
        page = _json(parts, f"definition/pages/{name}/page.json")
        prefix = f"definition/pages/{name}/visuals/"
        visuals = [
            _visual(_json(parts, path))
            for path in sorted(parts)
            if path.startswith(prefix) and path.endswith("/visual.json")
        ]
        visuals.sort(key=lambda v: (v.position.get("y", 0), v.position.get("x", 0)))
        pages.append(PageDef(name, str(page.get("displayName", name)), tuple(visuals)))
    landing = str(order.get("activePageName") or (names[0] if names else ""))
    return pages, landing


# ---------------------------------------------------------------- evaluation

Value = int | float | None


def model_for(tables: dict[str, Rows], tenant: str, today: date) -> Model:
    full = {name: tables.get(name, []) for name in MODEL_TABLES}
    return Model(full, tenant, today)


def _call(model: Model, measure: str, start: date = date.min, end: date = date.max) -> Any:
    """The measure's reference; a measure over months gets the months [start, end]."""
    method = getattr(model, REFERENCES[measure])
    if len(inspect.signature(method).parameters) == 2:
        return method(start, end)
    return method()


def _total(value: Any) -> Value:
    """A card's value: a measure by label shows its total, as with no axis."""
    if isinstance(value, dict):
        return int(sum(value.values()))
    if isinstance(value, list):
        return int(sum(v for _, v in value))
    if value is None or isinstance(value, int | float):
        return value
    msg = f"a card cannot show {type(value).__name__}"
    raise TypeError(msg)


def _by_label(value: Any) -> dict[str, int]:
    """A measure by label (account, day, product and month) as {label: value}."""
    out: dict[str, int] = defaultdict(int)
    for key, amount in value.items():
        label = key[0] if isinstance(key, tuple) else key
        out[str(label)] += amount
    return dict(out)


@dataclass
class Evaluator:
    """Each visual's value over one organisation's rows, on a given day."""

    tables: dict[str, Rows]
    tenant: str
    today: date
    relationships: list[tuple[str, str, str, str]]

    def model(self, tables: dict[str, Rows] | None = None) -> Model:
        return model_for(tables or self.tables, self.tenant, self.today)

    def visual(self, visual: VisualDef) -> Any:
        if visual.type == SLICER:
            return sorted(
                str(r.get(visual.by[1] if visual.by else "Name") or "")
                for r in self.tables.get("organisations", [])
            )
        if visual.by is None:
            model = self.model()
            return {m: _total(_call(model, m)) for m in visual.measures}
        return self.by_axis(visual)

    def by_axis(self, visual: VisualDef) -> list[tuple[str, dict[str, Value]]]:
        """[(label, {measure: value})] in the axis's order; blank rows left out."""
        assert visual.by is not None
        table, column = visual.by
        model = self.model()
        if column == "period_start":
            months = sorted(
                {
                    str(r["period_start"])[:7]
                    for r in self.tables.get(table, [])
                    if r.get("tenant_id") == self.tenant
                }
            )
            out = []
            for month in months:
                start = date.fromisoformat(f"{month}-01")
                values = {m: _call(model, m, start, month_end(start)) for m in visual.measures}
                out.append((month, values))
            return out
        first = _call(model, visual.measures[0])
        if isinstance(first, dict):
            return self._labelled(model, visual)
        return self._filtered(visual, table, column)

    def _labelled(self, model: Model, visual: VisualDef) -> list[tuple[str, dict[str, Value]]]:
        """Measures that are by label already (accounts, days, products)."""
        series = {m: _by_label(_call(model, m)) for m in visual.measures}
        labels = sorted({k for s in series.values() for k, v in s.items() if v})
        if visual.top:
            ranked = _call(model, visual.top)
            labels = [str(name) for name, _ in ranked]
        elif visual.type in ("clusteredBarChart", "tableEx"):
            first = series[visual.measures[0]]
            labels.sort(key=lambda k: (-first.get(k, 0), k))
        return [(k, {m: series[m].get(k, 0) for m in visual.measures}) for k in labels]

    def _filtered(
        self, visual: VisualDef, table: str, column: str
    ) -> list[tuple[str, dict[str, Value]]]:
        """The axis column's values, each filtering its table and the facts related to it."""
        rows = self.tables.get(table, [])
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[str(row.get(column) or "")].append(row)
        index = self._index(table)
        out = []
        for label, chosen in groups.items():
            narrowed = self._narrow(table, chosen, index)
            values = {m: _call(self.model(narrowed), m) for m in visual.measures}
            if any(values.values()):
                out.append((label, values))
        first = visual.measures[0]
        out.sort(key=lambda x: (-(x[1][first] or 0), x[0]))
        return out

    def _index(self, table: str) -> dict[tuple[str, str, str], dict[Any, Rows]]:
        """The rows of each table `table` filters, by their key (built once a visual)."""
        index: dict[tuple[str, str, str], dict[Any, Rows]] = {}
        for from_table, from_column, to_table, to_column in self.relationships:
            if to_table == table and from_table in self.tables:
                by_key: dict[Any, Rows] = defaultdict(list)
                for row in self.tables[from_table]:
                    by_key[row.get(from_column)].append(row)
                index[(from_table, from_column, to_column)] = by_key
        return index

    def _narrow(
        self, table: str, chosen: Rows, index: dict[tuple[str, str, str], dict[Any, Rows]]
    ) -> dict[str, Rows]:
        """The tables with `table` cut to `chosen` and the tables it filters cut to match."""
        out = {**self.tables, table: chosen}
        for (from_table, _, to_column), by_key in index.items():
            keys = {r.get(to_column) for r in chosen}
            out[from_table] = [r for key in keys for r in by_key.get(key, [])]
        return out

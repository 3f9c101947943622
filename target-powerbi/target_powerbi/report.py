"""The report beside the dataset: a short description (``report_file``) made into Power
BI's report-as-code files (PBIR) and deployed through the Fabric REST API.

The description names pages and, one line each, visuals: a type, a title, the model's
measures and the column they are shown by (see ``report/xero.report.yml``). The PBIR
files (``definition/`` folder, ``definition.pbir`` bound ``byConnection`` to the dataset,
the only reference the REST API accepts) are generated from it, so a tile is one line.

Deploying is best effort: the data load never fails because of the report. The Fabric
calls are few (list, create or ``updateDefinition``, poll), so they are sent once each
with the target's session and token, no retry loop: a failure is one warning line and the
next run, which finds the store's record unchanged, tries again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from target_powerbi.model import Model

if TYPE_CHECKING:
    from target_powerbi.client import PowerBIClient
    from target_powerbi.settings import Settings

SCHEMAS = "https://developer.microsoft.com/json-schemas/fabric/item/report"
VISUAL_TYPES = {
    "card": "card",
    "line": "lineChart",
    "column": "clusteredColumnChart",
    "bar": "clusteredBarChart",
    "table": "tableEx",
    "slicer": "slicer",
}
# The role of each projection: the axis (Category, or a table's rows) and the values.
AXIS_ROLE = {"lineChart": "Category", "clusteredColumnChart": "Category"}
AXIS_ROLE |= {"clusteredBarChart": "Category", "tableEx": "Values", "slicer": "Values"}
VALUE_ROLE = {"card": "Values", "tableEx": "Values"}
PAGE_WIDTH, PAGE_HEIGHT = 1280, 720
_NAME = {"type": "string", "minLength": 1}
DESCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "pages"],
    "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "slicer": {"type": "string", "pattern": r"^\w+\[[^\]]+\]$"},
        "landing_page": _NAME,
        "pages": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^\w+$"},
            "additionalProperties": {
                "type": "object",
                "required": ["title", "visuals"],
                "additionalProperties": False,
                "properties": {
                    "title": _NAME,
                    "visuals": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "title", "measures"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"enum": [t for t in VISUAL_TYPES if t != "slicer"]},
                                "title": _NAME,
                                "measures": {"type": "array", "items": _NAME, "minItems": 1},
                                "by": {"type": "string", "pattern": r"^\w+\[[^\]]+\]$"},
                                "top": _NAME,
                            },
                        },
                    },
                },
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(DESCRIPTION_SCHEMA)
TOP_N = 5


class ReportFileError(ValueError):
    """The report description is not valid; the message says where."""


@dataclass(frozen=True)
class Visual:
    type: str
    title: str
    measures: tuple[str, ...]
    by: tuple[str, str] | None = None
    top: str | None = None


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    visuals: tuple[Visual, ...]


@dataclass(frozen=True)
class ReportSpec:
    name: str
    pages: tuple[Page, ...]
    slicer: tuple[str, str] | None
    landing_page: str


def column_ref(text: str) -> tuple[str, str]:
    """`table[Column]` -> (table, Column)."""
    table, _, column = text.partition("[")
    return table, column.rstrip("]")


def load_report(path: str | Path) -> ReportSpec:
    """Read and check a report description."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        msg = f"report file {path}: cannot be read: {exc}"
        raise ReportFileError(msg) from None
    error = best_match(_VALIDATOR.iter_errors(raw))  # type: ignore[no-untyped-call]
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        msg = f"report file {path}: {where.lstrip('.') or 'top level'}: {error.message}"
        raise ReportFileError(msg)
    pages = tuple(
        Page(
            name=name,
            title=page["title"],
            visuals=tuple(
                Visual(
                    type=v["type"],
                    title=v["title"],
                    measures=tuple(v["measures"]),
                    by=column_ref(v["by"]) if v.get("by") else None,
                    top=v.get("top"),
                )
                for v in page["visuals"]
            ),
        )
        for name, page in raw["pages"].items()
    )
    landing = raw.get("landing_page") or pages[0].name
    if landing not in {p.name for p in pages}:
        msg = f"report file {path}: landing_page {landing!r} is not one of its pages"
        raise ReportFileError(msg)
    slicer = column_ref(raw["slicer"]) if raw.get("slicer") else None
    return ReportSpec(name=raw["name"], pages=pages, slicer=slicer, landing_page=landing)


# ---------------------------------------------------------------- PBIR generation


def measure_tables(model: Model) -> dict[str, str]:
    """Each measure's name -> the table that holds it."""
    return {m["name"]: table for table, ms in model.measures.items() for m in ms}


def _measure(table: str, name: str) -> dict[str, Any]:
    return {"Measure": {"Expression": {"SourceRef": {"Entity": table}}, "Property": name}}


def _column(table: str, name: str) -> dict[str, Any]:
    return {"Column": {"Expression": {"SourceRef": {"Entity": table}}, "Property": name}}


def _projection(field: dict[str, Any], table: str, name: str) -> dict[str, Any]:
    return {"field": field, "queryRef": f"{table}.{name}", "nativeQueryRef": name}


def _literal(text: str) -> dict[str, Any]:
    return {"expr": {"Literal": {"Value": "'" + text.replace("'", "''") + "'"}}}


def _top_filter(table: str, rank: str) -> dict[str, Any]:
    """A visual-level filter keeping the rows whose rank measure is at most TOP_N."""
    where = {
        "Condition": {
            "Comparison": {
                "ComparisonKind": 4,  # less than or equal
                "Left": {
                    "Measure": {"Expression": {"SourceRef": {"Source": "r"}}, "Property": rank}
                },
                "Right": {"Literal": {"Value": f"{TOP_N}L"}},
            }
        }
    }
    return {
        "filters": [
            {
                "name": "top",
                "field": _measure(table, rank),
                "type": "Advanced",
                "filter": {
                    "Version": 2,
                    "From": [{"Name": "r", "Entity": table, "Type": 0}],
                    "Where": [where],
                },
            }
        ]
    }


def visual_json(
    visual: Visual, name: str, position: dict[str, int], tables: Mapping[str, str]
) -> dict[str, Any]:
    """One visual.json: its type, fields by role, title and (for `top`) its filter."""
    kind = VISUAL_TYPES[visual.type]
    state: dict[str, Any] = {}
    if visual.by is not None:
        table, column = visual.by
        state[AXIS_ROLE[kind]] = {"projections": [_projection(_column(table, column), *visual.by)]}
    role = VALUE_ROLE.get(kind, "Y")
    values = [_projection(_measure(tables[m], m), tables[m], m) for m in visual.measures]
    state.setdefault(role, {"projections": []})["projections"].extend(values)
    body: dict[str, Any] = {
        "visualType": kind,
        "query": {"queryState": state},
        "visualContainerObjects": {
            "title": [{"properties": {"show": {"expr": {"Literal": {"Value": "true"}}}}}],
        },
    }
    body["visualContainerObjects"]["title"][0]["properties"]["text"] = _literal(visual.title)
    out: dict[str, Any] = {
        "$schema": f"{SCHEMAS}/definition/visualContainer/2.9.0/schema.json",
        "name": name,
        "position": position,
        "visual": body,
    }
    if visual.top:
        out["filterConfig"] = _top_filter(tables[visual.top], visual.top)
    return out


def _positions(visuals: tuple[Visual, ...], top: int) -> list[dict[str, int]]:
    """Cards in bands of up to five across the top, then the charts and tables two a row
    filling the rest of the page, in the description's order within each."""
    gap = 16
    cards = [i for i, v in enumerate(visuals) if v.type == "card"]
    others = [i for i, v in enumerate(visuals) if v.type != "card"]
    out: dict[int, dict[str, int]] = {}
    y = top + gap
    per_row = min(5, max(1, len(cards)))
    card_w = (PAGE_WIDTH - gap * (per_row + 1)) // per_row
    for n, i in enumerate(cards):
        row, column = divmod(n, per_row)
        out[i] = {"x": gap + column * (card_w + gap), "y": y + row * (110 + gap)}
        out[i] |= {"width": card_w, "height": 110}
    if cards:
        y += ((len(cards) + per_row - 1) // per_row) * (110 + gap)
    columns = 1 if len(others) == 1 else 2
    rows = max(1, (len(others) + columns - 1) // columns)
    width = (PAGE_WIDTH - gap * (columns + 1)) // columns
    height = max(160, (PAGE_HEIGHT - y - gap * rows) // rows)
    for n, i in enumerate(others):
        row, column = divmod(n, columns)
        out[i] = {"x": gap + column * (width + gap), "y": y + row * (height + gap)}
        out[i] |= {"width": width, "height": height}
    return [{**out[i], "z": i + 1, "tabOrder": i + 1} for i in range(len(visuals))]


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def connection_string(workspace_id: str, dataset_name: str, dataset_id: str) -> str:
    """The `byConnection` string of a dataset in a workspace."""
    return (
        f'Data Source="powerbi://api.powerbi.com/v1.0/myorg/{workspace_id}";'
        f"initial catalog={dataset_name};integrated security=ClaimsToken;"
        f"semanticmodelid={dataset_id}"
    )


def _page_parts(page: Page, spec: ReportSpec, tables: Mapping[str, str]) -> dict[str, str]:
    base = f"definition/pages/{page.name}"
    parts = {
        f"{base}/page.json": _dumps(
            {
                "$schema": f"{SCHEMAS}/definition/page/2.1.0/schema.json",
                "name": page.name,
                "displayName": page.title,
                "displayOption": "FitToPage",
                "height": PAGE_HEIGHT,
                "width": PAGE_WIDTH,
            }
        )
    }
    top = 0
    if spec.slicer is not None:
        slicer = Visual(type="slicer", title="Organisation", measures=(), by=spec.slicer)
        place = {"x": 16, "y": 8, "z": 0, "width": 400, "height": 64, "tabOrder": 0}
        parts[f"{base}/visuals/organisation/visual.json"] = _dumps(
            visual_json(slicer, "organisation", place, tables)
        )
        top = 72
    for i, (visual, place) in enumerate(
        zip(page.visuals, _positions(page.visuals, top), strict=True), start=1
    ):
        name = f"{page.name}_{i:02d}"
        parts[f"{base}/visuals/{name}/visual.json"] = _dumps(
            visual_json(visual, name, place, tables)
        )
    return parts


def pbir_parts(spec: ReportSpec, model: Model, connection: str) -> dict[str, str]:
    """Every file of the report's PBIR definition, path -> JSON text."""
    tables = measure_tables(model)
    unknown = sorted(
        {m for p in spec.pages for v in p.visuals for m in (*v.measures, v.top or "")}
        - set(tables)
        - {""}
    )
    if unknown:
        msg = f"the report names measures the model does not have: {unknown}"
        raise ReportFileError(msg)
    parts = {
        "definition.pbir": _dumps(
            {
                "$schema": f"{SCHEMAS}/definitionProperties/2.0.0/schema.json",
                "version": "4.0",
                "datasetReference": {"byConnection": {"connectionString": connection}},
            }
        ),
        "definition/version.json": _dumps(
            {
                "$schema": f"{SCHEMAS}/definition/versionMetadata/1.0.0/schema.json",
                "version": "2.0.0",
            }
        ),
        "definition/report.json": _dumps(
            {"$schema": f"{SCHEMAS}/definition/report/3.3.0/schema.json", "themeCollection": {}}
        ),
        "definition/pages/pages.json": _dumps(
            {
                "$schema": f"{SCHEMAS}/definition/pagesMetadata/1.1.0/schema.json",
                "pageOrder": [p.name for p in spec.pages],
                "activePageName": spec.landing_page,
            }
        ),
    }
    for page in spec.pages:
        parts |= _page_parts(page, spec, tables)
    return parts


def definition_body(parts: Mapping[str, str]) -> dict[str, Any]:
    """The Fabric `definition` object: every part base64 inline."""
    return {
        "format": "PBIR",
        "parts": [
            {
                "path": path,
                "payload": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                "payloadType": "InlineBase64",
            }
            for path, text in sorted(parts.items())
        ],
    }


# ---------------------------------------------------------------- deployment


def fabric_url(api_url: str) -> str:
    """The Fabric REST base beside a Power BI REST base: Microsoft's public cloud, or the
    same host's `/v1` (the sandbox serves both APIs on one host)."""
    parts = urlsplit(api_url)
    if parts.hostname == "api.powerbi.com":
        return "https://api.fabric.microsoft.com/v1"
    return f"{parts.scheme}://{parts.netloc}/v1"


class ReportDeployError(Exception):
    """A Fabric call answered with an error."""


@dataclass
class Fabric:
    """The few Fabric report calls, over the target's HTTP session and token."""

    base: str
    workspace_id: str
    session: requests.Session
    token: Callable[[], str]
    timeout: float = 60.0
    poll_seconds: float = 60.0

    def call(self, method: str, url: str, body: Any = None) -> requests.Response:
        response = self.session.request(
            method,
            url if url.startswith("http") else f"{self.base}{url}",
            json=body,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            detail = response.text[:200].replace("\n", " ")
            msg = f"{method} {urlsplit(response.url).path} answered {response.status_code} {detail}"
            raise ReportDeployError(msg)
        return response

    def finish(self, response: requests.Response) -> dict[str, Any]:
        """The result of a call that may answer 202: poll its Location (on the API's own
        host: the token goes nowhere else) until the operation is done."""
        if response.status_code != 202:  # Accepted: a long-running operation
            return dict(response.json()) if response.content else {}
        location = response.headers.get("Location") or ""
        if urlsplit(location).netloc != urlsplit(self.base).netloc:
            msg = f"202 with a Location not on {urlsplit(self.base).netloc}: {location[:100]!r}"
            raise ReportDeployError(msg)
        wait = min(5.0, float(response.headers.get("Retry-After") or 1))
        deadline = time.monotonic() + self.poll_seconds
        while True:
            time.sleep(wait)
            state = self.call("GET", location).json()
            status = state.get("status")
            if status == "Succeeded":
                result = self.call("GET", f"{location.rstrip('/')}/result")
                return dict(result.json()) if result.content else {}
            if status in ("Failed", "Cancelled") or time.monotonic() > deadline:
                msg = f"the operation ended {status}: {state.get('error')}"
                raise ReportDeployError(msg)

    def reports(self) -> list[dict[str, Any]]:
        path = f"/workspaces/{self.workspace_id}/reports"
        return list(self.call("GET", path).json().get("value", []))

    def create(self, name: str, definition: dict[str, Any]) -> str:
        body = {"displayName": name, "definition": definition}
        created = self.finish(self.call("POST", f"/workspaces/{self.workspace_id}/reports", body))
        if "id" not in created:
            found = [r for r in self.reports() if r.get("displayName") == name]
            created = found[0] if found else created
        return str(created["id"])

    def update(self, report_id: str, definition: dict[str, Any]) -> None:
        path = f"/workspaces/{self.workspace_id}/reports/{report_id}/updateDefinition"
        self.finish(self.call("POST", path, {"definition": definition}))


class Meta(Protocol):
    """The part of the target's store that remembers what was deployed."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str | None) -> None: ...


@dataclass(frozen=True)
class Deployment:
    """What a deployment needs from the target: its settings' parts, session and token."""

    report_file: str
    model: Model
    api_url: str
    workspace_id: str
    dataset_name: str
    session: requests.Session
    token: Callable[[], str]
    run_id: str = ""

    @classmethod
    def of(cls, settings: Settings, model: Model, client: PowerBIClient, run_id: str) -> Deployment:
        """The deployment of `settings.report_file` over the client's session and token."""
        return cls(
            report_file=str(settings.report_file),
            model=model,
            api_url=settings.api_url,
            workspace_id=settings.workspace_id,
            dataset_name=settings.dataset_name,
            session=client.session,
            token=client.auth.token,
            run_id=run_id,
        )


def deploy_report(
    deployment: Deployment, store: Meta, dataset_id: str, logger: logging.Logger
) -> str | None:
    """Create or update the report bound to `dataset_id`; the report's id, or None with one
    warning line when it could not be deployed (the load goes on; the next run retries).

    The store remembers the report's id and a digest of what was deployed: an unchanged
    definition bound to the same dataset costs no call; a changed description or a new
    dataset (a rebuild) is sent with `updateDefinition`. After a failure the run does not
    try again (one warning a run); the next run does."""
    key = f"report:{deployment.report_file}"
    if deployment.run_id and store.get_meta(f"{key}:failed") == deployment.run_id:
        return None
    try:
        spec = load_report(deployment.report_file)
        connection = connection_string(deployment.workspace_id, deployment.dataset_name, dataset_id)
        parts = pbir_parts(spec, deployment.model, connection)
        digest = hashlib.sha256(_dumps([spec.name, parts]).encode("utf-8")).hexdigest()
        known = json.loads(store.get_meta(key) or "{}")
        if known.get("digest") == digest and known.get("id"):
            return str(known["id"])
        fabric = Fabric(
            fabric_url(deployment.api_url),
            deployment.workspace_id,
            deployment.session,
            deployment.token,
        )
        definition = definition_body(parts)
        found = [r for r in fabric.reports() if r.get("displayName") == spec.name]
        if found:
            report_id = str(found[0]["id"])
            fabric.update(report_id, definition)
            verb = "Updated"
        else:
            report_id = fabric.create(spec.name, definition)
            verb = "Created"
        store.set_meta(key, json.dumps({"id": report_id, "digest": digest}))
        logger.info("%s report %r (%s) bound to dataset %s", verb, spec.name, report_id, dataset_id)
        return report_id
    except Exception as exc:  # the report never fails the data load
        store.set_meta(f"{key}:failed", deployment.run_id)
        logger.warning(
            "Report from %s not deployed (%s); the data load goes on and the next run tries again",
            deployment.report_file,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return None

"""The report description and the PBIR files generated from it (issue 17, part 1).

Every generated file must validate against Microsoft's PBIR JSON schemas (the shared
reference folder, `$ref`s resolved locally), and every field a visual names must exist:
measures in the model file, columns in the tables tap-xero's streams make.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from tap_xero.tap import TapXero
from target_powerbi.model import load_model
from target_powerbi.report import (
    SCHEMAS,
    ReportFileError,
    connection_string,
    fabric_url,
    load_report,
    pbir_parts,
)

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "report" / "xero.report.yml"
MODEL = ROOT / "model" / "xero.model.yml"
PBIR_SCHEMAS = ROOT.parent / "shared" / "reference" / "powerbi" / "pbir-schemas"
AREAS = {
    "cash",
    "customers",
    "suppliers",
    "inventory",
    "profit_and_loss",
    "balance_sheet",
    "health",
}


def _registry() -> Registry[Any]:
    """Every schema of the folder under the URL it is published at (no network)."""
    resources = []
    for path in PBIR_SCHEMAS.rglob("*.json"):
        url = f"{SCHEMAS}/{path.relative_to(PBIR_SCHEMAS).as_posix()}"
        resources.append((url, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)


@pytest.fixture(scope="module")
def parts() -> dict[str, str]:
    if not PBIR_SCHEMAS.is_dir():
        pytest.skip(f"Microsoft's PBIR schemas are not at {PBIR_SCHEMAS}")
    spec = load_report(REPORT)
    return pbir_parts(spec, load_model(str(MODEL)), connection_string("ws", "Xero", "ds-1"))


def test_every_generated_file_validates_against_microsofts_schema(parts):
    registry = _registry()
    assert {
        p.split("/")[2] for p in parts if p.startswith("definition/pages/") and p.count("/") > 2
    } == AREAS
    for path, text in parts.items():
        document = json.loads(text)
        schema = registry.contents(document["$schema"])
        validator = Draft7Validator(schema, registry=registry)
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)
        ]
        assert not errors, (path, errors[:3])


def test_a_broken_visual_fails_the_schema(parts):
    """The validation can fail: a visual without its position is refused."""
    registry = _registry()
    path = next(p for p in parts if p.endswith("visual.json"))
    document = json.loads(parts[path])
    del document["position"]
    schema = registry.contents(document["$schema"])
    assert list(Draft7Validator(schema, registry=registry).iter_errors(document))


def _fields(parts: dict[str, str]) -> tuple[set[str], set[tuple[str, str]]]:
    measures: set[str] = set()
    columns: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for kind in ("Measure", "Column"):
                if kind in node and "Property" in node[kind]:
                    entity = node[kind]["Expression"]["SourceRef"].get("Entity")
                    if kind == "Measure":
                        measures.add(node[kind]["Property"])
                    elif entity:
                        columns.add((entity, node[kind]["Property"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path, text in parts.items():
        if path.endswith("visual.json"):
            walk(json.loads(text))
    return measures, columns


def _stream_columns() -> dict[str, set[str]]:
    """The columns target-powerbi makes of each stream: properties, objects flattened."""
    config = {"client_id": "x", "client_secret": "y", "start_date": "2026-01-01T00:00:00Z"}
    catalog = TapXero(config=config, validate_config=False).catalog_dict
    out: dict[str, set[str]] = {}
    for entry in catalog["streams"]:
        names: set[str] = set()
        for name, prop in entry["schema"]["properties"].items():
            names.add(name)
            for child in prop.get("properties") or {}:
                names.add(f"{name}__{child}")
        out[entry["tap_stream_id"]] = names
    return out


def test_every_field_a_visual_names_exists_in_the_model(parts):
    measures, columns = _fields(parts)
    model = load_model(str(MODEL))
    known = {m["name"] for ms in model.measures.values() for m in ms}
    assert measures and measures <= known, measures - known
    streams = _stream_columns()
    missing = {(t, c) for t, c in columns if c not in streams.get(t, set())}
    assert columns and not missing, missing
    assert ("organisations", "Name") in columns  # the organisation slicer


def test_every_page_has_the_organisation_slicer_and_every_tile_its_measure(parts):
    spec = load_report(REPORT)
    for page in spec.pages:
        base = f"definition/pages/{page.name}/visuals"
        slicer = json.loads(parts[f"{base}/organisation/visual.json"])
        assert slicer["visual"]["visualType"] == "slicer"
        for i, visual in enumerate(page.visuals, start=1):
            body = json.loads(parts[f"{base}/{page.name}_{i:02d}/visual.json"])["visual"]
            shown = {
                p["nativeQueryRef"]
                for state in body["query"]["queryState"].values()
                for p in state["projections"]
            }
            assert set(visual.measures) <= shown


def test_a_measure_the_model_lacks_is_refused(tmp_path):
    broken = tmp_path / "r.yml"
    broken.write_text(
        "name: R\npages:\n  p:\n    title: P\n    visuals:\n"
        "      - {type: card, title: T, measures: [No Such Measure]}\n"
    )
    with pytest.raises(ReportFileError, match="No Such Measure"):
        pbir_parts(load_report(broken), load_model(str(MODEL)), "c")


def test_a_bad_description_says_where(tmp_path):
    broken = tmp_path / "r.yml"
    broken.write_text(
        "name: R\npages:\n  p:\n    title: P\n    visuals:\n"
        "      - {type: pie, title: T, measures: [X]}\n"
    )
    with pytest.raises(ReportFileError, match=r"pages\.p\.visuals\[0\]\.type"):
        load_report(broken)


def test_the_fabric_api_is_beside_the_power_bi_api() -> None:
    assert fabric_url("https://api.powerbi.com/v1.0/myorg") == "https://api.fabric.microsoft.com/v1"
    assert fabric_url("https://127.0.0.1:8443/v1.0/myorg") == "https://127.0.0.1:8443/v1"

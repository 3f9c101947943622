"""The committed Xero schemas are exactly what the generator makes from Xero's spec."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tap-xero" / "tap_xero" / "schemas" / "api"
SPEC = ROOT.parent / "shared" / "reference" / "xero" / "xero_accounting.yaml"


def load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts/generate_xero_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SPEC.exists(), reason="Xero's spec is only beside the repo in CI")
def test_committed_schemas_match_the_spec(tmp_path: Path) -> None:
    generator = load_generator()
    generator.generate(SPEC, tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    assert fresh.keys() == committed.keys()
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"regenerate with scripts/generate_xero_schemas.py: {stale}"


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.stem)
def test_schema_is_valid_and_strict(path: Path) -> None:
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors({"NotAXeroField": 1})), "unknown fields must be refused"

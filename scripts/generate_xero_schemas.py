"""Generate one JSON Schema per Xero collection from Xero's official OpenAPI spec.

The sandbox's tests validate every response against these files, and tap-xero derives its
Singer schemas from them, so the two can never disagree about what Xero sends. The
collections are those the tap's stream classes name (`collection`): a new endpoint is a
stream class, then this script.

    python scripts/generate_xero_schemas.py [SPEC] [OUT_DIR]

Each file describes ONE element of a collection as Xero returns it (Microsoft JSON dates
are strings marked `x-is-msdate` / `x-is-msdate-time`). Nested objects stay as `$ref`s
into `$defs`, as in the spec: Xero's records refer to one another in loops (an invoice's
payments carry a summary of the invoice), so inlining is left to the consumer.
Objects forbid unknown properties, so a sandbox field that Xero does not have fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from tap_xero.streams import collections  # the stream classes are the list of collections

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT.parent / "shared" / "reference" / "xero" / "xero_accounting.yaml"
DEFAULT_OUT = ROOT / "tap-xero" / "tap_xero" / "schemas" / "api"

REPORTS = "ReportWithRows"

KEEP = {"type", "enum", "items", "properties", "format", "description", "maxLength",
        "x-is-msdate", "x-is-msdate-time"}  # fmt: skip
# OpenAPI formats that are not JSON Schema formats.
DROP_FORMATS = {"double", "float", "int32", "int64", "byte", "binary"}


class _StringDatesLoader(yaml.SafeLoader):
    """YAML loader that keeps `2019-01-01` as a string (examples are data, not dates)."""


_StringDatesLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class Converter:
    """OpenAPI 3.0 schema objects to JSON Schema 2020-12, references kept as `$defs`."""

    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components
        self.defs: dict[str, dict[str, Any]] = {}

    def definition(self, name: str) -> str:
        if name not in self.defs:
            self.defs[name] = {}  # placeholder first: references may loop back
            self.defs[name] = self.schema(self.components[name])
        return f"#/$defs/{name}"

    def schema(self, node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            # A sibling `type` next to a $ref (Xero writes both for enums) adds nothing.
            return {"$ref": self.definition(node["$ref"].rsplit("/", 1)[-1])}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in KEEP:
                continue
            if key == "properties":
                out[key] = {name: self.schema(prop) for name, prop in value.items()}
            elif key == "items":
                out[key] = self.schema(value)
            elif key == "format" and value in DROP_FORMATS:
                continue
            else:
                out[key] = value
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        if "properties" in out:
            out.setdefault("type", "object")
            out["additionalProperties"] = False
        return out


def element_ref(envelope: dict[str, Any], collection: str) -> dict[str, Any]:
    prop = envelope["properties"][collection]
    items: dict[str, Any] = prop["items"]
    return items


def generate(spec_path: Path, out_dir: Path) -> list[Path]:
    spec = yaml.load(spec_path.read_text(), Loader=_StringDatesLoader)
    components: dict[str, Any] = spec["components"]["schemas"]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for collection in collections():
        envelope_name = REPORTS if collection == "Reports" else collection
        envelope = components[envelope_name]
        ref = element_ref(envelope, collection)
        element_name = ref["$ref"].rsplit("/", 1)[-1]
        converter = Converter(components)
        converter.definition(element_name)
        element = converter.defs[element_name]
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": element_name,
            "description": f"One element of Xero's {collection} collection "
            f"(generated from Xero's OpenAPI spec {spec['info']['version']}).",
            **element,
            "$defs": dict(sorted(converter.defs.items())),
        }
        if not schema["$defs"]:
            del schema["$defs"]
        path = out_dir / f"{collection}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    spec = Path(argv[1]) if len(argv) > 1 else DEFAULT_SPEC
    out = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    for path in generate(spec, out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The model file: relationships, DAX measures and column types for the dataset.

A YAML file named by the ``model_file`` setting::

    relationships:
      - name: invoice_contact
        fromTable: Invoices
        fromColumn: Contact__ContactID
        toTable: Contacts
        toColumn: ContactID
        crossFilteringBehavior: OneDirection   # or BothDirections, Automatic
    tables:
      Invoices:
        measures:
          - name: Total invoiced
            expression: SUM(Invoices[Total])
            formatString: "#,0.00"
        columns:
          Total: Decimal        # override the type the schema maps to

Power BI takes relationships only when a dataset is created; measures travel
with each table's schema and are updated by PUT on an existing dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from target_powerbi.mapping import DATA_TYPES

_NAME = {"type": "string", "minLength": 1}
_FILTERING = ["OneDirection", "BothDirections", "Automatic"]
# The model file's shape; jsonschema checks it and says where it is wrong.
MODEL_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "relationships": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["fromTable", "fromColumn", "toTable", "toColumn"],
                "additionalProperties": False,
                "properties": {
                    "name": _NAME,
                    "fromTable": _NAME,
                    "fromColumn": _NAME,
                    "toTable": _NAME,
                    "toColumn": _NAME,
                    "crossFilteringBehavior": {"enum": _FILTERING},
                },
            },
        },
        "tables": {
            "type": ["object", "null"],
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "measures": {
                        "type": ["array", "null"],
                        "items": {
                            "type": "object",
                            "required": ["name", "expression"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _NAME,
                                "expression": {"type": "string"},
                                "formatString": {"type": "string"},
                                "isHidden": {"type": "boolean"},
                            },
                        },
                    },
                    "columns": {
                        "type": ["object", "null"],
                        "additionalProperties": {"enum": list(DATA_TYPES)},
                    },
                },
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(MODEL_SCHEMA)


class ModelFileError(ValueError):
    """The model file is not valid; the message says where."""


@dataclass
class Model:
    """Relationships, measures (by table) and column type overrides (by table)."""

    relationships: list[dict[str, Any]] = field(default_factory=list)
    measures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    column_types: dict[str, dict[str, str]] = field(default_factory=dict)


def load_model(path: str | None) -> Model:
    """Read and check a model file; no path gives an empty model."""
    if not path:
        return Model()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"model file {path}: cannot be read: {exc}"
        raise ModelFileError(msg) from exc
    error = best_match(_VALIDATOR.iter_errors(raw))  # type: ignore[no-untyped-call]
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        what = "missing a property: " if error.validator == "required" else ""
        msg = f"model file {path}: {where.lstrip('.') or 'top level'}: {what}{error.message}"
        raise ModelFileError(msg)
    model = Model()
    for rel in raw.get("relationships") or []:
        name = rel.get("name") or f"{rel['fromTable']}_{rel['fromColumn']}_{rel['toTable']}"
        behaviour = rel.get("crossFilteringBehavior", "OneDirection")
        model.relationships.append({**rel, "name": name, "crossFilteringBehavior": behaviour})
    for table, spec in (raw.get("tables") or {}).items():
        measures = [dict(m) for m in spec.get("measures") or []]
        if measures:
            model.measures[str(table)] = measures
        columns = {str(c): str(t) for c, t in (spec.get("columns") or {}).items()}
        if columns:
            model.column_types[str(table)] = columns
    return model

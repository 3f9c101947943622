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

from target_powerbi.mapping import DATA_TYPES

_REL_KEYS = {"name", "fromTable", "fromColumn", "toTable", "toColumn", "crossFilteringBehavior"}
_MEASURE_KEYS = {"name", "expression", "formatString", "isHidden"}
_FILTERING = {"OneDirection", "BothDirections", "Automatic"}


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
    if not isinstance(raw, dict):
        msg = f"model file {path}: expected a mapping with 'relationships' and 'tables'"
        raise ModelFileError(msg)
    unknown = set(raw) - {"relationships", "tables"}
    if unknown:
        msg = f"model file {path}: unknown keys {sorted(unknown)}"
        raise ModelFileError(msg)
    model = Model()
    for i, rel in enumerate(raw.get("relationships") or []):
        where = f"model file {path}: relationships[{i}]"
        if not isinstance(rel, dict):
            raise ModelFileError(f"{where}: expected a mapping")
        missing = {"fromTable", "fromColumn", "toTable", "toColumn"} - set(rel)
        extra = set(rel) - _REL_KEYS
        if missing or extra:
            msg = f"{where}: missing {sorted(missing)}, unknown {sorted(extra)}"
            raise ModelFileError(msg)
        behaviour = rel.get("crossFilteringBehavior", "OneDirection")
        if behaviour not in _FILTERING:
            raise ModelFileError(f"{where}: crossFilteringBehavior must be one of {_FILTERING}")
        name = rel.get("name") or f"{rel['fromTable']}_{rel['fromColumn']}_{rel['toTable']}"
        model.relationships.append({**rel, "name": name, "crossFilteringBehavior": behaviour})
    for table, spec in (raw.get("tables") or {}).items():
        where = f"model file {path}: tables.{table}"
        if not isinstance(spec, dict) or set(spec) - {"measures", "columns"}:
            raise ModelFileError(f"{where}: expected 'measures' and/or 'columns'")
        for j, measure in enumerate(spec.get("measures") or []):
            if (
                not isinstance(measure, dict)
                or not {"name", "expression"} <= set(measure)
                or set(measure) - _MEASURE_KEYS
            ):
                msg = f"{where}.measures[{j}]: needs name and expression (and only {_MEASURE_KEYS})"
                raise ModelFileError(msg)
            model.measures.setdefault(str(table), []).append(dict(measure))
        for column, data_type in (spec.get("columns") or {}).items():
            if data_type not in DATA_TYPES:
                msg = f"{where}.columns.{column}: {data_type!r} is not one of {DATA_TYPES}"
                raise ModelFileError(msg)
            model.column_types.setdefault(str(table), {})[str(column)] = str(data_type)
    return model

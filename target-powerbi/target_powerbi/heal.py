"""Bring a store written under an earlier layout or version level with the current one.

- a column whose type changed: its stored values are converted to the new type
  (what cannot be converted is handled by ``on_invalid_value``) and the table reloaded;
- a stream whose key changed: its stored rows are re-keyed from their stored values
  when those are the values the tap sends (String, Int64 or Boolean top-level columns),
  so no row is doubled; otherwise the run stops and says how to ask for a full refresh;
- a store from an earlier version: every stored value is checked once against what
  Power BI holds (the checks of ``mapping.convert``) and repaired.

Each migration marks the tables it touched dirty, so Power BI is reloaded from them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from target_powerbi.mapping import (
    Column,
    TableMap,
    ValuePolicy,
    convert,
    dumps,
)
from target_powerbi.store import Store

# Raise when the checks of mapping.convert change in a way stored rows must be checked for.
CHECK_LEVEL = "2"
_SPECIAL = {("\x00key",), ("\x00parent",), ("\x00index",)}
_REKEYABLE = {"String", "Int64", "Boolean"}


class KeyChangeError(ValueError):
    """A stream's key changed and its stored rows cannot be re-keyed."""


def _column_types(definition: dict[str, Any]) -> dict[str, str]:
    return {str(c["name"]): str(c["dataType"]) for c in definition.get("columns", [])}


def _converted(
    data: dict[str, Any], types: dict[str, str], table: TableMap, key: str, policy: ValuePolicy
) -> dict[str, Any]:
    """The row with each value of `types`' columns checked and converted to that type."""
    out = dict(data)
    for name, data_type in types.items():
        if name in out:
            out[name] = convert(out[name], Column(name, data_type, (name,)), table, key, policy)
    return out


def migrate_types(
    store: Store,
    table: TableMap,
    old: dict[str, Any],
    policy: ValuePolicy,
    log: logging.Logger,
) -> None:
    """Convert stored values of columns whose type changed; the table is reloaded."""
    before = _column_types(old)
    changed = {
        c.name: c.data_type
        for c in table.columns
        if c.name in before and before[c.name] != c.data_type and c.path not in _SPECIAL
    }
    if not changed or not store.count(table.name):
        return
    log.warning(
        "Table %r: columns changed type %s; converting the stored rows and reloading the table",
        table.name,
        {n: f"{before[n]} -> {t}" for n, t in changed.items()},
    )
    rows = [
        (k, k, root, _converted(data, changed, table, k, policy))
        for k, root, _, data in store.stored(table.name)
    ]
    store.rewrite(table.name, rows)


def repair(store: Store, policy: ValuePolicy, log: logging.Logger) -> None:
    """Check every stored value once against what Power BI holds; repair and reload."""
    if store.get_meta("checked") == CHECK_LEVEL:
        return
    for state in store.tables():
        types = _column_types(state.definition)
        table = TableMap(state.name, state.stream, (), [], [])
        fixed = []
        for k, root, _, data in store.stored(state.name):
            clean = _converted(data, types, table, k, policy)
            if clean != data:
                fixed.append((k, k, root, clean))
        if fixed:
            store.rewrite(state.name, fixed)
            log.warning(
                "Table %r: repaired %d stored rows holding values Power BI cannot take; "
                "the table is reloaded",
                state.name,
                len(fixed),
            )
    store.set_meta("checked", CHECK_LEVEL)


def rekey(store: Store, root: TableMap, old_keys: list[str], log: logging.Logger) -> None:
    """Re-key a stream's stored rows from their stored values (or raise KeyChangeError)."""
    new_keys = root.key_properties
    columns = {}
    for prop in new_keys:
        col = next((c for c in root.columns if c.path == (prop,)), None)
        if col is None or col.json or col.data_type not in _REKEYABLE:
            msg = (
                f"Stream {root.stream!r} changed its key from {old_keys} to {new_keys}, and its "
                f"stored rows cannot be re-keyed ({prop!r} is not a column stored as sent). "
                f"Run a full refresh of {root.stream} once with load_method: overwrite (e.g. "
                "`meltano run --full-refresh` with TARGET_POWERBI_LOAD_METHOD=overwrite), so "
                "its table is rebuilt from what the tap sends."
            )
            raise KeyChangeError(msg)
        columns[prop] = col.name
    stored = list(store.stored(root.name))
    new_of: dict[str, str] = {}
    newest: dict[str, tuple[int, str]] = {}
    for k, _, seq, data in stored:
        new = dumps([data.get(columns[p]) for p in new_keys])
        new_of[k] = new
        if new not in newest or newest[new][0] < seq:
            newest[new] = (seq, k)
    keep = {k for _, k in newest.values()}
    drop = [k for k in new_of if k not in keep]
    changes = []
    for k, _, _, data in stored:
        if k in keep:
            for col in root.columns:
                if col.path == ("\x00key",):
                    data[col.name] = new_of[k]
            changes.append((k, new_of[k], new_of[k], data))
    store.rewrite(root.name, changes, drop)
    _rekey_children(store, root, new_of, new_of, set(drop))
    log.warning(
        "Stream %r changed its key from %s to %s: %d stored rows re-keyed from their stored "
        "values (%d duplicates under the new key dropped); its tables are reloaded",
        root.stream,
        old_keys,
        new_keys,
        len(changes),
        len(drop),
    )


def _rekey_children(
    store: Store,
    parent: TableMap,
    new_of: dict[str, str],
    roots: dict[str, str],
    dropped_roots: set[str],
) -> None:
    """Child rows follow their parent's new key (keys are [parent key, table, index])."""
    for child in parent.children:
        child_new: dict[str, str] = {}
        changes = []
        drop = []
        for k, root, _, data in store.stored(child.name):
            parent_key, name, index = json.loads(k)
            if root in dropped_roots or parent_key not in new_of:
                drop.append(k)
                continue
            new = dumps([new_of[parent_key], name, index])
            child_new[k] = new
            for col in child.columns:
                if col.path == ("\x00parent",) and data.get(col.name) == parent_key:
                    data[col.name] = new_of[parent_key]
                if col.path == ("\x00key",):
                    data[col.name] = new
            changes.append((k, new, roots.get(root, root), data))
        store.rewrite(child.name, changes, drop)
        _rekey_children(store, child, child_new, roots, dropped_roots)

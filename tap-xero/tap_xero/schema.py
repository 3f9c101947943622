"""Singer schemas derived at load time from the generated Xero API schemas.

`schemas/api/<Collection>.json` describe one raw API element with `$ref`s into `$defs`
(Xero's records refer to one another in loops). A Singer schema must be self-contained,
so references are inlined here: a cycle, or nesting deeper than `MAX_DEPTH`, ends in a
plain object. Microsoft JSON dates become ISO-8601 `date-time` strings, and the same walk
yields a *plan* telling `convert_msdates` where those dates sit in a record.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any, TypeAlias

MAX_DEPTH = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MSDATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")

# A plan: True = this value is a Microsoft date; dict = object with planned fields;
# list of one plan = every item of an array follows that plan.
Plan: TypeAlias = "bool | dict[str, Plan] | list[Plan]"


@cache
def load_api_schema(collection: str) -> dict[str, Any]:
    """The generated JSON Schema of one element of `collection` (e.g. `Invoices`)."""
    path = resources.files("tap_xero") / "schemas" / "api" / f"{collection}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _nullable(type_: Any) -> list[str]:
    types = list(type_) if isinstance(type_, list) else [type_]
    return [*types, "null"] if "null" not in types else types


class _Deriver:
    """Inlines `$ref`s of one API schema into a Singer schema and its msdate plan."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def node(self, node: dict[str, Any], stack: tuple[str, ...]) -> tuple[dict[str, Any], Plan]:
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            target = self.defs.get(name)
            if target is None:  # the element itself, referred to from inside: a cycle
                return {"type": ["object", "null"]}, False
            if target.get("type") == "object" and (name in stack or len(stack) >= MAX_DEPTH):
                return {"type": ["object", "null"]}, False
            return self.node(target, (*stack, name))
        if node.get("x-is-msdate") or node.get("x-is-msdate-time"):
            return {"type": ["string", "null"], "format": "date-time"}, True
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            props: dict[str, Any] = {}
            plan: dict[str, Plan] = {}
            for key, sub in node.get("properties", {}).items():
                props[key], sub_plan = self.node(sub, stack)
                if sub_plan:
                    plan[key] = sub_plan
            return {"type": ["object", "null"], "properties": props}, plan
        if kind == "array":
            items, item_plan = self.node(node.get("items", {}), stack)
            return {"type": ["array", "null"], "items": items}, ([item_plan] if item_plan else [])
        out: dict[str, Any] = {"type": _nullable(kind or "string")}
        if "format" in node:
            out["format"] = node["format"]
        return out, False


def derive(collection: str, field: str | None = None) -> tuple[dict[str, Any], dict[str, Plan]]:
    """Singer schema and msdate plan of one element of `collection`.

    With `field`, of one item of that array property instead (e.g. `LineItems`): the
    child streams' schema. Enums and max lengths are dropped: Xero adds values over time
    and the lengths are limits for writing, not promises about reading.
    """
    api = load_api_schema(collection)
    deriver = _Deriver(api.get("$defs", {}))
    root: dict[str, Any] = api
    stack: tuple[str, ...] = (api.get("title", collection),)
    if field is not None:
        root = api["properties"][field]["items"]
    schema, plan = deriver.node(root, stack)
    schema["type"] = "object"
    for key, prop in api.get("properties", {}).items() if field is None else ():
        if "description" in prop and key in schema["properties"]:
            schema["properties"][key]["description"] = prop["description"]
    return schema, plan if isinstance(plan, dict) else {}


def msdate_to_iso(value: Any) -> Any:
    """`/Date(1573755038314+0000)/` -> `2019-11-14T18:10:38.314000+00:00` (UTC).

    The number is milliseconds since the epoch in UTC; the offset only says which
    local time the organisation meant, so it does not move the instant.
    """
    if not isinstance(value, str):
        return value
    match = _MSDATE.match(value)
    if match is None:
        return value
    return (_EPOCH + timedelta(milliseconds=int(match.group(1)))).isoformat()


def convert_msdates(value: Any, plan: Plan) -> Any:
    """Convert, in place, every Microsoft date the plan points at; returns `value`."""
    if plan is True:
        return msdate_to_iso(value)
    if isinstance(plan, dict) and isinstance(value, dict):
        for key, sub in plan.items():
            if key in value and value[key] is not None:
                value[key] = convert_msdates(value[key], sub)
    elif isinstance(plan, list) and plan and isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = convert_msdates(item, plan[0])
    return value

"""Fixtures of the Xero sandbox tests: one sandbox per session, reset before every test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from sandbox.xero import XeroSandbox

SCHEMAS = Path(__file__).resolve().parents[3] / "tap-xero" / "tap_xero" / "schemas" / "api"
SEED = 7
MSDATE = re.compile(r"^/Date\(-?\d+([+-]\d{4})?\)/$")


def _msdate_names() -> set[str]:
    """Every property name the spec marks as a Microsoft JSON date, in any schema."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.get("properties", {}).items():
                if isinstance(value, dict) and (
                    value.get("x-is-msdate") or value.get("x-is-msdate-time")
                ):
                    names.add(key)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in SCHEMAS.glob("*.json"):
        walk(json.loads(path.read_text()))
    return names


MSDATE_NAMES = _msdate_names()


class Schemas:
    """Validates records against tap-xero's schemas generated from Xero's OpenAPI spec."""

    def __init__(self) -> None:
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, envelope_key: str) -> Draft202012Validator:
        if envelope_key not in self._validators:
            schema = json.loads((SCHEMAS / f"{envelope_key}.json").read_text())
            self._validators[envelope_key] = Draft202012Validator(
                schema, format_checker=FormatChecker()
            )
        return self._validators[envelope_key]

    def check(self, envelope_key: str, records: list[dict[str, Any]]) -> None:
        validator = self.validator(envelope_key)
        for record in records:
            errors = [
                f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(record)
            ]
            assert not errors, f"{envelope_key}: {errors[:3]}"
            check_msdates(record)


def check_msdates(node: Any) -> None:
    """Date fields are Microsoft JSON dates, nested records included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in MSDATE_NAMES and isinstance(value, str):
                assert MSDATE.match(value), f"{key}={value!r} is not a Microsoft JSON date"
            check_msdates(value)
    elif isinstance(node, list):
        for value in node:
            check_msdates(value)


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas()


@pytest.fixture(scope="session")
def shared_sandbox() -> Iterator[XeroSandbox]:
    """An app that may read everything (test_xero_access.py covers the tiers and scopes)."""
    with XeroSandbox(seed=SEED, size="small", tenants=3, tier="advanced", scopes="broad") as sbx:
        yield sbx


@pytest.fixture
def sbx(shared_sandbox: XeroSandbox) -> XeroSandbox:
    """The session's sandbox, back in its initial state."""
    response = httpx.post(shared_sandbox.url + "/_sandbox/reset", json={"seed": SEED})
    assert response.status_code == 200
    return shared_sandbox


class Client:
    """A minimal Xero client for the tests: tokens from the sandbox's identity service."""

    def __init__(self, sbx: XeroSandbox) -> None:
        self.sbx = sbx
        self.config = sbx.config
        self.http = httpx.Client(timeout=10)
        self.tokens = self.refresh(self.config["refresh_token"]).json()
        self.access_token = self.tokens["access_token"]

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.http.post(
            self.config["identity_url"] + "/connect/token",
            auth=(self.config["client_id"], self.config["client_secret"]),
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )

    def get(
        self,
        path: str,
        tenant: str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        tenant_id = tenant if tenant is not None else self.config["tenant_ids"][0]
        all_headers = {
            "Authorization": f"Bearer {self.access_token}",
            "Accept": "application/json",
            "xero-tenant-id": tenant_id,
        } | (headers or {})
        return self.http.get(self.config["api_url"] + path, params=params, headers=all_headers)

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.sbx.url + "/_sandbox/" + path
        response = self.http.post(url, json=body or {}) if body is not None else self.http.get(url)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def truth(self, collection: str, tenant: str | None = None) -> list[dict[str, Any]]:
        tenant_id = tenant or self.config["tenant_ids"][0]
        data = self.control(f"truth/{tenant_id}/{collection}")
        records: list[dict[str, Any]] = data[collection]
        return records


@pytest.fixture
def client(sbx: XeroSandbox) -> Iterator[Client]:
    c = Client(sbx)
    yield c
    c.http.close()

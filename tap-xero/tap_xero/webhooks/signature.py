"""Xero's webhook signature: base64(HMAC-SHA256(raw body, webhook key))."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(body: bytes, key: str) -> str:
    """The `x-xero-signature` Xero sends with `body` (also used by tests and the benchmark)."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(body: bytes, signature: str | None, key: str) -> bool:
    """True when `signature` is Xero's for `body`; compared in constant time."""
    if not signature or not key:
        return False
    expected = sign(body, key).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))

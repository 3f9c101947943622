"""Xero webhooks: a receiver that stores signed events durably, and the store the tap reads.

`tap_xero.webhooks.store` needs only the standard library, so the tap can read pending
events without the optional `webhooks` extra; the receiver (`app`, `serve`) needs
Starlette and uvicorn (`pip install 'tap-xero[webhooks]'`).
"""

from __future__ import annotations

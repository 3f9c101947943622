"""A recording reverse proxy between tap-xero and the Xero sandbox: what the sandbox can't show.

It records every request (path, query, headers) and the bytes it sent back, and can answer
chosen paths itself (a 403 from Xero or from a corporate proxy) or rewrite the JSON the
sandbox answered (records out of order, a record without its replication key...).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

Transform = Callable[[str, dict[str, Any]], dict[str, Any]]
HOP_BY_HOP = {"connection", "transfer-encoding", "content-encoding", "content-length", "keep-alive"}


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    tenant: str = ""


@dataclass
class Canned:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self.canned: dict[tuple[str, str | None], Canned] = {}  # (path suffix, tenant) -> answer
        self.transform: Transform | None = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(
        self,
        suffix: str,
        status: int,
        body: Any,
        *,
        tenant: str | None = None,
        html: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer GETs whose path ends with `suffix` (for one tenant, or all) with `body`."""
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = "text/html; charset=utf-8" if html else "application/json"
        self.canned[(suffix, tenant)] = Canned(status, raw, kind, dict(headers or {}))

    def _answer_for(self, path: str, tenant: str) -> Canned | None:
        for (suffix, who), canned in self.canned.items():
            if path.endswith(suffix) and who in (None, tenant):
                return canned
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        headers = {k: v for k, v in handler.headers.items()}
        tenant = headers.get("xero-tenant-id", "")
        seen = Seen(url.path, parse_qs(url.query), headers, tenant=tenant)
        canned = self._answer_for(url.path, tenant)
        if canned is not None:
            status, body, ctype = canned.status, canned.body, canned.content_type
            extra = dict(canned.headers)
        else:
            forward = {k: v for k, v in headers.items() if k.lower() not in ("host",)}
            answer = requests.get(self.upstream + handler.path, headers=forward, timeout=30)
            status, body = answer.status_code, answer.content
            ctype = answer.headers.get("Content-Type", "application/json")
            extra = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            extra.pop("Content-Type", None)
            if self.transform is not None and status == 200 and "json" in ctype:
                body = json.dumps(self.transform(url.path, json.loads(body))).encode()
        seen.status = status
        with self._lock:
            self.seen.append(seen)
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        for key, value in extra.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def requests_to(self, suffix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.endswith(suffix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def via(proxy: RecordingProxy, config: dict[str, Any]) -> dict[str, Any]:
    """The tap config with the Accounting API behind the proxy (identity stays direct)."""
    return {**config, "api_url": proxy.url + urlsplit(config["api_url"]).path}

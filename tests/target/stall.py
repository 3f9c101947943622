"""A plain-HTTP loopback proxy in front of the Power BI sandbox that can stall one request.

Tests point the target's `api_url` at it, then kill the target from outside while
a chosen request hangs: either before it reaches Power BI (`before`) or after
Power BI stored it but before its answer gets back (`after`, "landed, unanswered").
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import requests

Hold = Literal["before", "after"]
# (method, path, how many such requests came before it, this one included) -> hold or not
Rule = Callable[[str, str, Counter[str]], Hold | None]
_ROWS = re.compile(r"/tables/[^/]+/rows$")


def kind(method: str, path: str) -> str:
    """post_rows, delete_rows, create_dataset or other."""
    bare = path.split("?", 1)[0]
    if _ROWS.search(bare):
        return f"{method.lower()}_rows"
    if method == "POST" and bare.endswith("/datasets"):
        return "create_dataset"
    return "other"


class StallingProxy:
    """Forwards to `upstream` (https, verified with `ca_bundle`); `rule` picks what to stall."""

    def __init__(self, upstream: str, ca_bundle: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = ca_bundle
        self.rule: Rule = lambda method, path, seen: None
        self.seen: Counter[str] = Counter()
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0/myorg"

    def stall(self, rule: Rule) -> None:
        """Stall the first request `rule` picks (counts start again from zero)."""
        with self._lock:
            self.seen = Counter()
            self.held.clear()
            self.rule = rule

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        method, path = handler.command, handler.path
        with self._lock:
            self.seen[kind(method, path)] += 1
            hold = None if self.held.is_set() else self.rule(method, path, self.seen)
        if hold == "before":
            self._hang()
            return
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")
        }
        answer = self.http.request(
            method, self.upstream + path, headers=headers, data=body, timeout=60
        )
        if hold == "after":
            self._hang()
            return
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def _hang(self) -> None:
        self.held.set()
        self._release.wait(120)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

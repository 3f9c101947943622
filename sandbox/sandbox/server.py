"""Run an ASGI app with uvicorn on loopback: in the foreground or in a thread for tests."""

from __future__ import annotations

import json
import sys
import threading
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from typing_extensions import Self, override


class Startable(ABC):
    """`with X(...) as x:` for anything started and stopped: a server, a whole sandbox."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BackgroundServer(Startable):
    """Serves `app` on 127.0.0.1 from a daemon thread; port 0 picks a free port."""

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        *,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.scheme = "https" if ssl_certfile else "http"
        self.port = port

    @override
    def start(self, timeout: float = 20.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                msg = "sandbox server did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @override
    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def print_ready_line(info: dict[str, Any]) -> None:
    """The one JSON line a caller waits for; it doubles as a plugin config."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def serve_forever(servers: list[BackgroundServer]) -> None:
    """Block until Ctrl-C or SIGTERM, then stop every server."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()

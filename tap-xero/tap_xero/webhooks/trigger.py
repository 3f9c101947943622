"""Start a command (e.g. `meltano run xero-to-powerbi`) after events arrive, debounced.

A burst of deliveries starts one run: the run starts once no new event has arrived for
`debounce_seconds` (or at the latest `max_wait_seconds` after the first one, so a steady
stream still gets runs). Events that arrive while a run is going start exactly one more
run after it ends. Never two runs at once.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("tap_xero.webhooks")

Runner = Callable[[Sequence[str]], int]


def run_command(argv: Sequence[str]) -> int:
    """Run `argv` to completion with the receiver's stdout/stderr; returns its exit status."""
    return subprocess.run(list(argv), check=False).returncode


class DebouncedTrigger:
    """One worker thread that coalesces notifications into sequential command runs."""

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        debounce_seconds: float = 5.0,
        max_wait_seconds: float | None = None,
        runner: Runner = run_command,
    ) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            msg = "the trigger command is empty"
            raise ValueError(msg)
        if debounce_seconds < 0:
            msg = "debounce_seconds must not be negative"
            raise ValueError(msg)
        self.debounce_seconds = debounce_seconds
        self.max_wait_seconds = (
            max(debounce_seconds * 12, 60.0) if max_wait_seconds is None else max_wait_seconds
        )
        self._runner = runner
        self._cond = threading.Condition()
        self._dirty_since: float | None = None
        self._last_notice = 0.0
        self._running = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="webhook-trigger", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New events are stored: schedule a run (coalesced with any already scheduled)."""
        with self._cond:
            now = time.monotonic()
            if self._dirty_since is None:
                self._dirty_since = now
            self._last_notice = now
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop scheduling; a run in progress is left to finish on its own."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._dirty_since is None:
                        self._cond.wait()
                        continue
                    now = time.monotonic()
                    due = min(
                        self._last_notice + self.debounce_seconds,
                        self._dirty_since + self.max_wait_seconds,
                    )
                    if now >= due:
                        break
                    self._cond.wait(due - now)
                if self._closed:
                    return
                self._dirty_since = None
                self._running = True
            try:
                logger.info("webhook trigger: starting %s", shlex.join(self.argv[:1]))
                status = self._runner(self.argv)
                if status == 0:
                    logger.info("webhook trigger: the run finished")
                else:
                    logger.warning("webhook trigger: the run exited with status %s", status)
            except Exception as exc:
                logger.warning("webhook trigger: the run could not start: %s", type(exc).__name__)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

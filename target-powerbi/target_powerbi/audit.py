"""Audit log: one JSON line per attempt of every write to Power BI."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from target_powerbi.errors import redact
from target_powerbi.files import private_file


class AuditLog:
    """Appends JSON lines (time, table, operation, rows, status, attempt, error) to a file.

    Thread-safe; each line is flushed at once so a killed run still leaves a
    complete record of what reached Power BI. ``path=None`` disables it.
    """

    def __init__(self, path: str | Path | None, secrets: tuple[str, ...] = ()) -> None:
        self.path = Path(path) if path else None
        self._secrets = secrets
        self._lock = threading.Lock()
        if self.path is not None:
            private_file(self.path)

    def write(
        self,
        *,
        operation: str,
        dataset_id: str | None,
        table: str | None,
        rows: int,
        status: int | str,
        attempt: int,
        error: str | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Record one attempt; `status` is the HTTP status or the name of the failure."""
        if self.path is None:
            return
        entry: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "dataset_id": dataset_id,
            "table": table,
            "operation": operation,
            "rows": rows,
            "status": status,
            "attempt": attempt,
            "error": redact(error, self._secrets) if error else None,
        }
        if duration_ms is not None:
            entry["duration_ms"] = round(duration_ms, 1)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

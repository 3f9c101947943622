"""Helpers for target-powerbi's `destination: fabric` tests: the Fabric sandbox's control API,
a target config pointing at it, and what the mirrored tables hold against the local store.

`PowerBI` (tests/target/conftest.py) runs the target and reads a sandbox's control API;
the Fabric sandbox has the same `config`, `url` and `ca_bundle`, so it is reused as is.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from target_powerbi.store import Store

from tests.e2e.truth import differs
from tests.target.conftest import Kill, PowerBI


class Fabric(PowerBI):
    """The Fabric sandbox and a `destination: fabric` config (database "Finance")."""

    def __init__(self, sandbox: Any, workdir: Path) -> None:
        super().__init__(sandbox, workdir)
        self.config["destination"] = "fabric"
        self.store_path = Path(self.config["store_path"])
        self.audit_path = Path(self.config["audit_log_path"])

    def tables(self) -> dict[str, dict[str, Any]]:
        return {t["table"]: t for t in self.control("GET", "/tables")["tables"]}

    def mirrored(self, table: str) -> list[dict[str, Any]]:
        """A mirrored table's rows, decimals as numbers, without the synthetic key."""
        found = self.control("GET", f"/tables/{table}/rows?limit=1000000")
        decimals = [c for c, t in found["columns"].items() if str(t).startswith("decimal")]
        rows = []
        for row in found["rows"]:
            row.pop("_row_key", None)
            for column in decimals:
                if row.get(column) is not None:
                    row[column] = float(row[column])
            rows.append(row)
        return rows

    def problems(self) -> list[str]:
        """Differences between every mirrored table and the store (empty: equal)."""
        store = Store(self.store_path)
        try:
            wanted = {t.name: store.rows(t.name) for t in store.tables()}
        finally:
            store.close()
        found = self.tables()
        out = []
        for name, rows in wanted.items():
            if name not in found:
                if rows:
                    out.append(f"{name}: not mirrored")
                continue
            keys = found[name]["keyColumns"] or []
            mirrored = self.mirrored(name)
            if "_row_key" in keys:
                out += _compare_keyless(name, mirrored, rows)
                continue
            have = {tuple(r[k] for k in keys): r for r in mirrored}
            if len(have) != len(mirrored):
                out.append(f"{name}: {len(mirrored) - len(have)} doubled rows")
            want = {tuple(r[k] for k in keys): r for r in rows}
            if set(have) != set(want):
                out.append(f"{name}: keys {sorted(set(have) ^ set(want), key=str)[:5]} differ")
            for key in set(have) & set(want):
                for column, value in want[key].items():
                    if differs(have[key].get(column), value):
                        out.append(f"{name} {key} {column}: {have[key].get(column)!r} != {value!r}")
        return out

    def assert_mirrors_store(self) -> None:
        found = self.problems()
        assert not found, "\n".join(found[:30])
        stats = self.stats()
        assert stats["refused_files"] == [], stats["refused_files"]
        assert stats["files"]["waiting"] == 0, stats["waiting_files"]

    def audit_lines(self) -> int:
        return len(self.audit_path.read_text().splitlines()) if self.audit_path.exists() else 0

    def kill_at_audit_line(self, number: int) -> Kill:
        """SIGKILL the target once its audit log has ``number`` lines (a write just done)."""
        kill = Kill()

        def watch() -> None:
            deadline = time.monotonic() + 120
            while not kill.done.is_set() and time.monotonic() < deadline:
                if self.audit_lines() >= number:
                    kill.done.set()
                time.sleep(0.002)

        threading.Thread(target=watch, daemon=True).start()
        return kill


def _compare_keyless(
    name: str, mirrored: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> list[str]:
    if len(mirrored) != len(rows):
        return [f"{name}: {len(mirrored)} rows mirrored, the store has {len(rows)}"]
    return []

"""The pipeline into the Fabric sandbox (`destination: fabric`): the sandboxes and what landed.

`FabricSandboxes` adds the Fabric sandbox to the Xero and Power BI ones; its `tables()`
reads the mirrored tables (the Delta tables the sandbox's replicator wrote from the
landed files) in the shape `tests.e2e.truth.compare` takes, so the Fabric path is
proven against the same truth, organisation by organisation, as the push path.
"""

from __future__ import annotations

from typing import Any

from sandbox.fabric import FabricSandbox

from tests.e2e.pipeline import DATASET, Sandboxes


class FabricSandboxes(Sandboxes):
    """Xero, Power BI and Fabric sandboxes; the target configured for `destination: fabric`."""

    destination = "fabric"

    def __init__(self, *, seed: int, tenants: int = 2) -> None:
        super().__init__(seed=seed, tenants=tenants)
        self.fabric = FabricSandbox().start()

    def stop(self) -> None:
        super().stop()
        self.fabric.stop()

    @property
    def ready(self) -> dict[str, Any]:
        return {**super().ready, "fabric": self.fabric.config}

    def fabric_get(self, path: str, **params: str) -> Any:
        response = self.http.get(
            f"{self.fabric.url}/_sandbox/{path}",
            params=params,
            timeout=60,
            verify=self.fabric.ca_bundle,
        )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return dict(self.fabric_get("stats"))

    def tables(self, name: str = DATASET) -> dict[str, list[dict[str, Any]]]:
        """Every mirrored table of the database ``name`` with all its rows.

        Decimal columns come back as strings (the control API's JSON): made numbers again;
        the synthetic ``_row_key`` of keyless tables is not a source column.
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for table in self.fabric_get("tables")["tables"]:
            decimals = [c for c, t in table["columns"].items() if str(t).startswith("decimal")]
            found = self.fabric_get(
                f"tables/{table['table']}/rows", database=name, limit="10000000"
            )
            rows = []
            for row in found["rows"]:
                row.pop("_row_key", None)
                for column in decimals:
                    if row.get(column) is not None:
                        row[column] = float(row[column])
                rows.append(row)
            out[table["table"]] = rows
        return out

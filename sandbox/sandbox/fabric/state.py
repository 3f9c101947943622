"""Everything the Fabric sandbox remembers, on top of the Power BI sandbox's Entra and faults.

`FabricState` extends `PowerBIState` to share its tenant, service principals, token service,
fault injection and request counts (one Entra, one fault model for both emulators); what it
adds is Fabric's: mirrored databases, OneLake's files, the replicator, semantic models and
long-running operations.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing_extensions import override

from sandbox.clock import SandboxClock
from sandbox.fabric.errors import FabricError
from sandbox.fabric.onelake import OneLakeStore
from sandbox.fabric.replicator import Replicator
from sandbox.powerbi.state import POWERBI_RESOURCE, PowerBIState

STORAGE_RESOURCE = "https://storage.azure.com"
FABRIC_RESOURCE = "https://api.fabric.microsoft.com"
DROP_FIELDS = {"drop_next", "drop_rate", "drop_after_apply"}
LRO_FIELDS = {"lro_polls"}


def utc(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Item:
    """A Fabric item of the workspace: a mirrored database or a semantic model."""

    id: str
    type: str
    display_name: str
    description: str
    parts: list[dict[str, Any]]
    mirroring_status: str = "Initialized"
    default_schema: str = "dbo"
    versions: int = 1  # definitions stored: 1 at creation, +1 per updateDefinition
    bound_to: str | None = None  # a report's semantic model

    @property
    def sql_endpoint_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.id))

    def summary(self, workspace_id: str, onelake_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "displayName": self.display_name,
            "description": self.description,
            "workspaceId": workspace_id,
        }
        if self.type == "MirroredDatabase":
            body["properties"] = {
                "oneLakeTablesPath": f"{onelake_url}/{workspace_id}/{self.id}/Tables",
                "sqlEndpointProperties": {
                    "connectionString": "sandbox.datawarehouse.fabric.microsoft.com",
                    "id": self.sql_endpoint_id,
                    "provisioningStatus": "Success",
                },
                "defaultSchema": self.default_schema,
            }
        return body

    def decoded_parts(self) -> dict[str, Any]:
        """Definition parts decoded (JSON where it parses, else text): for the control API."""
        decoded: dict[str, Any] = {}
        for part in self.parts:
            text = base64.b64decode(part.get("payload", "")).decode("utf-8", "replace")
            try:
                decoded[part["path"]] = json.loads(text)
            except ValueError:
                decoded[part["path"]] = text
        return decoded


@dataclass
class Operation:
    """A long-running operation: Running for `polls_left` polls, then Succeeded."""

    id: str
    created: float
    polls_left: int
    result: dict[str, Any] | None
    status: str = "Running"


@dataclass
class DropFaults:
    """Dropped connections (POST /_sandbox/faults): the response is cut after its headers."""

    drop_next: int = 0
    drop_rate: float = 0.0
    drop_after_apply: bool = False


class FabricState(PowerBIState):
    """One tenant and workspace (from PowerBIState), its Fabric items and OneLake's files."""

    token_audiences = (STORAGE_RESOURCE, FABRIC_RESOURCE, POWERBI_RESOURCE)

    def __init__(
        self,
        clock: SandboxClock,
        *,
        token_lifetime_seconds: float = 3600.0,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__(clock, token_lifetime_seconds=token_lifetime_seconds)
        self.workspace_name = "Sandbox Fabric workspace"
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="fabric-sandbox-"))
        self.store = OneLakeStore()
        self.replicator = Replicator(self.store, self.data_dir / "onelake")
        self.items: dict[str, Item] = {}
        self.operations: dict[str, Operation] = {}
        self.drops = DropFaults()
        self.lro_polls = 1
        self.onelake_url = ""

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @override
    def reset(self) -> None:
        """Forget items, files, tables, faults and stats; identities and tokens stay valid."""
        with self.lock:
            super().reset()
            self.items.clear()
            self.operations.clear()
            self.store.nodes.clear()
            self.replicator.reset()
            self.drops = DropFaults()
            self.lro_polls = 1

    @override
    def set_faults(self, body: dict[str, Any]) -> Any:
        """Power BI's faults plus dropped connections and the polls an operation takes."""
        with self.lock:
            drops = DropFaults() if body.get("clear") else DropFaults(**self.drops.__dict__)
            if "drop_next" in body:
                drops.drop_next = int(body["drop_next"])
            if "drop_rate" in body:
                drops.drop_rate = float(body["drop_rate"])
                if not 0.0 <= drops.drop_rate <= 1.0:
                    msg = "drop_rate must be between 0 and 1"
                    raise ValueError(msg)
            if "drop_after_apply" in body:
                if not isinstance(body["drop_after_apply"], bool):
                    msg = "drop_after_apply must be true or false"
                    raise TypeError(msg)
                drops.drop_after_apply = body["drop_after_apply"]
            lro_polls = int(body.get("lro_polls", 1 if body.get("clear") else self.lro_polls))
            if lro_polls < 0:
                msg = "lro_polls must be >= 0"
                raise ValueError(msg)
            faults = super().set_faults(
                {k: v for k, v in body.items() if k not in DROP_FIELDS | LRO_FIELDS}
            )
            self.drops = drops
            self.lro_polls = lro_polls
            return faults

    def faults_json(self) -> dict[str, Any]:
        return {**self.faults.to_json(), **self.drops.__dict__, "lro_polls": self.lro_polls}

    def should_drop(self, operation: str) -> bool:
        """Whether to drop this call's connection (the `operations` fault filter applies)."""
        with self.lock:
            if self.faults.operations is not None and operation not in self.faults.operations:
                return False
            if self.drops.drop_next > 0:
                self.drops.drop_next -= 1
                return True
            return self.drops.drop_rate > 0 and self.random.random() < self.drops.drop_rate

    # ---- items --------------------------------------------------------------------------
    def item(self, item_id: str, item_type: str) -> Item:
        item = self.items.get(item_id.lower())
        if item is None or item.type != item_type:
            raise FabricError(404, "ItemNotFound", "The requested item was not found.")
        return item

    def add_item(self, item: Item) -> Item:
        for other in self.items.values():
            if other.type == item.type and other.display_name == item.display_name:
                raise FabricError(
                    409,
                    "ItemDisplayNameAlreadyInUse",
                    f"Requested '{item.display_name}' is already in use",
                )
        self.items[item.id] = item
        return item

    def delete_item(self, item: Item) -> None:
        del self.items[item.id]
        path = f"{self.workspace_id}/{item.id}"
        self.store.delete_tree(path)
        self.replicator.drop_database(path)

    def start_operation(self, result: dict[str, Any] | None) -> Operation:
        operation = Operation(str(uuid.uuid4()), self.clock.timestamp(), self.lro_polls, result)
        if operation.polls_left == 0:
            operation.status = "Succeeded"
        self.operations[operation.id] = operation
        return operation

    # ---- replication --------------------------------------------------------------------
    def replicate(self, item_id: str | None = None) -> None:
        """Scan the landing zones of running mirrored databases (all, or one)."""
        with self.lock:
            for item in list(self.items.values()):
                if item.type != "MirroredDatabase" or item.mirroring_status != "Running":
                    continue
                if item_id is None or item.id == item_id:
                    self.replicator.scan(f"{self.workspace_id}/{item.id}", item.default_schema)

    def delta_tables(self, sql_endpoint_id: str) -> dict[tuple[str, str], dict[str, Any]] | None:
        """The replicated tables of the mirrored database with this SQL analytics endpoint:
        (schema, table) -> column -> Delta (arrow) type; None when no database has it."""
        with self.lock:
            for item in self.items.values():
                if item.type == "MirroredDatabase" and item.sql_endpoint_id == sql_endpoint_id:
                    return {
                        (t.schema, t.name): dict(t.delta_types)
                        for t in self.replicator.tables.values()
                        if t.database == item.id and t.exists()
                    }
            return None

    def tables_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "workspace": {"id": self.workspace_id, "name": self.workspace_name},
                "tables": [t.summary() for t in self.replicator.tables.values()],
            }

    def fabric_stats(self) -> dict[str, Any]:
        with self.lock:
            replication = self.replicator.stats
            refused = [r.to_json() for r in replication.refused]
            waiting = {
                f"{t.schema}.{t.name}": t.waiting
                for t in self.replicator.tables.values()
                if t.waiting
            }
            return {
                "rows_landed": replication.rows_landed,
                "files": {
                    "applied": replication.files_applied,
                    "bytes_applied": replication.bytes_applied,
                    "refused": len(refused),
                    "waiting": sum(len(v) for v in waiting.values()),
                },
                "refused_files": refused,
                "waiting_files": waiting,
                "requests": {op: dict(c) for op, c in self.stats.requests.items()},
            }

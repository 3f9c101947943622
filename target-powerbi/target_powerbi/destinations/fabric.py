"""The ``fabric`` destination: the store's tables in an open mirrored database in OneLake.

Each sync lands, per table, only what changed since the last published file: rows whose
store sequence number is past the table's landed mark as upserts, landed keys the store
no longer holds as deletes (however they left: ACTIVATE_VERSION, hard deletes, an
overwrite). Tables are never reloaded, except when a column's type changes: Fabric
refuses that ("Change column type", landing zone format), so the table folder is
deleted and created again with every stored row, as the documentation says.

Key columns (``_metadata.json``): a keyed stream's ``key_properties`` for its root
table; ``[<parent key column>, _index]`` for a child table; for a stream without keys
(or ``load_method: append-only``, whose rows are keyed by content) the store's own key
is landed as a ``_row_key`` column and used as the key, so removed rows can be deleted.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import requests

from target_powerbi import retry
from target_powerbi.audit import AuditLog
from target_powerbi.destinations.landed import ROW_KEY, Landed, LandedTable
from target_powerbi.destinations.onelake import (
    STORAGE_SCOPE,
    ExpiringTokenProvider,
    FabricError,
    LandingZone,
    MsalCredential,
)
from target_powerbi.destinations.parquet import arrow_type_name, columns_of, parquet_file
from target_powerbi.destinations.semantic_model import SemanticModelDeploy
from target_powerbi.mapping import INDEX_COLUMN, TableMap
from target_powerbi.model import Model
from target_powerbi.report import Deployment, deploy_report
from target_powerbi.settings import Settings
from target_powerbi.store import Store, TableState

FABRIC_SCOPE = "https://api.fabric.microsoft.com/.default"
OPEN_MIRRORING = {
    "properties": {
        "source": {"type": "GenericMirror", "typeProperties": {}},
        "target": {
            "type": "MountedRelationalDatabase",
            "typeProperties": {"defaultSchema": "dbo", "format": "Delta"},
        },
    }
}


def key_columns_of(table: TableMap, *, by_content: bool) -> list[str]:
    """The key columns a table is landed with (see the module's docstring)."""
    if table.parent is not None and table.parent_column:
        index = next(c.name for c in table.columns if c.path == ("\x00index",))
        return [table.parent_column, index or INDEX_COLUMN]
    if table.key_properties and not by_content:
        found = [
            next((c.name for c in table.columns if c.path == (key,)), None)
            for key in table.key_properties
        ]
        if all(found):
            return [str(name) for name in found]
    return [ROW_KEY]


def _session(ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the configured bundle
    session.verify = ca_bundle or True
    session.headers["User-Agent"] = "target-powerbi"
    return session


class FabricRest:
    """The Fabric REST calls of a publisher: find, create and start a mirrored database.

    Requests are retried by the target's one retry policy (`target_powerbi.retry`).
    """

    def __init__(self, settings: Settings, logger: logging.Logger, audit: AuditLog) -> None:
        self.base = f"{settings.fabric_api_url}/workspaces/{settings.workspace_id}"
        self.session = _session(settings.ca_bundle)
        self.log = logger
        self.audit = audit
        self.max_retries = settings.max_retries
        self.timeout = settings.request_timeout
        self.tokens = ExpiringTokenProvider(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            authority_url=settings.authority_url,
            scope=FABRIC_SCOPE,
            session=self.session,
            logger=logger,
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
        )

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        """One call, retried on 5xx, 429 (its Retry-After), lost connections and a 401.

        ``path`` is under the workspace, or an absolute URL on the API's own host (the
        ``Location`` of a long-running operation: the token goes nowhere else).
        """
        url = path if path.startswith(("https://", "http://")) else self.base + path
        if urlsplit(url).netloc != urlsplit(self.base).netloc:
            msg = f"Fabric answered with a URL that is not on {urlsplit(self.base).netloc}."
            raise FabricError(msg)

        def attempt() -> requests.Response:
            headers = {"Authorization": f"Bearer {self.tokens.token()}"}
            try:
                response = self.session.request(
                    method, url, json=body, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise retry.Retry(type(exc).__name__, final=self._error(path, None)) from None
            status = response.status_code
            if status == 401:
                self.tokens.invalidate()
                raise retry.Retry("401", kind="refresh", final=self._error(path, response))
            if status == 429:
                wait = float(response.headers.get("Retry-After") or 1)
                final = self._error(path, response)
                raise retry.Retry("429", kind="throttle", wait=wait, final=final)
            if status >= 500:
                raise retry.Retry(str(status), final=self._error(path, response))
            if status >= 400:
                raise self._error(path, response)
            return response

        return retry.call(
            attempt,
            max_retries=self.max_retries,
            on_retry=lambda r, s: self.log.warning(
                "Fabric call %s failed (%s); retrying in %.1fs", path, r.problem, s
            ),
        )

    def _error(self, path: str, response: requests.Response | None) -> FabricError:
        if response is None:
            detail, status, code = "no answer", None, None
        else:
            status = response.status_code
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            code = payload.get("errorCode") if isinstance(payload, dict) else None
            detail = str(payload.get("message", "") if isinstance(payload, dict) else "")[:300]
        hints = {
            401: "check the credentials, and that the tenant setting 'Service principals can "
            "use Fabric APIs' allows this principal",
            403: "give the service principal the Contributor role (or higher) in the workspace",
            404: "check workspace_id",
        }
        hint = hints.get(status or 0, "run again")
        msg = f"Fabric {path} failed ({status or ''} {code or ''} {detail}): {hint}."
        return FabricError(msg, status=status, code=code)

    def mirrored_database(self, name: str) -> str:
        """The id of the open mirrored database named ``name``, created and started if need be."""
        found = self._find(name)
        if found is None:
            payload = base64.b64encode(json.dumps(OPEN_MIRRORING).encode()).decode()
            part = {"path": "mirroring.json", "payload": payload, "payloadType": "InlineBase64"}
            body = {
                "displayName": name,
                "description": "Landed by target-powerbi (open mirroring)",
                "definition": {"parts": [part]},
            }
            try:
                found = str(self.call("POST", "/mirroredDatabases", body).json()["id"])
            except FabricError as exc:
                again = self._find(name) if exc.code == "ItemDisplayNameAlreadyInUse" else None
                if again is None:  # a retried create whose first attempt landed: use it
                    raise
                found = again
            self.log.info("Created the open mirrored database %r (%s)", name, found)
            self.audit.write(
                operation="create_mirrored_database",
                dataset_id=found,
                table=None,
                rows=0,
                status="ok",
                attempt=1,
            )
        status = self.call("POST", f"/mirroredDatabases/{found}/getMirroringStatus").json()
        if status.get("status") not in ("Running", "Starting", "Initializing"):
            self.call("POST", f"/mirroredDatabases/{found}/startMirroring")
            self.log.info("Started mirroring of %r (%s)", name, found)
        return found

    def check_access(self) -> None:
        """Sign in and list the workspace's mirrored databases: fails fast on access."""
        self.call("GET", "/mirroredDatabases")

    def _find(self, name: str) -> str | None:
        path: str | None = "/mirroredDatabases"
        while path:
            page = self.call("GET", path).json()
            for item in page.get("value", []):
                if item.get("displayName") == name:
                    return str(item["id"])
            token = page.get("continuationToken")
            path = f"/mirroredDatabases?continuationToken={token}" if token else None
        return None


class FabricDestination:
    """Lands the store's changes in the open mirrored database named ``dataset_name``."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        logger: logging.Logger,
        model: Model | None = None,
    ) -> None:
        self.settings = settings
        self.model = model or Model()
        self._model_deployed = False
        self.store = store
        self.log = logger
        self.landed = Landed(store.path)
        self.audit = AuditLog(settings.audit_log_path, secrets=(settings.client_secret,))
        self.rest = FabricRest(settings, logger, self.audit)
        storage = ExpiringTokenProvider(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            authority_url=settings.authority_url,
            scope=STORAGE_SCOPE,
            session=self.rest.session,
            logger=logger,
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
        )
        self.zone = LandingZone(
            onelake_url=settings.onelake_url,
            workspace_id=settings.workspace_id,
            credential=MsalCredential(storage),
            ca_bundle=settings.ca_bundle,
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
            audit=self.audit,
        )
        self.rows_landed = 0
        self.files_published = 0

    def register(self, root: TableMap) -> None:
        by_content = self.settings.load_method == "append-only" or not root.key_properties
        for table in root.walk():
            self.landed.register(table.name, key_columns_of(table, by_content=by_content))

    def check_access(self) -> None:
        """Fail fast, before the tap's extract: the credentials and the workspace."""
        self.rest.check_access()

    def close(self) -> None:
        self.zone.close()
        self.rest.close()
        self.landed.close()

    def sync(self) -> None:
        """Land every table's changes; each file is published before its changes count."""
        tables = self.store.tables()
        if not tables:
            return
        self._ensure_database()
        for table in tables:
            self._sync_table(table)

    def finish(self) -> None:
        """At the end of the run: the Direct Lake semantic model (setting ``semantic_model``),
        deployed at most once a run, after every table is landed, and the report
        (``report_file``) bound to it."""
        if self._model_deployed or not self.settings.semantic_model or not self.zone.database_id:
            return
        self._model_deployed = True
        model_id = SemanticModelDeploy(
            self.rest,
            self.landed,
            self.model,
            self.settings.dataset_name,
            self.log,
            poll_seconds=max(60.0, self.settings.request_timeout),
        ).deploy(self.zone.database_id)
        if model_id and self.settings.report_file:
            # the report (report_file) bound to the Direct Lake model, as push binds it to
            # the push dataset: the same PBIR files and calls (target_powerbi.report)
            deployment = Deployment(
                report_file=self.settings.report_file,
                model=self.model,
                api_url=self.settings.fabric_api_url,
                workspace_id=self.settings.workspace_id,
                dataset_name=self.settings.dataset_name,
                session=self.rest.session,
                token=self.rest.tokens.token,
            )
            deploy_report(deployment, self.landed, model_id, self.log)

    def _ensure_database(self) -> None:
        if self.zone.database_id:
            return
        database_id = self.rest.mirrored_database(self.settings.dataset_name)
        remembered = self.landed.get_meta("database_id")
        if remembered != database_id:
            if remembered:
                self.log.warning(
                    "The mirrored database %r is not the one this store landed in (%s, now "
                    "%s): every table is landed again from the local store",
                    self.settings.dataset_name,
                    remembered,
                    database_id,
                )
            self.landed.forget()
            self.landed.set_meta("database_id", database_id)
        self.zone.database_id = database_id

    def _table(self, state: TableState) -> LandedTable:
        found = self.landed.table(state.name)
        if found is None:  # a table of an earlier run whose stream did not come this time
            self.landed.register(state.name, [ROW_KEY])
            found = self.landed.table(state.name)
            assert found is not None
        return found

    def _sync_table(self, state: TableState) -> None:
        table = self._table(state)
        columns = columns_of(state.definition, table.key_columns)
        types = {name: arrow_type_name(kind) for name, kind in columns.items()}
        if table.landed_columns is not None and self._must_recreate(table, types):
            self.zone.drop_table(table.name)
            self.landed.forget([table.name])
            table = self._table(state)
        if not self.landed.has_changes(table):
            return
        number = self._next_number(table)
        table = self._table(state)  # the folder may have been found gone: land it whole
        deletes = self.landed.deletes(table)
        landed = dict(table.landed_columns or {})
        for seq, upserts in self.landed.upserts(table, self.settings.rows_per_file, deletes):
            changes = [*deletes, *upserts]
            deletes = []
            data = parquet_file(columns, table.key_columns, changes)
            self.zone.publish(table.name, number, data, len(changes))
            landed.update(types)
            self.landed.published(table.name, landed_seq=seq, columns=landed, changes=changes)
            self.rows_landed += len(changes)
            self.files_published += 1
            self.log.info(
                "Landed file %d of table %r: %d upserts, %d deletes",
                number,
                table.name,
                sum(1 for c in changes if c.data is not None),
                sum(1 for c in changes if c.data is None),
            )
            number += 1

    def _must_recreate(self, table: LandedTable, types: dict[str, str]) -> bool:
        landed = table.landed_columns or {}
        changed = sorted(c for c, t in types.items() if c in landed and landed[c] != t)
        if not changed:
            return False
        self.log.warning(
            "Columns %s of table %r changed type; Fabric cannot change a column's type, so "
            "the table folder is deleted and the table landed again from the local store",
            changed,
            table.name,
        )
        return True

    def _next_number(self, table: LandedTable) -> int:
        """The next file number from the folder's listing; a new folder gets its metadata."""
        last = self.zone.last_number(table.name)
        if last is not None:
            keys = self.zone.key_columns(table.name)
            if keys is not None and keys != table.key_columns:
                self.log.warning(
                    "Table %r was landed with key columns %s, now %s; Fabric cannot change "
                    "them, so the table folder is deleted and landed again",
                    table.name,
                    keys,
                    table.key_columns,
                )
                self.zone.drop_table(table.name)
                last = None
            elif keys is None:
                self.zone.create_table(table.name, table.key_columns)
        if last is None:
            if table.landed_columns is not None:
                self.log.warning(
                    "The folder of table %r is gone from OneLake; landing the table again "
                    "from the local store",
                    table.name,
                )
                self.landed.forget([table.name])
            self.zone.create_table(table.name, table.key_columns)
            return 1
        return last + 1

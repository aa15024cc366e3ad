"""What a QLDB journal export holds: tables, indexes, the latest revision of every document (pure).

Used by the migration from QLDB (`strand import --qldb-export DIR --digest FILE`,
cluster/importer.py). The export is read by the one reader of exports
(`core.export_format.decode_object`, through cluster/export.py) and checked by the one
verifier (`core.export_verification.ExportVerifier`: every block's hashes, sequence, chain,
Merkle root against the saved digest; JSON exports' types restored where QLDB's schema fixes
them by `core.export_format.from_json_block`, data whose types JSON lost counted as
unchecked). Nothing here imports the engine, msgpack or LevelDB, and nothing does I/O.

`ExportContents` follows the verified blocks in journal order and keeps the latest revision
of every document, the tables (from the system table `information_schema.user_tables`,
whose revisions carry {tableId, name, status, indexes}; in QLDB's own exports, which carry
system revisions as hashes only, tables come from transactionInfo.documents and indexes from
the `CREATE INDEX` statements), and optionally every revision for a history table.
`live_documents()` lists the latest revision of every document that is not deleted, of every
active user table, sorted by table name and document id (a deterministic order the batch
planner relies on).

Invariants: a `VerificationFailed` names the data object and block where the check failed;
a migration never writes before the verifier accepted the export to its last block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.export_format import from_json_block

__all__ = [
    "SYSTEM_TABLE_NAMES",
    "ExportContents",
    "TableInfo",
    "VerificationFailed",
    "from_json_block",
]

SYSTEM_TABLE_NAMES = ("information_schema.user_tables", "information_schema.redactions")
_CREATE_INDEX = re.compile(
    r'^\s*CREATE\s+INDEX\s+ON\s+"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\(\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\)',
    re.IGNORECASE,
)


class VerificationFailed(ValueError):
    """The export does not verify against the digest; `where` locates the problem."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.reason = message


# --- contents ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TableInfo:
    """A table as the export describes it."""

    table_id: str
    name: str
    active: bool = True
    indexes: list[str] = field(default_factory=list)  # indexed fields, in creation order


@dataclass(slots=True)
class _Doc:
    table_id: str
    revision: Mapping[str, Any]


class ExportContents:
    """The tables, the latest revision of each document and (when asked) every revision, of
    blocks fed in journal order (verified blocks: feed them to `ChainVerifier` too)."""

    def __init__(self, *, keep_history: bool = False) -> None:
        self.tables: dict[str, TableInfo] = {}
        self.system_table_ids: set[str] = set()
        self._from_system: set[str] = set()  # tables the system table described
        self._docs: dict[str, _Doc] = {}
        self.keep_history = keep_history
        self.history: dict[str, list[Mapping[str, Any]]] = {}  # tableId -> revisions
        self._pending_indexes: list[tuple[str, str]] = []  # (table name, field)

    def feed(self, block: Mapping[str, Any]) -> None:
        info = block.get("transactionInfo") or {}
        documents = info.get("documents") or {}
        for entry in documents.values():
            name, table_id = entry.get("tableName"), entry.get("tableId")
            if not isinstance(name, str) or not isinstance(table_id, str):
                continue
            if name in SYSTEM_TABLE_NAMES or name.startswith("information_schema."):
                self.system_table_ids.add(table_id)
            elif table_id not in self.tables:
                self.tables[table_id] = TableInfo(table_id, name)
        for statement in info.get("statements") or []:
            match = _CREATE_INDEX.match(str(statement.get("statement", "")))
            if match:
                self._pending_indexes.append((match.group(1), match.group(2)))
        for revision in block.get("revisions") or []:
            metadata = revision.get("metadata")
            if not isinstance(metadata, Mapping):
                continue  # a system revision given as its hash only
            doc_id = str(metadata.get("id"))
            entry = documents.get(doc_id)
            if not isinstance(entry, Mapping):
                continue
            table_id = str(entry.get("tableId"))
            if table_id in self.system_table_ids:
                if entry.get("tableName") == "information_schema.user_tables":
                    self._system_revision(revision)
                continue
            self._docs[doc_id] = _Doc(table_id, revision)
            if self.keep_history:
                self.history.setdefault(table_id, []).append(revision)

    def _system_revision(self, revision: Mapping[str, Any]) -> None:
        data = revision.get("data")
        if not isinstance(data, Mapping):
            return
        table_id, name = data.get("tableId"), data.get("name")
        if not isinstance(table_id, str) or not isinstance(name, str):
            return
        indexes = []
        for index in data.get("indexes") or []:
            expr = str(index.get("expr", ""))
            if str(index.get("status", "ONLINE")) != "ONLINE" and index.get("status"):
                continue
            indexes.append(expr[1:-1] if expr.startswith("[") else expr)
        self.tables[table_id] = TableInfo(
            table_id, name, str(data.get("status", "ACTIVE")) == "ACTIVE", indexes
        )
        self._from_system.add(table_id)

    def active_tables(self) -> list[TableInfo]:
        """Active user tables, by name; tables the system table never described get the
        indexes of the `CREATE INDEX` statements that named them."""
        by_name: dict[str, TableInfo] = {}
        for table in self.tables.values():
            if table.active:
                by_name[table.name] = table  # a later table of one name replaces an older
        for name, fld in self._pending_indexes:
            found = by_name.get(name)
            if found is None or found.table_id in self._from_system:
                continue  # the system table's revisions listed its indexes exactly
            if fld not in found.indexes:
                found.indexes.append(fld)
        return [by_name[name] for name in sorted(by_name)]

    def live_documents(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        """(table name, QLDB document id, latest revision) of every live document of an
        active table, sorted by table name and document id."""
        active = {t.table_id: t.name for t in self.active_tables()}
        live = []
        for doc_id, doc in self._docs.items():
            name = active.get(doc.table_id)
            if name is not None and "data" in doc.revision:
                live.append((name, doc_id, doc.revision))
        live.sort(key=lambda item: (item[0], item[1]))
        return live

    def counts(self) -> dict[str, int]:
        deleted = sum(
            1
            for d in self._docs.values()
            if "data" not in d.revision and "dataHash" not in d.revision
        )
        redacted = sum(
            1 for d in self._docs.values() if "dataHash" in d.revision and "data" not in d.revision
        )
        return {"documents": len(self._docs), "deleted": deleted, "redactedLatest": redacted}

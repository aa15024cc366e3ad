"""Tables and indexes, kept as documents of a system table so they are journaled like data.

Every DDL statement writes a revision of the table's catalog document (table
`information_schema.user_tables`, document id = the table's id) into the block of its
transaction. The catalog is therefore derived from the journal like every other piece of
state, hashed into blockHash, and shown with QLDB's shape:
`{tableId, name, status: ACTIVE|INACTIVE, indexes: [{indexId, expr: "[field]", status}]}`.

Invariants: `Catalog` values are immutable (a change makes a new Catalog, so readers on other
threads see either the old or the new one, never half of one); at most one ACTIVE table per
name; QLDB's limits (20 active tables, 5 indexes per table) are checked by `check_*`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from core.errors import (
    IndexExistsError,
    InvalidArgumentError,
    LimitExceededError,
    TableExistsError,
    TableNotFoundError,
)
from core.limits import MAX_ACTIVE_TABLES, MAX_INDEXES_PER_TABLE

SYSTEM_TABLE_ID = "0" * 22
SYSTEM_TABLE_NAME = "information_schema.user_tables"
# Redaction requests (EXEC redact_revision) are journaled as documents of this system table.
REDACTION_TABLE_ID = "0" * 21 + "1"
REDACTION_TABLE_NAME = "information_schema.redactions"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_name(kind: str, name: object) -> str:
    """A table or field name: letters, digits and '_', not starting with a digit, <= 128."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}: use letters, digits and '_' (at most 128), "
            "not starting with a digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class IndexDef:
    index_id: str
    field: str
    status: str = "ONLINE"


@dataclass(frozen=True, slots=True)
class TableDef:
    table_id: str
    name: str
    status: str = "ACTIVE"
    indexes: tuple[IndexDef, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"

    def index_on(self, field: str) -> IndexDef | None:
        for index in self.indexes:
            if index.field == field:
                return index
        return None

    def with_index(self, index: IndexDef) -> TableDef:
        return replace(self, indexes=(*self.indexes, index))

    def to_document(self) -> dict[str, Any]:
        return {
            "tableId": self.table_id,
            "name": self.name,
            "status": self.status,
            "indexes": [
                {"indexId": i.index_id, "expr": f"[{i.field}]", "status": i.status}
                for i in self.indexes
            ],
        }

    @staticmethod
    def from_document(doc: Mapping[str, Any]) -> TableDef:
        indexes = tuple(
            IndexDef(str(i["indexId"]), str(i["expr"])[1:-1], str(i["status"]))
            for i in doc["indexes"]
        )
        return TableDef(str(doc["tableId"]), str(doc["name"]), str(doc["status"]), indexes)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every table ever created, by id; the active ones also by name."""

    tables: Mapping[str, TableDef]
    active_by_name: Mapping[str, str]

    @staticmethod
    def empty() -> Catalog:
        return Catalog({}, {})

    def with_table(self, table: TableDef) -> Catalog:
        tables = dict(self.tables)
        old = tables.get(table.table_id)
        tables[table.table_id] = table
        names = dict(self.active_by_name)
        if old is not None and old.active and names.get(old.name) == old.table_id:
            del names[old.name]
        if table.active:
            names[table.name] = table.table_id
        return Catalog(tables, names)

    def by_name(self, name: str) -> TableDef:
        table_id = self.active_by_name.get(name)
        if table_id is None:
            raise TableNotFoundError(f"no active table named {name!r}")
        return self.tables[table_id]

    def check_new_table(self, name: str) -> None:
        if name in self.active_by_name:
            raise TableExistsError(f"an active table named {name!r} already exists")
        if len(self.active_by_name) >= MAX_ACTIVE_TABLES:
            raise LimitExceededError(f"a ledger has at most {MAX_ACTIVE_TABLES} active tables")

    @staticmethod
    def check_new_index(table: TableDef, field: str) -> None:
        if table.index_on(field) is not None:
            raise IndexExistsError(f"table {table.name!r} already has an index on {field!r}")
        if len(table.indexes) >= MAX_INDEXES_PER_TABLE:
            raise LimitExceededError(
                f"a table has at most {MAX_INDEXES_PER_TABLE} indexes ({table.name!r})"
            )

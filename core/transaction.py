"""A transaction: reads recorded for OCC, writes buffered until commit.

Theory of operation. A transaction reads committed state directly (no locks) and records,
for every thing it read, the durable sequence number it read it at: a document by id
(`("d", tableId, docId)`), an index lookup as a predicate (`("x", indexId, H(value))`), a
scan as the whole table (`("t", tableId)`), a table name resolution (`("n", name)`), the
table count (`("c",)`). Writes and DDL are buffered here and become one block at commit.
A scan streams (`scan_documents`, `count_documents`): its table read is recorded before
storage is read, so its mark is at or below the snapshot the scan then reads (a commit in
between conflicts, none goes unseen), and only a chunk of the table is in memory at a time.
The engine validates at commit that nothing read changed after it was read; then the
transaction is equivalent to running alone at its commit point (serializable).

Invariants: a transaction sees its own writes; nothing it does is visible to others or
durable before commit; an error raised by any method leaves the transaction as it was;
QLDB's limits are checked as early as possible (40 written documents, 128 KB per document,
4 MB of documents per transaction). A transaction expires `timeout_ms` (QLDB's 30 s) after
`start_ms`: a PartiQL statement checks it while it evaluates (`deadline`), and a statement
that hits it makes the transaction expired for good (nothing more runs, it cannot commit).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import io
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict, IonPyNull
from amazon.ion.symbols import SymbolToken

from core import codec
from core.catalog import (
    SYSTEM_TABLE_ID,
    SYSTEM_TABLE_NAME,
    Catalog,
    IndexDef,
    TableDef,
    check_name,
)
from core.deadline import TRANSACTION_TIMEOUT_MS, Deadline
from core.errors import (
    DocumentNotFoundError,
    IndexNotFoundError,
    InvalidArgumentError,
    InvalidDocumentError,
    LimitExceededError,
    RevisionNotFoundError,
    TableExistsError,
    TableNotFoundError,
    TransactionError,
    TransactionExpiredError,
)
from core.ids import is_id, timestamp_from_ms
from core.ionhash import IonHashTypeError, dot, ion_hash
from core.journal import StatementRecord, statement_digest
from core.limits import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS_PER_TRANSACTION,
    MAX_TRANSACTION_BYTES,
    check_value,
)

# msgpack at most this size is at most MAX_DOCUMENT_BYTES of Ion binary; beyond, it is measured
_EXACT_SIZE_THRESHOLD_BYTES = 32 * 1024

ReadItem = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class DocState:
    """The current revision of a live document."""

    version: int
    seq: int
    data: dict[str, Any]


class ReadView(Protocol):
    """What a transaction reads from the engine; safe to call from any thread."""

    @property
    def durable_seq(self) -> int: ...

    @property
    def catalog(self) -> Catalog: ...

    def read_doc(self, table_id: str, doc_id: str) -> DocState | None: ...

    def scan_docs(self, table_id: str) -> Iterator[tuple[str, DocState]]: ...

    def count_docs(
        self,
        table_id: str,
        excluding: Collection[str] = (),
        charge: Callable[[int], None] | None = None,
    ) -> int: ...

    def index_doc_ids(self, index_id: str, value_hash: bytes) -> list[str]: ...

    @property
    def strand_id(self) -> str: ...

    def read_block(self, seq: int) -> dict[str, Any]: ...

    def table_history(
        self,
        table_id: str,
        document_id: str | None,
        start: datetime.datetime | None,
        end: datetime.datetime | None,
    ) -> list[dict[str, Any]]: ...


class TransactionRunner(Protocol):
    """A ledger handle that runs functions in transactions: the embedded `Ledger` and the
    cluster's `LedgerCluster` both fit (what the importer and the chaos workload drive)."""

    def execute_lambda(
        self,
        fn: Callable[[Transaction], Any],
        retry_limit: int = ...,
        *,
        transaction_id: str | None = ...,
    ) -> Any: ...


@dataclass(slots=True)
class PendingWrite:
    """The value a transaction wrote to one document (None = deleted)."""

    table: TableDef
    data: dict[str, Any] | None
    data_hash: bytes
    packed: bytes
    statement_indexes: list[int]


@functools.lru_cache(maxsize=4096)
def _text_hash(text: str) -> bytes:
    return ion_hash(text)


@functools.lru_cache(maxsize=1024)
def _timestamp(epoch_ms: int) -> Any:
    return timestamp_from_ms(epoch_ms)


def index_keys(data: Mapping[str, Any], field: str, *, exact: bool = False) -> frozenset[bytes]:
    """The keys a document has in an index on `field`: one per value of every top-level
    field whose name is `field` up to case (a struct may repeat a name, and PartiQL's
    unquoted `t.field` matches any case), so an index lookup finds a superset of what the
    query's path finds. `exact`: only fields spelled exactly `field`."""
    low = field.lower()
    return frozenset(
        value_key(v) for k, v in data.items() if k == field or (not exact and str(k).lower() == low)
    )


def value_key(value: object) -> bytes:
    """The key a value has in an index: the Ion hash of its normal form.

    PartiQL's `=` finds 1, 1.0, 1e0 and -0e0 = 0 equal, a string equal to the symbol of the
    same text, timestamps equal when they are the same instant (whatever their precision or
    offset), and containers equal element by element, so an index must file all of them
    under one key: a number is filed as one decimal per value (`_normal_number`), a symbol
    as its text, a timestamp as its UTC instant, a list or struct as the normal forms of its
    elements, annotations are dropped. Values equal under `=` have equal keys (a key may be
    shared by unequal values: the query always re-checks with `=`).
    """
    return ion_hash(_normal(value))


_INTEGRAL_DIGITS = 10_000  # integral numbers up to this size are filed as exact integers


def _normal(value: object, *, nested: bool = False) -> object:
    """The normal form of a value for its index key (values equal under `=` share one)."""
    if value is None or isinstance(value, IonPyNull):
        return None if nested else value  # `= null` never matches at the top level
    ion_type = getattr(value, "ion_type", None)
    if isinstance(value, bool) or ion_type == IonType.BOOL:
        return bool(value)
    if isinstance(value, SymbolToken):
        return value if value.text is None else str(value.text)
    if isinstance(value, int | float | decimal.Decimal):
        return _normal_number(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.datetime):
        # `=` compares instants: precision and offset do not matter (sub-microsecond
        # digits are left out, which only makes the key coarser)
        utc = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        instant = utc.astimezone(datetime.UTC).replace(tzinfo=None)
        return "\x00timestamp " + instant.isoformat(timespec="microseconds")
    if isinstance(value, Mapping):  # repeated field names kept (Ion Hash orders fields)
        struct = IonPyDict.from_value(IonType.STRUCT, {})
        for k, v in value.items():
            struct.add_item(str(k), _normal(v, nested=True))
        return struct
    if isinstance(value, list | tuple):
        return [_normal(v, nested=True) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value


# `normalize` as the keys of existing indexes were made (the default context), except that
# a value beyond its exponent range gives a key (an infinite float) instead of raising.
_KEY_CONTEXT = decimal.Context(
    prec=28, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation]
)


def _normal_number(value: int | float | decimal.Decimal) -> object:
    """A finite number as one decimal per value: an integral value as its exact integer
    (1, 1.0, 1e0, 100, 1.00E+2 -> Decimal(1) / Decimal(100)), zero of any sign as 0, any
    other value normalised; NaN and infinities stay floats. The work is bounded by
    _INTEGRAL_DIGITS and the number of digits, never by the exponent, and nothing raises."""
    if isinstance(value, float) and not math.isfinite(value):
        return float(value)
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        return value
    exact = decimal.Decimal(int(value)) if isinstance(value, int) else decimal.Decimal(value)
    if exact.is_zero():
        return decimal.Decimal(0)
    if 0 <= exact.adjusted() < _INTEGRAL_DIGITS and exact == exact.to_integral_value():
        return exact if isinstance(value, int) else decimal.Decimal(int(exact))
    key = exact.normalize(_KEY_CONTEXT)
    return key if key.is_finite() else float(key)  # beyond the context's range: +-inf


def ion_binary_size(document: object) -> int:
    """The size of a stored document as Ion binary. amazon-ion's C extension measures it:
    it only ever sees documents that passed `check_value` (it crashes the process on an
    integer of more than 4,300 digits, which MAX_INT_DIGITS keeps out); should it still
    refuse one, the pure-Python writer measures it instead."""
    try:
        return len(simpleion.dumps(document, binary=True))
    except Exception:  # amazon-ion raises unrelated types; the slow writer is exact too
        pass
    out = io.BytesIO()
    try:
        simpleion.dump_python(document, out, binary=True)
    except Exception as exc:
        raise InvalidDocumentError(f"not a storable Ion document: {exc}") from exc
    return len(out.getvalue())


def prepare_document(doc: object) -> tuple[dict[str, Any], bytes, bytes]:
    """(private copy, H(doc), msgpack bytes) of a document, or a typed error: a value beyond
    Strand's bounds (core/limits.py) is refused before anything is encoded or hashed."""
    if not isinstance(doc, Mapping):
        raise InvalidDocumentError(f"a document is a struct (dict), not {type(doc).__name__}")
    for key in doc:
        if not isinstance(key, str):
            raise InvalidDocumentError(f"document field names are strings, not {key!r}")
    check_value(doc, "the document")
    try:
        packed = codec.pack(doc)
        copy = codec.unpack(packed)
        data_hash = ion_hash(copy)
    except (TypeError, ValueError) as exc:
        raise InvalidDocumentError(f"not a storable Ion document: {exc}") from exc
    size = len(packed)
    if size > _EXACT_SIZE_THRESHOLD_BYTES:
        size = ion_binary_size(copy)
    if size > MAX_DOCUMENT_BYTES:
        raise LimitExceededError(
            f"document is {size} bytes of Ion binary, the limit is {MAX_DOCUMENT_BYTES}"
        )
    assert isinstance(copy, Mapping)
    return copy, data_hash, packed  # type: ignore[return-value]


class Transaction:
    """One transaction; made by the engine, used by one thread."""

    def __init__(
        self,
        view: ReadView,
        transaction_id: str,
        start_ms: int,
        clock_ms: Callable[[], int],
        new_id: Callable[[], str],
        timeout_ms: int = TRANSACTION_TIMEOUT_MS,
    ) -> None:
        self.transaction_id = transaction_id
        self.start_ms = start_ms
        self.timeout_ms = timeout_ms
        self.expired = False  # a statement ran past the deadline: the transaction is gone
        self._view = view
        self._clock_ms = clock_ms
        self._new_id = new_id
        self.reads: dict[ReadItem, int] = {}
        self.writes: dict[tuple[str, str], PendingWrite] = {}
        self.created: set[tuple[str, str]] = set()  # documents this transaction inserted
        self._ion_sizes: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.tables: dict[str, TableDef] = {}  # DDL: new table definitions by table id
        self.statements: list[StatementRecord] = []
        # EXEC redact_revision: (request document id, request, statement index)
        self.redactions: list[tuple[str, dict[str, Any], int]] = []
        self.finished = False
        self._active_statement: int | None = None  # a PartiQL statement being executed

    # ----------------------------------------------------------------- bookkeeping
    def _read(self, *item: object) -> None:
        self.reads.setdefault(item, self._view.durable_seq)

    def _statement(self, text: str, *parameter_hashes: bytes) -> int:
        """Record a statement in transactionInfo; inside `statement()` the PartiQL statement
        being executed is the one recorded (the native call records nothing of its own)."""
        if self._active_statement is not None:
            return self._active_statement
        digest = statement_digest(_text_hash(text), parameter_hashes)
        self.statements.append(StatementRecord(text, _timestamp(self._clock_ms()), digest))
        return len(self.statements) - 1

    @contextlib.contextmanager
    def statement(self, text: str, parameter_hashes: Sequence[bytes]) -> Iterator[int]:
        """Run one PartiQL statement's operations as a unit: the statement is recorded once
        (text, start time, digest over its parameters), every write it makes names it, and
        if any operation raises, its writes, DDL, redactions and statement record are undone
        (what it read stays in the read set, see below)."""
        self._check_open()
        if self._active_statement is not None:
            raise TransactionError("statements do not nest")
        saved = (dict(self.writes), dict(self.tables), len(self.statements), list(self.redactions))
        index = self._statement(text, *parameter_hashes)
        self._active_statement = index
        try:
            yield index
        except BaseException as exc:
            if isinstance(exc, TransactionExpiredError):
                self.expired = True
            # The reads stay: the caller saw the statement fail, and that outcome depended
            # on what it read (a scan that hit the 40-document limit, a table found missing),
            # so the commit must still conflict if any of it changes. Extra reads only ever
            # add conflicts.
            writes, tables, count, redactions = saved
            self.writes, self.tables = writes, tables
            del self.statements[count:]
            self.redactions = redactions
            raise
        finally:
            self._active_statement = None

    def commit_digest(self) -> bytes:
        """QLDB's commit digest: t = H(txId); t = dot(t, statementDigest) per statement."""
        digest = _text_hash(self.transaction_id)
        for record in self.statements:
            digest = dot(digest, record.digest)
        return digest

    def _check_open(self) -> None:
        if self.finished:
            raise TransactionError("the transaction has already ended")
        if self.expired:
            raise TransactionExpiredError(f"Transaction {self.transaction_id} has expired")

    def deadline(self, now_ms: int) -> Deadline:
        """The deadline a statement's evaluation charges: this transaction's expiry, on its
        clock. Raises TransactionExpiredError if it has passed at `now_ms` already."""
        expires_ms = self.start_ms + self.timeout_ms
        if now_ms > expires_ms:
            raise TransactionExpiredError(self._expiry_message())
        return Deadline(self._clock_ms, expires_ms, self._expiry_message, now_ms=now_ms)

    def _expiry_message(self) -> str:
        # begins as pyqldb expects of an expired transaction (it then does not retry)
        return (
            f"Transaction {self.transaction_id} has expired: its {self.timeout_ms / 1000:g} s "
            "limit was reached during statement evaluation. Narrow the query (an equality on "
            "an indexed field or the document id in WHERE, fewer joined rows, a simpler LIKE "
            "pattern) or split the work over several transactions"
        )

    def _table(self, name: str) -> TableDef:
        self._check_open()
        if not isinstance(name, str):
            raise InvalidArgumentError(f"a table name is a string, not {name!r}")
        for table in self.tables.values():
            if table.name == name and table.active:
                return table
        self._read("n", name)
        try:
            table = self._view.catalog.by_name(name)
        except TableNotFoundError:
            raise TableNotFoundError(f"no active table named {name!r}") from None
        own = self.tables.get(table.table_id)
        if own is not None and not own.active:  # dropped by this transaction
            raise TableNotFoundError(f"no active table named {name!r}")
        return own or table

    def catalog(self) -> Catalog:
        """The catalog as this transaction sees it (committed plus its own DDL); reading it
        whole records a read of every table definition."""
        self._read("t", SYSTEM_TABLE_ID)
        catalog = self._view.catalog
        for table in self.tables.values():
            catalog = catalog.with_table(table)
        return catalog

    def _read_doc(self, table_id: str, doc_id: str) -> DocState | None:
        """Read a committed document and record it in the read set.

        The recorded mark is max(durable seq before the read, the document's own seq): every
        modification at or below the first was visible to the read, and the document read is
        the one written at the second, so the value is current as of that mark.
        """
        durable = self._view.durable_seq
        state = self._view.read_doc(table_id, doc_id)
        mark = durable if state is None else max(durable, state.seq)
        self.reads.setdefault(("d", table_id, doc_id), mark)
        return state

    def _current(self, table: TableDef, doc_id: str) -> dict[str, Any] | None:
        pending = self.writes.get((table.table_id, doc_id))
        if pending is not None:
            return pending.data
        state = self._read_doc(table.table_id, doc_id)
        return None if state is None else state.data

    def _write(
        self,
        table: TableDef,
        doc_id: str,
        prepared: tuple[dict[str, Any], bytes, bytes] | None,
        text: str,
        *parameter_hashes: bytes,
    ) -> None:
        """Record the statement and buffer the write; checks the limit before changing anything."""
        key = (table.table_id, doc_id)
        if key not in self.writes and len(self.writes) >= MAX_DOCUMENTS_PER_TRANSACTION:
            raise LimitExceededError(
                f"a transaction writes at most {MAX_DOCUMENTS_PER_TRANSACTION} documents"
            )
        data, data_hash, packed = (None, b"", b"") if prepared is None else prepared
        self._check_transaction_size(key, data, packed)
        statement = self._statement(text, *parameter_hashes)
        previous = self.writes.get(key)
        indexes = [] if previous is None else previous.statement_indexes
        if statement not in indexes:
            indexes = [*indexes, statement]
        self.writes[key] = PendingWrite(table, data, data_hash, packed, indexes)

    def _check_transaction_size(
        self, key: tuple[str, str], data: dict[str, Any] | None, packed: bytes
    ) -> None:
        """QLDB's 4 MB per transaction, over the documents it writes. The msgpack size
        stands in for the Ion binary size until the total nears the limit; then the Ion
        binary sizes are measured exactly."""
        others = [(k, w) for k, w in self.writes.items() if k != key and w.data is not None]
        total = len(packed) + sum(len(w.packed) for _, w in others)
        if total <= MAX_TRANSACTION_BYTES // 2:
            return
        total = sum(self._ion_size(k, w.packed, w.data) for k, w in others)
        if data is not None:
            total += self._ion_size(key, packed, data)
        if total > MAX_TRANSACTION_BYTES:
            raise LimitExceededError(
                f"a transaction writes at most {MAX_TRANSACTION_BYTES} bytes of documents "
                f"(Ion binary); this write makes it {total}"
            )

    def _ion_size(self, key: tuple[str, str], packed: bytes, data: Any) -> int:
        """The Ion binary size of a pending document (measured once per version)."""
        hit = self._ion_sizes.get(key)
        if hit is None or hit[0] is not packed:
            hit = self._ion_sizes[key] = (packed, ion_binary_size(data))
        return hit[1]

    # ----------------------------------------------------------------- DDL
    def create_table(self, name: str) -> str:
        """Create a table; returns its id."""
        self._check_open()
        check_name("table", name)
        if name.lower() == "information_schema" or name.lower().startswith("_ql_"):
            raise InvalidArgumentError(
                f"invalid table name {name!r}: information_schema and names beginning with "
                "_ql_ are the ledger's own (its system views and _ql_committed_ views)"
            )
        self._read("n", name)
        self._read("c")
        catalog = self._view.catalog
        for table in self.tables.values():
            catalog = catalog.with_table(table)
        catalog.check_new_table(name)
        table = TableDef(self._new_id(), name)
        self._statement(f'CREATE TABLE "{name}"')
        self.tables[table.table_id] = table
        return table.table_id

    def create_index(self, table_name: str, field: str) -> str:
        """Create an index on a top-level field; returns the index id."""
        table = self._table(table_name)
        check_name("field", field)
        Catalog.check_new_index(table, field)
        index = IndexDef(self._new_id(), field)
        self._statement(f'CREATE INDEX ON "{table.name}" ("{field}")')
        self._define(table.with_index(index))
        return index.index_id

    def _define(self, table: TableDef) -> None:
        self.tables[table.table_id] = table
        for key, pending in self.writes.items():  # keep own writes' table defs
            if key[0] == table.table_id:
                self.writes[key] = replace(pending, table=table)

    def drop_table(self, name: str) -> str:
        """Deactivate a table (its documents and history stay); returns its id."""
        table = self._table(name)
        self._statement(f'DROP TABLE "{table.name}"')
        self._define(replace(table, status="INACTIVE"))
        return table.table_id

    def undrop_table(self, table_id: str) -> str:
        """Reactivate a dropped table by id; returns the id."""
        self._check_open()
        if not is_id(table_id):
            raise InvalidArgumentError(f"a table id is 22 base62 characters, not {table_id!r}")
        self._read("t", SYSTEM_TABLE_ID)
        catalog = self.catalog()
        table = catalog.tables.get(table_id)
        if table is None or table_id == SYSTEM_TABLE_ID:
            raise TableNotFoundError(f"no table with id {table_id!r}")
        if table.active:
            raise TableExistsError(f"table {table.name!r} ({table_id}) is active")
        catalog.check_new_table(table.name)
        self._statement(f'UNDROP TABLE "{table_id}"')
        self._define(replace(table, status="ACTIVE"))
        return table_id

    def drop_index(self, table_name: str, index_id: str) -> str:
        """Remove an index (its entries are purged); returns the table's id."""
        table = self._table(table_name)
        remaining = tuple(i for i in table.indexes if i.index_id != index_id)
        if len(remaining) == len(table.indexes):
            raise IndexNotFoundError(f"table {table.name!r} has no index {index_id!r}")
        self._statement(f'DROP INDEX "{index_id}" ON "{table.name}" WITH (purge = true)')
        self._define(replace(table, indexes=remaining))
        return table.table_id

    # ----------------------------------------------------------------- DML
    def insert(self, table_name: str, doc: Mapping[str, Any]) -> str:
        """Insert a document; returns its new 22-character id."""
        table = self._table(table_name)
        prepared = prepare_document(doc)
        doc_id = self._new_id()
        self._write(table, doc_id, prepared, f'INSERT INTO "{table.name}" ?', prepared[1])
        self.created.add((table.table_id, doc_id))
        return doc_id

    def get(self, table_name: str, doc_id: str) -> dict[str, Any] | None:
        """The document with that id, or None."""
        table = self._table(table_name)
        _check_doc_id(doc_id)
        self._statement(f'SELECT * FROM "{table.name}" AS d BY id WHERE id = ?', _text_hash(doc_id))
        pending = self.writes.get((table.table_id, doc_id))
        if pending is not None:  # a private copy of our own write
            return None if pending.data is None else codec.unpack(pending.packed)  # type: ignore[no-any-return]
        state = self._read_doc(table.table_id, doc_id)
        return None if state is None else state.data  # freshly decoded: the caller's to keep

    def update(self, table_name: str, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Replace the document with that id by `doc` (a new revision)."""
        table = self._table(table_name)
        _check_doc_id(doc_id)
        prepared = prepare_document(doc)
        if self._current(table, doc_id) is None:
            raise DocumentNotFoundError(f"no document {doc_id!r} in table {table.name!r}")
        text = f'UPDATE "{table.name}" AS d BY id SET d = ? WHERE id = ?'
        self._write(table, doc_id, prepared, text, prepared[1], _text_hash(doc_id))

    def delete(self, table_name: str, doc_id: str) -> None:
        """Delete the document with that id (its last revision has no data)."""
        table = self._table(table_name)
        _check_doc_id(doc_id)
        if self._current(table, doc_id) is None:
            raise DocumentNotFoundError(f"no document {doc_id!r} in table {table.name!r}")
        text = f'DELETE FROM "{table.name}" AS d BY id WHERE id = ?'
        self._write(table, doc_id, None, text, _text_hash(doc_id))

    def find(
        self, table_name: str, where: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> list[tuple[str, dict[str, Any]]]:
        """Documents whose top-level fields equal the given values (Ion equivalence).

        Uses an index when one of the fields has one (a narrow read); otherwise reads
        the whole table.
        """
        table = self._table(table_name)
        wanted = {**(where or {}), **fields}
        for field in wanted:
            check_name("field", field)
        check_value(wanted, "the values find() looks for")
        try:
            keys = {field: value_key(value) for field, value in wanted.items()}
        except IonHashTypeError as exc:  # a lone surrogate, a type Ion does not have
            raise InvalidArgumentError(f"find() looks for Ion values: {exc}") from None
        text = f'SELECT * FROM "{table.name}" AS d'
        if wanted:
            text += " WHERE " + " AND ".join(f'd."{f}" = ?' for f in wanted)
        self._statement(text, *keys.values())
        result = []
        for doc_id, data in self._candidates(table, keys):
            if all(k in index_keys(data, f, exact=True) for f, k in keys.items()):
                result.append((doc_id, data))
        return result

    # ----------------------------------------------------------------- PartiQL support
    def execute_statement(self, statement: str, *parameters: Any) -> list[Any]:
        """Run a PartiQL statement in this transaction; returns its rows (a Cursor).

        Parameters (`?`) are Ion values or plain Python values. See core/partiql/executor.py.
        A statement too deep for Python's stack, which the bounds of core/limits.py should
        never let through, is a LimitExceededError (the statement was undone) rather than a
        RecursionError.
        """
        from core.partiql.executor import execute  # the executor builds on this module

        try:
            return execute(self, statement, parameters)
        except RecursionError:
            raise LimitExceededError(
                "the statement, or a value it reaches, is nested too deeply to evaluate; "
                "flatten it or split it into several statements"
            ) from None

    def now_ms(self) -> int:
        return self._clock_ms()

    def engine_view(self) -> ReadView:
        return self._view

    def table(self, name: str) -> TableDef:
        """The active table of that name (records the name's resolution)."""
        return self._table(name)

    def catalog_view(self) -> Catalog:
        """Committed catalog plus own DDL, without recording a read (for name listing)."""
        catalog = self._view.catalog
        for table in self.tables.values():
            catalog = catalog.with_table(table)
        return catalog

    def read_table(self, table: TableDef) -> None:
        """Record a read of the whole table (anything written to it conflicts)."""
        self._read("t", table.table_id)

    def select_documents(
        self, table: TableDef, field: str | None = None, values: Sequence[Any] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Live documents (own writes included) that may match: every document when
        `values` is None (a table read); with `field` None, the documents with those ids;
        with an indexed field (`index_for`: any spelling of it), the index's entries for
        those values (narrow reads); otherwise the whole table. The caller filters."""
        self._check_open()
        found: dict[str, dict[str, Any] | None] = {}
        if values is not None and field is None:
            for doc_id in values:
                found[doc_id] = self._current(table, doc_id)
            return [(d, data) for d, data in found.items() if data is not None]
        index = None if field is None else self.index_for(table, field)
        if values is None or index is None:
            return list(self.scan_documents(table))
        for value in values:
            key = value_key(value)
            self._read("x", index.index_id, key)
            for doc_id in self._view.index_doc_ids(index.index_id, key):
                state = self._read_doc(table.table_id, doc_id)
                found[doc_id] = None if state is None else state.data
        for (table_id, doc_id), pending in self.writes.items():
            if table_id == table.table_id:  # own writes, as private copies
                found[doc_id] = None if pending.data is None else codec.unpack(pending.packed)
        return [(doc_id, data) for doc_id, data in found.items() if data is not None]

    def scan_documents(self, table: TableDef) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every live document of the table (own writes included), streamed: documents are
        read from storage and decoded one at a time as the caller consumes them, so a scan
        holds one chunk of the table in memory, not the table. The read of the whole table
        is recorded now, before storage is read (its mark is then at or below the snapshot
        the scan reads: a commit in between conflicts, never goes unseen), and own writes
        are taken as they are now."""
        self._check_open()
        own = {d: w for (t, d), w in self.writes.items() if t == table.table_id}
        committed = table.table_id in self._view.catalog.tables
        if committed:
            self._read("t", table.table_id)
        return self._stream(table.table_id, committed, own)

    def _stream(
        self, table_id: str, committed: bool, own: dict[str, PendingWrite]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if committed:
            for doc_id, state in self._view.scan_docs(table_id):
                pending = own.pop(doc_id, None) if own else None
                if pending is None:
                    yield doc_id, state.data
                elif pending.data is not None:  # own write, as a private copy
                    yield doc_id, codec.unpack(pending.packed)
        for doc_id, pending in own.items():
            if pending.data is not None:
                yield doc_id, codec.unpack(pending.packed)

    def count_documents(self, table: TableDef, charge: Callable[[int], None] | None = None) -> int:
        """How many live documents the table holds (own writes included): what
        `len(list(scan_documents(table)))` is, with the same read recorded, counted from
        storage keys without reading or decoding a document."""
        self._check_open()
        own = {d: w for (t, d), w in self.writes.items() if t == table.table_id}
        count = sum(1 for w in own.values() if w.data is not None)
        if table.table_id in self._view.catalog.tables:
            self._read("t", table.table_id)
            count += self._view.count_docs(table.table_id, own.keys(), charge)
        return count

    def narrow_lookup(self, table: TableDef, field: str) -> bool:
        """Whether select_documents(table, field, values) reads through an index (narrowly)
        rather than the whole table."""
        return self.index_for(table, field) is not None

    def index_for(self, table: TableDef, field: str) -> IndexDef | None:
        """The committed index a lookup on top-level `field` reads (an index created in
        this transaction is built only at commit, so it cannot be read yet): the index on
        `field` spelled exactly so, else the first index on a field equal to it up to case.
        An index files every value of every top-level field named as it is up to case
        (`index_keys`), so either holds an entry for every document whose `field` (quoted
        or not) can equal a value: a superset, which the query's WHERE then filters."""
        committed = self._view.catalog.tables.get(table.table_id)
        if committed is None:
            return None
        exact = committed.index_on(field)
        if exact is not None:
            return exact
        low = field.lower()
        return next((i for i in committed.indexes if i.field.lower() == low), None)

    def committed_documents(self, table: TableDef) -> Iterator[tuple[str, DocState]]:
        """The table's committed live documents, streamed (a table read, recorded now; own
        writes not included)."""
        self._check_open()
        self._read("t", table.table_id)
        if table.table_id not in self._view.catalog.tables:
            return iter(())
        return self._view.scan_docs(table.table_id)

    def _candidates(
        self, table: TableDef, keys: Mapping[str, bytes]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The documents a find() must check: an index's entries for one of the fields
        (narrow reads), else the whole table, streamed."""
        field = next((f for f in keys if self.index_for(table, f) is not None), None)
        if field is None:
            return self.scan_documents(table)
        index = self.index_for(table, field)
        assert index is not None
        found: dict[str, dict[str, Any] | None] = {}
        self._read("x", index.index_id, keys[field])
        for doc_id in self._view.index_doc_ids(index.index_id, keys[field]):
            state = self._read_doc(table.table_id, doc_id)
            found[doc_id] = None if state is None else state.data
        for (table_id, doc_id), pending in self.writes.items():
            if table_id == table.table_id:  # own writes, as private copies
                found[doc_id] = None if pending.data is None else codec.unpack(pending.packed)
        return iter([(doc_id, data) for doc_id, data in found.items() if data is not None])

    # ----------------------------------------------------------------- redaction
    def redact_revision(self, block_address: object, table_id: str, doc_id: str) -> dict[str, Any]:
        """Ask for one earlier revision's data to be removed from the journal (QLDB's
        redact_revision). The revision keeps its hash: its data is replaced by `dataHash`,
        so every proof still verifies. The latest revision of a live document cannot be
        redacted; a transaction redacts at most one revision."""
        self._check_open()
        if self.redactions:
            raise LimitExceededError("a transaction redacts at most one revision")
        if not isinstance(block_address, Mapping) or set(block_address) != {
            "strandId",
            "sequenceNo",
        }:
            raise InvalidArgumentError(
                f"a block address is {{strandId, sequenceNo}}, got {block_address!r}"
            )
        _check_doc_id(doc_id)
        seq = block_address["sequenceNo"]
        if block_address["strandId"] != self._view.strand_id or not isinstance(seq, int):
            raise InvalidArgumentError(f"no block at {block_address!r} in this ledger")
        table = self._view.catalog.tables.get(table_id) if isinstance(table_id, str) else None
        if table is None or table_id == SYSTEM_TABLE_ID:
            raise TableNotFoundError(f"no table with id {table_id!r}")
        if not 0 < seq <= self._view.durable_seq:
            raise InvalidArgumentError(f"no committed block {seq} in this ledger")
        block = self._view.read_block(seq)
        revision = next((r for r in block["revisions"] if r["metadata"]["id"] == doc_id), None)
        info = block["transactionInfo"]["documents"].get(doc_id)
        if revision is None or info is None or info["tableId"] != table_id:
            raise RevisionNotFoundError(
                f"block {seq} holds no revision of document {doc_id!r} of table {table_id!r}"
            )
        if "data" not in revision:
            raise InvalidArgumentError(f"that revision of {doc_id!r} has no data to redact")
        version = revision["metadata"]["version"]
        current = self._read_doc(table_id, doc_id)
        if current is not None and current.version == version:
            raise InvalidArgumentError(
                f"revision {version} is the latest revision of live document {doc_id!r}"
            )
        request = {
            "tableId": table_id,
            "documentId": doc_id,
            "version": version,
            "blockAddress": {"strandId": self._view.strand_id, "sequenceNo": seq},
        }
        statement = self._statement(
            "EXEC redact_revision ?, ?, ?",
            ion_hash(request["blockAddress"]),
            _text_hash(table_id),
            _text_hash(doc_id),
        )
        self.redactions.append((self._new_id(), request, statement))
        return {
            "blockAddress": dict(request["blockAddress"]),
            "tableId": table_id,
            "documentId": doc_id,
            "version": version,
        }

    # ----------------------------------------------------------------- commit support
    @property
    def read_only(self) -> bool:
        return not self.writes and not self.tables and not self.redactions

    def system_writes(self) -> list[tuple[TableDef, dict[str, Any]]]:
        """The catalog documents this transaction's DDL writes."""
        return [(t, t.to_document()) for t in self.tables.values()]


def encode_state(tx: Transaction) -> bytes:
    """A transaction's state as bytes: what it read (with the marks), its buffered writes,
    DDL, redactions and statement records. `decode_state` gives back a transaction that
    commits exactly as this one would; the cluster ships running transactions this way
    between the node that commits and the worker process that runs the user's code."""
    body = [
        tx.transaction_id,
        tx.start_ms,
        [[*item, seq] for item, seq in tx.reads.items()],
        [
            [
                t,
                d,
                w.table.to_document(),
                w.data is not None,
                w.packed,
                w.data_hash,
                w.statement_indexes,
            ]
            for (t, d), w in tx.writes.items()
        ],  # fmt: skip
        [[t, d] for t, d in sorted(tx.created)],
        [table.to_document() for table in tx.tables.values()],
        [[r.text, r.start_time, r.digest] for r in tx.statements],
        [[request_id, request, index] for request_id, request, index in tx.redactions],
    ]
    return codec.pack(body, check_names=False)


def decode_state(
    data: bytes,
    view: ReadView,
    clock_ms: Callable[[], int],
    new_id: Callable[[], str],
    timeout_ms: int = TRANSACTION_TIMEOUT_MS,
) -> Transaction:
    """The transaction `encode_state` encoded, reading through `view` from now on.
    Raises InvalidArgumentError for bytes that are not such a state."""
    try:
        tx_id, start_ms, reads, writes, created, tables, statements, redactions = codec.unpack(data)
        tx = Transaction(view, tx_id, start_ms, clock_ms, new_id, timeout_ms)
        tx.reads = {tuple(item[:-1]): item[-1] for item in reads}
        for table_id, doc_id, table, live, packed, data_hash, indexes in writes:
            value = codec.unpack(packed) if live else None
            tx.writes[(table_id, doc_id)] = PendingWrite(
                TableDef.from_document(table), value, data_hash, packed, list(indexes)
            )
        tx.created = {(t, d) for t, d in created}
        for document in tables:
            table = TableDef.from_document(document)
            tx.tables[table.table_id] = table
        tx.statements = [StatementRecord(text, at, digest) for text, at, digest in statements]
        tx.redactions = [(r, dict(request), int(i)) for r, request, i in redactions]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgumentError(f"not a transaction's state: {exc}") from exc
    if not is_id(tx.transaction_id):
        raise InvalidArgumentError("not a transaction's state: bad transaction id")
    return tx


def _check_doc_id(doc_id: object) -> None:
    if not is_id(doc_id):
        raise InvalidArgumentError(f"a document id is 22 base62 characters, not {doc_id!r}")


SYSTEM_TABLE = TableDef(SYSTEM_TABLE_ID, SYSTEM_TABLE_NAME)

"""Pure logic of `strand import`: rows to documents, documents to batches, batch ids.

A source (JSON Lines, CSV or Ion, read in cluster/importer.py) yields `Record`s: a position
(the record's number, 1-based, and the byte offset just after it when the reader knows it)
and either a document or the reason it was refused. `convert_json_line` and `convert_csv_row`
turn raw rows into documents; `check_document` applies the engine's own document checks
(`core.transaction.prepare_document`: a struct, storable Ion, values within Strand's bounds,
at most MAX_DOCUMENT_BYTES of Ion binary), so a row the planner accepts is a row the
transaction accepts. `plan_batches` groups accepted documents into `Batch`es that stay
within a transaction's limits (MAX_DOCUMENTS_PER_TRANSACTION documents and
MAX_TRANSACTION_BYTES of documents, measured as the transaction measures them).

Exactly-once. Each batch is committed as one transaction whose id is
`batch_transaction_id(import_key, batch_no)`: a pure function of the import (its input's
content hash and every option that changes batching) and of the batch number. Batching is
deterministic: batch n + 1 starts right after batch n, and what it holds depends only on the
records from there on. So a resumed import (from its checkpoint, or from the start when the
checkpoint is lost or one batch behind) produces the same batches under the same ids, and the
journal answers `TransactionCommittedError` for each batch it already holds: no batch is
applied twice and none is skipped.

Conversions. JSON: objects only; integers stay ints, other numbers become exact decimals
(`Decimal(text)`: the digits written are the digits stored, as money needs); NaN and
Infinity are refused (neither JSON nor Ion decimals have them). CSV: a header row names the
fields; every cell is a string unless `--types` gives its column a type (int, float, decimal,
bool, timestamp, string); an empty cell of a typed column is null.

Invariants: nothing here does I/O or keeps state between calls; a row error is always a
`RowError` with a message for the rejects report, never another exception.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from amazon.ion.core import Timestamp

from core.errors import StrandError
from core.ids import base62_id
from core.limits import MAX_DOCUMENTS_PER_TRANSACTION, MAX_TRANSACTION_BYTES
from core.transaction import ion_binary_size, prepare_document

__all__ = [
    "COLUMN_TYPES",
    "Batch",
    "Record",
    "Reject",
    "RowError",
    "batch_transaction_id",
    "check_document",
    "convert_csv_row",
    "convert_json_line",
    "import_key",
    "parse_types",
    "plan_batches",
]

EXCERPT_CHARS: Final = 200  # how much of a refused row the rejects report quotes
_EXACT_SIZE_ABOVE_BYTES: Final = MAX_TRANSACTION_BYTES // 2  # as Transaction measures


class RowError(ValueError):
    """A row that cannot become a document; the message is the reason reported."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A refused row: its number in the source (1-based), the reason, an excerpt."""

    record_no: int
    reason: str
    excerpt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record_no, "reason": self.reason, "excerpt": self.excerpt}


@dataclass(frozen=True, slots=True)
class Record:
    """One row of a source: a document (already checked) for table `table`, a Reject, or
    neither (a blank line, counted but skipped). `end_offset` is the byte offset just after
    the row, when the reader knows it (None for Ion)."""

    record_no: int
    end_offset: int | None
    document: Mapping[str, Any] | None = None
    size: int = 0  # msgpack size of the document (what Transaction counts first)
    reject: Reject | None = None
    table: str = ""


@dataclass(slots=True)
class Batch:
    """Documents for one transaction, and the rejects met since the previous batch.

    `next_record` / `next_offset` say where the batch after it starts (the resume point once
    this batch is committed). A final batch may hold rejects only (no transaction then)."""

    number: int
    documents: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)  # (table, doc)
    first_record: int = 1
    rejects: list[Reject] = field(default_factory=list)
    next_record: int = 1
    next_offset: int | None = None


def excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.rstrip("\r\n")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


# --- documents --------------------------------------------------------------------------------


def check_document(doc: object) -> tuple[Mapping[str, Any], int]:
    """(the document as it will be stored, its msgpack size), or RowError: not a struct, not
    storable Ion, a value beyond Strand's bounds, over MAX_DOCUMENT_BYTES of Ion binary."""
    if not isinstance(doc, Mapping):
        kind = "a list" if isinstance(doc, list) else type(doc).__name__
        raise RowError(f"not a struct: {kind}")
    try:
        copy, _, packed = prepare_document(doc)
    except StrandError as exc:
        raise RowError(str(exc)) from None
    return copy, len(packed)


def _refuse_constant(name: str) -> Any:
    raise RowError(f"bad JSON: {name} is not a number Ion stores")


def convert_json_line(line: str | bytes) -> Any:
    """The value of one JSON Lines row (ints as int, other numbers as Decimal), or RowError.
    Whether it is a struct is `check_document`'s question."""
    try:
        return json.loads(line, parse_float=decimal.Decimal, parse_constant=_refuse_constant)
    except RowError:
        raise
    except UnicodeDecodeError as exc:
        raise RowError(f"bad JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RowError(f"bad JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise RowError(f"bad JSON: {exc}") from None


# --- CSV --------------------------------------------------------------------------------------


def _to_int(text: str) -> int:
    return int(text.strip().replace("_", "x"))  # "1_000" is not a CSV integer


def _to_float(text: str) -> float:
    value = float(text.strip())
    return value


def _to_decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text.strip())
    if not value.is_finite():
        raise ValueError("not finite")
    return value


_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean")


def _to_timestamp(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return Timestamp.from_datetime(value)  # type: ignore[no-any-return]


def _to_string(text: str) -> str:
    return text


COLUMN_TYPES: Final[Mapping[str, Callable[[str], Any]]] = {
    "string": _to_string,
    "str": _to_string,
    "int": _to_int,
    "float": _to_float,
    "decimal": _to_decimal,
    "bool": _to_bool,
    "timestamp": _to_timestamp,
}


def parse_types(spec: str | None) -> dict[str, str]:
    """`col=int,other=decimal` as {column: type}; ValueError names what is wrong."""
    types: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        column, sep, kind = part.partition("=")
        column, kind = column.strip(), kind.strip().lower()
        if not sep or not column:
            raise ValueError(f"--types: {part!r} is not column=type")
        if kind not in COLUMN_TYPES:
            known = ", ".join(sorted(COLUMN_TYPES))
            raise ValueError(f"--types: unknown type {kind!r} for {column!r} ({known})")
        types[column] = kind
    return types


def convert_csv_row(
    header: Sequence[str], row: Sequence[str], types: Mapping[str, str]
) -> dict[str, Any]:
    """One CSV row as a document: {header[i]: cell i}, cells converted per `types`; a typed
    column's empty cell is null. RowError for a wrong number of cells or a bad value."""
    if len(row) != len(header):
        raise RowError(f"wrong column count: {len(row)} cells, the header has {len(header)}")
    doc: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=True):
        kind = types.get(name)
        if kind is None or kind in ("string", "str"):
            doc[name] = cell
        elif not cell.strip():
            doc[name] = None
        else:
            try:
                doc[name] = COLUMN_TYPES[kind](cell)
            except (ValueError, ArithmeticError, OverflowError):
                raise RowError(f"column {name!r}: {excerpt(cell)!r} is not a {kind}") from None
    return doc


def check_header(header: Sequence[str], types: Mapping[str, str]) -> None:
    """ValueError for a header Strand cannot use (empty or repeated names, typed columns it
    does not name)."""
    if not header:
        raise ValueError("the CSV file has no header row")
    seen: set[str] = set()
    for name in header:
        if not name:
            raise ValueError("the CSV header has an empty column name")
        if name in seen:
            raise ValueError(f"the CSV header names column {name!r} twice")
        seen.add(name)
    unknown = sorted(set(types) - seen)
    if unknown:
        raise ValueError(f"--types names columns the header does not have: {unknown}")


# --- batches ----------------------------------------------------------------------------------


def import_key(parts: Mapping[str, Any]) -> str:
    """A stable name of one import: SHA-256 of its defining parts (canonical JSON)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return base64.b32encode(hashlib.sha256(canonical.encode()).digest()).decode()[:40]


def batch_transaction_id(key: str, batch_no: int) -> str:
    """The transaction id of batch `batch_no` of import `key` (22 base62 characters)."""
    raw = hashlib.sha256(f"strand-import\x00{key}\x00{batch_no}".encode()).digest()
    return base62_id(raw[:16])


def plan_batches(
    records: Iterable[Record],
    *,
    first_batch: int = 0,
    first_record: int = 1,
    first_offset: int | None = None,
    max_documents: int = MAX_DOCUMENTS_PER_TRANSACTION,
    max_bytes: int = MAX_TRANSACTION_BYTES,
) -> Iterator[Batch]:
    """Group records into batches, greedily, in order.

    A batch closes when it holds `max_documents` documents, or when the next document would
    take it over `max_bytes` (measured as Transaction measures: msgpack sizes while their
    total stays under half the limit, else Ion binary sizes). A document that cannot share a
    transaction with anything fits alone (check_document bounded it). Rejects join the
    batch being filled; a last batch with rejects only is yielded too.
    """
    if not 1 <= max_documents <= MAX_DOCUMENTS_PER_TRANSACTION:
        raise ValueError(f"a batch holds 1 to {MAX_DOCUMENTS_PER_TRANSACTION} documents")
    number = first_batch
    batch = Batch(
        number, first_record=first_record, next_record=first_record, next_offset=first_offset
    )
    sizes = _Sizes(max_bytes)
    for record in records:
        if record.reject is not None:
            batch.rejects.append(record.reject)
        elif record.document is not None:
            if batch.documents and not sizes.fits(batch.documents, record):
                yield batch
                number += 1
                batch = Batch(number, first_record=record.record_no, next_record=batch.next_record)
                sizes = _Sizes(max_bytes)
            batch.documents.append((record.table, record.document))
            sizes.add(record)
        batch.next_record = record.record_no + 1
        batch.next_offset = record.end_offset
        if len(batch.documents) >= max_documents:
            yield batch
            number += 1
            batch = Batch(
                number,
                first_record=batch.next_record,
                next_record=batch.next_record,
                next_offset=batch.next_offset,
            )
            sizes = _Sizes(max_bytes)
    if batch.documents or batch.rejects:
        yield batch


class _Sizes:
    """The sizes of one batch's documents as Transaction._check_transaction_size counts
    them: msgpack sizes while their total stays within half the limit, else Ion binary
    sizes (measured once per document, only for batches that come near the limit)."""

    __slots__ = ("exact", "max_bytes", "packed")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.packed = 0
        self.exact: list[int] | None = None

    def fits(self, documents: Sequence[tuple[str, Mapping[str, Any]]], record: Record) -> bool:
        if self.packed + record.size <= min(self.max_bytes, _EXACT_SIZE_ABOVE_BYTES):
            return True
        if self.exact is None:
            self.exact = [ion_binary_size(doc) for _, doc in documents]
        return sum(self.exact) + ion_binary_size(record.document) <= self.max_bytes

    def add(self, record: Record) -> None:
        self.packed += record.size
        if self.exact is not None:
            self.exact.append(ion_binary_size(record.document))

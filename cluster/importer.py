"""`strand import`: the files and the ledger calls around core/importing.py and
core/qldb_export.py.

Two jobs on one engine:

- `import_file`: JSON Lines, CSV or Ion rows into one table. Each batch (core.importing
  .plan_batches) is one transaction, so a failed batch leaves nothing. After each committed
  batch the checkpoint (JSON, replaced atomically: temp file, fsync, rename, directory
  fsync) records where the next batch starts. Every batch runs under a transaction id
  derived from the import's key and the batch number: resuming after a crash between the
  commit and the checkpoint write, or without the checkpoint at all, replays the same
  batches under the same ids, and the journal refuses each committed one with
  `TransactionCommittedError`, which counts as done. Exactly once, no gap.
- `migrate_qldb_export`: a QLDB export directory and the digest saved from QLDB. Every data
  object is read (cluster/export.py's reader) and every block checked
  (core.export_verification.ExportVerifier, the verifier of `strand verify export`) BEFORE the first
  write; a failure raises `VerificationFailed` and the target ledger is untouched. Then one
  DDL transaction recreates the tables and indexes (refused, still writing nothing, when the
  target already has a table of those names and that transaction is not ours), the live
  documents go in as batches (and, with `with_history`, every revision into
  `<table>_history` as {blockAddress, hash, data | dataHash, metadata}), and a last
  transaction writes the migration record into `strand_migration`; the record links the
  QLDB digest to Strand's digest after the import and is also written as a JSON file, with
  a map of QLDB document ids to Strand's (`<record>.ids.jsonl`).

Side files that grow with batches (the rejects report, the id map) are truncated on resume
to the size the checkpoint recorded, so they too hold each batch's lines once.

The target is anything with `execute_lambda(fn, retry_limit, *, transaction_id=...)`,
`get_digest` and `get_block`: an embedded `core.Ledger` or a `cluster.LedgerCluster` (the
transaction functions here are module-level, so they pickle by reference).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from amazon.ion import simpleion

from cluster.export import ExportListing, find_export, open_export_directory, read_export_blocks
from cluster.files import write_atomically
from core.errors import InvalidArgumentError, StrandError, TransactionCommittedError
from core.export_format import ExportFormatError
from core.export_verification import ExportReport, ExportVerifier, parse_digest
from core.importing import (
    Batch,
    Record,
    Reject,
    RowError,
    batch_transaction_id,
    check_document,
    check_header,
    convert_csv_row,
    convert_json_line,
    excerpt,
    import_key,
    plan_batches,
)
from core.limits import MAX_ACTIVE_TABLES, MAX_DOCUMENTS_PER_TRANSACTION
from core.qldb_export import ExportContents, VerificationFailed
from core.transaction import Transaction, TransactionRunner
from core.verification import VerificationError

CHECKPOINT_VERSION = 1
DEFAULT_PARALLEL_BATCHES = 8  # batches in flight: one group commit, one checkpoint write
MIGRATION_TABLE = "strand_migration"
FORMATS = ("jsonl", "csv", "ion")
csv.field_size_limit(64 * 1024 * 1024)  # rows beyond 128 KB are refused as documents instead


class Target(TransactionRunner, Protocol):
    """What an import writes to: an embedded `Ledger` or a `LedgerCluster`."""

    def get_digest(self, digest_tip_address: Any = None) -> dict[str, Any]: ...

    def get_block(self, block_address: Any, digest_tip_address: Any = None) -> dict[str, Any]: ...


class ImportFailed(StrandError):
    """The import cannot go on (bad input file, a changed input, a refused batch)."""


@dataclass(frozen=True, slots=True)
class Hooks:
    """Test seams: called after a batch committed and its side-file lines were written but
    before its checkpoint, and after its checkpoint was written; an exception they raise
    stops the import there (a kill at the worst moment)."""

    after_commit: Callable[[int], None] | None = None
    after_checkpoint: Callable[[int], None] | None = None


# --- checkpoint -------------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    """Where an import stands; `next_batch` is the first batch not known to be committed."""

    key: str
    source: dict[str, Any]
    next_batch: int = 0
    next_record: int = 1
    next_offset: int | None = None
    committed_batches: int = 0
    replayed_batches: int = 0  # batches the journal already held (answered "committed")
    documents: int = 0
    rejected: int = 0
    side_sizes: dict[str, int] = field(default_factory=dict)  # side file -> bytes
    done: bool = False
    version: int = CHECKPOINT_VERSION


def load_checkpoint(path: Path, key: str) -> Checkpoint | None:
    """The checkpoint of import `key` at `path`, None when there is none; ImportFailed when
    it belongs to another import (another input or other options)."""
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        checkpoint = Checkpoint(**raw)
    except (ValueError, TypeError) as exc:
        raise ImportFailed(f"checkpoint {path} is unreadable: {exc}") from None
    if checkpoint.key != key:
        raise ImportFailed(
            f"checkpoint {path} belongs to another import (the input or the options changed "
            "since); remove it, or pass another --checkpoint"
        )
    return checkpoint


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    write_atomically(path, json.dumps(asdict(checkpoint), indent=1).encode())


class SideFile:
    """A JSON Lines file appended batch by batch, cut back to the checkpoint's size when an
    import resumes (lines of batches that never reached the checkpoint go)."""

    def __init__(self, path: Path | None, checkpoint: Checkpoint, name: str) -> None:
        self.path = path
        self.name = name
        self._checkpoint = checkpoint
        self._out: IO[bytes] | None = None
        if path is not None and path.exists():
            keep = checkpoint.side_sizes.get(name, 0)
            with open(path, "r+b") as f:
                f.truncate(keep)

    def write(self, lines: Sequence[Mapping[str, Any]]) -> None:
        if self.path is None or not lines:
            return
        if self._out is None:
            self._out = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        for line in lines:
            self._out.write(json.dumps(line, default=str).encode() + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def mark(self) -> None:
        """Record the file's size in the checkpoint (before the checkpoint is saved)."""
        if self.path is not None and self.path.exists():
            self._checkpoint.side_sizes[self.name] = self.path.stat().st_size

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


# --- readers ----------------------------------------------------------------------------------


def _document_record(
    record_no: int, end: int | None, value: Any, raw: str | bytes, table: str
) -> Record:
    try:
        document, size = check_document(value)
    except RowError as exc:
        return Record(record_no, end, reject=Reject(record_no, str(exc), excerpt(raw)))
    return Record(record_no, end, document, size, table=table)


def read_jsonl(path: Path, table: str, start_record: int, start_offset: int) -> Iterator[Record]:
    with open(path, "rb") as f:
        f.seek(start_offset)
        record_no, offset = start_record, start_offset
        for line in f:
            offset += len(line)
            if not line.strip():
                yield Record(record_no, offset)  # blank: counted, skipped
            else:
                try:
                    value = convert_json_line(line)
                except RowError as exc:
                    yield Record(
                        record_no, offset, reject=Reject(record_no, str(exc), excerpt(line))
                    )
                else:
                    yield _document_record(record_no, offset, value, line, table)
            record_no += 1


class _Lines:
    """Decoded lines of a binary file, with the byte offset after the last one handed out."""

    def __init__(self, f: IO[bytes], offset: int) -> None:
        self._f = f
        self.offset = offset
        self.last = ""

    def __iter__(self) -> Iterator[str]:
        for line in self._f:
            self.offset += len(line)
            self.last = line.decode("utf-8", errors="surrogateescape")
            yield self.last


def read_csv_header(path: Path) -> tuple[list[str], int]:
    with open(path, "rb") as f:
        lines = _Lines(f, 0)
        reader = csv.reader(lines)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFailed(f"{path} is empty: a CSV file needs a header row") from None
        except csv.Error as exc:
            raise ImportFailed(f"{path}: bad CSV header: {exc}") from None
        header = [name.lstrip("\ufeff") if i == 0 else name for i, name in enumerate(header)]
        return header, lines.offset


def read_csv(
    path: Path,
    table: str,
    header: list[str],
    types: Mapping[str, str],
    start_record: int,
    start_offset: int,
) -> Iterator[Record]:
    with open(path, "rb") as f:
        f.seek(start_offset)
        lines = _Lines(f, start_offset)
        reader = csv.reader(lines)
        record_no = start_record
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                reject = Reject(record_no, f"bad CSV: {exc}", excerpt(lines.last))
                yield Record(record_no, lines.offset, reject=reject)
                record_no += 1
                continue
            if not row:
                yield Record(record_no, lines.offset)
            else:
                raw = ",".join(row)
                try:
                    document = convert_csv_row(header, row, types)
                except RowError as exc:
                    reject = Reject(record_no, str(exc), excerpt(raw))
                    yield Record(record_no, lines.offset, reject=reject)
                else:
                    yield _document_record(record_no, lines.offset, document, raw, table)
            record_no += 1


def read_ion(path: Path, table: str, start_record: int) -> Iterator[Record]:
    """Top-level values of an Ion text or binary file; resumes by counting values."""
    with open(path, "rb") as f:
        try:
            values = simpleion.load(f, single_value=False, parse_eagerly=False)
            for record_no, value in enumerate(values, start=1):
                if record_no < start_record:
                    continue
                yield _document_record(record_no, None, value, _ion_excerpt(value), table)
        except (simpleion.IonException, ValueError, TypeError) as exc:  # type: ignore[attr-defined]
            raise ImportFailed(f"{path}: bad Ion after value {start_record - 1}: {exc}") from None


def _ion_excerpt(value: Any) -> str:
    try:
        return excerpt(simpleion.dumps(value, binary=False))
    except Exception:  # noqa: BLE001 (an excerpt is best effort)
        return repr(value)[:200]


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- transaction functions (module-level: they pickle by reference) ---------------------------


def insert_documents(
    documents: Sequence[tuple[str, Mapping[str, Any]]], tx: Transaction
) -> list[str]:
    """Insert every (table, document) of one batch; their new ids, in order."""
    return [tx.insert(table, document) for table, document in documents]


def ensure_table(table: str, indexes: Sequence[str], tx: Transaction) -> bool:
    """Create `table` (and indexes on `indexes`) unless it exists; True when it created."""
    catalog = tx.catalog()
    if table in catalog.active_by_name:
        existing = catalog.by_name(table)
        for fld in indexes:
            if existing.index_on(fld) is None:
                tx.create_index(table, fld)
        return False
    tx.create_table(table)
    for fld in indexes:
        tx.create_index(table, fld)
    return True


def create_tables(tables: Sequence[tuple[str, Sequence[str]]], tx: Transaction) -> list[str]:
    """Create every (table, indexed fields), or, when any of those names is already an
    active table, write nothing and return those names (the caller refuses)."""
    active = tx.catalog().active_by_name
    clashes = [name for name, _ in tables if name in active]
    if clashes:
        return clashes
    for name, indexes in tables:
        tx.create_table(name)
        for fld in indexes:
            tx.create_index(name, fld)
    return []


def read_active_tables(tx: Transaction) -> list[str]:
    return sorted(tx.catalog().active_by_name)


# --- the batch loop ---------------------------------------------------------------------------


@dataclass(slots=True)
class RunReport:
    """What one run did (the checkpoint holds the totals over runs)."""

    committed_batches: int = 0
    replayed_batches: int = 0
    documents: int = 0
    rejected: int = 0
    elapsed_s: float = 0.0
    rejects_sample: list[dict[str, Any]] = field(default_factory=list)


def _ids_from_block(target: Target, strand_seq: tuple[str, int]) -> list[str]:
    """The document ids a committed batch's block wrote, in insertion order."""
    strand, seq = strand_seq
    block = target.get_block({"strandId": strand, "sequenceNo": seq})["block"]
    if isinstance(block, Mapping) and "IonText" in block:
        block = simpleion.loads(block["IonText"])
    return [str(r["metadata"]["id"]) for r in block["revisions"]]


def _commit(
    target: Target, key: str, batch: Batch, want_ids: bool
) -> tuple[bool, list[str] | None]:
    """Commit one batch under its id: (True, ids) when this run committed it, (False, ids
    or None) when the journal already held it; ImportFailed when it was refused."""
    if not batch.documents:
        return True, []
    tx_id = batch_transaction_id(key, batch.number)
    try:
        ids = target.execute_lambda(
            functools.partial(insert_documents, batch.documents), transaction_id=tx_id
        )
        return True, list(ids)
    except TransactionCommittedError as exc:  # committed by an earlier run
        if want_ids and exc.sequence_no is not None:
            strand = target.get_digest()["digestTipAddress"]["strandId"]
            return False, _ids_from_block(target, (strand, exc.sequence_no))
        return False, None
    except StrandError as exc:
        raise ImportFailed(
            f"batch {batch.number} (records before {batch.next_record}) was refused, "
            f"nothing of it written: {type(exc).__name__}: {exc}"
        ) from exc


def _groups(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def run_batches(
    target: Target,
    batches: Iterator[Batch],
    checkpoint: Checkpoint,
    checkpoint_path: Path,
    *,
    rejects: SideFile,
    sides: Sequence[SideFile] = (),
    on_ids: Callable[[Batch, list[str]], None] | None = None,
    hooks: Hooks = Hooks(),
    advance: Callable[[Batch], None] | None = None,
    parallel: int = DEFAULT_PARALLEL_BATCHES,
) -> RunReport:
    """Commit batches, `parallel` at a time (each its own transaction under its own id; the
    ledger's group commit makes them share a disk sync), then checkpoint the group. A batch
    of the group that fails stops the import; its siblings may have committed, and a rerun
    finds them in the journal (exactly once still)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    report = RunReport()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for group in _groups(batches, max(1, parallel)):
            futures = [
                pool.submit(_commit, target, checkpoint.key, b, on_ids is not None) for b in group
            ]
            outcomes = [f.result() for f in futures]  # the first failure raises, in order
            for batch, (fresh, ids) in zip(group, outcomes, strict=True):
                if batch.documents:
                    if fresh:
                        report.committed_batches += 1
                        checkpoint.committed_batches += 1
                    else:
                        report.replayed_batches += 1
                        checkpoint.replayed_batches += 1
                    if on_ids is not None and ids is not None:
                        on_ids(batch, ids)
                    report.documents += len(batch.documents)
                    checkpoint.documents += len(batch.documents)
                rejects.write([r.to_json() for r in batch.rejects])
                report.rejected += len(batch.rejects)
                checkpoint.rejected += len(batch.rejects)
                if len(report.rejects_sample) < 10:
                    report.rejects_sample += [r.to_json() for r in batch.rejects][:10]
            for side in (rejects, *sides):
                side.mark()
            for batch in group:
                if hooks.after_commit is not None:  # between the commit and the checkpoint
                    hooks.after_commit(batch.number)
            last = group[-1]
            checkpoint.next_batch = last.number + 1
            checkpoint.next_record = last.next_record
            checkpoint.next_offset = last.next_offset
            save_checkpoint(checkpoint_path, checkpoint)
            for batch in group:
                if hooks.after_checkpoint is not None:
                    hooks.after_checkpoint(batch.number)
                if advance is not None:
                    advance(batch)
    report.elapsed_s = time.monotonic() - started
    return report


# --- import_file ------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv",):
        return "csv"
    if suffix in (".ion", ".10n"):
        return "ion"
    raise ImportFailed(f"cannot tell the format of {path}: pass --format ({', '.join(FORMATS)})")


@dataclass(slots=True)
class ImportResult:
    table: str
    source: str
    format: str
    checkpoint: str
    rejects_file: str | None
    run: RunReport
    totals: Checkpoint
    already_done: bool = False


def import_file(
    target: Target,
    path: Path,
    table: str,
    *,
    fmt: str | None = None,
    types: Mapping[str, str] | None = None,
    indexes: Sequence[str] = (),
    batch_size: int = MAX_DOCUMENTS_PER_TRANSACTION,
    checkpoint_path: Path | None = None,
    rejects_path: Path | None = None,
    import_id: str | None = None,
    hooks: Hooks = Hooks(),
    progress: Callable[[int, int | None], Callable[[Batch], None]] | None = None,
    parallel: int = DEFAULT_PARALLEL_BATCHES,
) -> ImportResult:
    """Import one file into `table` (created, with `indexes`, when missing); resumable."""
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    types = dict(types or {})
    if types and fmt != "csv":
        raise ImportFailed("--types applies to CSV input only")
    header: list[str] = []
    header_end = 0
    if fmt == "csv":
        header, header_end = read_csv_header(path)
        try:
            check_header(header, types)
        except ValueError as exc:
            raise ImportFailed(f"{path}: {exc}") from None
    source: dict[str, Any] = {
        "sha256": file_digest(path),
        "size": path.stat().st_size,
        "name": path.name,
    }
    key = import_key(
        {
            "source": source["sha256"],
            "format": fmt,
            "table": table,
            "types": types,
            "batch": batch_size,
            "id": import_id,
        }
    )
    checkpoint_path = checkpoint_path or path.with_name(path.name + ".strand-import.json")
    rejects_path = rejects_path or path.with_name(path.name + ".rejects.jsonl")
    checkpoint = load_checkpoint(checkpoint_path, key) or Checkpoint(key, source)
    rejects = SideFile(rejects_path, checkpoint, "rejects")
    result = ImportResult(
        table, str(path), fmt, str(checkpoint_path), None, RunReport(), checkpoint
    )
    if checkpoint.done:
        result.already_done = True
        return result
    if checkpoint.next_batch == 0:  # the table first, under its own deterministic id
        with contextlib.suppress(TransactionCommittedError):
            target.execute_lambda(
                functools.partial(ensure_table, table, list(indexes)),
                transaction_id=batch_transaction_id(key, -1),
            )
    start_offset = checkpoint.next_offset
    if fmt == "jsonl":
        records = read_jsonl(path, table, checkpoint.next_record, start_offset or 0)
    elif fmt == "csv":
        records = read_csv(
            path, table, header, types, checkpoint.next_record, start_offset or header_end
        )
    else:
        records = read_ion(path, table, checkpoint.next_record)
    batches = plan_batches(
        records,
        first_batch=checkpoint.next_batch,
        first_record=checkpoint.next_record,
        first_offset=start_offset,
        max_documents=batch_size,
    )
    advance = None
    if progress is not None:
        advance = progress(start_offset or 0, source["size"] if fmt != "ion" else None)
    try:
        result.run = run_batches(
            target,
            batches,
            checkpoint,
            checkpoint_path,
            rejects=rejects,
            hooks=hooks,
            advance=advance,
            parallel=parallel,
        )
    finally:
        rejects.close()
    checkpoint.done = True
    save_checkpoint(checkpoint_path, checkpoint)
    if checkpoint.rejected:
        result.rejects_file = str(rejects_path)
    return result


# --- the QLDB export --------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImportFailed(f"{path}: {exc}") from None


@dataclass(slots=True)
class Verified:
    report: ExportReport
    contents: ExportContents
    listing: ExportListing
    digest: bytes
    strand_id: str
    tip_seq: int


def verify_export(
    directory: Path,
    saved_digest: Mapping[str, Any],
    *,
    keep_history: bool = False,
    fmt: str | None = None,
) -> Verified:
    """Check every block of the export under `directory` against the digest with the one
    reader and verifier of exports (cluster/export.py, core/export_verification.py);
    VerificationFailed unless it verifies from block 0 to exactly the digest's tip. Reads
    everything, writes nothing."""
    try:
        digest, strand_id, tip = parse_digest(saved_digest)
    except VerificationError as exc:
        raise VerificationFailed(str(exc)) from None
    try:
        store, prefix = open_export_directory(directory)
        listing = find_export(store, prefix, output_format=fmt)
    except (InvalidArgumentError, ExportFormatError) as exc:
        raise ImportFailed(str(exc)) from None
    verifier = ExportVerifier(digest, strand_id, tip, listing.frontier)
    contents = ExportContents(keep_history=keep_history)
    lossy = listing.output_format == "JSON"
    for _, block in read_export_blocks(store, listing, verifier):
        verifier.add_block(block, lossy=lossy)
        contents.feed(block)
    report = verifier.finish()
    refusal = report.refusal()
    if refusal is not None:
        where, why = refusal
        raise VerificationFailed(why, where)
    return Verified(report, contents, listing, digest, strand_id, tip)


@dataclass(slots=True)
class MigrationResult:
    record: dict[str, Any]
    record_file: str
    ids_file: str
    run: RunReport
    verified: ExportReport
    already_done: bool = False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _history_row(revision: Mapping[str, Any]) -> dict[str, Any]:
    row = {
        k: revision[k]
        for k in ("blockAddress", "hash", "data", "dataHash", "metadata")
        if k in revision
    }
    return row


def migrate_qldb_export(
    target: Target,
    directory: Path,
    saved_digest: Mapping[str, Any],
    *,
    with_history: bool = False,
    accept_unverified_data: bool = False,
    record_path: Path | None = None,
    checkpoint_path: Path | None = None,
    fmt: str | None = None,
    hooks: Hooks = Hooks(),
    progress: Callable[[int, int | None], Callable[[Batch], None]] | None = None,
    parallel: int = DEFAULT_PARALLEL_BATCHES,
) -> MigrationResult:
    """Verify the whole export against the saved digest, then load it (module docstring)."""
    verified = verify_export(directory, saved_digest, keep_history=with_history, fmt=fmt)
    report, contents = verified.report, verified.contents
    if not report.data_verified and not accept_unverified_data:
        raise VerificationFailed(
            f"the export is JSON: {report.unchecked_revisions} of {report.revisions} "
            "revisions hold data whose Ion types JSON lost, so their data cannot be checked "
            "against their hashes (every block hash, the chain and the digest did verify); "
            "use an ION_TEXT or ION_BINARY export, or accept the data as it is explicitly"
        )
    tables = contents.active_tables()
    ddl: list[tuple[str, list[str]]] = [(t.name, list(t.indexes)) for t in tables]
    if with_history:
        ddl += [(f"{t.name}_history", []) for t in tables]
    if len(ddl) + 1 > MAX_ACTIVE_TABLES:
        raise ImportFailed(
            f"the migration needs {len(ddl) + 1} tables, a ledger has at most {MAX_ACTIVE_TABLES}"
        )
    records: list[Record] = []
    for name, doc_id, revision in contents.live_documents():
        try:
            document, size = check_document(revision["data"])
        except RowError as exc:
            raise ImportFailed(f"document {doc_id} of {name} cannot be stored: {exc}") from None
        records.append(Record(len(records) + 1, None, document, size, table=name))
    qldb_ids = [doc_id for _, doc_id, _ in contents.live_documents()]
    n_live = len(records)
    if with_history:
        for table in tables:
            for revision in contents.history.get(table.table_id, []):
                document, size = check_document(_history_row(revision))
                records.append(
                    Record(len(records) + 1, None, document, size, table=f"{table.name}_history")
                )
    qldb = {
        "digest": _b64(verified.digest),
        "digestTipAddress": {"strandId": verified.strand_id, "sequenceNo": verified.tip_seq},
        "exportId": verified.listing.export_id,
        "format": verified.listing.output_format,
    }
    key = import_key({"qldb": qldb, "history": with_history, "kind": "qldb-migration"})
    record_path = record_path or directory.with_name(directory.name + ".strand-migration.json")
    ids_path = record_path.with_name(record_path.name.removesuffix(".json") + ".ids.jsonl")
    checkpoint_path = checkpoint_path or directory.with_name(directory.name + ".strand-import.json")
    checkpoint = load_checkpoint(checkpoint_path, key) or Checkpoint(key, qldb)
    if checkpoint.done and record_path.exists():
        record = _load_json(record_path)
        return MigrationResult(record, str(record_path), str(ids_path), RunReport(), report, True)
    if checkpoint.next_batch == 0:
        try:
            clashes = target.execute_lambda(
                functools.partial(create_tables, ddl + [(MIGRATION_TABLE, [])]),
                transaction_id=batch_transaction_id(key, -1),
            )
        except TransactionCommittedError:
            clashes = []
        if clashes:
            raise ImportFailed(
                f"the target ledger already has tables named {clashes}: migrate into a ledger "
                "without them (nothing was written)"
            )
    ids_file = SideFile(ids_path, checkpoint, "ids")
    rejects = SideFile(None, checkpoint, "rejects")

    def on_ids(batch: Batch, ids: list[str]) -> None:
        # a migration has no rejects: record k is documents[k - first_record]
        lines = []
        for position, ((table, _), strand_id) in enumerate(zip(batch.documents, ids, strict=True)):
            record_no = batch.first_record + position
            if record_no <= n_live:
                lines.append(
                    {"table": table, "qldbId": qldb_ids[record_no - 1], "strandId": strand_id}
                )
        ids_file.write(lines)

    first_record = checkpoint.next_record
    batches = plan_batches(
        records[first_record - 1 :],
        first_batch=checkpoint.next_batch,
        first_record=first_record,
    )
    advance = progress(first_record - 1, len(records)) if progress is not None else None
    try:
        run = run_batches(
            target,
            batches,
            checkpoint,
            checkpoint_path,
            rejects=rejects,
            sides=[ids_file],
            on_ids=on_ids,
            hooks=hooks,
            advance=advance,
            parallel=parallel,
        )
    finally:
        ids_file.close()
    after = target.get_digest()
    migration: dict[str, Any] = {
        "qldb": {
            **qldb,
            "blocks": report.blocks_checked,
            "revisions": report.revisions,
            "dataVerified": report.data_verified,
            "unverifiedRevisions": report.unchecked_revisions,
        },
        "strand": {
            "digestAfterImport": _b64(bytes(after["digest"])),
            "digestTipAddress": dict(after["digestTipAddress"]),
        },
        "tables": [
            {"name": t.name, "indexes": list(t.indexes), "qldbTableId": t.table_id} for t in tables
        ],
        "documents": n_live,
        "historyRevisions": len(records) - n_live,
        "deletedDocuments": contents.counts()["deleted"],
    }
    try:
        target.execute_lambda(
            functools.partial(insert_documents, [(MIGRATION_TABLE, migration)]),
            transaction_id=batch_transaction_id(key, -2),
        )
        sequence_no = None
    except TransactionCommittedError as exc:  # written by an earlier run: use that one
        sequence_no = exc.sequence_no
    if sequence_no is not None:
        block = target.get_block(
            {"strandId": after["digestTipAddress"]["strandId"], "sequenceNo": sequence_no}
        )["block"]
        migration = dict(block["revisions"][0]["data"])
    final = target.get_digest()
    tip = final["digestTipAddress"]
    out = {
        "record": migration,
        "strandDigestWithRecord": {
            "Digest": _b64(bytes(final["digest"])),
            "DigestTipAddress": {
                "IonText": f'{{strandId:"{tip["strandId"]}",sequenceNo:{tip["sequenceNo"]}}}'
            },
        },
        "idMap": ids_path.name,
    }
    write_atomically(record_path, json.dumps(out, indent=1, default=str).encode())
    checkpoint.done = True
    save_checkpoint(checkpoint_path, checkpoint)
    return MigrationResult(out, str(record_path), str(ids_path), run, report)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, default=str)
    sys.stdout.write("\n")

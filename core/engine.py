"""The ledger engine: OCC validation, block formation, and state derived from blocks.

Theory of operation. Committed state lives in a `Storage` (LevelDB in production). The
journal blocks (key `B<seq>`) are the source of truth; documents, revision locators, index
entries, the catalog and Merkle nodes are derived from each block by `_apply`, a
deterministic function of the block and the state before it.

A group commit has three steps, which a caller may pipeline:
1. `prepare(transactions, now_ms)` validates every transaction in order against the HEAD
   state (everything prepared so far, durable or not, including earlier transactions of the
   same batch), turns each valid one into a block, and derives the batch's storage writes.
   It advances the head: sequence number, tip hash, Merkle frontier, catalog, and an overlay
   of the documents changed by prepared-but-unpublished blocks.
2. `write(batch)` stores the batch (blocks + derived state + Merkle nodes) as ONE atomic,
   synced storage write. Batches are written in the order they were prepared.
3. `publish(batch)` makes it visible to readers (catalog, then durable sequence number).
`commit()` does all three. While batch n is being written, batch n+1 may be prepared: its
transactions are validated against the head, which already includes batch n.

Invariants:
- the journal is append-only; a block is never rewritten; block n+1 chains to block n;
- readers (transactions, queries) see only published state, which is durable;
- a transaction commits only if nothing it read was modified after it read it (every
  prepared block marks what it modified with its sequence number, before it is durable);
- a failed validation writes nothing; a failed storage write stops the engine (`failed`),
  since its head is ahead of disk: the caller must reopen. Nothing after it is written.
One thread prepares at a time and one thread writes/publishes at a time (they may differ);
any thread may read.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core import codec, keys
from core.catalog import (
    REDACTION_TABLE_ID,
    REDACTION_TABLE_NAME,
    SYSTEM_TABLE_ID,
    SYSTEM_TABLE_NAME,
    Catalog,
    TableDef,
)
from core.deadline import TRANSACTION_TIMEOUT_MS
from core.errors import (
    CorruptLedgerError,
    LedgerClosedError,
    OccConflictError,
    StaleBatchError,
    StrandError,
    TableNotFoundError,
    TransactionCommittedError,
    TransactionExpiredError,
)
from core.ids import IdSource, ms_from_timestamp, timestamp_from_ms
from core.ionhash import ion_hash
from core.journal import Block, DocumentWrite, build_block, check_block
from core.merkle import Frontier
from core.storage import Storage, merge_writes
from core.transaction import DocState, ReadItem, Transaction, index_keys

_LAST_MODIFIED_CAPACITY = 250_000
_DOC_HEADER = struct.Struct(">IQ")


@dataclass(frozen=True, slots=True)
class Genesis:
    """What block 0 is made of. Replicas of one ledger must agree on it (see cluster/)."""

    strand_id: str
    transaction_id: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a committed transaction got: its block address (None when it wrote nothing)."""

    transaction_id: str
    sequence_no: int | None


def decode_block(raw: bytes, seq: int) -> Block:
    """Stored block `seq` decoded, its hashes recomputed and its address checked;
    CorruptLedgerError when it does not decode or does not match."""
    try:
        block = codec.decode(raw)
    except ValueError as exc:
        raise CorruptLedgerError(f"block {seq} is corrupted: {exc}") from exc
    problem = check_block(block)
    if problem is not None or block["blockAddress"]["sequenceNo"] != seq:
        raise CorruptLedgerError(f"block {seq} does not match its hashes: {problem}")
    return block  # type: ignore[no-any-return]


def _check_format(stored: bytes | None) -> bool:
    """Whether a ledger of this stored format must be upgraded at open; raises for one that
    this version cannot read (a newer format, or none at all), saying what to do."""
    if stored == keys.FORMAT_VERSION:
        return False
    if stored in keys.UPGRADABLE_FORMATS:
        return True
    raise CorruptLedgerError(
        f"the ledger's format is {stored!r}, which this version of Strand "
        f"({keys.FORMAT_VERSION.decode()}) cannot read: open it with the Strand release that "
        "wrote it (its journal can be exported and verified there), or, for a cluster node, "
        "delete the node's data directory and let it catch up from its peers"
    )


def encode_doc(version: int, seq: int, packed_data: bytes) -> bytes:
    return codec.frame(_DOC_HEADER.pack(version, seq) + packed_data)


def decode_doc(value: bytes) -> DocState:
    payload = codec.unframe_view(value)  # no copy: the data is decoded from the record
    version, seq = _DOC_HEADER.unpack_from(payload)
    return DocState(version, seq, codec.unpack(payload[_DOC_HEADER.size :]))


class PreparedBatch:
    """One group commit after validation: its storage writes and the head it leads to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.puts: dict[bytes, bytes] = {}
        self.deletes: set[bytes] = set()
        self.docs: dict[tuple[str, str], DocState | None] = {}
        self.catalog = engine.head_catalog
        self.first_seq = engine.head_seq + 1
        self.seq = engine.head_seq
        self.tip_hash = engine.head_hash
        self.frontier = engine.head_frontier.copy()
        self.generation = engine.generation
        self.time_ms = engine.head_time_ms  # the last block's timestamp (never goes back)
        self.blocks: list[Block] = []
        self.raw_blocks: list[bytes] = []  # each block as stored (and as replicated)
        self.packed: dict[tuple[str, str], bytes] = {}  # documents already packed (prepare)
        self.transaction_ids: set[str] = set()

    @property
    def empty(self) -> bool:
        """True when no transaction of the batch produced a block."""
        return self.seq < self.first_seq

    def put(self, key: bytes, value: bytes) -> None:
        self.deletes.discard(key)
        self.puts[key] = value

    def delete(self, key: bytes) -> None:
        self.puts.pop(key, None)
        self.deletes.add(key)

    def doc(self, table_id: str, doc_id: str) -> DocState | None:
        if (table_id, doc_id) in self.docs:
            return self.docs[(table_id, doc_id)]
        return self.engine.head_doc(table_id, doc_id)

    def scan_docs(self, table_id: str) -> Iterator[tuple[str, DocState]]:
        own = {d: s for (t, d), s in self.docs.items() if t == table_id}
        for doc_id, state in self.engine.head_scan_docs(table_id):
            if doc_id not in own:
                yield doc_id, state
        for doc_id, maybe in own.items():
            if maybe is not None:
                yield doc_id, maybe


class Engine:
    """One ledger's engine over one Storage. See the module docstring."""

    def __init__(
        self, storage: Storage, ids: IdSource, now_ms: int, *, genesis: Genesis | None = None
    ) -> None:
        self.storage = storage
        self.ids = ids
        self.failed: BaseException | None = None
        self.stats_batches = 0  # storage writes made by commit() (for benchmarks)
        self.generation = 0  # bumped by reset_head(); batches of older generations are void
        self._last_modified: dict[ReadItem, int] = {}
        strand = storage.get(keys.META_STRAND_ID)
        if strand is None:
            if genesis is None:
                genesis = Genesis(self.ids.new_id(), self.ids.new_id(), now_ms)
            self._create(genesis)
            strand = storage.get(keys.META_STRAND_ID)
            assert strand is not None
        upgrade = _check_format(storage.get(keys.META_FORMAT))
        self.strand_id = strand.decode("ascii")
        self._load()
        if upgrade:
            self._rebuild_indexes()

    # ----------------------------------------------------------------- open
    def _create(self, origin: Genesis) -> None:
        strand_id = origin.strand_id
        genesis = build_block(
            strand_id=strand_id,
            sequence_no=0,
            transaction_id=origin.transaction_id,
            timestamp=timestamp_from_ms(origin.created_ms),
            previous_block_hash=b"",
            statements=[],
            writes=[],
        )
        frontier = Frontier()
        puts = [
            (keys.META_FORMAT, keys.FORMAT_VERSION),
            (keys.META_STRAND_ID, strand_id.encode("ascii")),
            (keys.block_key(0), codec.encode(genesis, check_names=False)),
        ]
        puts += [
            (keys.node_key(lv, ix), codec.frame(h))
            for lv, ix, h in frontier.append(genesis["blockHash"])
        ]
        self.storage.write(puts)

    def _load(self) -> None:
        last = self.storage.last_key(keys.BLOCK_PREFIX, keys.prefix_end(keys.BLOCK_PREFIX))
        if last is None:
            raise CorruptLedgerError("the ledger has metadata but no journal")
        tip = keys.block_seq(last)
        block = self.read_block(tip)
        if tip > 0 and self.read_block(tip - 1)["blockHash"] != block["previousBlockHash"]:
            raise CorruptLedgerError(f"block {tip} does not chain to block {tip - 1}")
        self.frontier = Frontier.from_storage(tip + 1, self.get_node)  # durable
        self.durable_time_ms = ms_from_timestamp(block["blockTimestamp"])
        if self.get_node(0, tip) != block["blockHash"]:
            raise CorruptLedgerError(f"the Merkle tree does not end with block {tip}")
        catalog = Catalog.empty()
        for _, state in self.scan_docs(SYSTEM_TABLE_ID):
            catalog = catalog.with_table(TableDef.from_document(state.data))
        self.catalog = catalog  # published (durable) state, read by any thread
        self.durable_seq = tip
        self.head_catalog = catalog  # head state, used by the preparing thread only
        self.head_seq = tip
        self.head_hash: bytes = block["blockHash"]
        self.head_frontier = self.frontier
        self.head_time_ms = self.durable_time_ms
        self.catalog_version = 0  # bumped whenever the published catalog changes
        # documents changed by prepared blocks not yet published: (seq, state or None)
        self._unwritten: dict[tuple[str, str], tuple[int, DocState | None]] = {}
        self._unwritten_txs: dict[str, int] = {}  # transaction ids in those blocks -> seq
        self._pruned_below = tip
        self._reset_requested = False

    def _rebuild_indexes(self) -> None:
        """In-place upgrade from strand-1 (index keys hashed the value itself, not its PartiQL
        normal form): every index entry is derived again from the live documents, in one
        atomic write with the new format marker. A crash before it leaves strand-1 intact."""
        deletes = [
            k for k, _ in self.storage.scan(keys.INDEX_PREFIX, keys.prefix_end(keys.INDEX_PREFIX))
        ]
        puts = [(keys.META_FORMAT, keys.FORMAT_VERSION)]
        for table in self.catalog.tables.values():
            for index in table.indexes:
                for doc_id, state in self.scan_docs(table.table_id):
                    for vkey in index_keys(state.data, index.field):
                        puts.append((keys.index_key(index.index_id, vkey, doc_id), b""))
        self.storage.write(puts, deletes)

    # ----------------------------------------------------------------- reads (any thread)
    def read_block(self, seq: int) -> Block:
        raw = self.storage.get(keys.block_key(seq))
        if raw is None:
            raise CorruptLedgerError(f"block {seq} is missing")
        return decode_block(raw, seq)

    def get_node(self, level: int, index: int) -> bytes:
        raw = self.storage.get(keys.node_key(level, index))
        if raw is None:
            raise CorruptLedgerError(f"Merkle node ({level}, {index}) is missing")
        try:
            return codec.unframe(raw)
        except ValueError as exc:
            raise CorruptLedgerError(f"Merkle node ({level}, {index}) is corrupted") from exc

    def read_doc(self, table_id: str, doc_id: str) -> DocState | None:
        raw = self.storage.get(keys.doc_key(table_id, doc_id))
        return None if raw is None else self._decode_doc(raw, table_id, doc_id)

    def scan_docs(self, table_id: str) -> Iterator[tuple[str, DocState]]:
        prefix = keys.doc_prefix(table_id)
        for key, raw in self.storage.scan(prefix, keys.prefix_end(prefix)):
            doc_id = key[23:45].decode("ascii")
            state = self._decode_doc(raw, table_id, doc_id)
            if state is not None:
                yield doc_id, state

    def count_docs(
        self,
        table_id: str,
        excluding: Collection[str] = (),
        charge: Callable[[int], None] | None = None,
    ) -> int:
        """How many live documents the table holds, leaving out the ids in `excluding`,
        from the keys alone: no value is read or decoded (a `D` key exists exactly while
        its document is live; a damaged value does not change that). `charge(n)` is called
        every few thousand keys (a statement's deadline)."""
        prefix = keys.doc_prefix(table_id)
        skip = {prefix + d.encode("ascii") for d in excluding}
        count = 0
        for chunk in self.storage.key_chunks(prefix, keys.prefix_end(prefix)):
            count += len(chunk)
            if skip:
                count -= sum(1 for key in chunk if key in skip)
            if charge is not None:
                charge(len(chunk))
        return count

    def index_doc_ids(self, index_id: str, value_hash: bytes) -> list[str]:
        prefix = keys.index_prefix(index_id, value_hash)
        return [
            keys.index_key_doc_id(k) for k, _ in self.storage.scan(prefix, keys.prefix_end(prefix))
        ]

    def table_history(
        self,
        table_id: str,
        document_id: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Every revision of the table (or of one document) active in [start, end]."""
        from core.queries import table_history  # queries builds on the engine

        return table_history(self, table_id, document_id, start, end)

    def head_doc(self, table_id: str, doc_id: str) -> DocState | None:
        """The document as of the head (preparing thread only)."""
        unwritten = self._unwritten.get((table_id, doc_id))
        if unwritten is not None:
            return unwritten[1]
        return self.read_doc(table_id, doc_id)

    def head_scan_docs(self, table_id: str) -> Iterator[tuple[str, DocState]]:
        """The table's live documents as of the head (preparing thread only)."""
        own = {d: state for (t, d), (_, state) in self._unwritten.items() if t == table_id}
        for doc_id, state in self.scan_docs(table_id):
            if doc_id not in own:
                yield doc_id, state
        for doc_id, maybe in own.items():
            if maybe is not None:
                yield doc_id, maybe

    def _decode_doc(self, raw: bytes, table_id: str, doc_id: str) -> DocState | None:
        try:
            return decode_doc(raw)
        except ValueError:  # a damaged derived entry: the journal says what it holds
            return self.doc_from_journal(table_id, doc_id)

    def doc_from_journal(self, table_id: str, doc_id: str) -> DocState | None:
        """The document's durable state derived from the journal alone (its latest revision
        pointer and the block, which verifies), None if deleted: what its `D` entry must
        hold. Reads use it when that entry is damaged; the scrub mends the entry with it."""
        prefix = keys.revision_key(table_id, doc_id, 0)[:45]
        try:
            last = self.storage.last_key(prefix, keys.prefix_end(prefix))
            raw_seq = None if last is None else self.storage.get(last)
            if last is None or raw_seq is None:
                raise ValueError("no revision pointer")
            version = keys.revision_key_parts(last)[2]
            seq = keys.decode_u64(raw_seq)
        except (ValueError, struct.error) as exc:
            raise CorruptLedgerError(f"document {doc_id} is damaged: {exc}") from exc
        for revision in self.read_block(seq)["revisions"]:
            meta = revision["metadata"]
            if meta["id"] == doc_id and meta["version"] == version:
                data = revision.get("data")
                return None if data is None else DocState(version, seq, data)
        raise CorruptLedgerError(f"block {seq} does not hold revision {version} of {doc_id}")

    # ----------------------------------------------------------------- transactions
    def begin(
        self,
        start_ms: int,
        clock_ms: Callable[[], int],
        transaction_id: str | None = None,
        *,
        timeout_ms: int = TRANSACTION_TIMEOUT_MS,
    ) -> Transaction:
        """A new transaction, which expires `timeout_ms` after `start_ms`; a caller-chosen id
        makes retries idempotent (see committed_seq)."""
        self._check_usable()
        tx_id = self.ids.new_id() if transaction_id is None else transaction_id
        return Transaction(self, tx_id, start_ms, clock_ms, self.ids.new_id, timeout_ms)

    def committed_seq(self, transaction_id: str) -> int | None:
        """The block of a durable transaction that wrote something, else None."""
        raw = self.storage.get(keys.tx_key(transaction_id))
        return None if raw is None else keys.decode_u64(raw)

    def commit(
        self, transactions: list[Transaction], now_ms: int
    ) -> list[CommitResult | StrandError]:
        """Validate, journal and durably store a batch; one outcome per transaction."""
        batch, outcomes = self.prepare(transactions, now_ms)
        if not batch.empty:
            self.write(batch)
            self.publish(batch)
        return outcomes

    def prepare(
        self, transactions: list[Transaction], now_ms: int
    ) -> tuple[PreparedBatch, list[CommitResult | StrandError]]:
        """Validate a batch against the head and form its blocks; advances the head."""
        self._check_usable()
        durable = self.durable_seq
        if self._reset_requested:
            self._reset_requested = False
            self._reset_head()
        if self._unwritten:
            self._unwritten = {k: v for k, v in self._unwritten.items() if v[0] > durable}
        if self._unwritten_txs:
            self._unwritten_txs = {k: v for k, v in self._unwritten_txs.items() if v > durable}
        self._bound_marks()
        batch = PreparedBatch(self)
        outcomes: list[CommitResult | StrandError] = []
        for tx in transactions:
            tx.finished = True
            try:
                outcomes.append(self._prepare(tx, now_ms, batch))
            except StrandError as exc:
                outcomes.append(exc)
        if not batch.empty:
            self.head_catalog = batch.catalog
            self.head_seq = batch.seq
            self.head_hash = batch.tip_hash
            self.head_frontier = batch.frontier
            self.head_time_ms = batch.time_ms
            for key, state in batch.docs.items():
                self._unwritten[key] = (batch.seq, state)
            for tx_id in batch.transaction_ids:
                self._unwritten_txs[tx_id] = batch.seq
        return batch, outcomes

    def write(
        self,
        batch: PreparedBatch,
        extra_puts: list[tuple[bytes, bytes]] | None = None,
        extra_deletes: list[bytes] | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """Store a prepared batch with one synced write; batches go in prepare order.

        `extra_*` join the same atomic write (a replica's Raft log and state go with it).
        """
        self._check_usable()
        if batch.generation != self.generation or batch.first_seq != self.durable_seq + 1:
            if batch.first_seq <= self.durable_seq:  # blocks applied from elsewhere overtook
                self.request_reset()  # the head: it no longer extends the durable state
            raise StaleBatchError(
                f"batch from block {batch.first_seq} no longer follows block {self.durable_seq}"
            )
        self.write_batches([batch], extra_puts, extra_deletes, sync=sync)

    def write_batches(
        self,
        batches: Sequence[PreparedBatch],
        extra_puts: list[tuple[bytes, bytes]] | None = None,
        extra_deletes: list[bytes] | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """Store consecutive prepared batches (in prepare order) with ONE atomic write; the
        caller then publishes each in order. A batch that does not follow raises
        StaleBatchError and nothing is written."""
        self._check_usable()
        seq = self.durable_seq
        for batch in batches:
            if batch.generation != self.generation or batch.first_seq != seq + 1:
                if batch.first_seq <= self.durable_seq:  # blocks applied from elsewhere
                    self.request_reset()  # overtook the head: it no longer extends them
                raise StaleBatchError(
                    f"batch from block {batch.first_seq} no longer follows block {seq}"
                )
            seq = batch.seq
        if len(batches) == 1:
            puts, deletes = list(batches[0].puts.items()), list(batches[0].deletes)
        else:
            puts, deletes = merge_writes((b.puts.items(), b.deletes) for b in batches)
        try:
            self.storage.write(
                puts + (extra_puts or []), deletes + (extra_deletes or []), sync=sync
            )
        except BaseException as exc:
            self.failed = exc
            raise LedgerClosedError(f"storage write failed, reopen the ledger: {exc}") from exc
        self.stats_batches += 1

    def apply_blocks(
        self,
        blocks: Sequence[Block],
        *,
        checked: bool = False,
        raw_blocks: Sequence[bytes] | None = None,
    ) -> PreparedBatch:
        """Derive the batch of blocks made elsewhere (a replica applying its log), checked.

        Each block must carry hashes that recompute (skipped when the caller has `checked`
        them) and chain to the durable tip; otherwise CorruptLedgerError and nothing changes.
        The caller then `write`s and `publish`es the batch. Only for a replica whose head is
        its durable state (it prepares nothing). `raw_blocks`: the blocks as they arrived
        (codec.encode), stored as they are instead of being encoded again.
        """
        self._check_usable()
        if self.head_seq != self.durable_seq or self._unwritten:
            self._drop_prepared()  # derive from durable state only, never from a prepared batch
        self._bound_marks()
        batch = PreparedBatch(self)
        batch.first_seq = self.durable_seq + 1
        batch.seq, batch.tip_hash = self.durable_seq, self.durable_hash()
        batch.frontier = self.frontier.copy()
        batch.catalog = self.catalog
        batch.time_ms = self.durable_time_ms
        for position, block in enumerate(blocks):
            problem = None if checked else check_block(block)
            seq = block["blockAddress"]["sequenceNo"]
            if problem is None and seq != batch.seq + 1:
                problem = f"block {seq} does not follow block {batch.seq}"
            if problem is None and block["previousBlockHash"] != batch.tip_hash:
                problem = f"block {seq} does not chain to block {batch.seq}"
            if problem is None and block["blockAddress"]["strandId"] != self.strand_id:
                problem = f"block {seq} belongs to another strand"
            if problem is not None:
                raise CorruptLedgerError(problem)
            self._apply(block, batch, None if raw_blocks is None else raw_blocks[position])
        self.head_catalog, self.head_seq = batch.catalog, batch.seq
        self.head_hash, self.head_frontier = batch.tip_hash, batch.frontier
        self.head_time_ms = batch.time_ms
        return batch

    def durable_hash(self) -> bytes:
        """The hash of the durable tip block."""
        return self.get_node(0, self.durable_seq)

    def request_reset(self) -> None:
        """Drop every prepared-but-unwritten batch at the start of the next `prepare`.

        Any thread may call it (the preparing thread owns the head). Batches prepared before
        it can no longer be written: `write` raises StaleBatchError for them.
        """
        self.generation += 1
        self._reset_requested = True

    def _reset_head(self) -> None:
        self._drop_prepared()
        self.head_catalog, self.head_seq = self.catalog, self.durable_seq
        self.head_hash, self.head_frontier = self.durable_hash(), self.frontier
        self.head_time_ms = self.durable_time_ms

    def _bound_marks(self) -> None:
        """Keep the OCC marks bounded: past the capacity, forget them all and treat every
        read older than the head as conflicting (rare, conservative)."""
        if len(self._last_modified) > _LAST_MODIFIED_CAPACITY:
            self._last_modified.clear()
            self._pruned_below = self.head_seq

    def _drop_prepared(self) -> None:
        """Forget prepared-but-unwritten batches: their documents, and their OCC marks (a
        mark above the durable tip is lowered to it: conservative, never misses a conflict)."""
        self._unwritten = {}
        self._unwritten_txs = {}
        durable = self.durable_seq
        for item, seq in list(self._last_modified.items()):
            if seq > durable:
                self._last_modified[item] = durable

    def publish(self, batch: PreparedBatch) -> None:
        """Make a written batch visible to readers."""
        if batch.catalog is not self.catalog:
            self.catalog_version += 1
        self.durable_time_ms = batch.time_ms
        self.catalog = batch.catalog
        self.frontier = batch.frontier
        self.durable_seq = batch.seq

    def _check_usable(self) -> None:
        if self.failed is not None:
            raise LedgerClosedError(f"the engine stopped after a failure: {self.failed}")

    def _changed_after(self, item: ReadItem, seq: int) -> bool:
        if item[0] == "x":  # an index read is void once the index is dropped
            dropped = self._last_modified.get(("xdrop", item[1]))
            if dropped is not None and dropped > seq:
                return True
        modified = self._last_modified.get(item)
        if modified is not None:
            return modified > seq
        return seq < self._pruned_below

    def _prepare(self, tx: Transaction, now_ms: int, batch: PreparedBatch) -> CommitResult:
        self._check_new_transaction(tx.transaction_id, batch)
        if tx.expired:  # a statement ran into the deadline: gone, not worth a retry
            raise TransactionExpiredError(f"Transaction {tx.transaction_id} has expired")
        for item, seq in tx.reads.items():
            if self._changed_after(item, seq):
                raise OccConflictError(f"transaction {tx.transaction_id}: {item!r} changed")
        if now_ms - tx.start_ms > tx.timeout_ms:
            raise TransactionExpiredError(
                f"transaction {tx.transaction_id} ran over {tx.timeout_ms} ms"
            )
        if tx.read_only:
            return CommitResult(tx.transaction_id, None)
        writes: list[DocumentWrite] = []
        catalog = batch.catalog
        for table, document in tx.system_writes():
            if table.table_id not in catalog.tables:
                catalog.check_new_table(table.name)
            catalog = catalog.with_table(table)
            old = batch.doc(SYSTEM_TABLE_ID, table.table_id)
            writes.append(
                DocumentWrite(
                    SYSTEM_TABLE_NAME,
                    SYSTEM_TABLE_ID,
                    table.table_id,
                    0 if old is None else old.version + 1,
                    document,
                    ion_hash(document),
                    (),
                )
            )
        for request_id, request, statement in tx.redactions:
            writes.append(
                DocumentWrite(
                    REDACTION_TABLE_NAME,
                    REDACTION_TABLE_ID,
                    request_id,
                    0,
                    request,
                    ion_hash(request),
                    (statement,),
                )
            )
        packed: dict[tuple[str, str], bytes] = {}
        for (table_id, doc_id), pending in tx.writes.items():
            if pending.data is not None:
                packed[(table_id, doc_id)] = pending.packed
            live = catalog.tables.get(table_id)
            if live is None or not live.active:
                raise TableNotFoundError(f"table {pending.table.name!r} is no longer active")
            old = batch.doc(table_id, doc_id)
            if old is None and pending.data is None:
                if (table_id, doc_id) in tx.created:
                    continue  # inserted and deleted by this transaction: nothing to write
                raise OccConflictError(f"document {doc_id} was deleted concurrently")
            writes.append(
                DocumentWrite(
                    live.name,
                    table_id,
                    doc_id,
                    0 if old is None else old.version + 1,
                    pending.data,
                    pending.data_hash,
                    tuple(pending.statement_indexes),
                )
            )
        block = build_block(
            strand_id=self.strand_id,
            sequence_no=batch.seq + 1,
            transaction_id=tx.transaction_id,
            timestamp=timestamp_from_ms(max(now_ms, batch.time_ms)),  # never before the last
            previous_block_hash=batch.tip_hash,
            statements=tx.statements,
            writes=writes,
        )
        batch.packed = packed  # the documents as the transaction packed them: not again
        self._apply(block, batch)
        return CommitResult(tx.transaction_id, batch.seq)

    def _check_new_transaction(self, tx_id: str, batch: PreparedBatch) -> None:
        """A transaction id commits at most once: one already in the journal, or in a block
        prepared but not yet durable, is refused (a client's retry of a commit whose outcome
        it did not learn)."""
        seq = self._unwritten_txs.get(tx_id)
        if seq is None and tx_id in batch.transaction_ids:
            seq = batch.seq
        if seq is None:
            seq = self.committed_seq(tx_id)
        if seq is not None:
            raise TransactionCommittedError(
                f"transaction {tx_id} is already in the journal (block {seq})", tx_id, seq
            )

    # ----------------------------------------------------------------- derivation
    def _bump(self, seq: int, *item: object) -> None:
        self._last_modified[item] = seq

    def _apply(self, block: Block, batch: PreparedBatch, raw: bytes | None = None) -> None:
        """Derive every state change of one block into the batch overlay (`raw`: the block
        as codec.encode makes it, when the caller has it)."""
        seq = block["blockAddress"]["sequenceNo"]
        assert seq == batch.seq + 1
        assert block["previousBlockHash"] == batch.tip_hash
        documents = block["transactionInfo"]["documents"]
        for revision in block["revisions"]:
            meta = revision["metadata"]
            doc_id, version = meta["id"], meta["version"]
            table_id = documents[doc_id]["tableId"]
            data = revision.get("data")
            old = batch.doc(table_id, doc_id)
            if table_id == SYSTEM_TABLE_ID:
                self._apply_catalog(seq, batch, TableDef.from_document(data))
            elif table_id == REDACTION_TABLE_ID:
                self._apply_redaction(batch, data)
            else:
                self._apply_indexes(seq, batch, table_id, doc_id, old, data)
            new = None if data is None else DocState(version, seq, data)
            batch.docs[(table_id, doc_id)] = new
            dkey = keys.doc_key(table_id, doc_id)
            if new is None:
                batch.delete(dkey)
            else:
                packed = batch.packed.pop((table_id, doc_id), None)  # the transaction's own
                if packed is None:
                    packed = codec.pack(data, check_names=False)
                batch.put(dkey, encode_doc(version, seq, packed))
            batch.put(keys.revision_key(table_id, doc_id, version), keys.encode_u64(seq))
            self._bump(seq, "d", table_id, doc_id)
            self._bump(seq, "t", table_id)
        if raw is None:
            raw = codec.encode(block, check_names=False)
        batch.put(keys.block_key(seq), raw)
        batch.put(keys.tx_key(block["transactionId"]), keys.encode_u64(seq))
        batch.blocks.append(block)
        batch.raw_blocks.append(raw)
        batch.transaction_ids.add(block["transactionId"])
        batch.time_ms = ms_from_timestamp(block["blockTimestamp"])
        for level, index, node in batch.frontier.append(block["blockHash"]):
            batch.put(keys.node_key(level, index), codec.frame(node))
        batch.seq = seq
        batch.tip_hash = block["blockHash"]

    def _apply_redaction(self, batch: PreparedBatch, request: dict[str, Any]) -> None:
        """Replace one revision's data by its dataHash in the stored block. The block's
        hashes do not change (revision hash = dot(H(metadata), dataHash)); this is the one
        stored block that is ever rewritten, and only its data goes. Idempotent."""
        seq = request["blockAddress"]["sequenceNo"]
        key = keys.block_key(seq)
        raw = batch.puts.get(key) or self.storage.get(key)
        if raw is None:
            raise CorruptLedgerError(f"redaction names block {seq}, which is missing")
        block = codec.decode(raw)
        revisions = block["revisions"]
        for position, revision in enumerate(revisions):
            if revision["metadata"]["id"] == request["documentId"] and "data" in revision:
                revisions[position] = {
                    "blockAddress": revision["blockAddress"],
                    "hash": revision["hash"],
                    "dataHash": ion_hash(revision["data"]),
                    "metadata": revision["metadata"],
                }
                if check_block(block) is not None:
                    raise CorruptLedgerError(f"redacting block {seq} would change its hashes")
                batch.put(key, codec.encode(block, check_names=False))

    def _apply_catalog(self, seq: int, batch: PreparedBatch, table: TableDef) -> None:
        old = batch.catalog.tables.get(table.table_id)
        if old is None:
            self._bump(seq, "c")
        old_ids = set() if old is None else {i.index_id for i in old.indexes}
        kept = {i.index_id for i in table.indexes}
        for index in () if old is None else old.indexes:
            if index.index_id not in kept:  # dropped: purge its entries, void its readers
                self._bump(seq, "xdrop", index.index_id)
                for doc_id, state in list(batch.scan_docs(table.table_id)):
                    for vkey in index_keys(state.data, index.field):
                        batch.delete(keys.index_key(index.index_id, vkey, doc_id))
        batch.catalog = batch.catalog.with_table(table)
        for index in table.indexes:
            if index.index_id in old_ids:  # already built (a new index on a field whose
                continue  # old index this block drops is built afresh)
            for doc_id, state in list(batch.scan_docs(table.table_id)):
                for vkey in index_keys(state.data, index.field):
                    batch.put(keys.index_key(index.index_id, vkey, doc_id), b"")
        self._bump(seq, "n", table.name)
        if old is not None:
            self._bump(seq, "n", old.name)

    def _apply_indexes(
        self,
        seq: int,
        batch: PreparedBatch,
        table_id: str,
        doc_id: str,
        old: DocState | None,
        data: dict[str, Any] | None,
    ) -> None:
        for index in batch.catalog.tables[table_id].indexes:
            old_keys = frozenset() if old is None else index_keys(old.data, index.field)
            new_keys = frozenset() if data is None else index_keys(data, index.field)
            for old_key in sorted(old_keys - new_keys):
                batch.delete(keys.index_key(index.index_id, old_key, doc_id))
                self._bump(seq, "x", index.index_id, old_key)
            for new_key in sorted(new_keys - old_keys):
                batch.put(keys.index_key(index.index_id, new_key, doc_id), b"")
                self._bump(seq, "x", index.index_id, new_key)

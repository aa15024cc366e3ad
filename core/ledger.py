"""The embedded ledger: the engine wired to a real clock, real randomness and LevelDB.

This is the only place in core/ that reads the wall clock, draws random bytes or waits.
`execute_lambda` runs the caller's function in a transaction on the caller's thread, then
commits it by pipelined group commit, with no threads of its own: concurrent committers
queue their transactions; one of them (the preparer) takes everything queued, validates it
and forms the blocks (`Engine.prepare`), then writes the batch with one synced write and
publishes it (`Engine.write`, `Engine.publish`). While one batch is being written (the
thread waits on the disk, without the GIL) the next preparer validates the next batch
against the head, so CPU work and fsync overlap. At most one prepared batch waits for the
writer, and batches are written in the order they were prepared. An idle ledger commits a
lone transaction at once, on the caller's thread.

A transaction expires `transaction_timeout_ms` (QLDB's 30 s) after it began: a PartiQL
statement still evaluating then raises TransactionExpiredError and the transaction cannot
commit. A Python function that loops is not interrupted (nothing in-process can stop it);
its transaction is refused at commit.

Invariants: a transaction function sees only durable state plus its own writes; an
acknowledged commit (execute_lambda returned) is on disk; on OCC conflict the whole
function is retried (4 retries, jittered backoff from 10 ms), so it must be free of side
effects outside the transaction; a storage failure closes the ledger for every caller.
"""

from __future__ import annotations

import datetime
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from core import queries
from core.deadline import TRANSACTION_TIMEOUT_MS
from core.engine import CommitResult, Engine, Genesis, PreparedBatch
from core.errors import InvalidArgumentError, LedgerClosedError, OccConflictError, StrandError
from core.ids import IdSource
from core.storage import LevelDBStorage, MemoryStorage, Storage
from core.transaction import Transaction

T = TypeVar("T")
DEFAULT_RETRY_LIMIT = 4
BACKOFF_BASE_MS = 10
MAX_BATCH_TRANSACTIONS = 1024

# Stores a prepared batch durably and publishes it (default: Engine.write, Engine.publish).
# A test (tests/test_replica.py) supplies one that first replicates the batch through Raft.
WriteBatch = Callable[[Engine, PreparedBatch], None]


def write_locally(engine: Engine, batch: PreparedBatch) -> None:
    engine.write(batch)
    engine.publish(batch)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TransactionResult(Generic[T]):
    """A committed transaction: the function's value, the transaction id, the block address
    (None when it wrote nothing) and the commit digest (reference qldb.md section 1:
    t = H(txId); for each statement t = dot(t, H(statement) dot H(p1) dot ...))."""

    value: T
    transaction_id: str
    block_address: dict[str, Any] | None
    commit_digest: bytes


def run_reporting(fn: Callable[[Transaction], T], tx: Transaction) -> tuple[T, str, bytes]:
    """Run `fn(tx)`; return its value with the transaction id and commit digest."""
    value = fn(tx)
    return value, tx.transaction_id, tx.commit_digest()


class LedgerTransaction:
    """An open interactive transaction of an embedded Ledger (`Ledger.begin_transaction`)."""

    def __init__(self, ledger: Ledger, tx: Transaction) -> None:
        self._ledger = ledger
        self._tx = tx
        self.transaction_id = tx.transaction_id

    def execute_statement(self, statement: str, *parameters: Any) -> list[Any]:
        """Run one PartiQL statement in this transaction; its rows."""
        return list(self._tx.execute_statement(statement, *parameters))

    def commit(self, commit_digest: bytes | None = None) -> TransactionResult[None]:
        """Commit, or raise OccConflictError (no retry: run the statements again in a new
        transaction). A `commit_digest` (QLDB's, computed by the client) must match."""
        tx = self._tx
        digest = tx.commit_digest()
        if commit_digest is not None and commit_digest != digest:
            tx.finished = True
            raise InvalidArgumentError("the commit digest does not match the statements run")
        outcome = self._ledger._commit(tx)
        if not isinstance(outcome, CommitResult):
            raise outcome
        address = None
        if outcome.sequence_no is not None:
            address = {"strandId": self._ledger.strand_id, "sequenceNo": outcome.sequence_no}
        return TransactionResult(None, tx.transaction_id, address, digest)

    def abort(self) -> None:
        self._tx.finished = True


class _Waiter:
    """A committing thread: woken when one of its requests is resolved, or when it is its
    turn to prepare (`lead`). Only the thread concerned is woken, never all of them."""

    __slots__ = ("event", "lead")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.lead = False


class _Request:
    """One transaction waiting for its outcome."""

    __slots__ = ("tx", "outcome", "waiter")

    def __init__(self, tx: Transaction, waiter: _Waiter) -> None:
        self.tx = tx
        self.outcome: CommitResult | BaseException | None = None
        self.waiter = waiter

    def resolve(self, outcome: CommitResult | BaseException) -> None:
        self.outcome = outcome
        self.waiter.event.set()


class Ledger:
    """An embedded QLDB-compatible ledger. Safe to share between threads."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
        genesis: Genesis | None = None,
        write_batch: WriteBatch = write_locally,
        max_batch_transactions: int = MAX_BATCH_TRANSACTIONS,
        transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS,
    ) -> None:
        self._storage = storage
        self._clock_ms = clock_ms
        self._timeout_ms = transaction_timeout_ms
        self._engine = Engine(storage, IdSource(random_bytes), clock_ms(), genesis=genesis)
        self._write_batch = write_batch
        self._max_batch = max_batch_transactions
        self._rng = random.Random(random_bytes(16))
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._preparing = False  # a thread is preparing a batch
        self._waiting_batches = 0  # prepared batches not yet being written (at most 1)
        self._writing = False  # a thread is writing a batch
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create_if_missing: bool = True) -> Ledger:
        """Open (or create) the ledger stored in directory `path`."""
        if create_if_missing:
            Path(path).mkdir(parents=True, exist_ok=True)
        return cls(LevelDBStorage(path, create_if_missing=create_if_missing))

    @classmethod
    def in_memory(cls, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS) -> Ledger:
        """A ledger kept in memory only (for tests and experiments)."""
        return cls(MemoryStorage(), transaction_timeout_ms=transaction_timeout_ms)

    @property
    def strand_id(self) -> str:
        return self._engine.strand_id

    # ----------------------------------------------------------------- transactions
    @property
    def engine(self) -> Engine:
        return self._engine

    def execute_lambda(
        self,
        fn: Callable[[Transaction], T],
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        *,
        transaction_id: str | None = None,
    ) -> T:
        """Run `fn(tx)` in a transaction and commit it; retry the whole of it on OCC conflict.

        Every attempt uses `transaction_id` when given (only a committed attempt reaches the
        journal, so the id names at most one committed transaction).
        """
        [(ok, value)] = self.execute_many([(transaction_id, fn, retry_limit)])
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def execute_transaction(
        self,
        fn: Callable[[Transaction], T],
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        *,
        transaction_id: str | None = None,
    ) -> TransactionResult[T]:
        """`execute_lambda`, returning also what the commit produced: the transaction id,
        its block address (None for a read-only transaction) and QLDB's commit digest."""
        value, tx_id, digest = self.execute_lambda(
            functools.partial(run_reporting, fn), retry_limit, transaction_id=transaction_id
        )
        seq = self._engine.committed_seq(tx_id)
        address = None if seq is None else {"strandId": self.strand_id, "sequenceNo": seq}
        return TransactionResult(value, tx_id, address, digest)

    def execute_statement(
        self, statement: str, *parameters: Any, retry_limit: int = DEFAULT_RETRY_LIMIT
    ) -> list[Any]:
        """Run one PartiQL statement in a transaction of its own; its rows."""
        return self.execute_lambda(
            lambda tx: list(tx.execute_statement(statement, *parameters)), retry_limit
        )

    def begin_transaction(self) -> LedgerTransaction:
        """An interactive transaction (QLDB's session transaction): statements one at a time,
        then `commit` (with QLDB's commit digest checked, when given) or `abort`."""
        self._check_open()
        tx = self._engine.begin(self._clock_ms(), self._clock_ms, timeout_ms=self._timeout_ms)
        return LedgerTransaction(self, tx)

    def execute_many(
        self, work: Sequence[tuple[str | None, Callable[[Transaction], Any], int]]
    ) -> list[tuple[bool, Any]]:
        """Run several (transaction id, fn, retry limit) on this thread, as one group commit.

        Each is `execute_lambda`'s contract; the transactions of one round share a group
        commit, and those
        that met an OCC conflict are run again together, after one jittered backoff. Returns,
        in order, (True, fn's result) or (False, the exception).
        """
        results: list[tuple[bool, Any] | None] = [None] * len(work)
        todo = list(range(len(work)))
        attempt = 0
        while todo:
            self._check_open()
            started: list[tuple[int, Transaction, Any]] = []
            for i in todo:
                tx = self._engine.begin(
                    self._clock_ms(), self._clock_ms, work[i][0], timeout_ms=self._timeout_ms
                )
                try:
                    value = work[i][1](tx)
                except Exception as exc:
                    results[i] = (False, exc)
                    continue
                finally:
                    pending = not tx.finished
                    tx.finished = True
                if not pending:
                    error = StrandError("the transaction was ended inside the function")
                    results[i] = (False, error)
                    continue
                started.append((i, tx, value))
            outcomes = self._commit_all([tx for _, tx, _ in started])
            todo = []
            for (i, _, value), outcome in zip(started, outcomes, strict=True):
                if isinstance(outcome, CommitResult):
                    results[i] = (True, value)
                elif isinstance(outcome, OccConflictError) and attempt < work[i][2]:
                    todo.append(i)
                else:
                    results[i] = (False, outcome)
            if todo:
                time.sleep(self._rng.uniform(0, BACKOFF_BASE_MS * (2**attempt)) / 1000)
                attempt += 1
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _commit(self, tx: Transaction) -> CommitResult | BaseException:
        return self._commit_all([tx])[0]

    def _commit_all(self, txs: list[Transaction]) -> list[CommitResult | BaseException]:
        if not txs:
            return []
        waiter = _Waiter()
        requests = [_Request(tx, waiter) for tx in txs]
        with self._cond:
            if self._closed:
                return [LedgerClosedError("the ledger is closed")] * len(txs)
            self._queue.extend(requests)
            self._hand_off()
        while True:
            waiter.event.wait()
            with self._cond:
                waiter.event.clear()
                if waiter.lead:
                    waiter.lead = False
                    self._lead()
                if all(r.outcome is not None for r in requests):
                    break
        return [r.outcome for r in requests]  # type: ignore[misc]

    def _hand_off(self) -> None:
        """If a batch may be prepared now, make the thread of the oldest queued request its
        preparer (with `_cond` held)."""
        if self._queue and not self._preparing and not self._waiting_batches:
            self._preparing = True  # reserved for that thread
            waiter = self._queue[0].waiter
            waiter.lead = True
            waiter.event.set()

    def _lead(self) -> None:
        """Prepare, then write, everything queued. Called and returns with `_cond` held,
        `_preparing` reserved for this thread by `_hand_off`."""
        cond, engine = self._cond, self._engine
        requests = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        for request in requests:
            request.tx.finished = False  # the engine marks them finished as it takes them
        batch: PreparedBatch | None = None
        to_write: list[tuple[_Request, CommitResult]] = []
        cond.release()
        try:
            try:
                batch, outcomes = engine.prepare([r.tx for r in requests], self._clock_ms())
            except BaseException as exc:  # the engine stopped: every member learns it
                outcomes = [exc] * len(requests)  # type: ignore[list-item]
            for request, outcome in zip(requests, outcomes, strict=True):
                if isinstance(outcome, CommitResult) and outcome.sequence_no is not None:
                    to_write.append((request, outcome))
                else:  # refused, or read-only: nothing to wait for
                    request.resolve(outcome)
        finally:
            cond.acquire()
            self._preparing = False
            if to_write:
                self._waiting_batches += 1
            else:
                self._hand_off()
        if batch is None or not to_write:
            return
        while self._writing:
            cond.wait()  # only the one prepared batch waits here, for the writer
        self._waiting_batches -= 1
        self._writing = True
        self._hand_off()  # the next preparer may start
        cond.release()
        try:
            try:
                self._write_batch(engine, batch)
            except BaseException as exc:
                for request, _ in to_write:
                    request.resolve(exc)
            else:
                for request, outcome in to_write:
                    request.resolve(outcome)
        finally:
            cond.acquire()
            self._writing = False
            cond.notify()  # the prepared batch waiting for its turn, if there is one
            self._hand_off()

    # ----------------------------------------------------------------- journal
    def get_digest(self, digest_tip_address: Any = None) -> dict[str, Any]:
        self._check_open()
        return queries.get_digest(self._engine, digest_tip_address)

    def get_block(self, block_address: Any, digest_tip_address: Any = None) -> dict[str, Any]:
        self._check_open()
        return queries.get_block(self._engine, block_address, digest_tip_address)

    def get_revision(
        self, block_address: Any, document_id: str, digest_tip_address: Any = None
    ) -> dict[str, Any]:
        self._check_open()
        return queries.get_revision(self._engine, block_address, document_id, digest_tip_address)

    def get_consistency_proof(
        self, old_tip_address: Any, new_tip_address: Any = None
    ) -> dict[str, Any]:
        self._check_open()
        return queries.get_consistency_proof(self._engine, old_tip_address, new_tip_address)

    def history(
        self,
        table: str,
        document_id: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
    ) -> list[dict[str, Any]]:
        self._check_open()
        return queries.history(self._engine, table, document_id, start, end)

    def verify_journal(self) -> queries.JournalReport:
        self._check_open()
        return queries.verify_journal(self._engine)

    def list_tables(self) -> list[str]:
        """Names of the active tables."""
        return sorted(self._engine.catalog.active_by_name)

    # ----------------------------------------------------------------- lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosedError("the ledger is closed")

    def close(self) -> None:
        with self._cond:
            while self._preparing or self._waiting_batches or self._writing:
                self._cond.wait(0.01)
            if not self._closed:
                self._closed = True
                self._storage.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

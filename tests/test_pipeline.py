"""Pipelined group commit: prepare ahead of the disk, write in order, publish after.

The engine validates a batch against its head (which includes prepared, unwritten batches)
while readers see only published state. These tests drive prepare / write / publish by hand,
then check the Ledger's threads keep every acknowledged commit durable under a failing disk.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import pytest

from core import Ledger
from core.engine import CommitResult, Engine
from core.errors import LedgerClosedError, OccConflictError, StaleBatchError
from core.ids import IdSource
from core.storage import MemoryStorage, StorageError


class FlakyStorage(MemoryStorage):
    """A MemoryStorage whose writes start failing when told to (a dying disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_writes = False
        self.writes = 0

    def write(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        if self.fail_writes:
            raise StorageError("injected: the disk is gone")
        super().write(puts, deletes, sync=sync)
        self.writes += 1


def _engine(storage: MemoryStorage | None = None) -> tuple[Engine, str]:
    counter = itertools.count(1)
    engine = Engine(
        storage or MemoryStorage(), IdSource(lambda n: next(counter).to_bytes(n, "big")), 0
    )
    tx = engine.begin(0, lambda: 0)
    tx.create_table("Acct")
    tx.create_index("Acct", "owner")
    doc_id = tx.insert("Acct", {"owner": "ann", "balance": 10})
    assert isinstance(engine.commit([tx], 0)[0], CommitResult)
    return engine, doc_id


def _set_balance(engine: Engine, doc_id: str, balance: int) -> object:
    tx = engine.begin(0, lambda: 0)
    assert tx.get("Acct", doc_id) is not None
    tx.update("Acct", doc_id, {"owner": "ann", "balance": balance})
    return tx


def test_a_prepared_batch_is_invisible_until_published() -> None:
    engine, doc_id = _engine()
    tx = _set_balance(engine, doc_id, 20)
    batch, outcomes = engine.prepare([tx], 0)  # type: ignore[list-item]
    assert isinstance(outcomes[0], CommitResult)
    assert engine.head_seq == batch.seq == engine.durable_seq + 1
    assert engine.begin(0, lambda: 0).get("Acct", doc_id)["balance"] == 10  # type: ignore[index]
    engine.write(batch)
    engine.publish(batch)
    assert engine.durable_seq == batch.seq
    assert engine.begin(0, lambda: 0).get("Acct", doc_id)["balance"] == 20  # type: ignore[index]


def test_a_transaction_that_read_before_an_unwritten_change_conflicts() -> None:
    engine, doc_id = _engine()
    stale = _set_balance(engine, doc_id, 99)  # reads balance 10
    first, _ = engine.prepare([_set_balance(engine, doc_id, 20)], 0)  # type: ignore[list-item]
    late_reader = _set_balance(engine, doc_id, 30)  # reads published state: still 10
    second, outcomes = engine.prepare([stale, late_reader], 0)  # type: ignore[list-item]
    assert all(isinstance(o, OccConflictError) for o in outcomes)
    assert second.empty
    engine.write(first)
    engine.publish(first)
    assert engine.begin(0, lambda: 0).get("Acct", doc_id)["balance"] == 20  # type: ignore[index]


def test_two_batches_in_flight_chain_and_land_in_order() -> None:
    engine, _ = _engine()
    inserts = []
    for owner in ("bob", "cy"):
        tx = engine.begin(0, lambda: 0)
        tx.insert("Acct", {"owner": owner, "balance": 1})
        inserts.append(tx)
    first, _ = engine.prepare([inserts[0]], 0)
    second, _ = engine.prepare([inserts[1]], 0)
    assert second.first_seq == first.seq + 1
    with pytest.raises(StaleBatchError):
        engine.write(second)  # out of order: refused before touching the disk
    for batch in (first, second):
        engine.write(batch)
        engine.publish(batch)
    second_block = engine.read_block(second.seq)
    assert second_block["previousBlockHash"] == engine.read_block(first.seq)["blockHash"]
    owners = sorted(d["owner"] for _, d in engine.begin(0, lambda: 0).find("Acct"))
    assert owners == ["ann", "bob", "cy"]


def test_a_failed_write_stops_the_engine_and_nothing_after_it_lands() -> None:
    storage = FlakyStorage()
    engine, doc_id = _engine(storage)
    durable = engine.durable_seq
    first, _ = engine.prepare([_set_balance(engine, doc_id, 20)], 0)  # type: ignore[list-item]
    tx = engine.begin(0, lambda: 0)
    tx.insert("Acct", {"owner": "bob", "balance": 1})
    second, _ = engine.prepare([tx], 0)
    storage.fail_writes = True
    with pytest.raises(LedgerClosedError):
        engine.write(first)
    storage.fail_writes = False
    with pytest.raises(LedgerClosedError):
        engine.write(second)
    assert engine.durable_seq == durable
    reopened = Engine(storage, IdSource(lambda n: b"\x07" * n), 0)
    assert reopened.durable_seq == durable
    assert reopened.begin(0, lambda: 0).get("Acct", doc_id)["balance"] == 10  # type: ignore[index]


def test_ledger_threads_acknowledge_only_what_was_written() -> None:
    """16 threads commit while the disk dies: every acknowledged insert is in storage."""
    storage = FlakyStorage()
    ledger = Ledger(storage)
    ledger.execute_lambda(lambda tx: tx.create_table("T"))
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for n in range(200):
            try:
                doc_id = ledger.execute_lambda(lambda tx, n=n: tx.insert("T", {"w": i, "n": n}))
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                return
            with lock:
                acknowledged.append(doc_id)
                if len(acknowledged) == 500:
                    storage.fail_writes = True

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(acknowledged) >= 500
    assert failures  # every worker still running when the disk died (some may have finished)
    assert all(isinstance(exc, LedgerClosedError) for exc in failures), failures
    storage.fail_writes = False
    reopened = Engine(storage, IdSource(lambda n: b"\x09" * n), 0)
    stored = {doc_id for doc_id, _ in reopened.begin(0, lambda: 0).find("T")}
    assert set(acknowledged) <= stored
    assert reopened.durable_seq == len(stored) + 1  # genesis, create_table, one block per insert
    ledger.close()

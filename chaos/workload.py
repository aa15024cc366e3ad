"""A bank-transfer workload for any ledger handle (embedded `Ledger` or `LedgerCluster`).

Accounts start with equal balances; each transfer reads two accounts and moves an amount
between them (serializable: the total never changes). The workload picks every transaction
id itself, so what the clients were told is recorded by id: every acknowledged transfer that
wrote (a checker then demands that each is in the journal exactly once, and that the total
is conserved), and every one the client was told failed (none may be in the journal).

Invariants: a transaction is counted as acknowledged only when the handle returned its
result, or raised TransactionCommittedError (it is in the journal, its result was lost);
anything else a transfer raised is recorded, and an exception that is not a StrandError is
kept in `unexpected` (a test fails on it); workers stop by themselves after `count`
transactions or at `stop`.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial

from core.errors import StrandError, TransactionCommittedError
from core.ids import IdSource
from core.transaction import Transaction, TransactionRunner

TABLE = "Accounts"
START_BALANCE = 1_000


def open_accounts(ledger: TransactionRunner, accounts: int) -> None:
    def create(tx: Transaction) -> None:
        tx.create_table(TABLE)
        tx.create_index(TABLE, "accountId")

    ledger.execute_lambda(create)
    for first in range(0, accounts, 40):  # QLDB: at most 40 documents per transaction
        ledger.execute_lambda(
            partial(_insert_accounts, first=first, last=min(first + 40, accounts))
        )


def _insert_accounts(tx: Transaction, first: int, last: int) -> None:
    for n in range(first, last):
        tx.insert(TABLE, {"accountId": n, "owner": f"owner-{n}", "balance": START_BALANCE})


def transfer(tx: Transaction, source: int, target: int, amount: int) -> tuple[str, bool]:
    """Move `amount` if the source has it; returns (transaction id, moved)."""
    [(source_id, source_doc)] = tx.find(TABLE, accountId=source)
    [(target_id, target_doc)] = tx.find(TABLE, accountId=target)
    if source_doc["balance"] < amount:
        return tx.transaction_id, False
    source_doc["balance"] -= amount
    target_doc["balance"] += amount
    tx.update(TABLE, source_id, source_doc)
    tx.update(TABLE, target_id, target_doc)
    return tx.transaction_id, True


def insert_one(tx: Transaction, n: int, table: str = "Bench") -> str:
    """The benchmarks' transaction: one document of about 120 bytes (importable, so a
    cluster client pickles a reference to it, not its code)."""
    return tx.insert(table, {"n": n, "payload": "x" * 100})


def total_balance(ledger: TransactionRunner) -> int:
    docs = ledger.execute_lambda(lambda tx: tx.find(TABLE))
    return sum(int(doc["balance"]) for _, doc in docs)


@dataclass(slots=True)
class WorkloadResult:
    """What the clients saw (mutable: filled by the workers)."""

    acknowledged: set[str] = field(default_factory=set)  # committed transfers that wrote
    failed: set[str] = field(default_factory=set)  # the client was told they did not commit
    unexpected: list[str] = field(default_factory=list)  # non-Strand exceptions: bugs
    answered: int = 0  # transfers acknowledged, including read-only ones (nothing to move)
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_transfers(
    ledger: TransactionRunner,
    *,
    accounts: int,
    threads: int,
    count: int,
    seed: int = 0,
    stop: threading.Event | None = None,
    result: WorkloadResult | None = None,
) -> WorkloadResult:
    """Run `count` transfers per thread (or until `stop`); returns what was acknowledged."""
    out = result if result is not None else WorkloadResult()

    def worker(worker_seed: int) -> None:
        try:
            work(worker_seed)
        except BaseException as exc:  # a test must see it, not a silently shorter run
            with out.lock:
                out.unexpected.append(f"{type(exc).__name__}: {exc}")
            raise

    def work(worker_seed: int) -> None:
        rng = random.Random(worker_seed)
        ids = IdSource(rng.randbytes)
        for _ in range(count):
            if stop is not None and stop.is_set():
                return
            source, target = rng.sample(range(accounts), 2)
            fn = partial(transfer, source=source, target=target, amount=rng.randint(1, 100))
            started = time.perf_counter()
            tx_id = ids.new_id()
            try:
                _, moved = ledger.execute_lambda(fn, transaction_id=tx_id)
            except TransactionCommittedError:  # committed: it wrote a block
                moved = True
            except StrandError as exc:
                with out.lock:
                    out.errors[type(exc).__name__] = out.errors.get(type(exc).__name__, 0) + 1
                    out.failed.add(tx_id)
                    out.done += 1
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            with out.lock:
                if moved:
                    out.acknowledged.add(tx_id)
                out.answered += 1
                out.latencies_ms.append(elapsed_ms)
                out.done += 1

    pool = [
        threading.Thread(target=worker, args=(seed * 1000 + i,), daemon=True)
        for i in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return out

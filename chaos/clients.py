"""The chaos experiments' clients: bank, register and append workloads that record histories.

Each client is a thread with its own process number, running its workload's operations
against a `LedgerCluster` until the deadline, and recording every operation: when it was
invoked and completed (nanoseconds since the experiment began), and its outcome as Jepsen
has it: "ok" (it took effect, once), "fail" (it did not), "unknown" (it may have). A client's
ledger calls already retry by transaction id and resolve what they can; what still escapes
as `UnavailableError` or `CapacityExceededError` is "unknown" for an operation that writes
and "fail" for one that only reads; `TransactionCommittedError` is "ok" (it is in the
journal); any other StrandError is "fail". The transaction functions are module-level, so
they travel by reference.

The register workload reads three ways: in a read-only transaction at the leader, as a
linearizable read asked of the client's home node (a node that is not the leader must send
it on), both checked for linearizability; and as a stale read of the home node's copy,
recorded with the sequence numbers it reports (`StaleRead`) and checked apart against the
final journal: what it saw must have been the register's value at the sequence number the
node reported.

Invariants: every operation invoked is recorded exactly once, with complete_ns None when its
outcome is unknown; appended values and written values are unique per key.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from chaos.workload import START_BALANCE, TABLE, open_accounts, transfer
from cluster.client import LedgerCluster
from core.errors import (
    CapacityExceededError,
    StrandError,
    TransactionCommittedError,
    UnavailableError,
)
from core.ids import IdSource
from core.transaction import Transaction

if TYPE_CHECKING:
    from chaos.checkers.history import Op, Txn

REGISTERS = "Registers"
LISTS = "Lists"
_UNKNOWN = (UnavailableError, CapacityExceededError)


@dataclass(frozen=True, slots=True)
class StaleRead:
    """A stale read of one register at `node`: the value seen, the block of the revision it
    came from (`revision_seq`) and the sequence number the node reported (`node_seq`)."""

    process: int
    node: str
    key: str
    document_id: str
    value: Any
    revision_seq: int
    node_seq: int


@dataclass(slots=True)
class History:
    """Everything the clients did (filled by their threads under `lock`)."""

    t0_ns: int
    events: list[tuple[float, float, str, str]] = field(
        default_factory=list
    )  # start, end, kind, outcome
    ops: list[Op] = field(default_factory=list)  # register
    txns: list[Txn] = field(default_factory=list)  # append
    stale_reads: list[StaleRead] = field(default_factory=list)  # register, at the home node
    acknowledged: set[str] = field(default_factory=set)  # bank transfers that wrote
    failed: set[str] = field(default_factory=set)  # the client was told they did not commit
    unknown: set[str] = field(default_factory=set)
    totals: list[int] = field(default_factory=list)  # bank: the total each full read saw
    negative: list[int] = field(default_factory=list)  # bank: balances below zero seen
    unexpected: list[str] = field(default_factory=list)  # exceptions that are not ours: bugs
    errors: dict[str, int] = field(default_factory=dict)  # typed errors clients were given
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.t0_ns

    def event(self, start_ns: int, end_ns: int, kind: str, outcome: str) -> None:
        self.events.append((start_ns / 1e9, end_ns / 1e9, kind, outcome))


# ----------------------------------------------------------------- transaction functions
def read_balances(tx: Transaction) -> list[int]:
    return [int(doc["balance"]) for _, doc in tx.find(TABLE)]


def read_register(tx: Transaction, key: str) -> Any:
    [(_, doc)] = tx.find(REGISTERS, key=key)
    return doc.get("value")


def write_register(tx: Transaction, key: str, value: int) -> None:
    [(doc_id, doc)] = tx.find(REGISTERS, key=key)
    tx.update(REGISTERS, doc_id, {**doc, "value": value})


def cas_register(tx: Transaction, key: str, expected: Any, value: int) -> bool:
    [(doc_id, doc)] = tx.find(REGISTERS, key=key)
    if doc.get("value") != expected:
        return False
    tx.update(REGISTERS, doc_id, {**doc, "value": value})
    return True


def run_micro_ops(tx: Transaction, ops: list[tuple[str, str, Any]]) -> list[Any]:
    """List-append: ("r", key, None) reads the list, ("append", key, v) appends v."""
    out: list[Any] = []
    for kind, key, value in ops:
        [(doc_id, doc)] = tx.find(LISTS, key=key)
        items = list(doc.get("items", []))
        if kind == "r":
            out.append(items)
        else:
            tx.update(LISTS, doc_id, {**doc, "items": [*items, value]})
            out.append(None)
    return out


def _create_keyed(tx: Transaction, table: str) -> None:
    tx.create_table(table)
    tx.create_index(table, "key")


def _insert_keyed(tx: Transaction, table: str, keys: list[str], field_name: str) -> None:
    for key in keys:
        tx.insert(table, {"key": key, field_name: [] if field_name == "items" else None})


# ----------------------------------------------------------------- setup and clients
def keys_of(size: int) -> list[str]:
    return [f"k{i}" for i in range(size)]


def prepare(cluster: LedgerCluster, kind: str, size: int) -> None:
    if kind == "bank":
        open_accounts(cluster, size)
        return
    table, field_name = (REGISTERS, "value") if kind == "register" else (LISTS, "items")
    cluster.execute_lambda(partial(_create_keyed, table=table))
    keys = keys_of(size)
    for first in range(0, size, 40):
        chunk = keys[first : first + 40]
        cluster.execute_lambda(
            partial(_insert_keyed, table=table, keys=chunk, field_name=field_name)
        )


def _outcome(exc: BaseException, writes: bool) -> str:
    if isinstance(exc, TransactionCommittedError):
        return "ok"
    if isinstance(exc, _UNKNOWN):
        return "unknown" if writes else "fail"
    return "fail"


class Client:
    """One client thread of a workload (see the module docstring)."""

    def __init__(
        self, cluster: LedgerCluster, kind: str, size: int, process: int, seed: int,
        history: History, deadline_ns: int,
    ) -> None:  # fmt: skip
        self.cluster, self.kind, self.size = cluster, kind, size
        self.process = process
        self.rng = random.Random(seed * 1000 + process)
        self.ids = IdSource(self.rng.randbytes)
        self.history = history
        self.deadline_ns = deadline_ns
        self.counter = itertools.count(1)
        self.thread = threading.Thread(target=self._run, name=f"chaos-client-{process}")

    def _run(self) -> None:
        step = {"bank": self._bank, "register": self._register, "append": self._append}[self.kind]
        try:
            while self.history.now_ns() < self.deadline_ns:
                step()
        except BaseException as exc:  # a checker must see it, not a silently shorter run
            with self.history.lock:
                self.history.unexpected.append(f"client {self.process}: {exc!r}")

    def _unique(self) -> int:
        return self.process * 1_000_000 + next(self.counter)

    def _call(self, fn: Any, writes: bool) -> tuple[str, Any, int, int]:
        """(outcome, value, invoke_ns, complete_ns)."""
        start = self.history.now_ns()
        try:
            value = self.cluster.execute_lambda(fn, transaction_id=self.ids.new_id())
            outcome = "ok"
        except StrandError as exc:
            value, outcome = exc, _outcome(exc, writes)
            self._count(exc)
        return outcome, value, start, self.history.now_ns()

    def _count(self, exc: StrandError) -> None:
        with self.history.lock:
            name = type(exc).__name__
            self.history.errors[name] = self.history.errors.get(name, 0) + 1

    def _bank(self) -> None:
        h = self.history
        if self.rng.random() < 0.1:
            outcome, value, start, end = self._call(read_balances, writes=False)
            with h.lock:
                h.event(start, end, "read", outcome)
                if outcome == "ok":
                    h.totals.append(sum(value))
                    h.negative += [b for b in value if b < 0]
            return
        source, target = self.rng.sample(range(self.size), 2)
        tx_id = self.ids.new_id()
        fn = partial(transfer, source=source, target=target, amount=self.rng.randint(1, 100))
        start = h.now_ns()
        try:
            _, moved = self.cluster.execute_lambda(fn, transaction_id=tx_id)
            outcome = "ok"
        except StrandError as exc:
            moved, outcome = isinstance(exc, TransactionCommittedError), _outcome(exc, True)
            self._count(exc)
        end = h.now_ns()
        with h.lock:
            h.event(start, end, "transfer", outcome)
            if outcome == "ok" and moved:
                h.acknowledged.add(tx_id)
            elif outcome == "fail":
                h.failed.add(tx_id)
            elif outcome == "unknown":
                h.unknown.add(tx_id)

    def _register(self) -> None:
        from chaos.checkers.history import Op

        key = f"k{self.rng.randrange(self.size)}"
        roll = self.rng.random()
        if roll < 0.1:
            self._stale_read(key)
            return
        if roll < 0.35:
            outcome, value, start, end = self._call(partial(read_register, key=key), False)
            op = Op(self.process, "read", key, None, start, end, outcome,
                    value if outcome == "ok" else None)  # fmt: skip
        elif roll < 0.5:
            outcome, value, start, end = self._node_read(key)
            op = Op(self.process, "read", key, None, start, end, outcome, value)
        elif roll < 0.8:
            new = self._unique()
            outcome, _, start, end = self._call(partial(write_register, key=key, value=new), True)
            op = Op(self.process, "write", key, new, start, end, outcome)
        else:
            expected = self.rng.choice([None, *self._recent(key)])
            new = self._unique()
            fn = partial(cas_register, key=key, expected=expected, value=new)
            outcome, value, start, end = self._call(fn, True)
            if outcome == "ok" and value is False:
                outcome = "fail"  # the compare failed: it did not take effect
            op = Op(self.process, "cas", key, (expected, new), start, end, outcome)
        if op.outcome == "unknown":
            op = Op(op.process, op.kind, op.key, op.value, op.invoke_ns, None, "unknown")
        with self.history.lock:
            self.history.event(start, end, op.kind, outcome)
            self.history.ops.append(op)

    @property
    def home(self) -> str:
        names = self.cluster.config.node_names
        return names[self.process % len(names)]

    def _node_read(self, key: str) -> tuple[str, Any, int, int]:
        """A linearizable read asked of the home node: (outcome, value, invoke, complete)."""
        start = self.history.now_ns()
        try:
            docs, _ = self.cluster.query("documents", REGISTERS, node=self.home)
        except StrandError as exc:
            self._count(exc)
            return "fail", None, start, self.history.now_ns()
        [doc] = [d for d in docs if d["data"].get("key") == key]
        return "ok", doc["data"].get("value"), start, self.history.now_ns()

    def _stale_read(self, key: str) -> None:
        start = self.history.now_ns()
        try:
            docs, node_seq = self.cluster.query(
                "documents", REGISTERS, consistency="stale", node=self.home
            )
        except StrandError as exc:
            self._count(exc)
            return
        [doc] = [d for d in docs if d["data"].get("key") == key]
        read = StaleRead(self.process, self.home, key, doc["id"], doc["data"].get("value"),
                         int(doc["seq"]), node_seq)  # fmt: skip
        with self.history.lock:
            self.history.event(start, self.history.now_ns(), "stale-read", "ok")
            self.history.stale_reads.append(read)

    def _recent(self, key: str) -> list[Any]:
        with self.history.lock:
            return [o.value for o in self.history.ops[-20:] if o.key == key and o.kind == "write"]

    def _append(self) -> None:
        from chaos.checkers.history import MicroOp, Txn

        micro: list[tuple[str, str, Any]] = []
        for _ in range(self.rng.randint(1, 3)):
            key = f"k{self.rng.randrange(self.size)}"
            if self.rng.random() < 0.5:
                micro.append(("r", key, None))
            else:
                micro.append(("append", key, self._unique()))
        outcome, value, start, end = self._call(partial(run_micro_ops, ops=micro), True)
        reads = value if outcome == "ok" and isinstance(value, list) else [None] * len(micro)
        ops = tuple(
            MicroOp(kind, key, tuple(read) if kind == "r" and read is not None else
                    (None if kind == "r" else v))
            for (kind, key, v), read in zip(micro, reads, strict=True)
        )  # fmt: skip
        txn = Txn(self.process, ops, start, None if outcome == "unknown" else end, outcome)
        with self.history.lock:
            self.history.event(start, end, "txn", outcome)
            self.history.txns.append(txn)


def expected_total(size: int) -> int:
    return size * START_BALANCE

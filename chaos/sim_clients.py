"""The simulated clients of chaos/ledger_sim.py, and the transactions their jobs run.

A `SimClient` does one operation at a time, like a thread of an application using
`LedgerCluster`: a bank transfer (one `Run` whose worker reads two accounts and moves an
amount), an insert, a "poison" transaction whose run crashes the worker, or an interactive
transfer (`Begin`, two `Execute`s, `Commit`). It follows the retry rules the real client
follows (cluster/client.py):
- a `NotLeaderError` or a timeout: resend the same request, same transaction id, to the
  leader it names (or the next node); a resent `Run` joins the run in flight or learns that
  it committed;
- a failure reported by a node is final only if no earlier send of that transaction went
  unanswered; otherwise the client asks the leader to `Resolve` it, which answers with its
  block or fences it off for good;
- after `max_sends` sends without a final answer the outcome is UNKNOWN.
What the client was told is recorded per transaction id for the checkers.

Payloads are msgpack [op, ...]; `run_job` executes one on a node's engine, as a worker
process would, through the real `core.transaction.Transaction` and its wire state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from core.engine import Engine
from core.errors import (
    CapacityExceededError,
    NotLeaderError,
    StrandError,
    TransactionCommittedError,
    UnavailableError,
)
from core.requests import (
    Begin,
    Commit,
    Done,
    Execute,
    Failed,
    Job,
    JobResult,
    Outcome,
    Request,
    Resolve,
    Run,
)
from core.transaction import Transaction, decode_state, encode_state

# What became of a client's transaction (TxRecord.status).
PENDING = "pending"  # not resolved yet (only while its operation runs)
ACKED = "acked"  # the client was told it committed: in the journal exactly once
NOOP = "noop"  # it committed writing nothing (a transfer from a too-small balance)
FAILED = "failed"  # the client was told it did not commit: never in the journal
UNKNOWN = "unknown"  # the client could not learn the outcome: at most once

TRANSFER, INSERT, POISON, SESSION = "transfer", "insert", "poison", "session"
RESEND_PAUSE_MS = 30


@dataclass(frozen=True, slots=True)
class TxRecord:
    txid: str
    kind: str
    status: str


@dataclass(slots=True)
class Accounts:
    """The bank the workload runs on (filled by the setup transaction)."""

    ids: list[str]


def payload(*fields: object) -> bytes:
    return msgpack.packb(list(fields))  # type: ignore[no-any-return]


def run_job(
    engine: Engine,
    job: Job,
    accounts: Accounts,
    clock_ms: Callable[[], int],
    new_id: Callable[[], str],
) -> JobResult:
    """Run a job's payload against `engine` (the node's committed state), as a worker does."""
    op, *args = msgpack.unpackb(job.payload)
    if op == POISON:
        return JobResult(crashed=True)
    if job.state is None:
        tx = Transaction(engine, job.transaction_id, job.start_ms, clock_ms, new_id)
    else:
        tx = decode_state(job.state, engine, clock_ms, new_id)
    try:
        value = _OPS[op](tx, accounts, *args)
    except StrandError as exc:
        return JobResult(state=encode_state(tx) if job.state is not None else None, error=exc)
    return JobResult(state=encode_state(tx), value=msgpack.packb(value))


def _setup(tx: Transaction, accounts: Accounts, count: int, balance: int) -> bool:
    tx.create_table("Account")
    tx.create_index("Account", "balance")
    tx.create_table("Transfer")
    tx.create_table("Event")
    accounts.ids = [
        tx.insert("Account", {"name": f"a{i}", "balance": balance}) for i in range(count)
    ]
    return True


def _balances(
    tx: Transaction, accounts: Accounts, source: int, target: int, amount: int = 0
) -> list[int]:
    del amount  # an interactive transfer reads first, with the amount it will move
    out = []
    for i in (source, target):
        doc = tx.get("Account", accounts.ids[i])
        if doc is None:
            raise AssertionError("an account document is missing")
        out.append(int(doc["balance"]))
    return out


def _move(tx: Transaction, accounts: Accounts, source: int, target: int, amount: int) -> bool:
    """Move `amount` if the source has it (reads both accounts first)."""
    have, _ = _balances(tx, accounts, source, target)
    if have < amount:
        return False
    for i, delta in ((source, -amount), (target, amount)):
        doc = tx.get("Account", accounts.ids[i])
        assert doc is not None
        tx.update("Account", accounts.ids[i], {**doc, "balance": doc["balance"] + delta})
    tx.insert("Transfer", {"from": source, "to": target, "amount": amount})
    return True


def _insert(tx: Transaction, accounts: Accounts, n: int) -> bool:
    del accounts
    tx.insert("Event", {"n": n})
    return True


_OPS: dict[str, Callable[..., Any]] = {
    "setup": _setup,
    TRANSFER: _move,
    "read": _balances,
    INSERT: _insert,
}


class SimClient:
    """One simulated application thread (see the module docstring)."""

    def __init__(
        self, name: str, nodes: list[str], sim: Any, *, timeout_ms: int, max_sends: int
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.sim = sim
        self.timeout_ms = timeout_ms
        self.max_sends = max_sends
        self.target = nodes[0]
        self.busy = False
        self._request_id = 0
        self._waiting: int | None = None  # the request id we wait for
        self._request: Request | None = None
        self._deadline = 0
        self._sends = 0
        self._in_doubt = False  # a send of the current transaction went unanswered
        self._txid = ""
        self._kind = ""
        self._steps: list[bytes] = []  # an interactive transaction's statements still to run
        self._resend_at: int | None = None
        self._patient = False
        self._decisive: set[int] = set()  # every send of the current Run or Commit

    # ----------------------------------------------------------------- operations
    def start(self, kind: str, body: bytes, txid: str | None, *, patient: bool = False) -> None:
        """Start an operation; a `patient` one resends until it learns its outcome."""
        self.busy, self._kind, self._sends, self._in_doubt = True, kind, 0, False
        self._patient = patient
        if kind == SESSION:
            self._txid = ""
            self._steps = [body, payload(TRANSFER, *msgpack.unpackb(body)[1:])]
            self._send(Begin())
        else:
            assert txid is not None
            self._txid = txid
            self.sim.register(txid, kind)
            self._send(Run(txid, body, 3))

    def _send(self, request: Request) -> None:
        self._request_id += 1
        self._waiting, self._request = self._request_id, request
        if isinstance(request, Run | Commit):
            self._decisive.add(self._request_id)
        self._deadline = self.sim.now_ms + self.timeout_ms
        self._sends += 1
        self.sim.send_request(self.name, self.target, self._request_id, request)

    def _resend(self, leader: str | None) -> None:
        """Send the request again: at once to a named leader, else to the next node after a
        pause (no leader is known: an election is under way)."""
        self.target = leader if leader in self.nodes else self._next_node()
        if self._sends >= self.max_sends and not self._patient:
            self._finish(UNKNOWN)
            return
        if leader in self.nodes:
            assert self._request is not None
            self._send(self._request)
        else:
            self._waiting = None
            self._resend_at = self.sim.now_ms + RESEND_PAUSE_MS

    def _next_node(self) -> str:
        return self.nodes[(self.nodes.index(self.target) + 1) % len(self.nodes)]

    def _finish(self, status: str) -> None:
        if self._txid:
            self.sim.resolve(self._txid, status)
        self.busy, self._waiting, self._request = False, None, None
        self._decisive = set()

    # ----------------------------------------------------------------- events
    def on_timer(self, now_ms: int) -> None:
        if self.busy and self._resend_at is not None and now_ms >= self._resend_at:
            self._resend_at = None
            assert self._request is not None
            self._send(self._request)
        elif self.busy and self._waiting is not None and now_ms >= self._deadline:
            if isinstance(self._request, Run | Commit | Resolve):
                self._in_doubt = True
            if isinstance(self._request, Begin | Execute):
                self._finish(FAILED if self._txid else NOOP)  # nothing to commit yet
                return
            self._resend(None)

    def on_outcome(self, request_id: int, outcome: Outcome) -> None:
        if request_id != self._waiting:
            # an earlier send of the same Run or Commit: a final answer counts (it is about
            # the same transaction id); anything else about it is stale
            final = isinstance(outcome, Done) or not isinstance(
                outcome.error, NotLeaderError | CapacityExceededError | UnavailableError
            )
            if request_id in self._decisive and final and not isinstance(self._request, Resolve):
                self._resend_at = None
                self._decided(outcome)
            return
        request = self._request
        if isinstance(outcome, Failed) and isinstance(
            outcome.error, NotLeaderError | CapacityExceededError | UnavailableError
        ):
            if isinstance(request, Execute):
                self._finish(FAILED)  # the interactive transaction is gone with its leader
            else:
                self._resend(
                    outcome.error.leader if isinstance(outcome.error, NotLeaderError) else None
                )
            return
        if isinstance(request, Resolve):
            seq = outcome.sequence_no if isinstance(outcome, Done) else None
            if isinstance(outcome, Done):
                self._finish(ACKED if seq is not None else FAILED)
            else:
                self._resend(None)
            return
        if isinstance(request, Begin):
            assert isinstance(outcome, Done)
            assert outcome.transaction_id is not None
            self._txid = outcome.transaction_id
            self.sim.register(self._txid, SESSION)
            self._send(Execute(self._txid, self._steps.pop(0)))
            return
        if isinstance(request, Execute):
            if isinstance(outcome, Failed):
                self._finish(FAILED)
            elif self._steps:
                self._send(Execute(self._txid, self._steps.pop(0)))
            else:
                self._send(Commit(self._txid, None))
            return
        self._decided(outcome)

    def _decided(self, outcome: Outcome) -> None:
        """A Run's or Commit's answer."""
        if isinstance(outcome, Done):
            moved = outcome.value is None or msgpack.unpackb(outcome.value)
            self._finish(ACKED if outcome.sequence_no is not None and moved else NOOP)
        elif isinstance(outcome.error, TransactionCommittedError):
            self._finish(ACKED)
        elif self._in_doubt:  # an earlier send may still commit somewhere: ask the leader
            self._send(Resolve(self._txid))
        else:
            self._finish(FAILED)


def pick_operation(rng: random.Random, options: Any, accounts: int) -> tuple[str, bytes]:
    draw = rng.random()
    if draw < options.poison_rate:
        return POISON, payload(POISON)
    draw -= options.poison_rate
    if draw < options.insert_rate:
        return INSERT, payload(INSERT, rng.randrange(1 << 30))
    source, target = rng.sample(range(accounts), 2)
    amount = rng.randint(1, options.max_amount)
    if rng.random() < options.session_rate:
        return SESSION, payload("read", source, target, amount)
    return TRANSFER, payload(TRANSFER, source, target, amount)

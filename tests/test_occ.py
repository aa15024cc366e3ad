"""Serializable isolation: random interleavings of concurrent transfers equal a serial order.

The engine is driven step by step: every transaction reads its accounts, writes, and asks to
commit; hypothesis chooses the interleaving, when a group commit is prepared and when the
prepared batches are written and published (a batch is validated while the one before it is
still unwritten, as in the Ledger's pipeline). The committed
transactions, replayed one by one in commit order from the initial state, must read exactly
what they read concurrently, and leave exactly the final state (no lost update, no write
skew, no phantom); the bank total never changes; audits that commit see the true total.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine import CommitResult, Engine, PreparedBatch
from core.errors import OccConflictError
from core.ids import IdSource
from core.storage import MemoryStorage
from core.transaction import Transaction

ACCOUNTS = 4
START_BALANCE = 100


def _engine_with_accounts() -> tuple[Engine, list[str]]:
    counter = itertools.count(1)
    engine = Engine(MemoryStorage(), IdSource(lambda n: next(counter).to_bytes(n, "big")), 0)
    tx = engine.begin(0, lambda: 0)
    tx.create_table("Acct")
    tx.create_index("Acct", "owner")
    ids = [tx.insert("Acct", {"owner": i, "balance": START_BALANCE}) for i in range(ACCOUNTS)]
    assert isinstance(engine.commit([tx], 0)[0], CommitResult)
    return engine, ids


@dataclass
class Program:
    """One transaction as a sequence of steps; records what it read."""

    kind: str  # "transfer", "skew" (withdraw if the pair's sum allows), "audit"
    a: int
    b: int
    amount: int
    tx: Transaction
    step: int = 0
    seen: dict[int, int] = field(default_factory=dict)

    def advance(self, ids: list[str]) -> bool:
        """Run the next step; True when the program is ready to commit."""
        if self.kind == "audit":
            for _, doc in self.tx.find("Acct"):
                self.seen[doc["owner"]] = doc["balance"]
            return True
        if self.step == 0:
            self.seen[self.a] = self._read(ids, self.a)
        elif self.step == 1:
            self.seen[self.b] = self._read(ids, self.b)
        else:
            for owner, balance in apply_program(
                self.kind, self.a, self.b, self.amount, dict(self.seen)
            ).items():
                self.tx.update("Acct", ids[owner], {"owner": owner, "balance": balance})
            return True
        self.step += 1
        return False

    def _read(self, ids: list[str], owner: int) -> int:
        if owner % 2:  # odd accounts are read through the index, even ones by id
            return int(self.tx.find("Acct", owner=owner)[0][1]["balance"])
        doc = self.tx.get("Acct", ids[owner])
        assert doc is not None
        return int(doc["balance"])


def apply_program(kind: str, a: int, b: int, amount: int, seen: dict[int, int]) -> dict[int, int]:
    """The writes a program makes given what it read (pure: used live and in replay)."""
    if kind == "transfer":
        return {a: seen[a] - amount, b: seen[b] + amount}
    if kind == "skew" and seen[a] + seen[b] - amount >= 0:
        return {a: seen[a] - amount}
    return {}


program_specs = st.lists(
    st.tuples(
        st.sampled_from(["transfer", "transfer", "skew", "audit"]),
        st.integers(0, ACCOUNTS - 1),
        st.integers(0, ACCOUNTS - 1),
        st.integers(1, 150),
    ).filter(lambda s: s[0] == "audit" or s[1] != s[2]),
    min_size=2,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(specs=program_specs, schedule=st.lists(st.integers(0, 9), min_size=1, max_size=60))
def test_interleaved_transactions_equal_a_serial_order(
    specs: list[tuple[str, int, int, int]], schedule: list[int]
) -> None:
    engine, ids = _engine_with_accounts()
    programs = [Program(k, a, b, m, engine.begin(0, lambda: 0)) for k, a, b, m in specs]
    ready: list[Program] = []
    committed: list[tuple[int, Program]] = []
    running = list(programs)

    in_flight: list[PreparedBatch] = []  # prepared, not yet written: the pipeline

    def land() -> None:
        for batch in in_flight:
            engine.write(batch)
            engine.publish(batch)
        in_flight.clear()

    def flush() -> None:
        # Pipelined like the Ledger: prepare this batch while the previous one is unwritten.
        batch, outcomes = engine.prepare([p.tx for p in ready], 0)
        land()
        if not batch.empty:
            in_flight.append(batch)
        for program, outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, CommitResult):
                committed.append((outcome.sequence_no or -1, program))
            else:
                assert isinstance(outcome, OccConflictError)
        ready.clear()

    for choice in itertools.chain(schedule, itertools.repeat(0, 40)):
        if not running and not ready:
            break
        if choice >= len(running) or not running:
            flush()
            continue
        if choice == 9:
            land()
            continue
        program = running[choice]
        if program.advance(ids):
            running.remove(program)
            ready.append(program)
    flush()
    land()

    # Replay the committed ones serially, in commit order (read-only ones anywhere valid:
    # they carry no block, so order them by where they observed the state).
    state = {i: START_BALANCE for i in range(ACCOUNTS)}
    writers = sorted((p for p in committed if p[0] >= 0), key=lambda p: p[0])
    for _, program in writers:
        assert {o: state[o] for o in program.seen} == program.seen, "a committed read was stale"
        state.update(
            apply_program(program.kind, program.a, program.b, program.amount, program.seen)
        )
    final = {doc["owner"]: doc["balance"] for _, doc in _read_all(engine)}
    assert final == state
    transfers_only = all(p.kind != "skew" for _, p in writers)
    if transfers_only:
        assert sum(final.values()) == START_BALANCE * ACCOUNTS
    for _, program in committed:
        if program.kind == "audit":
            assert len(program.seen) == ACCOUNTS
            # an audit that committed saw one consistent state: some prefix of the writers
            prefix = {i: START_BALANCE for i in range(ACCOUNTS)}
            states = [dict(prefix)]
            for _, writer in writers:
                prefix.update(
                    apply_program(writer.kind, writer.a, writer.b, writer.amount, writer.seen)
                )
                states.append(dict(prefix))
            assert program.seen in states


def _read_all(engine: Engine) -> list[tuple[str, Any]]:
    tx = engine.begin(0, lambda: 0)
    return tx.find("Acct")


def test_write_skew_is_prevented() -> None:
    """Two withdrawals that each check the pair's sum cannot both commit."""
    engine, ids = _engine_with_accounts()
    first = Program("skew", 0, 1, 150, engine.begin(0, lambda: 0))
    second = Program("skew", 1, 0, 150, engine.begin(0, lambda: 0))
    for _ in range(2):
        first.advance(ids)
        second.advance(ids)
    assert first.advance(ids)
    assert second.advance(ids)
    outcomes = engine.commit([first.tx, second.tx], 0)
    assert isinstance(outcomes[0], CommitResult)
    assert isinstance(outcomes[1], OccConflictError)


def test_phantom_insert_conflicts_with_a_scan_and_an_index_lookup() -> None:
    engine, _ = _engine_with_accounts()
    scanner = engine.begin(0, lambda: 0)
    assert len(scanner.find("Acct", balance=5)) == 0
    looker = engine.begin(0, lambda: 0)
    assert looker.find("Acct", owner=99) == []
    scanner.insert("Acct", {"owner": 50, "balance": 1})
    looker.insert("Acct", {"owner": 51, "balance": 1})
    inserter = engine.begin(0, lambda: 0)
    inserter.insert("Acct", {"owner": 99, "balance": 5})
    assert isinstance(engine.commit([inserter], 0)[0], CommitResult)
    assert isinstance(engine.commit([scanner], 0)[0], OccConflictError)
    assert isinstance(engine.commit([looker], 0)[0], OccConflictError)


def test_disjoint_writers_both_commit() -> None:
    engine, ids = _engine_with_accounts()
    first = engine.begin(0, lambda: 0)
    second = engine.begin(0, lambda: 0)
    first.update("Acct", ids[0], {"owner": 0, "balance": 1})
    second.update("Acct", ids[2], {"owner": 2, "balance": 1})
    outcomes = engine.commit([first, second], 0)
    assert all(isinstance(o, CommitResult) for o in outcomes)

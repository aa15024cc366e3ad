"""Deadlines during evaluation (core.deadline) and the bounded LIKE (core.partiql.like).

A transaction expires `timeout_ms` after it began; a PartiQL statement checks that while it
evaluates, by counting work units and reading the transaction's clock now and then. Most
tests inject a clock that moves forward every time it is read (`StepClock`), so they are
exact and fast: a long LIKE, a cross join, a big aggregation... raise TransactionExpiredError
once the clock is past the deadline, nothing they did is kept, and a statement whose last
clock reading falls exactly on the deadline succeeds. One test uses the real clock, with a
200 ms limit, on a statement that would otherwise run for minutes.
"""

from __future__ import annotations

import contextlib
import random
import re
import string
import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Ledger
from core.client_wire import decode_error, encode_error
from core.deadline import MAX_UNITS, Deadline
from core.engine import Engine
from core.errors import PartiQLEvaluationError, StrandError, TransactionExpiredError
from core.ids import IdSource
from core.partiql import evaluate
from core.partiql.data import Context
from core.partiql.like import NO_ESCAPE, like
from core.requests import Failed, Job, JobResult, Run
from core.storage import MemoryStorage
from core.transaction import Transaction
from tests.conftest import FakeClock
from tests.test_commit import Trio

T0 = 1_700_000_000_000


class StepClock(FakeClock):
    """A clock that moves `step_ms` forward each time it is read (0: frozen)."""

    def __init__(self, step_ms: int = 0, start_ms: int = T0) -> None:
        super().__init__(start_ms)
        self.step_ms = step_ms
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        self.now_ms += self.step_ms
        return self.now_ms


def _ledger(clock: StepClock, timeout_ms: int, docs: int = 40) -> Ledger:
    """A ledger with table t of `docs` documents {k, s}, set up on a frozen clock."""
    ledger = Ledger(MemoryStorage(), clock_ms=clock, transaction_timeout_ms=timeout_ms)
    step, clock.step_ms = clock.step_ms, 0
    ledger.execute_statement("CREATE TABLE t")
    ledger.execute_lambda(
        lambda tx: [tx.insert("t", {"k": i, "s": f"row {i}"}) for i in range(docs)]
    )
    clock.step_ms = step
    return ledger


# Each would run for a long time on the ledger's 40 documents (or a long parameter).
LONG_STATEMENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("SELECT COUNT(*) FROM t AS a, t AS b, t AS c", ()),  # a cross join, 64,000 rows
    ("SELECT a.k, COUNT(*) AS n, SUM(b.k) AS s FROM t AS a, t AS b, t AS c GROUP BY a.k", ()),
    ("SELECT * FROM t WHERE ? LIKE ?", ("a" * 200_000, "%" + "a_" * 15 + "ab%")),  # one LIKE
]


@pytest.mark.parametrize(("statement", "parameters"), LONG_STATEMENTS)
def test_a_long_statement_expires_and_writes_nothing(
    statement: str, parameters: tuple[Any, ...]
) -> None:
    clock = StepClock(step_ms=1_000)
    ledger = _ledger(clock, timeout_ms=10_000)
    before = ledger.get_digest()
    reads = clock.reads

    def work(tx: Transaction) -> None:
        tx.execute_statement("INSERT INTO t ?", {"k": -1})
        tx.execute_statement(statement, *parameters)

    with pytest.raises(TransactionExpiredError) as caught:
        ledger.execute_lambda(work)
    message = str(caught.value)
    assert message.startswith("Transaction ")  # pyqldb's wording for an expired one
    assert "has expired: its 10 s limit was reached during statement evaluation" in message
    assert "indexed field" in message
    assert clock.reads - reads < 20  # it stopped soon after the deadline, not at the end
    assert ledger.get_digest() == before


def test_the_statement_that_expires_is_undone_and_the_transaction_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = StepClock(step_ms=10)
    ledger = _ledger(clock, timeout_ms=5_000)
    before = ledger.get_digest()
    session = ledger.begin_transaction()
    session.execute_statement("INSERT INTO t ?", {"k": -1})
    tx = session._tx
    written = dict(tx.writes)
    updated: list[str] = []
    update = tx.update

    def counted(table: str, doc_id: str, doc: Any) -> None:  # the real update, counted
        updated.append(doc_id)
        update(table, doc_id, doc)

    monkeypatch.setattr(tx, "update", counted)
    # each document's new value is a cross join: the deadline passes after some updates
    with pytest.raises(TransactionExpiredError):
        session.execute_statement("UPDATE t AS x SET x.n = (SELECT COUNT(*) FROM t AS a, t AS b)")
    assert 0 < len(updated) < 41
    assert tx.writes == written  # the UPDATE's own writes are gone, the INSERT's stay
    assert len(tx.statements) == 1
    with pytest.raises(TransactionExpiredError):
        session.execute_statement("SELECT * FROM t WHERE k = 1")
    with pytest.raises(TransactionExpiredError):
        session.commit()
    assert ledger.get_digest() == before


def test_a_function_that_swallows_the_error_cannot_commit() -> None:
    clock = StepClock(step_ms=1_000)
    ledger = _ledger(clock, timeout_ms=10_000)
    before = ledger.get_digest()
    calls = []

    def work(tx: Transaction) -> str:
        calls.append(1)
        tx.insert("t", {"k": -1})
        with contextlib.suppress(TransactionExpiredError):
            tx.execute_statement(LONG_STATEMENTS[0][0])
        return "done"

    with pytest.raises(TransactionExpiredError):
        ledger.execute_lambda(work)
    assert calls == [1]  # not retried
    assert ledger.get_digest() == before


def _engine_with_rows(rows: int) -> Engine:
    engine = Engine(MemoryStorage(), IdSource(random.Random(5).randbytes), T0)
    tx = engine.begin(T0, lambda: T0)
    tx.create_table("t")
    for i in range(rows):
        tx.insert("t", {"k": i})
    assert not isinstance(engine.commit([tx], T0)[0], StrandError)
    return engine


def _run(engine: Engine, timeout_ms: int, statement: str) -> tuple[Transaction, StepClock, Any]:
    clock = StepClock(step_ms=100, start_ms=T0 + 1)
    tx = engine.begin(clock.now_ms, clock, timeout_ms=timeout_ms)
    return tx, clock, tx.execute_statement(statement)


def test_a_statement_just_under_the_limit_succeeds() -> None:
    engine = _engine_with_rows(30)
    statement = "SELECT COUNT(*) AS n FROM t AS a, t AS b"  # 900 rows: several clock reads
    _, probe, _ = _run(engine, 30_000, statement)
    spent_ms = probe.now_ms - (T0 + 1)  # the last reading is the last deadline check
    assert probe.reads >= 4
    tx, _, rows = _run(engine, spent_ms, statement)  # the deadline is that reading: in time
    assert rows == [{"n": 900}]
    [outcome] = engine.commit([tx], tx.start_ms + tx.timeout_ms)
    assert not isinstance(outcome, StrandError)
    with pytest.raises(TransactionExpiredError):  # one millisecond less: too late
        _run(engine, spent_ms - 1, statement)


def test_an_expired_transaction_is_refused_at_commit_whatever_the_time() -> None:
    engine = _engine_with_rows(40)
    clock = StepClock(step_ms=1_000, start_ms=T0 + 1)
    tx = engine.begin(clock.now_ms, clock, timeout_ms=5_000)
    with pytest.raises(TransactionExpiredError):
        tx.execute_statement(LONG_STATEMENTS[0][0])
    [outcome] = engine.commit([tx], tx.start_ms)  # the commit's own clock says "in time"
    assert isinstance(outcome, TransactionExpiredError)


def test_a_statement_in_a_transaction_past_its_time_does_not_start() -> None:
    engine = _engine_with_rows(1)
    clock = StepClock()
    tx = engine.begin(clock.now_ms, clock, timeout_ms=1_000)
    clock.advance(1_001)
    with pytest.raises(TransactionExpiredError):
        tx.execute_statement("SELECT * FROM t")
    assert tx.statements == []


# ============================================================================ the evaluator


def _deadline(clock: StepClock, timeout_ms: int) -> Deadline:
    expires = clock.now_ms + timeout_ms
    return Deadline(clock, expires, lambda: "expired", now_ms=clock.now_ms)


NUMBERS = list(range(300))
EVALUATOR_CASES: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    ("SELECT COUNT(*) FROM t AS a, t AS b", {"t": NUMBERS}, ()),
    ("SELECT COUNT(*) FROM t AS a FULL OUTER JOIN t AS b ON a = b + 1", {"t": NUMBERS}, ()),
    ("SELECT VALUE (SELECT COUNT(*) FROM t AS b WHERE b < a) FROM t AS a", {"t": NUMBERS}, ()),
    (
        "SELECT x.g, COUNT(*) FROM t AS x GROUP BY x.g",
        {"t": [{"g": i % 9} for i in range(50_000)]},
        (),
    ),
    ("SELECT VALUE x FROM t AS x ORDER BY x DESC", {"t": list(range(50_000))}, ()),
    ("SELECT VALUE COUNT(*) FROM t[*][*] AS x", {"t": [NUMBERS] * 300}, ()),
    ("SELECT VALUE x FROM t AS x WHERE x IN ?", {"t": NUMBERS}, (list(range(10_000)),)),
    ("SELECT VALUE x FROM t AS x WHERE x LIKE '%a_b%'", {"t": ["xa.bx"] * 50_000}, ()),
    ("SELECT VALUE (? LIKE ?) FROM [1] AS one", {}, ("a" * 300_000, "%" + "a" * 40 + "_b%")),
    ("SELECT VALUE x FROM t AS x UNION SELECT VALUE y FROM t AS y", {"t": list(range(50_000))}, ()),
]


@pytest.mark.parametrize(("statement", "env", "parameters"), EVALUATOR_CASES)
def test_the_evaluator_checks_the_deadline_in_its_loops(
    statement: str, env: dict[str, Any], parameters: tuple[Any, ...]
) -> None:
    clock = StepClock(step_ms=1_000)
    context = Context(deadline=_deadline(clock, 5_000))
    with pytest.raises(TransactionExpiredError, match="expired"):
        evaluate(statement, env, parameters=parameters, context=context)
    assert clock.reads < 20
    evaluate(statement, env, parameters=parameters)  # without a deadline: it completes


def test_the_clock_is_read_once_per_period_of_units() -> None:
    clock = StepClock()  # frozen: every period takes no time, so periods grow
    deadline = _deadline(clock, 1_000)
    for _ in range(100_000):
        deadline.charge()
    assert clock.reads <= 100_000 // MAX_UNITS + 10
    unlimited = Deadline.unlimited()
    for _ in range(10):
        unlimited.charge(10**9)  # never expires, and has no clock to read


# ============================================================================ the cluster's path


class _PartiQLTrio(Trio):
    """The commit machines, with jobs that run a long PartiQL statement as a worker would
    (cluster/worker.py run_job): the statement's typed error is the job's error."""

    def execute(self, name: str, job: Job) -> JobResult:
        op = msgpack.unpackb(job.payload)[0]
        if op != "partiql":
            return super().execute(name, job)
        engine = self.replicas[name].engine
        clock = StepClock(step_ms=1_000, start_ms=job.start_ms)
        tx = Transaction(engine, job.transaction_id, job.start_ms, clock, self.ids.new_id)
        try:
            tx.execute_statement("SELECT COUNT(*) FROM Account AS a, ? AS b", list(range(10**6)))
        except StrandError as exc:
            return JobResult(error=decode_error(encode_error(exc)))  # as it crosses the wire
        raise AssertionError("the statement ran to its end")


def test_the_commit_machine_reports_the_typed_error() -> None:
    trio = _PartiQLTrio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    trio.submit(leader, 1, Run(trio.ids.new_id(), msgpack.packb(["partiql"]), 0))
    outcome = trio.outcome(1)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, TransactionExpiredError)
    assert "30 s limit was reached during statement evaluation" in str(outcome.error)


# ============================================================================ the real clock


def test_a_short_limit_stops_a_long_statement_on_the_real_clock() -> None:
    statement = "SELECT COUNT(*) AS n FROM ? AS a, ? AS b, ? AS c"
    small = [list(range(3))] * 3
    assert Ledger.in_memory().execute_statement(statement, *small) == [{"n": 27}]  # parsed
    ledger = Ledger.in_memory(transaction_timeout_ms=200)
    outcome: list[BaseException | object] = []

    def work() -> None:
        try:  # 27 million rows: minutes without the deadline
            outcome.append(ledger.execute_statement(statement, *[list(range(300))] * 3))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            outcome.append(exc)

    runner = threading.Thread(target=work, daemon=True)
    runner.start()
    runner.join(timeout=60)  # a hang guard only: no assertion on speed
    assert not runner.is_alive(), "the statement was not stopped"
    assert len(outcome) == 1
    assert isinstance(outcome[0], TransactionExpiredError), outcome
    assert "0.2 s limit was reached during statement evaluation" in str(outcome[0])
    assert ledger.execute_statement(statement, *small) == [{"n": 27}]  # the next one runs


# ============================================================================ LIKE


def _reference(text: str, pattern: str, escape: str | None) -> bool | None:
    """LIKE by Python's regex engine (None: the pattern ends with its escape character)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape:
            i += 1
            if i == len(pattern):
                return None
            out.append(re.escape(pattern[i]))
        elif c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


def _ours(text: str, pattern: str, escape: str | None) -> bool | None:
    try:
        result = like(text, pattern, NO_ESCAPE if escape is None else escape, "error")
    except PartiQLEvaluationError:
        return None
    assert isinstance(result, bool)
    return result


@settings(max_examples=600, deadline=None)
@given(
    text=st.text(alphabet="ab\n%_", max_size=12),
    pattern=st.text(alphabet="ab\n%_\\", max_size=16),
    escape=st.sampled_from([None, "\\", "a", "%", "_"]),
)
def test_like_agrees_with_a_regex(text: str, pattern: str, escape: str | None) -> None:
    assert _ours(text, pattern, escape) == _reference(text, pattern, escape)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab", max_size=150),
    pieces=st.lists(
        st.one_of(st.just("%"), st.text(alphabet="aab_", min_size=1, max_size=50)), max_size=4
    ),
)
def test_like_agrees_with_a_regex_on_long_segments(text: str, pieces: list[str]) -> None:
    pattern = "".join(pieces)  # segments longer than 32 are searched by shift-and
    assert _ours(text, pattern, None) == _reference(text, pattern, None)


def test_like_matches_inside_long_text_in_linear_time() -> None:
    text = "".join(random.Random(3).choices(string.ascii_lowercase, k=100_000))
    needle = text[70_000:70_040]
    steps: list[int] = []
    pattern = "%" + needle[:10] + "_" * 20 + needle[30:] + "%"
    assert like(text, pattern, NO_ESCAPE, "error", steps.append) is True
    assert 0 < sum(steps) <= 2 * len(text)  # charged for what it scanned, window by window
    assert like("a" * 200_000, "%a" * 2000 + "%b", NO_ESCAPE, "error") is False
    assert like("a" * 200_000, "%" + "a" * 2000 + "b%", NO_ESCAPE, "error") is False
    assert like("a" * 200_000, "%" + "a_" * 1000 + "b%", NO_ESCAPE, "error") is False

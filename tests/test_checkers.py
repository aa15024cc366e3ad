"""The history checkers (chaos.checkers): linearizable registers and list-append serializability.

Hand-made histories show each rule (what passes, what fails, and the name it gets); Hypothesis
generates histories that are correct by construction (a real register, or a serial execution,
with random real-time intervals around each operation's effect) which must pass, then breaks
one observation in a way that is provably impossible and demands that the checker notices.
Small arbitrary histories are compared with exhaustive oracles (chaos.checkers.reference): the
register checker must agree exactly, the append checker must never report a serializable
history. Performance is printed, not asserted.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chaos.checkers import MicroOp, Op, Txn, check_append, check_register
from chaos.checkers.graph import DependencyGraph, components, find_cycles
from chaos.checkers.reference import append_serializable, register_linearizable

# --- register helpers ---------------------------------------------------------------------


def w(key: str, value: Any, start: int, end: int | None, outcome: str = "ok", p: int = 0) -> Op:
    return Op(p, "write", key, value, start, end, outcome)


def r(key: str, result: Any, start: int, end: int | None, outcome: str = "ok", p: int = 0) -> Op:
    return Op(p, "read", key, None, start, end, outcome, result)


def cas(
    key: str, expected: Any, new: Any, start: int, end: int | None, outcome: str = "ok", p: int = 0
) -> Op:
    return Op(p, "cas", key, (expected, new), start, end, outcome)


LINEARIZABLE = {
    "empty": [],
    "read of nothing before the first write": [r("x", None, 0, 1), w("x", 1, 2, 3)],
    "overlapping writes, reads in the overlap see either": [
        w("x", 1, 0, 10),
        w("x", 2, 5, 15, p=1),
        r("x", 2, 6, 7, p=2),
        r("x", 1, 8, 9, p=2),
        r("x", 1, 20, 21, p=2),
    ],
    "a read concurrent with a write sees old or new": [
        w("x", 1, 0, 1),
        w("x", 2, 10, 20),
        r("x", 1, 11, 12, p=1),
        r("x", 2, 13, 14, p=2),
        r("x", 2, 21, 22, p=1),
    ],
    "cas success and failure": [
        w("x", 1, 0, 1),
        cas("x", 1, 2, 2, 3),
        cas("x", 1, 3, 4, 5, "fail"),
        r("x", 2, 6, 7),
        cas("x", 2, 4, 8, 30),
        r("x", 2, 9, 10, p=1),
        r("x", 4, 11, 12, p=1),
    ],
    "unknown writes that did and did not happen": [
        w("x", 1, 0, 1),
        w("x", 2, 2, None, "unknown"),
        r("x", 2, 10, 11),
        w("x", 3, 12, None, "unknown"),
        r("x", 2, 20, 21),
        r("x", 3, 30, 31),  # the unknown write of 3 happened late
        w("x", 9, 32, None, "unknown"),  # never seen: as if it never happened
        r("x", 3, 40, 41),
    ],
    "an unknown cas that did happen": [
        w("x", 1, 0, 1),
        cas("x", 1, 5, 2, None, "unknown"),
        r("x", 1, 3, 4),
        r("x", 5, 6, 7),
    ],
    "failed reads and writes carry nothing": [
        w("x", 1, 0, 1),
        w("x", 7, 2, 3, "fail"),
        r("x", 7, 4, 5, "fail"),
        r("x", 1, 6, 7),
    ],
    "keys are independent": [w("x", 1, 0, 1), w("y", 2, 2, 3), r("x", 1, 4, 5), r("y", 2, 6, 7)],
}

NOT_LINEARIZABLE = {
    "stale read after a completed write": [
        w("y", 1, 0, 1),
        w("y", 2, 2, 3),
        r("y", 1, 4, 5),
    ],
    "read of a value never written": [w("y", 1, 0, 1), r("y", 99, 2, 3)],
    "read of a failed write": [w("y", 1, 0, 1), w("y", 7, 2, 3, "fail"), r("y", 7, 4, 5)],
    "sequential reads going backwards": [
        w("y", 1, 0, 100),
        w("y", 2, 0, 100, p=1),
        r("y", 1, 10, 11, p=2),
        r("y", 2, 20, 21, p=2),
        r("y", 1, 30, 31, p=2),
    ],
    "lost cas": [
        w("y", 0, 0, 1),
        cas("y", 0, 1, 2, 3),
        cas("y", 0, 2, 4, 5, p=1),
    ],
    "cas acknowledged while its expected value was overwritten": [
        w("y", 0, 0, 1),
        w("y", 5, 2, 3),
        cas("y", 0, 1, 4, 5),
        w("y", 0, 10, 11),  # 0 written again later: the cas is not stranded, merely wrong
    ],
    "cas acknowledged but its value never read back": [
        w("y", 0, 0, 1),
        cas("y", 0, 1, 2, 3),
        r("y", 0, 4, 5),
    ],
}


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_linearizable_histories_pass(name: str) -> None:
    result = check_register(LINEARIZABLE[name])
    assert result.ok is True, result.explanation
    assert all(v.ok for v in result.keys.values())


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_non_linearizable_histories_fail_on_their_key(name: str) -> None:
    fine = [w("x", 1, 0, 1), r("x", 1, 2, 3)]  # another key, linearizable, checked first
    result = check_register(fine + NOT_LINEARIZABLE[name])
    assert result.ok is False
    assert result.key == "y"
    assert result.keys["x"].ok is True
    assert result.keys["y"].ok is False
    assert "'y'" in result.explanation


def test_failure_names_the_prefix_and_the_op_that_could_not_be_placed() -> None:
    stale = NOT_LINEARIZABLE["stale read after a completed write"]
    verdict = check_register(stale).keys["y"]
    # Writing 2 would leave the read of 1 nothing to see; so the search stops after 1.
    assert verdict.prefix == (stale[0],)
    assert verdict.stuck == stale[1]
    assert verdict.stranded == stale[2]
    assert verdict.value == 1
    assert "1 of 3 ops" in verdict.explanation
    assert "could then never see 1" in verdict.explanation
    lost = NOT_LINEARIZABLE["lost cas"]
    verdict = check_register(lost).keys["y"]
    assert verdict.prefix == (lost[0],)
    assert verdict.stuck == lost[1]  # either cas leaves the other nothing to compare with
    assert verdict.stranded == lost[2]
    assert verdict.value == 0
    backwards = NOT_LINEARIZABLE["sequential reads going backwards"]
    verdict = check_register(backwards).keys["y"]
    assert verdict.prefix == (backwards[0], backwards[2])
    assert verdict.stuck == backwards[3]  # writing 2 first would strand the last read of 1
    assert "read -> 2 [20, 21] ok could not be placed on the value 1" in verdict.explanation


def many_equal_writes(k: int) -> list[Op]:
    """k concurrent writes of 1, 2, 3 (each value several times, so that no read is ever left
    without a writer), each value read during them, then two reads after all of them that
    disagree: impossible, and proving it means ruling out every order of the writes."""
    return (
        [w("x", i % 3 + 1, 0, 100, p=i) for i in range(k)]
        + [r("x", v, 10 + v, 11 + v, p=50 + v) for v in (1, 2, 3)]
        + [r("x", 1, 200, 201, p=99), r("x", 2, 202, 203, p=99)]
    )


def test_search_gives_up_at_max_states() -> None:
    result = check_register(many_equal_writes(12), max_states=1_000)
    assert result.ok is None
    assert result.keys["x"].states == 1_000
    assert "search too large" in result.explanation


def test_memoization_keeps_wide_concurrency_tractable() -> None:
    # Memoized on (set linearized, value), ten writes take some 5,000 configurations;
    # without the cache the search enters one per order of the writes (millions).
    result = check_register(many_equal_writes(10), max_states=100_000)
    assert result.ok is False, result.explanation
    assert result.keys["x"].states < 10_000


# --- Hypothesis: registers --------------------------------------------------------------


@st.composite
def register_histories(draw: st.DrawFn) -> list[Op]:
    """A real register per key; each op takes effect at its point, inside a random interval.
    Values written are unique, so a mutated read can be made provably impossible."""
    keys = ["a", "b", "c"]
    state: dict[str, Any] = dict.fromkeys(keys)
    fresh = itertools.count(1)
    ops = []
    for n in range(draw(st.integers(1, 40))):
        point = n * 10 + 5
        invoke, complete = point - draw(st.integers(0, 60)), point + draw(st.integers(0, 60))
        key = draw(st.sampled_from(keys))
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        fate = draw(st.sampled_from(["ok", "ok", "ok", "applied", "lost", "fail"]))
        end = None if fate in ("applied", "lost") else complete
        outcome = {"applied": "unknown", "lost": "unknown"}.get(fate, fate)
        p = n % 10
        if kind == "read":
            result = state[key] if outcome == "ok" else None
            ops.append(Op(p, "read", key, None, invoke, end, outcome, result))
            continue
        value = next(fresh)
        if kind == "cas":
            expected = state[key] if draw(st.booleans()) else -next(fresh)
            if expected != state[key] and fate in ("ok", "applied"):
                fate, outcome, end = "fail", "fail", complete  # the comparison failed
            ops.append(Op(p, "cas", key, (expected, value), invoke, end, outcome))
        else:
            ops.append(Op(p, "write", key, value, invoke, end, outcome))
        if fate in ("ok", "applied"):
            state[key] = value
    return ops


def _end(op: Op) -> int:
    assert op.complete_ns is not None
    return op.complete_ns


def _written(op: Op) -> Any:
    return op.value if op.kind == "write" else op.value[1]


def impossible_reads(ops: list[Op]) -> list[tuple[int, Any]]:
    """(index of an ok read, a value it could not have returned): never written; written only
    after the read returned; or written, then overwritten, before the read was invoked."""
    found: list[tuple[int, Any]] = []
    effects = [o for o in ops if o.outcome == "ok" and o.kind != "read"]
    for i, op in enumerate(ops):
        if op.kind != "read" or op.outcome != "ok":
            continue
        assert op.complete_ns is not None
        found.append((i, "never-written"))
        for other in effects:
            if other.key != op.key:
                continue
            assert other.complete_ns is not None
            if other.invoke_ns > op.complete_ns:
                found.append((i, _written(other)))
            for third in effects:
                assert third.complete_ns is not None
                if (
                    third.key == op.key
                    and other.complete_ns < third.invoke_ns
                    and third.complete_ns < op.invoke_ns
                ):
                    found.append((i, _written(other)))
    return found


@settings(max_examples=200, deadline=None)
@given(register_histories())
def test_generated_linearizable_histories_pass(ops: list[Op]) -> None:
    result = check_register(ops)
    assert result.ok is True, result.explanation


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(register_histories(), st.data())
def test_an_impossible_read_is_caught(ops: list[Op], data: st.DataObject) -> None:
    candidates = impossible_reads(ops)
    assume(candidates)
    i, value = data.draw(st.sampled_from(candidates))
    mutated = list(ops)
    old = ops[i]
    mutated[i] = Op(old.process, "read", old.key, None, old.invoke_ns, old.complete_ns, "ok", value)
    result = check_register(mutated)
    assert result.ok is False
    assert result.key == old.key


# --- performance ----------------------------------------------------------------------------


def client_history(
    seed: int, keys: int, ops: int, clients: int, unknown_rate: float = 0.01
) -> list[Op]:
    """Clients issuing one op at a time on random keys of a real register store; each op takes
    effect at a random instant of its interval; some time out (unknown, maybe applied)."""
    rng = random.Random(seed)
    clock = [0] * clients
    planned = []
    for n in range(ops):
        p = min(range(clients), key=lambda c: (clock[c], c))
        invoke = clock[p] + rng.randint(0, 20)
        complete = invoke + rng.randint(1, 100)
        point = rng.uniform(invoke, complete)
        kind = rng.choice(["read", "read", "write", "cas"])
        unknown = kind != "read" and rng.random() < unknown_rate
        planned.append((point, n, p, kind, f"k{rng.randrange(keys)}", invoke, complete, unknown))
        clock[p] = complete
    state: dict[str, Any] = {}
    history = []
    for _point, n, p, kind, key, invoke, complete, unknown in sorted(planned):
        end = None if unknown else complete
        outcome = "unknown" if unknown else "ok"
        applied = not unknown or rng.random() < 0.5
        if kind == "read":
            history.append(Op(p, "read", key, None, invoke, complete, "ok", state.get(key)))
        elif kind == "write":
            history.append(Op(p, "write", key, n, invoke, end, outcome))
            if applied:
                state[key] = n
        else:
            current = state.get(key)
            if rng.random() < 0.3:
                history.append(Op(p, "cas", key, (-1, n), invoke, complete, "fail"))
            else:
                history.append(Op(p, "cas", key, (current, n), invoke, end, outcome))
                if applied:
                    state[key] = n
    return sorted(history, key=lambda o: o.invoke_ns)


@pytest.mark.parametrize(
    ("keys", "ops", "clients"), [(5, 10_000, 10), (1, 2_000, 10), (1, 2_000, 20)]
)
def test_performance_is_printed(keys: int, ops: int, clients: int) -> None:
    history = client_history(7, keys, ops, clients)
    started = time.perf_counter()
    result = check_register(history)
    elapsed = time.perf_counter() - started
    assert result.ok is True, result.explanation
    states = sum(v.states for v in result.keys.values())
    print(
        f"\nregister: {keys} keys x {ops // keys} ops, {clients} clients:"
        f" {elapsed:.2f} s, {states} states"
    )
    # A stale read near the end: its key's value was overwritten (by ok ops, values unique)
    # after the value it now returns was written, all before it was invoked.
    i = max(j for j, o in enumerate(history) if o.kind == "read" and o.result is not None)
    old = history[i]
    done = [o for o in history if o.key == old.key and o.kind != "read" and o.outcome == "ok"]
    overwrite = max((o for o in done if _end(o) < old.invoke_ns), key=lambda o: o.invoke_ns)
    first = min(done, key=_end)
    assert _end(first) < overwrite.invoke_ns
    broken = list(history)
    broken[i] = Op(
        old.process, "read", old.key, None, old.invoke_ns, old.complete_ns, "ok", _written(first)
    )
    started = time.perf_counter()
    verdict = check_register(broken)
    elapsed = time.perf_counter() - started
    assert verdict.ok is False
    assert verdict.key == old.key
    print(f"register, the same with one stale read at the end: {elapsed:.2f} s")


# --- registers against the exhaustive oracle ---------------------------------------------


@st.composite
def small_register_histories(draw: st.DrawFn) -> list[Op]:
    """Anything at all on two keys, values from a tiny domain (repeats and ties on purpose)."""
    values = st.sampled_from([None, 1, 2, 3])
    ops = []
    for p in range(draw(st.integers(0, 7))):
        key = draw(st.sampled_from(["x", "y"]))
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "fail", "unknown"]))
        start = draw(st.integers(0, 20))
        end = None if outcome == "unknown" else start + draw(st.integers(0, 10))
        if kind == "read":
            result = draw(values) if outcome == "ok" else None
            ops.append(Op(p, "read", key, None, start, end, outcome, result))
        elif kind == "write":
            ops.append(Op(p, "write", key, draw(values), start, end, outcome))
        else:
            ops.append(Op(p, "cas", key, (draw(values), draw(values)), start, end, outcome))
    return ops


@settings(max_examples=600, deadline=None)
@given(small_register_histories())
def test_register_checker_agrees_with_the_exhaustive_oracle(ops: list[Op]) -> None:
    result = check_register(ops)
    assert result.ok is register_linearizable(ops), result.explanation


# --- list append ----------------------------------------------------------------------------


def txn(*steps: tuple[str, str, Any], outcome: str = "ok", at: int = 0, p: int = 0) -> Txn:
    """A transaction from (kind, key, value) steps; each runs for 5 units from `at`."""
    end = None if outcome == "unknown" else at + 5
    return Txn(p, tuple(MicroOp(k, key, v) for k, key, v in steps), at, end, outcome)


def a(key: str, value: Any) -> tuple[str, str, Any]:
    return ("append", key, value)


def rd(key: str, *values: Any) -> tuple[str, str, Any]:
    return ("r", key, tuple(values))


def test_append_serializable_by_hand() -> None:
    history = [
        txn(a("x", 1), a("y", 1), at=0),
        txn(rd("x", 1), a("x", 2), at=10),
        txn(a("x", 3), outcome="fail", at=12),
        txn(a("y", 2), outcome="unknown", at=14),  # never seen: committed or not, no matter
        txn(rd("x", 1, 2), rd("y", 1), a("y", 3), rd("y", 1, 3), at=20),
    ]
    result = check_append(history)
    assert result.ok, result.anomalies
    assert result.orders == {"x": (1, 2), "y": (1, 3)}
    assert check_append(history, realtime=True).ok


ANOMALIES: dict[str, tuple[list[Txn], str, tuple[int, ...]]] = {
    # name: (history, the first anomaly expected, the transactions it names); only that one,
    # but for an intermediate read, which always closes a cycle (G-single) as well
    "lost append: both read the empty list and appended": (
        [txn(rd("x"), a("x", 1)), txn(rd("x"), a("x", 2), p=1), txn(rd("x", 1, 2), at=20)],
        "G-single",
        (0, 1),
    ),
    "a read going backwards across keys": (
        [
            txn(a("x", 1)),
            txn(a("x", 2), at=10),
            txn(rd("x", 1, 2), a("y", 1), at=20),
            txn(rd("y", 1), rd("x", 1), at=30),
        ],
        "G-single",
        (1, 2, 3),
    ),
    "aborted read": (
        [txn(a("x", 1), outcome="fail"), txn(rd("x", 1), at=10)],
        "G1a",
        (0, 1),
    ),
    "intermediate read": (
        [txn(a("x", 1), a("x", 2)), txn(rd("x", 1), at=10)],
        "G1b",
        (0, 1),
    ),
    "write cycle": (
        [
            txn(a("x", 1), a("y", 1)),
            txn(a("x", 2), a("y", 2), p=1),
            txn(rd("x", 1, 2), rd("y", 2, 1), at=20),
        ],
        "G0",
        (0, 1),
    ),
    "write cycle through an unknown transaction that did commit": (
        [
            txn(a("x", 1), a("y", 1), outcome="unknown"),
            txn(a("x", 2), a("y", 2), p=1),
            txn(rd("x", 1, 2), rd("y", 2, 1), at=20),
        ],
        "G0",
        (0, 1),
    ),
    "circular information flow": (
        [txn(a("x", 1), rd("y", 1)), txn(a("y", 1), rd("x", 1), p=1)],
        "G1c",
        (0, 1),
    ),
    "write skew": (
        [
            txn(rd("x"), rd("y"), a("x", 1)),
            txn(rd("x"), rd("y"), a("y", 1), p=1),
            txn(rd("x", 1), rd("y", 1), at=20),
        ],
        "G2",
        (0, 1),
    ),
    "incompatible orders": (
        [txn(a("x", 1)), txn(a("x", 2), p=1), txn(rd("x", 1, 2), at=20), txn(rd("x", 2), at=30)],
        "incompatible-order",
        (3, 2),
    ),
    "a transaction's appends out of their order": (
        [txn(a("x", 1), a("x", 2)), txn(a("x", 3), p=1), txn(rd("x", 2, 1, 3), at=20)],
        "incompatible-order",
        (0, 2),
    ),
    "phantom element": ([txn(rd("x", 7))], "phantom", (0,)),
    "duplicated element": (
        [txn(a("x", 1)), txn(rd("x", 1, 1), at=10)],
        "duplicate-elements",
        (1,),
    ),
    "a read not seeing its own append": (
        [txn(rd("x"), a("x", 1), rd("x"))],
        "internal",
        (0,),
    ),
    "a read seeing its own append before it happens": (
        [txn(rd("x", 1), a("x", 1))],
        "internal",
        (0,),
    ),
}


@pytest.mark.parametrize("name", sorted(ANOMALIES))
def test_append_anomalies_are_caught_and_named(name: str) -> None:
    history, kind, involved = ANOMALIES[name]
    result = check_append(history)
    assert not result.ok
    also = ["G-single"] if kind == "G1b" else []
    assert [x.kind for x in result.anomalies] == [kind, *also], result.anomalies
    assert result.anomalies[0].txns == involved, result.anomalies[0].explanation


def test_a_transaction_split_by_another_is_caught() -> None:
    history = [txn(a("x", 1), a("x", 3)), txn(a("x", 2), p=1), txn(rd("x", 1, 2, 3), at=20)]
    result = check_append(history)
    assert [x.kind for x in result.anomalies] == ["incompatible-order", "G0"]
    assert "T0 appended (1, 3) to 'x'" in result.anomalies[0].explanation


def test_cycle_reports_its_edges() -> None:
    history, _, _ = ANOMALIES["lost append: both read the empty list and appended"]
    (cycle,) = check_append(history).anomalies
    assert cycle.edges == ("ww", "rw")
    assert cycle.explanation == "G-single: T0 -ww(x)-> T1 -rw(x)-> T0"


def test_a_read_going_backwards_in_real_time_needs_realtime() -> None:
    history = [
        txn(a("x", 1)),
        txn(a("x", 2), at=10),
        txn(rd("x", 1, 2), at=20),
        txn(rd("x", 1), at=30),  # after the read of [1, 2] completed: stale
    ]
    assert check_append(history).ok  # serializable: the stale read may go before T1
    result = check_append(history, realtime=True)
    assert [x.kind for x in result.anomalies] == ["G-single-realtime"]
    edges = result.anomalies[0].edges
    assert "rt" in edges
    assert edges.count("rw") == 1


def test_a_lost_append_needs_realtime() -> None:
    # Acknowledged, then never seen by reads that began after it completed.
    history = [txn(a("x", 1)), txn(rd("x"), at=10), txn(a("x", 2), rd("x", 2), at=20)]
    assert check_append(history).ok  # serializable: T0 may go last
    result = check_append(history, realtime=True)
    assert [x.kind for x in result.anomalies] == ["G-single-realtime"]
    assert result.anomalies[0].txns == (0, 1)
    assert result.anomalies[0].explanation == "G-single-realtime: T0 -rt-> T1 -rw(x)-> T0"


def test_graph_cycles_prefer_the_mildest_explanation() -> None:
    graph = DependencyGraph()
    graph.add(0, 1, "rw", "x")
    graph.add(1, 0, "rw", "x")
    graph.add(1, 2, "ww", "y")
    graph.add(2, 0, "wr", "y")
    (cycle,) = find_cycles(graph)  # one component; G2 (0 1 0) also exists, G-single wins
    assert cycle.kind == "G-single"
    assert cycle.nodes == (0, 1, 2)
    assert components([0, 1, 2, 3], {0: [1], 1: [0], 2: [3], 3: []}) == [[0, 1]]


# --- Hypothesis: list append ------------------------------------------------------------


@st.composite
def serial_append_histories(draw: st.DrawFn, size: int = 30) -> list[Txn]:
    """A serial execution on lists, each transaction taking effect at its point inside a
    random interval; some fail (no effect, reads unknown), some are unknown (with or
    without effect, reads unknown)."""
    lists: dict[str, list[int]] = {"x": [], "y": [], "z": []}
    fresh = itertools.count(1)
    txns = []
    for n in range(draw(st.integers(1, size))):
        point = n * 10 + 5
        invoke, complete = point - draw(st.integers(0, 40)), point + draw(st.integers(0, 40))
        fate = draw(st.sampled_from(["ok", "ok", "ok", "fail", "applied", "lost"]))
        applied = fate in ("ok", "applied")
        scratch = {k: list(v) for k, v in lists.items()}
        steps = []
        for _ in range(draw(st.integers(1, 4))):
            key = draw(st.sampled_from(sorted(lists)))
            if draw(st.booleans()):
                value = next(fresh)
                scratch[key].append(value)
                steps.append(MicroOp("append", key, value))
            else:
                seen = tuple(scratch[key]) if fate == "ok" else None
                steps.append(MicroOp("r", key, seen))
        if applied:
            lists = scratch
        outcome = {"applied": "unknown", "lost": "unknown"}.get(fate, fate)
        end = None if outcome == "unknown" else complete
        txns.append(Txn(n % 10, tuple(steps), invoke, end, outcome))
    return txns


@settings(max_examples=200, deadline=None)
@given(serial_append_histories())
def test_generated_serializable_histories_pass(txns: list[Txn]) -> None:
    for realtime in (False, True):
        result = check_append(txns, realtime=realtime)
        assert result.ok, [x.explanation for x in result.anomalies]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(serial_append_histories(), st.data())
def test_an_injected_element_is_caught(txns: list[Txn], data: st.DataObject) -> None:
    """A read given an element that no transaction appended (phantom) or that a failed one
    did (G1a), at its end."""
    reads = [
        (i, j)
        for i, t in enumerate(txns)
        if t.outcome == "ok"
        for j, m in enumerate(t.ops)
        if m.kind == "r"
    ]
    assume(reads)
    i, j = data.draw(st.sampled_from(reads))
    m = txns[i].ops[j]
    aborted = [
        x.value
        for t in txns
        if t.outcome == "fail"
        for x in t.ops
        if x.kind == "append" and x.key == m.key
    ]
    extra, kind = data.draw(st.sampled_from([(-1, "phantom")] + [(v, "G1a") for v in aborted]))
    ops = list(txns[i].ops)
    ops[j] = MicroOp("r", m.key, (*m.value, extra))
    broken = list(txns)
    broken[i] = Txn(txns[i].process, tuple(ops), txns[i].invoke_ns, txns[i].complete_ns, "ok")
    result = check_append(broken)
    assert kind in result.kinds
    assert any(i in x.txns for x in result.anomalies if x.kind == kind)


@st.composite
def perturbed_append_histories(draw: st.DrawFn) -> list[Txn]:
    """Small serial histories whose reads are then often perturbed: truncated, reordered,
    given an element of another transaction; serializable or not, the oracle decides."""
    txns = draw(serial_append_histories(size=6))
    elements = [m.value for t in txns for m in t.ops if m.kind == "append"]
    out = []
    for t in txns:
        ops = []
        for m in t.ops:
            if m.kind == "r" and m.value is not None and draw(st.integers(0, 3)) == 0:
                how = draw(st.sampled_from(["truncate", "reverse", "add"]))
                if how == "truncate":
                    value = m.value[: draw(st.integers(0, len(m.value)))]
                elif how == "reverse":
                    value = m.value[::-1]
                else:
                    value = (*m.value, draw(st.sampled_from(elements))) if elements else m.value
                m = MicroOp("r", m.key, value)
            ops.append(m)
        out.append(Txn(t.process, tuple(ops), t.invoke_ns, t.complete_ns, t.outcome))
    return out


@settings(max_examples=400, deadline=None)
@given(perturbed_append_histories(), st.booleans())
def test_append_checker_is_sound_against_the_exhaustive_oracle(
    txns: list[Txn], realtime: bool
) -> None:
    """Every anomaly reported is real; and when the oracle finds the history serializable,
    the checker finds nothing. (The converse need not hold: inference sees only what reads
    reveal, e.g. an append nobody read has no place in any order.)"""
    result = check_append(txns, realtime=realtime)
    if not result.ok:
        assert not append_serializable(txns, realtime=realtime), result.anomalies


def test_append_performance_is_printed() -> None:
    rng = random.Random(11)
    lists: dict[str, list[int]] = {f"k{k}": [] for k in range(20)}
    txns = []
    for n in range(10_000):
        point = n * 10
        steps: list[MicroOp] = []
        for _ in range(rng.randint(1, 5)):
            key = rng.choice(sorted(lists))
            if rng.random() < 0.5:
                lists[key].append(n * 10 + len(steps))
                steps.append(MicroOp("append", key, n * 10 + len(steps)))
            else:
                steps.append(MicroOp("r", key, tuple(lists[key])))
        start = point - rng.randint(0, 100)
        txns.append(Txn(n % 10, tuple(steps), start, point + rng.randint(0, 100), "ok"))
    started = time.perf_counter()
    result = check_append(txns, realtime=True)
    elapsed = time.perf_counter() - started
    assert result.ok
    print(f"\nappend: 10000 txns, 20 keys: {elapsed:.2f} s, {result.edges} edges")

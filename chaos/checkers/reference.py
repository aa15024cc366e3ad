"""Exhaustive oracles for tiny histories, against which the fast checkers are tested.

`register_linearizable(ops)` tries every subset of the unknown writes and cas (each either took
effect, or did not) and every order of the chosen ops that respects real time, replaying the
sequential register; `append_serializable(txns)` does the same with transactions on lists (every
subset of the unknown ones, every order; with realtime=True only orders respecting real time).
They follow the definitions literally, with none of the fast checkers' inference, pruning or
abstraction, so agreement on random small histories is evidence that those are sound.

Invariants: exponential (use on a handful of ops per key, or of transactions); deterministic;
pure. An unknown cas that took effect found its expected value (one that did not is simply not
chosen); failed ops and unknown reads are left out; an ok read must see the register's value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chaos.checkers.history import Op, Txn

T = TypeVar("T", bound=Op | Txn)
_STUCK = object()  # what a step returns when the op cannot go there


def _precedes(a: Op | Txn, b: Op | Txn) -> bool:
    return a.outcome == "ok" and a.complete_ns is not None and a.complete_ns < b.invoke_ns


def _some_order(
    items: Sequence[T], state: Any, step: Callable[[Any, T], Any], realtime: bool = True
) -> bool:
    """Whether some order of all `items` (real time respected if asked) steps through; step
    returns the next state, or the sentinel _STUCK."""
    n = len(items)
    if n == 0:
        return True
    for i, item in enumerate(items):
        rest = [*items[:i], *items[i + 1 :]]
        if realtime and any(_precedes(other, item) for other in rest):
            continue
        after = step(state, item)
        if after is not _STUCK and _some_order(rest, after, step, realtime):
            return True
    return False


def _register_step(value: Any, op: Op) -> Any:
    if op.kind == "read":
        return value if op.result == value else _STUCK
    if op.kind == "write":
        return op.value
    return op.value[1] if value == op.value[0] else _STUCK


def register_linearizable(ops: Sequence[Op]) -> bool:
    """Literal linearizability of each key's register (initial value None)."""
    keys = sorted({op.key for op in ops})
    for key in keys:
        mine = [op for op in ops if op.key == key]
        must = [op for op in mine if op.outcome == "ok"]
        maybe = [op for op in mine if op.outcome == "unknown" and op.kind != "read"]
        if not any(
            _some_order([*must, *chosen], None, _register_step) for chosen in _subsets(maybe)
        ):
            return False
    return True


def _lists_step(lists: Any, txn: Txn) -> Any:
    state: dict[str, tuple[Any, ...]] = dict(lists)
    for m in txn.ops:
        current = state.get(m.key, ())
        if m.kind == "append":
            state[m.key] = (*current, m.value)
        elif txn.outcome == "ok" and m.value is not None and m.value != current:
            return _STUCK
    return tuple(sorted(state.items()))


def append_serializable(txns: Sequence[Txn], *, realtime: bool = False) -> bool:
    """Literal (strict, with realtime) serializability of a list-append history."""
    must = [t for t in txns if t.outcome == "ok"]
    maybe = [t for t in txns if t.outcome == "unknown"]
    return any(
        _some_order([*must, *chosen], (), _lists_step, realtime) for chosen in _subsets(maybe)
    )


def _subsets(items: Sequence[T]) -> list[list[T]]:
    return [
        [item for item, keep in zip(items, mask, strict=True) if keep]
        for mask in itertools.product((False, True), repeat=len(items))
    ]

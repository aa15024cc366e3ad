"""Histories for the checkers: what clients asked for, when, and what they were told.

Two shapes, as in Jepsen: `Op` is one operation on a single-key register (read, write,
compare-and-set), for the linearizability checker; `Txn` is a list-append transaction made of
`MicroOp`s (reads of whole lists, appends of one element), for the serializability checker.

Outcomes follow Jepsen: "ok" means the operation took effect exactly once, at some instant
between `invoke_ns` and `complete_ns`; "fail" means it definitely did not take effect; "unknown"
means it may or may not have taken effect, at any instant after `invoke_ns` (its completion is
treated as +infinity whatever `complete_ns` says, and `complete_ns` may be None).

Invariants enforced on construction (a ValueError otherwise): kinds and outcomes are from the
sets below; an "ok" record has a `complete_ns` no earlier than its `invoke_ns`; a cas carries
the pair `(expected, new)`. Records are frozen, so a history can be shared between checkers.
Times are plain integers from any monotonic source; the checkers never read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTCOMES = frozenset({"ok", "fail", "unknown"})
OP_KINDS = frozenset({"read", "write", "cas"})
MICRO_KINDS = frozenset({"r", "append"})


def _check_times(invoke_ns: int, complete_ns: int | None, outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    if outcome == "ok" and complete_ns is None:
        raise ValueError("an ok operation needs complete_ns")
    if complete_ns is not None and complete_ns < invoke_ns:
        raise ValueError(f"complete_ns {complete_ns} is before invoke_ns {invoke_ns}")


@dataclass(frozen=True, slots=True)
class Op:
    """One register operation: value is the value written (write), `(expected, new)` (cas)
    or None (read); result is the value an ok read returned (None: never written)."""

    process: int
    kind: str
    key: str
    value: Any
    invoke_ns: int
    complete_ns: int | None
    outcome: str
    result: Any = None

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"kind must be one of {sorted(OP_KINDS)}, not {self.kind!r}")
        if self.kind == "cas" and (
            not isinstance(self.value, tuple | list) or len(self.value) != 2
        ):
            raise ValueError(f"a cas value is the pair (expected, new), not {self.value!r}")
        _check_times(self.invoke_ns, self.complete_ns, self.outcome)

    def describe(self) -> str:
        """A short human form, e.g. `p3 write 7 [100, 250] ok`."""
        if self.kind == "read":
            what = f"read -> {self.result!r}" if self.outcome == "ok" else "read"
        elif self.kind == "cas":
            what = f"cas {self.value[0]!r} -> {self.value[1]!r}"
        else:
            what = f"write {self.value!r}"
        end = "?" if self.complete_ns is None else str(self.complete_ns)
        return f"p{self.process} {what} [{self.invoke_ns}, {end}] {self.outcome}"


@dataclass(frozen=True, slots=True)
class MicroOp:
    """One step of a list-append transaction: ("append", key, element) or ("r", key, list),
    the list being a tuple, or None while it is not known (an invoked or unanswered read)."""

    kind: str
    key: str
    value: Any

    def __post_init__(self) -> None:
        if self.kind not in MICRO_KINDS:
            raise ValueError(f"kind must be one of {sorted(MICRO_KINDS)}, not {self.kind!r}")
        if self.kind == "r" and self.value is not None and not isinstance(self.value, tuple):
            raise ValueError(f"a read's value is a tuple or None, not {self.value!r}")


@dataclass(frozen=True, slots=True)
class Txn:
    """One list-append transaction and what its client was told."""

    process: int
    ops: tuple[MicroOp, ...]
    invoke_ns: int
    complete_ns: int | None
    outcome: str

    def __post_init__(self) -> None:
        _check_times(self.invoke_ns, self.complete_ns, self.outcome)

    def describe(self) -> str:
        """A short human form, e.g. `p1 [r x (1, 2); append y 3] ok`."""
        steps = "; ".join(f"{m.kind} {m.key} {m.value!r}" for m in self.ops)
        return f"p{self.process} [{steps}] {self.outcome}"

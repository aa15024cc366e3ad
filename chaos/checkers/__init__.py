"""Jepsen-style history checkers: pure functions from a recorded history to a verdict.

- `check_register` (chaos.checkers.linearizable): linearizability of single-key registers
  (read, write, cas), per key, by a memoized Wing & Gong search as in Porcupine.
- `check_append` (chaos.checkers.append): serializability of list-append transactions by
  Elle's method: version orders from reads, a typed dependency graph, its cycles (G0, G1c,
  G-single, G2) and the non-cycle anomalies (G1a, G1b, phantom, internal, incompatible orders).

Histories are `Op` and `Txn` records (chaos.checkers.history). The checkers do no I/O, read no
clock and are deterministic: the same history always gets the same verdict and report.
chaos.checkers.reference holds exhaustive oracles for tiny histories, to test them against.
"""

from chaos.checkers.append import Anomaly, AppendResult, check_append
from chaos.checkers.history import MicroOp, Op, Txn
from chaos.checkers.linearizable import (
    DEFAULT_MAX_STATES,
    KeyVerdict,
    LinearizabilityResult,
    check_key,
    check_register,
)

__all__ = [
    "DEFAULT_MAX_STATES",
    "Anomaly",
    "AppendResult",
    "KeyVerdict",
    "LinearizabilityResult",
    "MicroOp",
    "Op",
    "Txn",
    "check_append",
    "check_key",
    "check_register",
]

"""Deliberately broken builds, for showing that the chaos checkers catch what they claim to.

A node started with the environment variable STRAND_TEST_BREAK set to one of `BREAKS` runs
with that protection removed (cluster/node.py applies it at import, before the node is
built); `LedgerCluster.start` passes the variable on to the nodes it starts when its own
process has it. Nothing else sets it: tests/test_experiments.py does, to see a run fail.

- `ack-before-majority`: a leader commits (and acknowledges) an entry once its own log has
  it, without a majority: a partitioned leader's acknowledged writes are lost at the heal.

Invariants: without the variable this module changes nothing; with it, only the named
protection is removed.
"""

from __future__ import annotations

from core import raft
from core.raft import RaftNode

ENV = "STRAND_TEST_BREAK"


def _commit_on_own_log(self: RaftNode) -> bool:
    index = self._progress[self.id].match
    if index > self.commit and self.term_at(index) == self.term:
        self.commit = index
        return True
    return False


BREAKS = {
    "ack-before-majority": ("_maybe_commit", _commit_on_own_log),
}


def apply(name: str) -> None:
    if name not in BREAKS:
        raise ValueError(f"{ENV}: one of {sorted(BREAKS)}, not {name!r}")
    attribute, replacement = BREAKS[name]
    setattr(raft.RaftNode, attribute, replacement)

"""Deliberately broken builds, for showing that the chaos checkers catch what they claim to.

A node started with the environment variable STRAND_TEST_BREAK set to one of `BREAKS` runs
with that protection removed (cluster/node.py applies it at import, before the node is
built); `LedgerCluster.start` passes the variable on to the nodes it starts when its own
process has it. Nothing else sets it: tests/test_experiments.py does, to see a run fail.

- `ack-before-majority`: a leader commits (and acknowledges) an entry once its own log has
  it, without a majority: a partitioned leader's acknowledged writes are lost at the heal.
- `stale-follower-read`: a node that is not the leader answers a linearizable read from its
  own state instead of sending the client to the leader: an isolated follower serves values
  the majority has overwritten.
- `lost-fsync`: the replica never syncs its writes (Raft's entries, term and vote reach the
  disk only when the operating system gets round to it). Visible with the nodes on the
  power-cut storage double (STRAND_TEST_STORAGE=power-cut, chaos/disk.py) and a power cut.

Invariants: without the variable this module changes nothing; with it, only the named
protection is removed.
"""

from __future__ import annotations

from typing import Any

from core import replica
from core.commit import CommitMachine
from core.raft import RaftNode, Role
from core.requests import Read, Request, Serve

ENV = "STRAND_TEST_BREAK"
_honest_submit = CommitMachine.submit


def _commit_on_own_log(self: RaftNode) -> bool:
    index = self._progress[self.id].match
    if index > self.commit and self.term_at(index) == self.term:
        self.commit = index
        return True
    return False


def _serve_reads_anywhere(
    self: CommitMachine, client: int, request_id: int, request: Request, now_ms: int
) -> None:
    if isinstance(request, Read) and self.replica.node.role is not Role.LEADER:
        self.now_ms = max(self.now_ms, now_ms)
        self._duties.append(Serve(client, request_id))
        return
    _honest_submit(self, client, request_id, request, now_ms)


def _never_sync(rd: Any, term_vote: Any) -> bool:
    return False


BREAKS: dict[str, tuple[Any, str, Any]] = {
    "ack-before-majority": (RaftNode, "_maybe_commit", _commit_on_own_log),
    "stale-follower-read": (CommitMachine, "submit", _serve_reads_anywhere),
    "lost-fsync": (replica, "needs_sync", _never_sync),
}


def apply(name: str) -> None:
    if name not in BREAKS:
        raise ValueError(f"{ENV}: one of {sorted(BREAKS)}, not {name!r}")
    owner, attribute, replacement = BREAKS[name]
    setattr(owner, attribute, replacement)

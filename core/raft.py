"""Raft as a pure state machine: messages and ticks in, duties out (etcd-io/raft's shape).

Theory of operation. `RaftNode` holds one replica's consensus state. The host feeds it
`tick()` (logical time: the host decides how long a tick is), `step(message)` (a message from
a peer), `propose(data)` (leader only) and `read_index(request_id)`; none of these does I/O.
Whenever `has_ready()` is true the host takes `ready()` and carries out its duties IN ORDER:

1. persist `hard_state` (term, vote, commit) and `entries` (append them to the log, first
   deleting any stored entry at or after `entries[0].index`), with a synced write;
2. send `messages` (losing some is fine: Raft retries);
3. apply `committed` entries to the state machine, in order; serve `read_states`;
4. call `advance(ready)` before touching the node again.

Log indexes start at 1 (index 0 has term 0). Entry data `b""` is the no-op a new leader
appends to commit what earlier terms left. Stable entries are read through a `LogStore`
(what step 1 wrote); entries not yet persisted are held here (`_unstable`).

Features: randomised election timeouts from a caller-supplied `random.Random`; pre-vote (a
partitioned node cannot disrupt a healthy leader on return); check-quorum (a leader that has
not heard from a majority within an election timeout steps down, and followers ignore votes
while they have a live leader); log matching with conflict-term backtracking; flow control
(a bounded number of unacknowledged entries per follower); ReadIndex for linearizable reads;
an `accept` hook that lets the host refuse entries (the ledger checks the hash chain).

Invariants (checked by the simulator in chaos/ over many seeds): at most one leader per term;
a vote is persisted before it is sent; an entry is committed only when stored on a majority
and of the leader's term (earlier entries commit with it); committed entries are never
truncated; a node applies committed entries exactly once each, in index order.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    data: bytes  # b"" = no-op


@dataclass(frozen=True, slots=True)
class HardState:
    term: int
    vote: str | None
    commit: int


@dataclass(frozen=True, slots=True)
class VoteRequest:
    term: int
    sender: str
    to: str
    last_index: int
    last_term: int
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    sender: str
    to: str
    granted: bool
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class Append:
    term: int
    sender: str
    to: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_ctx: int = 0  # a ReadIndex round this message confirms (0: none)


@dataclass(frozen=True, slots=True)
class AppendResponse:
    term: int
    sender: str
    to: str
    success: bool
    match_index: int  # success: the log matches up to here; failure: the rejected prev_index
    reject_hint: int  # failure: the leader should retry from hint + 1
    read_ctx: int = 0


Message = VoteRequest | VoteResponse | Append | AppendResponse


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied `index`."""

    request_id: int
    index: int


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    role: Role
    leader: str | None


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_entries_per_message: int = 64
    max_inflight_entries: int = 1024
    check_quorum: bool = True
    pre_vote: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("need 1 <= heartbeat_ticks < election_ticks")
        if self.max_entries_per_message < 1 or self.max_inflight_entries < 1:
            raise ValueError("message and in-flight limits must be positive")


class LogStore(Protocol):
    """Read access to the persisted log (what the host wrote in step 1)."""

    def last_index(self) -> int: ...

    def term(self, index: int) -> int: ...  # 0 for index 0; index <= last_index()

    def entries(self, lo: int, hi: int) -> list[Entry]: ...  # [lo, hi), all stored


@dataclass(slots=True)
class _Progress:
    match: int = 0
    next: int = 1
    probing: bool = True  # wait for an answer before sending more
    active: bool = False  # heard from since the last check-quorum round


@dataclass(slots=True)
class _PendingRead:
    request_id: int
    index: int
    acks: set[str] = field(default_factory=set)


Accept = Callable[[int, Sequence[Entry]], bool]


class RaftNode:
    """One replica's Raft state. Not thread-safe; see the module docstring for the protocol."""

    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        store: LogStore,
        *,
        config: RaftConfig,
        rng: random.Random,
        hard_state: HardState | None = None,
        applied: int = 0,
        accept: Accept | None = None,
    ) -> None:
        if node_id not in voters or len(set(voters)) != len(voters):
            raise ValueError("voters must be distinct and include this node")
        self.id = node_id
        self.voters = tuple(sorted(voters))
        self.peers = tuple(v for v in self.voters if v != node_id)
        self.config = config
        self._store = store
        self._rng = rng
        self._accept = accept
        hs = hard_state or HardState(0, None, 0)
        self.term, self.vote = hs.term, hs.vote
        self._offset = store.last_index() + 1  # index of _unstable[0]
        self.commit = min(hs.commit, store.last_index())
        self.applied = min(applied, self.commit)
        self._unstable: list[Entry] = []
        self._persisted_hs = HardState(self.term, self.vote, self.commit)
        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._progress: dict[str, _Progress] = {}
        self._votes: dict[str, bool] = {}
        self._reads: list[_PendingRead] = []
        self._read_ctx = 0
        self._awaiting_advance = False
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self.promotable = True  # False: known damage; never campaigns (set_promotable)

    # ----------------------------------------------------------------- the log
    def last_index(self) -> int:
        return self._offset - 1 + len(self._unstable)

    def term_at(self, index: int) -> int:
        if index >= self._offset:
            return self._unstable[index - self._offset].term
        return self._store.term(index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi) of the log, stable and unstable."""
        if hi <= lo:
            return []
        out = self._store.entries(lo, min(hi, self._offset)) if lo < self._offset else []
        if hi > self._offset:
            start = max(lo, self._offset)
            out += self._unstable[start - self._offset : hi - self._offset]
        return out

    def _last_term(self) -> int:
        return self.term_at(self.last_index())

    def _append_local(self, after: int, entries: Sequence[Entry]) -> None:
        """Make the log end with `entries` placed after index `after` (truncating beyond)."""
        if after + 1 < self._offset:
            assert after >= self.commit, "committed entries are never truncated"
            self._unstable = list(entries)
            self._offset = after + 1
        else:
            del self._unstable[after + 1 - self._offset :]
            self._unstable.extend(entries)

    # ----------------------------------------------------------------- inputs
    def tick(self) -> None:
        self._check_not_awaiting()
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        # A node that may not lead keeps counting: its leader lease must still run out, or
        # it would refuse every pre-vote and, with one node down, no election could succeed.
        if self._election_elapsed >= self._timeout and self.promotable:
            self._election_elapsed = 0
            self._campaign(pre_vote=self.config.pre_vote)

    def forget_progress(self, peer: str) -> None:
        """The leader learns that `peer` lost its log (its storage was replaced by an empty
        one: a rebuild): forget what it acknowledged and probe it afresh. Lowering a match
        is always safe (the commit index never goes back). Raft otherwise assumes a node
        never loses what it acknowledged, so only an operator's rebuild calls this."""
        self._check_not_awaiting()
        if self.role is Role.LEADER and peer in self._progress and peer != self.id:
            pr = self._progress[peer]
            pr.match, pr.next, pr.probing = 0, self.last_index() + 1, True
            self._send_append(peer, force=True)

    def set_promotable(self, promotable: bool) -> None:
        """A replica that knows part of its stored state is damaged must not lead: it steps
        down at once (keeping its term, in which it already voted, so it votes in no other
        candidate's favour there) and does not campaign until it is promotable again. It
        still votes in later terms and accepts entries: the damage is in its history."""
        self._check_not_awaiting()
        self.promotable = promotable
        if not promotable and self.role is not Role.FOLLOWER:
            self._become_follower(self.term, None)

    def propose(self, data: bytes) -> int | None:
        """Append `data` as a new entry if this node leads; returns its index, else None."""
        self._check_not_awaiting()
        if self.role is not Role.LEADER:
            return None
        if not data:
            raise ValueError("empty data is reserved for the leader's no-op")
        index = self.last_index() + 1
        self._append_local(index - 1, [Entry(self.term, index, data)])
        self._broadcast_append()
        return index

    def read_index(self, request_id: int) -> bool:
        """Start a linearizable read; a ReadState for it comes out later. False: not leader."""
        self._check_not_awaiting()
        if self.role is not Role.LEADER or self.term_at(self.commit) != self.term:
            return False
        if not self.peers:
            self._read_states.append(ReadState(request_id, self.commit))
            return True
        self._read_ctx += 1
        self._reads.append(_PendingRead(request_id, self.commit, {self.id}))
        self._broadcast_append(read_ctx=self._read_ctx, heartbeat=True)
        return True

    def step(self, m: Message) -> None:
        self._check_not_awaiting()
        if m.to != self.id or m.sender not in self.peers:
            return
        if m.term > self.term and not self._higher_term(m):
            return
        if m.term < self.term:
            self._lower_term(m)
            return
        if isinstance(m, VoteRequest):
            self._on_vote_request(m)
        elif isinstance(m, VoteResponse):
            self._on_vote_response(m)
        elif isinstance(m, Append):
            self._on_append(m)
        else:
            self._on_append_response(m)

    # ----------------------------------------------------------------- outputs
    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._unstable
            or self._read_states
            or self.commit > self.applied
            or self._hard_state() != self._persisted_hs
        )

    def ready(self) -> Ready:
        self._check_not_awaiting()
        hs = self._hard_state()
        committed = self.entries(self.applied + 1, self.commit + 1)
        rd = Ready(
            hs if hs != self._persisted_hs else None,
            tuple(self._unstable),
            tuple(self._messages),
            tuple(committed),
            tuple(self._read_states),
            self.role,
            self.leader,
        )
        self._messages, self._read_states = [], []
        self._awaiting_advance = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The host has persisted, sent and applied everything in `rd`."""
        assert self._awaiting_advance, "advance() without ready()"
        self._awaiting_advance = False
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.entries:
            assert self._unstable[: len(rd.entries)] == list(rd.entries)
            del self._unstable[: len(rd.entries)]
            self._offset = rd.entries[-1].index + 1
        if rd.committed:
            self.applied = rd.committed[-1].index
        if self.role is Role.LEADER:
            me = self._progress[self.id]
            me.match = self._offset - 1
            if self._maybe_commit():
                self._broadcast_append()

    def _check_not_awaiting(self) -> None:
        if self._awaiting_advance:
            raise RuntimeError("call advance(ready) before driving the node again")

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    def _send(self, m: Message) -> None:
        self._messages.append(m)

    # ----------------------------------------------------------------- roles
    def _random_timeout(self) -> int:
        n = self.config.election_ticks
        return n + self._rng.randrange(n)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term, self.vote = term, None
        self.leader = None
        self._election_elapsed = self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes = {}
        self._progress = {}
        self._reads = []

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _campaign(self, *, pre_vote: bool) -> None:
        if pre_vote:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            term = self.term
        self._votes = {self.id: True}
        if self._won():
            self._campaign(pre_vote=False) if pre_vote else self._become_leader()
            return
        for peer in self.peers:
            self._send(
                VoteRequest(term, self.id, peer, self.last_index(), self._last_term(), pre_vote)
            )

    def _won(self) -> bool:
        return sum(self._votes.values()) * 2 > len(self.voters)

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.last_index()
        self._progress = {v: _Progress(next=last + 1) for v in self.voters}
        self._progress[self.id].match = self._offset - 1
        self._progress[self.id].active = True
        self._append_local(last, [Entry(self.term, last + 1, b"")])
        self._maybe_commit()
        self._broadcast_append()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum:
                active = sum(1 for p in self._progress.values() if p.active)
                if active * 2 <= len(self.voters):
                    self._become_follower(self.term, None)
                    return
                for peer in self.peers:
                    self._progress[peer].active = False
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            # A read round whose messages or acks were lost would wait for ever: heartbeats
            # carry the newest round while any waits (an ack confirms every earlier round).
            self._broadcast_append(heartbeat=True, read_ctx=self._read_ctx if self._reads else 0)

    # ----------------------------------------------------------------- terms
    def _higher_term(self, m: Message) -> bool:
        """A message with a higher term: update ours unless it must be ignored."""
        if isinstance(m, VoteRequest):
            in_lease = (
                self.config.check_quorum
                and self.leader is not None
                and self._election_elapsed < self.config.election_ticks
            )
            if in_lease:
                return False
            if m.pre_vote:
                return True  # answer it, but a pre-vote never changes our term
        if isinstance(m, VoteResponse) and m.pre_vote and m.granted:
            return True
        leader = m.sender if isinstance(m, Append) else None
        self._become_follower(m.term, leader)
        return True

    def _lower_term(self, m: Message) -> None:
        if isinstance(m, Append):  # a stale leader: tell it our term so it steps down
            self._send(AppendResponse(self.term, self.id, m.sender, False, 0, 0))
        elif isinstance(m, VoteRequest) and m.pre_vote:
            self._send(VoteResponse(self.term, self.id, m.sender, False, True))

    # ----------------------------------------------------------------- votes
    def _on_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.sender
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        )
        up_to_date = (m.last_term, m.last_index) >= (self._last_term(), self.last_index())
        if can_vote and up_to_date:
            if not m.pre_vote:
                self.vote = m.sender
                self._election_elapsed = 0
            self._send(VoteResponse(m.term, self.id, m.sender, True, m.pre_vote))
        else:
            self._send(VoteResponse(self.term, self.id, m.sender, False, m.pre_vote))

    def _on_vote_response(self, m: VoteResponse) -> None:
        wanted = Role.PRE_CANDIDATE if m.pre_vote else Role.CANDIDATE
        if self.role is not wanted:
            return
        self._votes.setdefault(m.sender, m.granted)
        if self._won():
            self._campaign(pre_vote=False) if m.pre_vote else self._become_leader()
        elif sum(1 for g in self._votes.values() if not g) * 2 >= len(self.voters):
            self._become_follower(self.term, None)

    # ----------------------------------------------------------------- replication
    def _on_append(self, m: Append) -> None:
        if self.role is not Role.FOLLOWER or self.leader != m.sender:
            self._become_follower(self.term, m.sender)
        self._election_elapsed = 0
        reply = self._match_append(m)
        self._send(reply)

    def _match_append(self, m: Append) -> AppendResponse:
        rejected = m.prev_index

        def response(success: bool, match: int, hint: int) -> AppendResponse:
            # failure: match_index carries the prev_index that was rejected
            index = match if success else rejected
            return AppendResponse(self.term, self.id, m.sender, success, index, hint, m.read_ctx)

        if m.prev_index < self.commit:  # already have (and committed) that much
            skip = self.commit - m.prev_index
            m = Append(
                m.term, m.sender, m.to, self.commit, self.term_at(self.commit),
                m.entries[skip:], m.commit, m.read_ctx,
            )  # fmt: skip
        if not self._log_matches(m.prev_index, m.prev_term):
            hint = min(m.prev_index - 1, self.last_index())
            while hint > self.commit and self.term_at(hint) > m.prev_term:
                hint -= 1
            return response(False, 0, hint)
        new = self._new_entries(m.entries)
        if new:
            after = new[0].index - 1
            if self._accept is not None and not self._accept(after, new):
                return response(False, 0, after)
            self._append_local(after, new)
        last_new = m.prev_index + len(m.entries)
        self.commit = max(self.commit, min(m.commit, last_new))
        return response(True, last_new, 0)

    def _log_matches(self, index: int, term: int) -> bool:
        """Log matching: this log holds an entry at `index` with `term` (so, by induction,
        the whole prefix the leader has up to there)."""
        return index <= self.last_index() and self.term_at(index) == term

    def _new_entries(self, entries: Sequence[Entry]) -> list[Entry]:
        """The suffix of `entries` from the first one this log lacks or holds with another
        term. Entries already held are kept as they are: a stale or duplicated Append must
        not truncate what this node acknowledged (the leader may have counted it)."""
        for i, entry in enumerate(entries):
            if entry.index > self.last_index() or self.term_at(entry.index) != entry.term:
                return list(entries[i:])
        return []

    def _on_append_response(self, m: AppendResponse) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self._progress[m.sender]
        pr.active = True
        if m.read_ctx:
            self._ack_reads(m.sender, m.read_ctx)
        if m.success:
            if m.match_index > pr.match:
                pr.match = m.match_index
                pr.probing = False
            pr.next = max(pr.next, pr.match + 1)
            if self._maybe_commit():
                self._broadcast_append()
            else:
                self._send_append(m.sender)
        else:
            rejected = m.match_index
            stale = rejected <= pr.match if not pr.probing else rejected != pr.next - 1
            if stale:
                return
            pr.next = max(pr.match + 1, min(rejected, m.reject_hint + 1))
            pr.probing = True
            self._send_append(m.sender, force=True)

    def _maybe_commit(self) -> bool:
        matches = sorted((p.match for p in self._progress.values()), reverse=True)
        index = matches[len(self.voters) // 2]
        if index > self.commit and self.term_at(index) == self.term:
            self.commit = index
            return True
        return False

    def _broadcast_append(self, *, read_ctx: int = 0, heartbeat: bool = False) -> None:
        for peer in self.peers:
            self._send_append(peer, read_ctx=read_ctx, force=heartbeat)

    def _send_append(self, peer: str, *, read_ctx: int = 0, force: bool = False) -> None:
        """Send what the peer lacks (within flow control); `force` sends even if nothing."""
        pr = self._progress[peer]
        last = self.last_index()
        inflight = pr.next - 1 - pr.match
        room = 0 if pr.probing and inflight > 0 else self.config.max_inflight_entries - inflight
        count = max(0, min(last - pr.next + 1, self.config.max_entries_per_message, room))
        if pr.probing and not force and inflight > 0:
            count = 0
        if count == 0 and not force:
            return
        prev = pr.next - 1
        entries = tuple(self.entries(pr.next, pr.next + count))
        commit = min(self.commit, prev + count)
        self._send(
            Append(self.term, self.id, peer, prev, self.term_at(prev), entries, commit, read_ctx)
        )
        if count:
            pr.next += count

    def _ack_reads(self, peer: str, ctx: int) -> None:
        # read contexts are numbered in order: an ack for ctx confirms every earlier round
        first = self._read_ctx - len(self._reads) + 1
        done = 0
        for i, read in enumerate(self._reads):
            if first + i <= ctx:
                read.acks.add(peer)
            if len(read.acks) * 2 > len(self.voters) and done == i:
                done = i + 1
        for read in self._reads[:done]:
            self._read_states.append(ReadState(read.request_id, read.index))
        del self._reads[:done]


class MemoryLogStore:
    """A LogStore kept in a list (tests and the simulator); `append` is the host's step 1."""

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self.log: list[Entry] = list(entries)

    def last_index(self) -> int:
        return len(self.log)

    def term(self, index: int) -> int:
        return 0 if index == 0 else self.log[index - 1].term

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.log[lo - 1 : hi - 1]

    def append(self, entries: Sequence[Entry]) -> None:
        """Store entries, first deleting any stored entry at or after the first one's index."""
        if entries:
            del self.log[entries[0].index - 1 :]
            assert not self.log or self.log[-1].index == entries[0].index - 1
            self.log.extend(entries)

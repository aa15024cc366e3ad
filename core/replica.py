"""One replica of a replicated ledger: core.raft's log carries the journal, applied to an Engine.

Theory of operation. Every non-empty Raft entry is a group commit (a batch of blocks,
`core.raftlog.encode_batch`), a failure record, or a change to a journal stream's state
(`core/streams.py`: applied to its `S<id>` key, never a block); the log lives in the
replica's own Storage beside the engine's ledger keys (`core/raftlog.py` has the layout).

`Replica` is the host of a `RaftNode`; it is driven, never drives: the node's host (a
cluster actor, or the simulator) calls `tick`, `step`, `read_index`, the commit machine
(`core/commit.py`) calls `propose_prepared`, and then the host calls `process_ready`, which
carries out Raft's duties in order in ONE atomic storage write: the hard state, the new log
entries (and the deletion of any conflicting suffix), the blocks of newly committed entries
with all their derived state, the applied entries shrunk to references into the journal,
and the applied index. The write is synced when it holds new entries or a new term or vote
(Raft's rule, `needs_sync`); a write that only applies committed entries is not (they are
durable in the log already, and are re-applied after a crash). It then publishes the engine
and hands back the messages to send (a leader may send its appends before its write,
through `send`, so that its disk and its followers' work at once). No threads, sockets or
clocks: time is ticks, randomness is the `random.Random` passed in.

The leader's own batches. The commit machine prepares a batch on the engine's head (OCC
against everything prepared so far) and proposes it with `propose_prepared`; when that entry
commits under the same term, the prepared batch is written as it is (no decoding, no second
derivation). When the replica stops leading (or its term moves on), its prepared batches are
dropped and the engine's head reset: whatever of them commits later is applied from the
log's bytes like any other entry.

Invariants:
- a follower appends an entry only if its blocks recompute their hashes and chain to the
  block before them in the log (`_accept`; each block is decoded and checked once, and
  stored as it arrived); a leader proposes only a batch that chains to its log's last block
  (`StaleBatchError` otherwise);
- the engine's tip and `Mraft_applied` change in the same atomic write, so after a crash
  the replica re-applies exactly the committed entries it had not applied (or had applied
  in a write the crash lost);
- applied == commit after every `process_ready`, so a ReadState it returns can be served at
  once, and a block is visible on a replica only once it is committed (stored on a majority);
- a failure record, once applied, is on every replica that applied it (key `F<txid>`);
- a stream change is applied with `core.streams.apply_ops` in log order, in the same write
  as the entry's applied index, so every replica holds the same stream states at the
  same applied index.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from core import codec, keys, merkle
from core.engine import Engine, Genesis, PreparedBatch
from core.errors import CorruptLedgerError, NotLeaderError, StaleBatchError
from core.ids import IdSource
from core.journal import Block
from core.raft import Entry, HardState, Message, RaftConfig, RaftNode, ReadState, Ready, Role
from core.raftlog import (
    FailureRecord,
    LogStorage,
    batch_header,
    check_entry,
    decode_batch,
    decode_record,
    decode_stream_op,
    encode_batch_raw,
    encode_record,
    encode_stream_op,
    is_batch,
    upgrade_writes,
)
from core.storage import Storage
from core.streams import StreamOp, StreamState, apply_ops, list_states, read_state

META_RAFT_STATE = b"Mraft_state"
META_RAFT_APPLIED = b"Mraft_applied"
FAILURE_PREFIX = b"F"


def failure_key(transaction_id: str) -> bytes:
    return FAILURE_PREFIX + transaction_id.encode("ascii")


def encode_hard_state(term: int, vote: str | None, commit: int) -> bytes:
    return codec.frame(msgpack.packb([term, vote, commit]))


def seed_hard_state(storage: Storage, term: int, node_id: str) -> None:
    """Prepare EMPTY storage for a replica that replaces one whose data was lost.

    The lost replica may have voted in any term up to `term`, the highest term any other
    voter has seen (a candidate it voted for persisted that term). The new one starts as
    if it had voted for itself in `term`, so it grants votes only in later terms and never
    votes twice in one: Raft's one-vote-per-term rule holds across the loss."""
    if storage.get(META_RAFT_STATE) is not None or storage.get(keys.META_STRAND_ID) is not None:
        raise CorruptLedgerError("seed_hard_state is for empty storage only")
    storage.write([(META_RAFT_STATE, encode_hard_state(term, node_id, 0))])


def needs_sync(rd: Ready, term_vote: tuple[int, str | None]) -> bool:
    """Raft's durability rule: new log entries, and a new term or vote, must be on disk
    before any message that depends on them is sent. Applying committed entries need not
    be (they are durable in the log), nor does the commit index."""
    if rd.entries:
        return True
    hs = rd.hard_state
    return hs is not None and (hs.term, hs.vote) != term_vote


def _durable(rd: Ready, term_vote: tuple[int, str | None]) -> bool:
    hs = rd.hard_state
    return hs is None or (hs.term, hs.vote) == term_vote


@dataclass(slots=True)
class ReadyWork:
    """One Ready between `Replica.start_ready` and `Replica.finish_ready`: `write()` makes
    it durable (any thread; one atomic storage write, synced when Raft needs it)."""

    rd: Ready
    messages: tuple[Message, ...]
    puts: list[tuple[bytes, bytes]]
    deletes: list[bytes]
    sync: bool
    replica: Replica
    own: list[PreparedBatch] = field(default_factory=list)  # the leader's prepared batches
    applied: PreparedBatch | None = None  # others' blocks, derived

    @property
    def writes(self) -> bool:
        return bool(self.puts or self.deletes or self.own or self.applied is not None)

    def write(self) -> None:
        engine = self.replica.engine
        if self.own:
            engine.write_batches(self.own, self.puts, self.deletes, sync=self.sync)
        elif self.applied is not None:
            engine.write(self.applied, self.puts, self.deletes, sync=self.sync)
        elif self.puts or self.deletes:
            self.replica.storage.write(self.puts, self.deletes, sync=self.sync)


@dataclass(frozen=True, slots=True)
class ReplicaOutput:
    """What the host must do after `process_ready`: send `messages`, then notify waiters."""

    messages: tuple[Message, ...]
    applied: tuple[tuple[int, int], ...]  # (log index, term) of entries applied just now
    read_states: tuple[ReadState, ...]
    role: Role
    leader: str | None
    term: int


class Replica:
    """A ledger replica: Raft plus an Engine over one Storage. See the module docstring."""

    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        storage: Storage,
        *,
        config: RaftConfig,
        rng: random.Random,
        genesis: Genesis,
        now_ms: int,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.engine = Engine(storage, IdSource(rng.randbytes), now_ms, genesis=genesis)
        raw_applied = storage.get(META_RAFT_APPLIED)
        self.applied = 0 if raw_applied is None else keys.decode_u64(raw_applied)
        upgrade_writes(storage, self.applied)
        self.log = LogStorage(storage, self._rebuild)
        raw_state = storage.get(META_RAFT_STATE)
        hard_state = None
        if raw_state is not None:
            term, vote, commit = msgpack.unpackb(codec.unframe(raw_state), raw=False)
            hard_state = HardState(term, vote, commit)
        self._term_vote = (0, None) if hard_state is None else (hard_state.term, hard_state.vote)
        # tips[i] = (sequence number, hash) of the last block once log entry i is applied
        self._tips: dict[int, tuple[int, bytes]] = {
            self.applied: (self.engine.durable_seq, self.engine.durable_hash())
        }
        tip = self._tips[self.applied]
        for entry in self.log.entries(self.applied + 1, self.log.last_index() + 1):
            if is_batch(entry.data):
                header = batch_header(entry.data)
                tip = (header.first_seq + header.count - 1, header.last_hash)
            self._tips[entry.index] = tip
        # blocks of appended, not yet applied entries, decoded and checked once (_accept)
        self._decoded: dict[int, tuple[list[Block], list[bytes]]] = {}
        self._own: dict[int, tuple[int, PreparedBatch]] = {}  # index -> (term, batch)
        self.node = RaftNode(
            node_id,
            voters,
            self.log,
            config=config,
            rng=rng,
            hard_state=hard_state,
            applied=self.applied,
            accept=self._accept,
        )

    # ----------------------------------------------------------------- inputs
    def tick(self) -> None:
        self.node.tick()

    def forget_progress(self, peer: str) -> None:
        """`peer` was rebuilt on empty storage (RaftNode.forget_progress)."""
        self.node.forget_progress(peer)

    def set_promotable(self, promotable: bool) -> None:
        """False while this replica's storage holds known damage (RaftNode.set_promotable)."""
        self.node.set_promotable(promotable)

    def step(self, message: Message) -> None:
        self.node.step(message)

    def read_index(self, request_id: int) -> bool:
        return self.node.read_index(request_id)

    @property
    def ready_to_serve(self) -> bool:
        """A leader serves once an entry of its own term is applied (its no-op)."""
        node = self.node
        return node.role is Role.LEADER and node.term_at(self.applied) == node.term

    def log_tip(self) -> tuple[int, bytes]:
        """(sequence number, hash) of the last block in the log, committed or not."""
        return self._tip_at(self.node.last_index())

    def propose(self, data: bytes) -> int:
        """Append a batch (encode_batch) or a record as the leader; returns its log index."""
        node = self.node
        if node.role is not Role.LEADER:
            raise NotLeaderError(f"node {self.id} does not lead", node.leader)
        tip = None
        if is_batch(data):
            header = batch_header(data)
            seq, tip_hash = self.log_tip()
            if header.first_seq != seq + 1 or header.prev_hash != tip_hash:
                raise StaleBatchError(
                    f"the batch starts at block {header.first_seq}, the log ends at block {seq}"
                )
            tip = (header.first_seq + header.count - 1, header.last_hash)
        else:
            check_entry(data)  # raises for anything that is not a record or a stream change
        index = node.propose(data)
        assert index is not None
        if tip is not None:
            self._tips[index] = tip
        return index

    def propose_prepared(self, batch: PreparedBatch) -> int:
        """Propose a batch the engine prepared on its head; it is written as it is once its
        entry commits under this term (see the module docstring)."""
        data = encode_batch_raw(
            batch.first_seq, batch.blocks[0]["previousBlockHash"], batch.tip_hash,
            batch.raw_blocks,
        )  # fmt: skip
        index = self.propose(data)
        self._own[index] = (self.node.term, batch)
        return index

    def propose_failure(self, record: FailureRecord) -> int:
        return self.propose(encode_record(record))

    def propose_stream(self, op: StreamOp) -> int:
        """Append a change to a journal stream's state (applied on every replica)."""
        return self.propose(encode_stream_op(op))

    def stream(self, stream_id: str) -> StreamState | None:
        """A journal stream's state as this replica applied it."""
        return read_state(self.storage, stream_id)

    def streams(self) -> list[StreamState]:
        return list_states(self.storage)

    def failure(self, transaction_id: str) -> FailureRecord | None:
        """The applied failure record of that transaction, if any."""
        raw = self.storage.get(failure_key(transaction_id))
        if raw is None:
            return None
        record = decode_record(codec.unframe(raw))
        assert record is not None
        return record

    def _tip_at(self, index: int) -> tuple[int, bytes]:
        while index not in self._tips:
            index -= 1
            assert index >= self.applied, "every log index from the applied one has a tip"
        return self._tips[index]

    def _accept(self, after: int, entries: Sequence[Entry]) -> bool:
        """Raft's hook: refuse entries whose blocks do not recompute or do not chain."""
        seq, tip_hash = self._tip_at(after)
        tips: dict[int, tuple[int, bytes]] = {}
        decoded: dict[int, tuple[list[Block], list[bytes]]] = {}
        for entry in entries:
            if is_batch(entry.data):
                try:
                    blocks, raws = decode_batch(entry.data)
                except CorruptLedgerError:
                    return False
                if blocks[0]["blockAddress"]["sequenceNo"] != seq + 1:
                    return False
                if blocks[0]["previousBlockHash"] != tip_hash:
                    return False
                seq, tip_hash = seq + len(blocks), blocks[-1]["blockHash"]
                decoded[entry.index] = (blocks, raws)
            elif entry.data:
                try:
                    check_entry(entry.data)
                except CorruptLedgerError:
                    return False
            tips[entry.index] = (seq, tip_hash)
        for index in [i for i in self._tips if i > after]:
            del self._tips[index]
        for index in [i for i in self._decoded if i > after]:
            del self._decoded[index]
        self._tips.update(tips)
        self._decoded.update(decoded)
        return True

    def _rebuild(self, first_seq: int, count: int) -> bytes:
        """An applied batch entry's data, from the journal (LogStorage's `rebuild`)."""
        engine = self.engine
        raws = []
        for seq in range(first_seq, first_seq + count):
            raw = self.storage.get(keys.block_key(seq))
            if raw is None:
                raise CorruptLedgerError(f"block {seq} of an applied log entry is missing")
            raws.append(raw)
        prev = engine.get_node(0, first_seq - 1)
        return encode_batch_raw(first_seq, prev, engine.get_node(0, first_seq + count - 1), raws)

    # ----------------------------------------------------------------- outputs
    def has_ready(self) -> bool:
        return self.node.has_ready()

    def _drop_own(self) -> None:
        if self._own:
            self._own.clear()
            self.engine.request_reset()

    def process_ready(self, send: Callable[[Message], None] | None = None) -> ReplicaOutput | None:
        """Persist, apply and publish one Ready; None when there is nothing to do.

        With `send`, a leader whose term and vote are already durable hands its messages
        (appends and heartbeats) to `send` BEFORE its own write, so followers write the new
        entries while it does (Raft allows it: the leader counts its own copy only once
        written, in `advance`); the output then holds no messages. The same as
        `start_ready`, `ReadyWork.write`, `finish_ready`, which a host uses to write on
        another thread (nothing may touch the replica between the first and the last)."""
        work = self.start_ready(send)
        if work is None:
            return None
        work.write()
        return self.finish_ready(work)

    def start_ready(self, send: Callable[[Message], None] | None = None) -> ReadyWork | None:
        """Take the next Ready and derive everything it must write (see `process_ready`)."""
        node = self.node
        if not node.has_ready():
            return None
        rd = node.ready()
        messages = rd.messages
        if send is not None and rd.role is Role.LEADER and _durable(rd, self._term_vote):
            for message in messages:
                send(message)
            messages = ()
        if self._own and (
            rd.role is not Role.LEADER or any(t != node.term for t, _ in self._own.values())
        ):
            self._drop_own()
        puts, deletes = self.log.writes(rd.entries)
        work = ReadyWork(rd, messages, puts, deletes, needs_sync(rd, self._term_vote), self)
        if rd.hard_state is not None:
            hs = rd.hard_state
            puts.append((META_RAFT_STATE, encode_hard_state(hs.term, hs.vote, hs.commit)))
        blocks: list[Block] = []
        raws: list[bytes] = []
        stream_ops: list[StreamOp] = []
        for entry in rd.committed:
            if is_batch(entry.data):
                mine = self._own.pop(entry.index, None)
                if mine is not None and mine[0] == entry.term:
                    work.own.append(mine[1])
                else:
                    got = self._decoded.pop(entry.index, None)
                    if got is None:  # not checked here yet (a restart, or a lost own batch)
                        got = decode_batch(entry.data)
                    blocks.extend(got[0])
                    raws.extend(got[1])
                puts.append(LogStorage.applied_write(entry, batch_header(entry.data)))
            elif (op := decode_stream_op(entry.data)) is not None:
                stream_ops.append(op)
            elif entry.data:
                record = decode_record(entry.data)
                assert record is not None
                puts.append(
                    (failure_key(record.transaction_id), codec.frame(encode_record(record)))
                )
        if work.own and blocks:
            raise AssertionError("a leader's own batches and others' in one apply")
        if stream_ops:
            puts.extend(apply_ops(self.storage, stream_ops))
        if rd.committed:
            puts.append((META_RAFT_APPLIED, keys.encode_u64(rd.committed[-1].index)))
        if blocks:
            work.applied = self.engine.apply_blocks(blocks, checked=True, raw_blocks=raws)
        return work

    def finish_ready(self, work: ReadyWork) -> ReplicaOutput:
        """After `work.write()`: publish what it wrote and advance Raft."""
        rd, engine, node = work.rd, self.engine, self.node
        for batch in work.own:
            engine.publish(batch)
        if work.applied is not None:
            engine.publish(work.applied)
        if rd.hard_state is not None:
            self._term_vote = (rd.hard_state.term, rd.hard_state.vote)
        self.log.stored(rd.entries)
        if rd.committed:
            self.applied = rd.committed[-1].index
            self._tips[self.applied] = (engine.durable_seq, engine.durable_hash())
            for index in [i for i in self._tips if i < self.applied]:
                del self._tips[index]
        node.advance(rd)
        return ReplicaOutput(
            work.messages,
            tuple((e.index, e.term) for e in rd.committed),
            rd.read_states,
            node.role,
            node.leader,
            node.term,
        )

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """This replica's view: role, term, log and journal positions, digest at its commit."""
        engine, node = self.engine, self.node
        durable = engine.durable_seq
        return {
            "node": self.id,
            "role": node.role.value,
            "term": node.term,
            "leader": node.leader,
            "commit_index": node.commit,
            "applied_index": self.applied,
            "last_index": node.last_index(),
            "sequence_no": durable,
            "digest": merkle.root_at(durable + 1, engine.get_node),
            "strand_id": engine.strand_id,
            "ready": self.ready_to_serve,
        }

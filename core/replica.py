"""One replica of a replicated ledger: core.raft's log carries the journal, applied to an Engine.

Theory of operation. Every non-empty Raft entry is one group commit made by the commit
coordinator: `encode_batch(blocks)` = msgpack [first_seq, prev_hash, last_hash, [block...]],
each block encoded exactly as the journal stores it (`B` keys). The Raft log lives in the
replica's own Storage (`L<index>` = framed [term, data]; `Mraft_state` = term, vote, commit;
`Mraft_applied` = the last applied log index), beside the engine's ledger keys.

`Replica` is the host of a `RaftNode`; it is driven, never drives: the cluster actor (or the
simulator) calls `tick`, `step`, `propose`, `read_index`, and then `process_ready`, which
carries out Raft's duties in order in ONE atomic storage write: the hard state, the new log
entries (and the deletion of any conflicting suffix), the blocks of newly committed entries
with all their derived state, and the applied index. The write is synced when it holds new
entries or a new term or vote (Raft's rule); a write that only applies committed entries
is not (they are durable in the log already, and are re-applied after a crash). It then
publishes the engine and hands back the messages to send. No threads, sockets or clocks:
time is ticks, randomness is the `random.Random` passed in.

Invariants:
- a follower appends an entry only if its blocks recompute their hashes and chain to the
  block before them in the log (`_accept`); the leader refuses a proposal that does not
  chain to its log's last block (`propose` raises StaleBatchError), which also fences off a
  stale coordinator;
- the engine's tip and `Mraft_applied` change in the same atomic write, so after a crash
  the replica re-applies exactly the committed entries it had not applied (or had applied
  in a write the crash lost);
- applied == commit after every `process_ready`, so a ReadState it returns can be served at
  once, and a block is visible on a replica only once it is committed (stored on a majority).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from core import codec, keys, merkle
from core.engine import Engine, Genesis
from core.errors import CorruptLedgerError, NotLeaderError, StaleBatchError
from core.ids import IdSource
from core.journal import Block, check_block
from core.raft import Entry, HardState, Message, RaftConfig, RaftNode, ReadState, Role
from core.storage import Storage

META_RAFT_STATE = b"Mraft_state"
META_RAFT_APPLIED = b"Mraft_applied"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    first_seq: int
    prev_hash: bytes
    last_hash: bytes
    count: int


def encode_batch(blocks: Sequence[Block]) -> bytes:
    """A Raft entry's data for a group commit of consecutive blocks."""
    if not blocks:
        raise ValueError("a batch holds at least one block")
    encoded = [codec.encode(b, check_names=False) for b in blocks]
    first = blocks[0]
    header = [first["blockAddress"]["sequenceNo"], first["previousBlockHash"]]
    return msgpack.packb(header + [blocks[-1]["blockHash"], encoded], use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise CorruptLedgerError(f"undecodable batch: {exc}") from exc
    if (
        not isinstance(body, list)
        or len(body) != 4
        or type(body[0]) is not int
        or not all(type(x) is bytes for x in body[1:3])
        or not isinstance(body[3], list)
        or not body[3]
    ):
        raise CorruptLedgerError("malformed batch")
    return body


def batch_header(data: bytes) -> BatchHeader:
    body = _unpack(data)
    return BatchHeader(body[0], body[1], body[2], len(body[3]))


def decode_batch(data: bytes) -> list[Block]:
    """The blocks of an entry, each checked to recompute its hashes and chain to the previous."""
    body = _unpack(data)
    blocks: list[Block] = []
    seq, tip = body[0] - 1, body[1]
    for raw in body[3]:
        if type(raw) is not bytes:
            raise CorruptLedgerError("malformed batch")
        try:
            block = codec.decode(raw)
        except ValueError as exc:
            raise CorruptLedgerError(f"undecodable block: {exc}") from exc
        problem = check_block(block)
        if problem is not None:
            raise CorruptLedgerError(problem)
        if block["blockAddress"]["sequenceNo"] != seq + 1 or block["previousBlockHash"] != tip:
            raise CorruptLedgerError(f"block {seq + 1} of the batch does not chain")
        seq, tip = seq + 1, block["blockHash"]
        blocks.append(block)
    if tip != body[2]:
        raise CorruptLedgerError("the batch's last hash does not match its last block")
    return blocks


class LogStorage:
    """The Raft log in a Storage (`L<index>` keys); terms are cached in memory."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._terms: list[int] = [0]  # _terms[i] = term of entry i
        end = keys.prefix_end(keys.LOG_PREFIX)
        for key, raw in storage.scan(keys.LOG_PREFIX, end):
            term, _ = self._decode(key, raw)
            if keys.log_index(key) != len(self._terms):
                raise CorruptLedgerError(f"the Raft log has a gap before {keys.log_index(key)}")
            self._terms.append(term)

    @staticmethod
    def _decode(key: bytes, raw: bytes) -> tuple[int, bytes]:
        try:
            term, data = msgpack.unpackb(codec.unframe(raw), raw=False)
        except Exception as exc:
            raise CorruptLedgerError(f"Raft log entry {keys.log_index(key)} is corrupted") from exc
        return int(term), bytes(data)

    def last_index(self) -> int:
        return len(self._terms) - 1

    def term(self, index: int) -> int:
        return self._terms[index]

    def entries(self, lo: int, hi: int) -> list[Entry]:
        out = []
        for key, raw in self._storage.scan(keys.log_key(lo), keys.log_key(hi)):
            term, data = self._decode(key, raw)
            out.append(Entry(term, keys.log_index(key), data))
        return out

    def writes(self, entries: Sequence[Entry]) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """The puts and deletes that store `entries` (dropping any suffix they replace)."""
        if not entries:
            return [], []
        first = entries[0].index
        deletes = [keys.log_key(i) for i in range(first, self.last_index() + 1)]
        puts = [
            (keys.log_key(e.index), codec.frame(msgpack.packb([e.term, e.data]))) for e in entries
        ]
        return puts, deletes

    def stored(self, entries: Sequence[Entry]) -> None:
        """Record that `writes(entries)` reached the storage."""
        if entries:
            del self._terms[entries[0].index :]
            self._terms.extend(e.term for e in entries)


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
        self.log = LogStorage(storage)
        raw_state = storage.get(META_RAFT_STATE)
        hard_state = None
        if raw_state is not None:
            term, vote, commit = msgpack.unpackb(codec.unframe(raw_state), raw=False)
            hard_state = HardState(term, vote, commit)
        self._term_vote = (0, None) if hard_state is None else (hard_state.term, hard_state.vote)
        raw_applied = storage.get(META_RAFT_APPLIED)
        self.applied = 0 if raw_applied is None else keys.decode_u64(raw_applied)
        # tips[i] = (sequence number, hash) of the last block once log entry i is applied
        self._tips: dict[int, tuple[int, bytes]] = {
            self.applied: (self.engine.durable_seq, self.engine.durable_hash())
        }
        tip = self._tips[self.applied]
        for entry in self.log.entries(self.applied + 1, self.log.last_index() + 1):
            if entry.data:
                header = batch_header(entry.data)
                tip = (header.first_seq + header.count - 1, header.last_hash)
            self._tips[entry.index] = tip
        self._checked: set[int] = set()  # log indexes whose blocks were fully checked
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
        """Append a batch (encode_batch) as the leader; returns its log index."""
        node = self.node
        if node.role is not Role.LEADER:
            raise NotLeaderError(f"node {self.id} does not lead", node.leader)
        header = batch_header(data)
        seq, tip_hash = self.log_tip()
        if header.first_seq != seq + 1 or header.prev_hash != tip_hash:
            raise StaleBatchError(
                f"the batch starts at block {header.first_seq}, the log ends at block {seq}"
            )
        index = node.propose(data)
        assert index is not None
        self._tips[index] = (header.first_seq + header.count - 1, header.last_hash)
        return index

    def _tip_at(self, index: int) -> tuple[int, bytes]:
        while index not in self._tips:
            index -= 1
            assert index >= self.applied, "every log index from the applied one has a tip"
        return self._tips[index]

    def _accept(self, after: int, entries: Sequence[Entry]) -> bool:
        """Raft's hook: refuse entries whose blocks do not recompute or do not chain."""
        seq, tip_hash = self._tip_at(after)
        tips: dict[int, tuple[int, bytes]] = {}
        for entry in entries:
            if entry.data:
                try:
                    blocks = decode_batch(entry.data)
                except CorruptLedgerError:
                    return False
                if blocks[0]["blockAddress"]["sequenceNo"] != seq + 1:
                    return False
                if blocks[0]["previousBlockHash"] != tip_hash:
                    return False
                seq, tip_hash = seq + len(blocks), blocks[-1]["blockHash"]
            tips[entry.index] = (seq, tip_hash)
        for index in [i for i in self._tips if i > after]:
            del self._tips[index]
            self._checked.discard(index)
        self._tips.update(tips)
        self._checked.update(e.index for e in entries if e.data)
        return True

    # ----------------------------------------------------------------- outputs
    def has_ready(self) -> bool:
        return self.node.has_ready()

    def process_ready(self) -> ReplicaOutput | None:
        """Persist, apply and publish one Ready; None when there is nothing to do."""
        node = self.node
        if not node.has_ready():
            return None
        rd = node.ready()
        puts, deletes = self.log.writes(rd.entries)
        # Raft needs new entries, term and vote durable before anything is sent; applying
        # committed entries need not be (they are durable in the log: a replica that loses
        # an unsynced apply re-applies them after a crash), nor does the commit index.
        sync = bool(rd.entries) or (
            rd.hard_state is not None
            and (rd.hard_state.term, rd.hard_state.vote) != self._term_vote
        )
        if rd.hard_state is not None:
            hs = rd.hard_state
            puts.append(
                (META_RAFT_STATE, codec.frame(msgpack.packb([hs.term, hs.vote, hs.commit])))
            )
        blocks: list[Block] = []
        for entry in rd.committed:  # checked by _accept, or here (leader, after restart)
            if entry.data and entry.index in self._checked:
                blocks.extend(_decode_unchecked(entry.data))
            elif entry.data:
                blocks.extend(decode_batch(entry.data))
        engine = self.engine
        if rd.committed:
            puts.append((META_RAFT_APPLIED, keys.encode_u64(rd.committed[-1].index)))
        if blocks:
            batch = engine.apply_blocks(blocks, checked=True)
            engine.write(batch, puts, deletes, sync=sync)
            engine.publish(batch)
        elif puts or deletes:
            self.storage.write(puts, deletes, sync=sync)
        if rd.hard_state is not None:
            self._term_vote = (rd.hard_state.term, rd.hard_state.vote)
        self.log.stored(rd.entries)
        if rd.committed:
            self.applied = rd.committed[-1].index
            self._tips[self.applied] = (engine.durable_seq, engine.durable_hash())
            for index in [i for i in self._tips if i < self.applied]:
                del self._tips[index]
            self._checked.difference_update(e.index for e in rd.committed)
        node.advance(rd)
        return ReplicaOutput(
            rd.messages,
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


def _decode_unchecked(data: bytes) -> list[Block]:
    """The blocks of an entry that `_accept` already checked (hashes are not recomputed)."""
    body = _unpack(data)
    return [codec.decode(raw) for raw in body[3]]

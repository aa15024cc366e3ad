"""Deterministic simulation of the replicated ledger: real Replicas, a real Ledger, a fake world.

Theory of operation. `LedgerSimulation(seed, options)` runs three (or five) Replicas
(core/replica.py), each over its own `MemoryStorage`, and one commit coordinator, a
`core.ledger.Ledger` over a MemoryStorage of its own, all in one thread. Time is logical (1 ms
steps, a Raft tick every `tick_ms`); every random choice flows from one `random.Random(seed)`,
so a seed replays exactly. No threads, sockets or clock reads; nothing sleeps.

The world: Raft messages travel as `core.wire` bytes through a simulated network that drops,
duplicates, delays (and so reorders) and partitions them, and can corrupt a block inside an
Append (the receiving replica must refuse it). A replica crashes by being dropped and is
rebuilt later from the same MemoryStorage: every write a Replica makes is synced, so nothing
else is lost. The coordinator may crash with a proposal in flight; it restarts from its storage.

The coordinator. The Ledger calls `write_batch(engine, batch)` synchronously, so that function
drives the world (bounded loops only): it waits for a leader that is ready to serve and has
nothing in flight (or, with `eager_propose`, for any leader: the replica must then fence off
batches that do not chain onto its log), catches the coordinator's engine up from that leader's
journal if it is behind (then the batch no longer chains: StaleBatchError, which the client
retries), proposes `encode_batch(batch.blocks)` and runs the world until the entry's fate is
known. The entry at (index, term) is committed once any replica applied that index with that
term; it is lost for good once some replica applied that index with another term, or a leader
of a later term is ready to serve without it. Committed: the coordinator writes and publishes
the batch (the acknowledgement). Lost: StaleBatchError (nothing of it is in the journal).
Unknown after `commit_wait_ms`: UnavailableError, and the client never reuses that id. A
catch-up first drops the prepared head (`Engine.apply_blocks` must derive from durable state).

The workload: a table of a few accounts with balances (indexed), transfers that read two
accounts and move an amount (also journaling a Transfer document), inserts, group commits of
several transactions in one batch (one Raft entry, several blocks), and transfers that run
another client's transaction between their reads and their commit (true OCC conflicts).
Clients retry OCC conflicts and stale batches under the same transaction id.

Checkers (raising `SimulationError`, whose message names the seed), after every step:
- at most one leader per term, ever;
- for every sequence number, every replica and the coordinator that hold that block hold the
  identical stored bytes (committed prefixes identical), and the coordinator holds no block
  that no replica has applied (nothing is acknowledged before it is committed);
- on a replica, the Raft commit index and the durable journal never go back, across crashes
  too; applied <= commit; committed Raft entries never change and (every `full_check_every_ms`)
  each is stored on a majority of the logs;
- with `strict_occ`: no OCC conflict unless something committed while the transaction ran.
At the end, after healing and quiet ticks: every replica and the coordinator have the same
digest, sequence number and derived state (documents, revisions, indexes, transaction ids);
each acknowledged transaction id is in the journal exactly once, failed ones never, unknown
ones at most once, no id twice, none that no client ran; balances are conserved, never
negative, and equal to the initial ones plus the journaled transfers (serializability), and
the balance index holds exactly one entry per account; each journal passes
`core.queries.verify_journal`.

CLI: `python -m chaos.ledger_sim --seeds 100 --profile lossy`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import msgpack

from chaos.network import SimNetwork
from chaos.sim import SimulationError
from core import codec, keys, queries, wire
from core.engine import CommitResult, Engine, Genesis, PreparedBatch
from core.errors import (
    NotLeaderError,
    OccConflictError,
    StaleBatchError,
    TransactionExpiredError,
    UnavailableError,
)
from core.ids import base62_id
from core.ledger import Ledger
from core.raft import Append, Entry, Message, RaftConfig, Role
from core.replica import LogStorage, Replica, encode_batch
from core.storage import MemoryStorage, Storage
from core.transaction import Transaction, value_key

__all__ = [
    "PROFILES",
    "LedgerSimOptions",
    "LedgerSimulation",
    "SimulationError",
    "TxRecord",
    "main",
    "run_seeds",
]

GENESIS_MS = 1_700_000_000_000
READER_ID = "R" * 22  # the id of the read-only transactions the final checks run
DERIVED_PREFIXES = (b"B", b"N", b"D", b"R", b"X", b"T")  # everything but metadata and Raft

# What became of a client's transaction (TxRecord.status).
PENDING = "pending"  # not resolved yet (only while its operation runs)
ACKED = "acked"  # the client was told it committed: in the journal exactly once
NOOP = "noop"  # it wrote nothing (a transfer from a too-small balance): never in the journal
FAILED = "failed"  # the client was told it did not commit: never in the journal
UNKNOWN = "unknown"  # the outcome was lost (timeout, coordinator crash): at most once


class _CoordinatorCrash(BaseException):
    """The coordinator died; raised through the Ledger, caught by `client_operation`."""


@dataclass(frozen=True, slots=True)
class LedgerSimOptions:
    nodes: int = 3
    operations: int = 40  # client operations with faults on, before the healing phase
    accounts: int = 4
    initial_balance: int = 100
    max_amount: int = 40
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    max_entries_per_message: int = 8
    max_inflight_entries: int = 32
    latency_ms: tuple[int, int] = (1, 8)
    drop_rate: float = 0.02
    duplicate_rate: float = 0.02
    corrupt_rate: float = 0.0  # per Append carrying entries: tamper with one block in it
    partition_rate: float = 0.001  # per ms: start a partition (if none)
    heal_rate: float = 0.01  # per ms: end the partition
    crash_rate: float = 0.0003  # per ms per replica
    restart_ms: tuple[int, int] = (50, 400)
    coordinator_crash_rate: float = 0.0  # per proposal: the coordinator dies before the outcome
    # propose to any leader at once (not only to a ready, idle one): the replica must fence
    # off batches that do not chain onto its log, whatever is in flight or uncommitted there
    eager_propose: bool = False
    # fail on an OCC conflict although nothing committed since the transaction began (off by
    # default: core/engine.py keeps the modification marks of a dropped batch, see the tests)
    strict_occ: bool = False
    think_ms: tuple[int, int] = (0, 20)  # simulated time between client operations
    insert_rate: float = 0.25
    group_rate: float = 0.1
    group_size: tuple[int, int] = (2, 4)
    interleave_rate: float = 0.2  # a transfer runs another operation between reads and commit
    retries: int = 5  # client retries after OCC conflicts and stale batches
    leader_wait_ms: int = 3000  # write_batch: wait this long for a leader that can take a batch
    commit_wait_ms: int = 3000  # write_batch: then this long for the proposal's fate
    full_check_every_ms: int = 250
    settle_ms: int = 20_000  # the healing phase must settle within this


PROFILES: dict[str, LedgerSimOptions] = {
    "default": LedgerSimOptions(),
    "lossy": LedgerSimOptions(drop_rate=0.25, duplicate_rate=0.1, latency_ms=(1, 30)),
    # partitions + crashes of replicas and of the coordinator; a short wait for a proposal's
    # fate, so that many outcomes are unknown and the coordinator must catch up
    "partitions": LedgerSimOptions(
        partition_rate=0.005,
        heal_rate=0.005,
        crash_rate=0.0015,
        coordinator_crash_rate=0.1,
        commit_wait_ms=150,
    ),
    "eager": LedgerSimOptions(
        eager_propose=True,
        partition_rate=0.005,
        heal_rate=0.005,
        crash_rate=0.0015,
        coordinator_crash_rate=0.05,
        commit_wait_ms=150,
    ),
    "five": LedgerSimOptions(nodes=5, partition_rate=0.003, crash_rate=0.001),
    "corrupt": LedgerSimOptions(corrupt_rate=0.1),
    "tight-flow": LedgerSimOptions(max_entries_per_message=1, max_inflight_entries=2),
}


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One client transaction (one id, however many attempts) and what the client was told."""

    txid: str
    kind: str  # setup, transfer, insert
    status: str


@dataclass(frozen=True, slots=True)
class Transfer:
    source: int
    target: int
    amount: int


class LedgerSimulation:
    """One seeded run. `run()` returns a summary or raises SimulationError.

    For hand-built scenarios: `start()` (elect, create the accounts), then `client_operation()`
    and `advance(ms)` with `faults` and `partition` set as wanted, then `finish()`.
    """

    def __init__(self, seed: int, options: LedgerSimOptions | None = None) -> None:
        self.seed = seed
        self.options = opts = options or LedgerSimOptions()
        if opts.nodes < 3 or opts.accounts < 2:
            raise ValueError("need at least three replicas and two accounts")
        self.rng = random.Random(seed)
        self.names = [f"n{i}" for i in range(opts.nodes)]
        self.config = RaftConfig(
            election_ticks=opts.election_ticks,
            heartbeat_ticks=opts.heartbeat_ticks,
            max_entries_per_message=opts.max_entries_per_message,
            max_inflight_entries=opts.max_inflight_entries,
        )
        self.genesis = Genesis(self._new_id(), self._new_id(), GENESIS_MS)
        self.now_ms = 0
        self.faults = False
        self.net: SimNetwork[bytes] = SimNetwork(  # carries wire.encode(message)
            self.rng,
            drop_rate=opts.drop_rate,
            duplicate_rate=opts.duplicate_rate,
            latency_ms=opts.latency_ms,
        )
        self.storages = {name: MemoryStorage() for name in self.names}
        self.replicas: dict[str, Replica | None] = dict.fromkeys(self.names)
        self.restart_at = dict.fromkeys(self.names, 0)
        # checker state
        self.leaders: dict[int, str] = {}  # term -> the leader of that term
        self.journal: list[bytes] = []  # sha256 of each applied block's stored bytes, by seq
        self.raft_terms: list[int] = [0]  # term of each committed Raft entry, by index
        self._compared = dict.fromkeys(self.names, -1)  # blocks compared with the journal
        self._high_seq = dict.fromkeys(self.names, 0)  # durable seq: never goes back
        self._high_commit = dict.fromkeys(self.names, 0)  # Raft commit: never goes back
        self._coordinator_compared = -1
        # workload
        self.account_ids: list[str] = []
        self.txs: dict[str, TxRecord] = {}
        self.final_digest = b""
        self._transfers_journaled = 0
        self.stats = dict.fromkeys(
            (
                "delivered",
                "dropped",
                "corrupted",
                "crashes",
                "coordinator_crashes",
                "proposals",
                "catch_ups",
                "caught_up_blocks",
                "retries",
                "refused",
                "conflicts",
                "phantom_conflicts",
            ),
            0,
        )
        for name in self.names:
            self._start(name)
        self.coordinator_storage = MemoryStorage()
        self.coordinator = self._new_coordinator()

    # ----------------------------------------------------------------- lifecycle
    def _new_id(self) -> str:
        return base62_id(self.rng.randbytes(16))

    def clock_ms(self) -> int:
        return GENESIS_MS + self.now_ms

    def _start(self, name: str) -> None:
        self.replicas[name] = Replica(
            name,
            self.names,
            self.storages[name],
            config=self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            genesis=self.genesis,
            now_ms=self.clock_ms(),
        )

    def _crash(self, name: str) -> None:
        self.replicas[name] = None
        self.restart_at[name] = self.now_ms + self.rng.randint(*self.options.restart_ms)
        self.stats["crashes"] += 1

    def _new_coordinator(self) -> Ledger:
        ids = random.Random(self.rng.getrandbits(64))
        return Ledger(
            self.coordinator_storage,
            clock_ms=self.clock_ms,
            random_bytes=ids.randbytes,
            genesis=self.genesis,
            write_batch=self._write_batch,
        )

    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r is not None]

    def replica(self, name: str) -> Replica:
        replica = self.replicas[name]
        if replica is None:
            raise KeyError(f"{name} is down")
        return replica

    # ----------------------------------------------------------------- the world
    def advance(self, ms: int) -> None:
        for _ in range(ms):
            self.step()

    def step(self) -> None:
        """One simulated millisecond: faults, restarts, deliveries, ticks, then the checkers."""
        self.now_ms += 1
        if self.faults:
            self._inject_faults()
        for name in self.names:
            if self.replicas[name] is None and self.now_ms >= self.restart_at[name]:
                self._start(name)
                self._drain(name)
        for to, payload in self.net.due(self.now_ms):
            replica = self.replicas[to]
            if replica is None:
                self.stats["dropped"] += 1
                continue
            replica.step(wire.decode(payload))
            self.stats["delivered"] += 1
            self._drain(to)
        if self.now_ms % self.options.tick_ms == 0:
            for name in self.names:
                replica = self.replicas[name]
                if replica is not None:
                    replica.tick()
                    self._drain(name)
        self._observe()

    def _drain(self, name: str) -> None:
        """The host's duty: process every Ready (persist, apply) and send its messages."""
        replica = self.replicas[name]
        while replica is not None:
            out = replica.process_ready()
            if out is None:
                return
            for message in out.messages:
                self._send(message)

    def _send(self, m: Message) -> None:
        if isinstance(m, Append) and m.entries and self.rng.random() < self.options.corrupt_rate:
            m = self._corrupt(m)
        self.net.send(self.now_ms, m.sender, m.to, wire.encode(m))

    def _corrupt(self, m: Append) -> Append:
        """Tamper with one block of the message, leaving its hashes as they were."""
        carrying = [i for i, e in enumerate(m.entries) if e.data]
        if not carrying:
            return m
        i = self.rng.choice(carrying)
        entry = m.entries[i]
        body = msgpack.unpackb(entry.data, raw=False)
        j = self.rng.randrange(len(body[3]))
        block = codec.decode(body[3][j])
        revisions = [r for r in block["revisions"] if "balance" in r.get("data", {})]
        if revisions:
            revisions[0]["data"]["balance"] += 1000
        else:
            block["transactionInfo"]["statements"].append(
                {"statement": "DROP TABLE Account", "startTime": None, "statementDigest": b""}
            )
        body[3][j] = codec.encode(block, check_names=False)
        data = msgpack.packb(body, use_bin_type=True)
        entries = list(m.entries)
        entries[i] = Entry(entry.term, entry.index, data)
        self.stats["corrupted"] += 1
        return dataclasses.replace(m, entries=tuple(entries))

    def _inject_faults(self) -> None:
        opts, rng = self.options, self.rng
        self.net.flip_partition(self.names, opts.partition_rate, opts.heal_rate)
        for name in self.names:
            if self.replicas[name] is not None and rng.random() < opts.crash_rate:
                self._crash(name)

    # ----------------------------------------------------------------- the coordinator
    def _write_batch(self, engine: Engine, batch: PreparedBatch) -> None:
        """Replicate one prepared batch, then write and publish it (see the module docstring)."""
        opts = self.options
        if (
            batch.generation != engine.generation
            or batch.first_seq != engine.durable_seq + 1
            or batch.blocks[0]["previousBlockHash"] != engine.durable_hash()
        ):
            engine.request_reset()
            raise StaleBatchError("the batch was prepared before the head was reset")
        eager = opts.eager_propose
        leader = self._await_leader(engine, self.now_ms + opts.leader_wait_ms, eager=eager)
        if leader is None:
            engine.request_reset()
            raise StaleBatchError("no leader could take the batch")  # nothing was proposed
        if (
            leader.ready_to_serve
            and leader.engine.durable_seq >= engine.durable_seq
            and self._catch_up(engine, leader)
        ):
            raise StaleBatchError("the coordinator was behind the journal")
        try:
            index = leader.propose(encode_batch(batch.blocks))
        except (NotLeaderError, StaleBatchError) as exc:
            if not eager:
                self._fail(f"{leader.id} refused a batch that chains onto its idle log: {exc}")
            engine.request_reset()  # the replica fenced off a batch that does not chain
            self.stats["refused"] += 1
            self.advance(opts.tick_ms)  # give the log time to settle before the client retries
            raise StaleBatchError(f"{leader.id} refused the batch: {exc}") from exc
        term = leader.node.term
        self.stats["proposals"] += 1
        self._drain(leader.id)
        crash_at = None
        if self.faults and self.rng.random() < opts.coordinator_crash_rate:
            crash_at = self.now_ms + self.rng.randint(0, 2 * opts.latency_ms[1])
        fate = self._await_fate(index, term, self.now_ms + opts.commit_wait_ms, crash_at)
        if fate:
            engine.write(batch)
            engine.publish(batch)
            return
        engine.request_reset()
        if fate is None:
            raise UnavailableError(f"the fate of log entry {index} (term {term}) is unknown")
        leader = self._ready_leader(engine, idle=False)
        if leader is not None:
            self._catch_up(engine, leader)
        raise StaleBatchError(f"log entry {index} of term {term} was not committed")

    def _ready_leader(self, engine: Engine, *, idle: bool) -> Replica | None:
        """The ready-to-serve leader of the highest term whose journal reaches the coordinator's.

        `idle`: its log holds no block beyond its journal (nothing in flight).
        """
        best: Replica | None = None
        for replica in self.live():
            if not replica.ready_to_serve or replica.engine.durable_seq < engine.durable_seq:
                continue
            if idle and replica.log_tip()[0] != replica.engine.durable_seq:
                continue
            if best is None or replica.node.term > best.node.term:
                best = replica
        return best

    def _any_leader(self) -> Replica | None:
        """The live leader of the highest term, ready to serve or not."""
        leaders = [r for r in self.live() if r.node.role is Role.LEADER]
        return max(leaders, key=lambda r: r.node.term, default=None)

    def _await_leader(
        self, engine: Engine, deadline_ms: int, *, eager: bool = False
    ) -> Replica | None:
        while True:
            leader = self._any_leader() if eager else self._ready_leader(engine, idle=True)
            if leader is not None or self.now_ms >= deadline_ms:
                return leader
            self.step()

    def _fate(self, index: int, term: int) -> bool | None:
        """Committed (True), never to be committed (False), or not known yet (None)."""
        for replica in self.live():
            if replica.applied >= index:
                return replica.node.term_at(index) == term
        for replica in self.live():
            if replica.ready_to_serve and replica.node.term > term:
                return False  # its no-op (of a later term) is committed before `index`
        return None

    def _await_fate(
        self, index: int, term: int, deadline_ms: int, crash_at: int | None
    ) -> bool | None:
        while True:
            fate = self._fate(index, term)
            if fate is not None or self.now_ms >= deadline_ms:
                return fate
            if crash_at is not None and self.now_ms >= crash_at:
                self.stats["coordinator_crashes"] += 1
                raise _CoordinatorCrash
            self.step()

    def _catch_up(self, engine: Engine, source: Replica) -> bool:
        """Apply the blocks of `source`'s journal that the coordinator lacks; True if any."""
        durable = engine.durable_seq
        if source.engine.get_node(0, durable) != engine.durable_hash():
            self._fail(f"the coordinator's block {durable} is not {source.id}'s")
        last = source.engine.durable_seq
        if last <= durable:
            return False
        self._reset_head(engine)
        blocks = [source.engine.read_block(seq) for seq in range(durable + 1, last + 1)]
        caught_up = engine.apply_blocks(blocks)
        engine.write(caught_up)
        engine.publish(caught_up)
        engine.request_reset()
        self.stats["catch_ups"] += 1
        self.stats["caught_up_blocks"] += len(blocks)
        return True

    def _reset_head(self, engine: Engine) -> None:
        """Drop prepared batches now: apply_blocks must derive from durable state only."""
        engine.request_reset()
        engine.prepare([], self.clock_ms())

    def _restart_coordinator(self) -> None:
        self.coordinator = self._new_coordinator()

    # ----------------------------------------------------------------- the workload
    def start(self) -> None:
        """Elect a leader and create the accounts (no faults)."""
        n, balance = self.options.accounts, self.options.initial_balance

        def setup(tx: Transaction) -> bool:
            tx.create_table("Account")
            tx.create_index("Account", "balance")
            tx.create_table("Transfer")
            tx.create_table("Event")
            ids = [tx.insert("Account", {"name": f"a{i}", "balance": balance}) for i in range(n)]
            self.account_ids = ids
            return True

        faults, self.faults = self.faults, False
        try:
            for _ in range(self.options.retries + 1):
                txid = self._execute("setup", setup)
                if self.txs[txid].status == ACKED or self._committed_after_all(txid):
                    return
            self._fail("the accounts could not be created")
        finally:
            self.faults = faults

    def _committed_after_all(self, txid: str) -> bool:
        """Whether a transaction whose outcome the client lost is in the journal after all."""
        engine = self.coordinator.engine
        leader = self._await_leader(engine, self.now_ms + self.options.settle_ms)
        if leader is None:
            self._fail("no leader could take a batch")
        self._catch_up(engine, leader)  # an idle ready leader has decided every proposal
        return engine.committed_seq(txid) is not None

    def client_operation(self) -> None:
        """One client request; a crash of the coordinator loses the outcome of what was pending."""
        try:
            self._operation(nested=False)
        except _CoordinatorCrash:
            for txid, record in self.txs.items():
                if record.status == PENDING:
                    self.txs[txid] = dataclasses.replace(record, status=UNKNOWN)
            self._restart_coordinator()
        self._check_coordinator()

    def _operation(self, *, nested: bool) -> None:
        opts = self.options
        draw = self.rng.random()
        if draw < opts.group_rate:
            self._group()
        elif draw < opts.group_rate + opts.insert_rate:
            self._execute("insert", self._insert_fn())
        else:
            interleave = not nested and self.rng.random() < opts.interleave_rate
            self._execute("transfer", self._transfer_fn(self._pick_transfer(), interleave))

    def _pick_transfer(self) -> Transfer:
        source, target = self.rng.sample(range(self.options.accounts), 2)
        return Transfer(source, target, self.rng.randint(1, self.options.max_amount))

    def _insert_fn(self) -> Callable[[Transaction], bool]:
        event = {"n": len(self.txs), "at": self.now_ms}

        def insert(tx: Transaction) -> bool:
            tx.insert("Event", event)
            return True

        return insert

    def _transfer_fn(self, move: Transfer, interleave: bool) -> Callable[[Transaction], bool]:
        pending = [interleave]

        def transfer(tx: Transaction) -> bool:
            source_id, target_id = self.account_ids[move.source], self.account_ids[move.target]
            source, target = tx.get("Account", source_id), tx.get("Account", target_id)
            if source is None or target is None:
                self._fail("an account document is missing")
            if pending[0]:  # another client commits between our reads and our commit
                pending[0] = False
                self._operation(nested=True)
            if source["balance"] < move.amount:
                return False
            tx.update("Account", source_id, {**source, "balance": source["balance"] - move.amount})
            tx.update("Account", target_id, {**target, "balance": target["balance"] + move.amount})
            tx.insert("Transfer", {"from": move.source, "to": move.target, "amount": move.amount})
            return True

        return transfer

    def _execute(self, kind: str, fn: Callable[[Transaction], bool]) -> str:
        """Run fn through the coordinator with one transaction id, retrying definite failures."""
        txid = self._register(kind)
        for _ in range(self.options.retries + 1):
            engine = self.coordinator.engine
            durable = engine.durable_seq
            try:
                wrote = self.coordinator.execute_lambda(fn, 0, transaction_id=txid)
            except (StaleBatchError, TransactionExpiredError):
                self.stats["retries"] += 1
                continue
            except OccConflictError as exc:
                self.stats["retries"] += 1
                self.stats["conflicts"] += 1
                if engine is self.coordinator.engine and engine.durable_seq == durable:
                    # nothing committed since the transaction began: nothing it read changed
                    self.stats["phantom_conflicts"] += 1
                    if self.options.strict_occ:
                        self._fail(f"an OCC conflict that no commit explains: {exc}")
                continue
            except UnavailableError:
                self._resolve(txid, UNKNOWN)
                return txid
            self._resolve(txid, ACKED if wrote else NOOP)
            return txid
        self._resolve(txid, FAILED)
        return txid

    def _group(self) -> None:
        """Several transactions prepared as one batch: one Raft entry holding several blocks."""
        engine = self.coordinator.engine
        count = self.rng.randint(*self.options.group_size)
        txs: list[Transaction] = []
        for _ in range(count):
            kind = "insert" if self.rng.random() < 0.5 else "transfer"
            tx = engine.begin(self.clock_ms(), self.clock_ms, self._register(kind))
            fn = (
                self._insert_fn()
                if kind == "insert"
                else self._transfer_fn(self._pick_transfer(), False)
            )
            fn(tx)
            txs.append(tx)
        batch, outcomes = engine.prepare(txs, self.clock_ms())
        written = [
            o.transaction_id
            for o in outcomes
            if isinstance(o, CommitResult) and o.sequence_no is not None
        ]
        for tx, outcome in zip(txs, outcomes, strict=True):
            if isinstance(outcome, CommitResult) and outcome.sequence_no is None:
                self._resolve(tx.transaction_id, NOOP)
            elif not isinstance(outcome, CommitResult):
                self._resolve(tx.transaction_id, FAILED)
        if batch.empty:
            return
        status = ACKED
        try:
            self._write_batch(engine, batch)
        except StaleBatchError:
            status = FAILED
        except UnavailableError:
            status = UNKNOWN
        for txid in written:
            self._resolve(txid, status)

    def _register(self, kind: str) -> str:
        txid = self._new_id()
        self.txs[txid] = TxRecord(txid, kind, PENDING)
        return txid

    def _resolve(self, txid: str, status: str) -> None:
        self.txs[txid] = dataclasses.replace(self.txs[txid], status=status)

    # ----------------------------------------------------------------- checkers
    def _fail(self, what: str) -> NoReturn:
        raise SimulationError(f"seed {self.seed}, t={self.now_ms} ms: {what}")

    def _observe(self) -> None:
        for name in self.names:
            replica = self.replicas[name]
            if replica is None:
                continue
            node = replica.node
            if node.role is Role.LEADER:
                other = self.leaders.setdefault(node.term, name)
                if other != name:
                    self._fail(f"two leaders in term {node.term}: {other} and {name}")
            if node.commit < self._high_commit[name]:
                self._fail(f"{name}'s commit index went back to {node.commit}")
            self._high_commit[name] = node.commit
            if replica.applied > node.commit:
                self._fail(f"{name} applied log entry {replica.applied} beyond its commit")
            lo = min(len(self.raft_terms), max(1, node.commit - 8))
            self._check_raft(name, replica, lo)
            seq = replica.engine.durable_seq
            if seq < self._high_seq[name]:
                self._fail(f"{name} lost committed blocks: its journal ends at {seq}")
            self._high_seq[name] = seq
            self._compare_blocks(name, replica.storage, self._compared[name] + 1, seq)
            self._compared[name] = seq
        self._check_coordinator()
        if self.now_ms % self.options.full_check_every_ms == 0:
            self.check()

    def _check_raft(self, name: str, replica: Replica, lo: int) -> None:
        """The node's committed entries from `lo` match the cluster's committed Raft log."""
        terms, node = self.raft_terms, replica.node
        for index in range(lo, node.commit + 1):
            term = node.term_at(index)
            if index == len(terms):
                terms.append(term)
            elif terms[index] != term:
                self._fail(
                    f"{name}'s committed Raft entry {index} has term {term}, not {terms[index]}"
                )

    def _compare_blocks(
        self, who: str, storage: Storage, lo: int, hi: int, *, learn: bool = True
    ) -> None:
        """Blocks lo..hi of `who` are the cluster's; with `learn`, new ones extend the journal."""
        for seq in range(lo, hi + 1):
            raw = storage.get(keys.block_key(seq))
            if raw is None:
                self._fail(f"{who} lost block {seq}")
            digest = hashlib.sha256(raw).digest()
            if seq < len(self.journal):
                if self.journal[seq] != digest:
                    self._fail(f"{who}'s block {seq} differs from the cluster's")
            elif not learn:
                self._fail(f"{who} holds block {seq}, which no replica has applied")
            else:
                self.journal.append(digest)

    def _check_coordinator(self) -> None:
        engine = self.coordinator.engine
        durable = engine.durable_seq
        lo = self._coordinator_compared + 1
        self._compare_blocks("the coordinator", self.coordinator_storage, lo, durable, learn=False)
        self._coordinator_compared = max(durable, self._coordinator_compared)

    def check(self) -> None:
        """Every invariant over whole journals and logs (the per-step checks look at the new)."""
        for name in self.names:
            replica = self.replicas[name]
            self._compare_blocks(name, self.storages[name], 0, self._high_seq[name])
            if replica is not None:
                self._check_raft(name, replica, 1)
        last = self._coordinator_compared
        self._compare_blocks("the coordinator", self.coordinator_storage, 0, last, learn=False)
        logs = []
        for name in self.names:
            replica = self.replicas[name]
            logs.append(replica.log if replica is not None else LogStorage(self.storages[name]))
        majority = len(self.names) // 2 + 1
        for index in range(1, len(self.raft_terms)):
            term = self.raft_terms[index]
            stored = sum(1 for log in logs if index <= log.last_index() and log.term(index) == term)
            if stored < majority:
                self._fail(f"committed Raft entry {index} is stored on only {stored} logs")

    # ----------------------------------------------------------------- the end
    def finish(self) -> dict[str, int]:
        """Heal everything, run quiet ticks until the cluster settles, then the final checks."""
        self.faults = False
        self.net.partition = None
        for name in self.names:
            if self.replicas[name] is None:
                self.restart_at[name] = self.now_ms
        for _ in range(self.options.settle_ms):
            self.step()
            if self._settled():
                break
        else:
            self._fail("the cluster did not settle after the faults ended")
        leader = self._ready_leader(self.coordinator.engine, idle=True)
        if leader is None:
            self._fail("no leader after settling")
        self._catch_up(self.coordinator.engine, leader)
        self._check_coordinator()
        self.check()
        self._check_final(leader)
        return self.summary()

    def _settled(self) -> bool:
        replicas = self.live()
        if len(replicas) != len(self.names):
            return False
        leaders = [r for r in replicas if r.node.role is Role.LEADER]
        if len(leaders) != 1 or not leaders[0].ready_to_serve:
            return False
        node = leaders[0].node
        return node.commit == node.last_index() and all(
            r.applied == node.commit
            and r.node.commit == node.commit
            and r.node.last_index() == node.last_index()
            for r in replicas
        )

    def _check_final(self, leader: Replica) -> None:
        coordinator = self.coordinator
        engines = [(r.id, r.engine) for r in self.live()] + [
            ("the coordinator", coordinator.engine)
        ]
        status = leader.status()
        seq, digest = status["sequence_no"], status["digest"]
        for replica in self.live():
            mine = replica.status()
            if (mine["sequence_no"], mine["digest"]) != (seq, digest):
                self._fail(
                    f"{replica.id} ends at block {mine['sequence_no']}, {leader.id} at {seq}"
                )
        tip = coordinator.get_digest()
        if (tip["digestTipAddress"]["sequenceNo"], tip["digest"]) != (seq, digest):
            self._fail(f"the coordinator ends at block {tip['digestTipAddress']['sequenceNo']}")
        self.final_digest = digest
        derived = {name: _derived_state(engine) for name, engine in engines}
        for name, state in derived.items():
            if state != derived[leader.id]:
                self._fail(f"{name}'s derived state differs from {leader.id}'s")
        for name, engine in engines:
            report = queries.verify_journal(engine)
            if not report.ok:
                self._fail(f"{name}'s journal fails verification: {report}")
        self._check_transactions(leader.engine, engines)
        for name, engine in engines:
            self._check_balances(name, engine)

    def _check_transactions(self, journal: Engine, engines: Sequence[tuple[str, Engine]]) -> None:
        counts: dict[str, int] = {}
        end = keys.block_key(journal.durable_seq + 1)
        for _, raw in journal.storage.scan(keys.block_key(1), end):
            txid = codec.decode(raw)["transactionId"]
            counts[txid] = counts.get(txid, 0) + 1
        for txid, count in counts.items():
            if txid not in self.txs:
                self._fail(f"transaction {txid} is in the journal, but no client ran it")
            if count > 1:
                self._fail(f"transaction {txid} is in the journal {count} times")
        for record in self.txs.values():
            count = counts.get(record.txid, 0)
            if record.status == PENDING:
                self._fail(f"transaction {record.txid} was never resolved")
            if record.status == ACKED and count != 1:
                self._fail(
                    f"acknowledged transaction {record.txid} is in the journal {count} times"
                )
            if record.status in (FAILED, NOOP) and count:
                self._fail(f"{record.status} transaction {record.txid} is in the journal")
            if record.status == ACKED:
                for name, engine in engines:
                    if engine.committed_seq(record.txid) is None:
                        self._fail(f"{name} does not know acknowledged transaction {record.txid}")
        transfers = sum(1 for t, n in counts.items() if self.txs[t].kind == "transfer" and n)
        self._transfers_journaled = transfers

    def _check_balances(self, name: str, engine: Engine) -> None:
        tx = engine.begin(self.clock_ms(), self.clock_ms, READER_ID)
        accounts = {doc_id: data["balance"] for doc_id, data in tx.find("Account")}
        transfers = [data for _, data in tx.find("Transfer")]
        initial = self.options.initial_balance
        expected = dict.fromkeys(self.account_ids, initial)
        for t in transfers:
            expected[self.account_ids[t["from"]]] -= t["amount"]
            expected[self.account_ids[t["to"]]] += t["amount"]
        if sum(accounts.values()) != initial * len(self.account_ids):
            self._fail(f"{name}: the balances sum to {sum(accounts.values())}")
        if any(b < 0 for b in accounts.values()):
            self._fail(f"{name}: a balance went negative: {sorted(accounts.values())}")
        if accounts != expected:
            self._fail(f"{name}: the balances are not the journaled transfers' result")
        if len(transfers) != self._transfers_journaled:
            self._fail(
                f"{name}: {len(transfers)} Transfer documents for {self._transfers_journaled}"
            )
        index = engine.catalog.by_name("Account").index_on("balance")
        assert index is not None
        prefix = keys.index_prefix(index.index_id)
        entries = sorted(k for k, _ in engine.storage.scan(prefix, keys.prefix_end(prefix)))
        wanted = [keys.index_key(index.index_id, value_key(b), d) for d, b in accounts.items()]
        if entries != sorted(wanted):
            self._fail(f"{name}: the balance index does not match the accounts")

    # ----------------------------------------------------------------- a whole run
    def run(self) -> dict[str, int]:
        try:
            self.start()
            self.faults = True
            for _ in range(self.options.operations):
                self.advance(self.rng.randint(*self.options.think_ms))
                self.client_operation()
            return self.finish()
        except SimulationError:
            raise
        except Exception as exc:
            self._fail(f"unexpected {type(exc).__name__}: {exc}")

    def summary(self) -> dict[str, int]:
        statuses = [r.status for r in self.txs.values()]
        return {
            "seed": self.seed,
            "blocks": self.coordinator.engine.durable_seq,
            "acknowledged": statuses.count(ACKED),
            "unknown": statuses.count(UNKNOWN),
            "failed": statuses.count(FAILED),
            "noop": statuses.count(NOOP),
            "terms": len(self.leaders),
            "sim_ms": self.now_ms,
            **self.stats,
            "dropped": self.stats["dropped"] + self.net.dropped,
        }


def _derived_state(engine: Engine) -> str:
    """A digest of the journal and everything derived from it (not metadata, not Raft)."""
    digest = hashlib.sha256()
    for prefix in DERIVED_PREFIXES:
        for key, value in engine.storage.scan(prefix, keys.prefix_end(prefix)):
            digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()


def run_seeds(
    seeds: Iterable[int],
    options: LedgerSimOptions | None = None,
    on_result: Callable[[dict[str, int]], None] | None = None,
) -> list[dict[str, int]]:
    """Run many seeds; raises on the first failure (its message names the seed)."""
    results = []
    for seed in seeds:
        result = LedgerSimulation(seed, options).run()
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--keep-going", action="store_true", help="run every seed, then report")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every seed's summary")
    args = parser.parse_args(argv)
    options = PROFILES[args.profile]
    totals: dict[str, int] = {}
    failures: list[str] = []
    began = time.perf_counter()
    for seed in range(args.start, args.start + args.seeds):
        try:
            result = LedgerSimulation(seed, options).run()
        except SimulationError as exc:
            print(f"FAIL {exc}", flush=True)
            failures.append(str(exc))
            if not args.keep_going:
                break
            continue
        if args.verbose:
            print(result, flush=True)
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    totals.pop("seed", None)
    elapsed = time.perf_counter() - began
    print(
        f"profile {args.profile}: seeds {args.start}..{args.start + args.seeds - 1}, "
        f"{len(failures)} failed, {elapsed:.1f} s"
    )
    print("totals:", totals)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

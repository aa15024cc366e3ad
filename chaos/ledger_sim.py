"""Deterministic simulation of the replicated ledger: the real commit path in a fake world.

Theory of operation. `LedgerSimulation(seed, options)` runs three (or five) nodes, each the
pair a cluster node hosts: a `core.replica.Replica` over its own disk and the
`core.commit.CommitMachine` beside it, driven exactly as cluster/node.py drives them (after
every input: `process_ready`, send its messages, `observe`, carry out the machine's duties).
Clients (chaos/sim_clients.py) send requests encoded by `core.client_wire`; Raft messages
travel as `core.wire` bytes; both cross a simulated network (chaos/network.py) that drops,
duplicates, delays (and so reorders) them, partitions the nodes (both ways, or one way), and
can tamper with a block inside an Append (the receiving replica must refuse it). Worker jobs
run the real `core.transaction.Transaction` against the node's engine after a simulated
delay; a "poison" job crashes its worker. A node crashes by power cut: its disk
(chaos/disk.py) loses every write that was not synced, but for a random prefix, and the node
restarts from what is left. A leader may be cut off right after it proposes a batch
(deposed mid-batch). Time is logical (1 ms steps, a Raft tick every `tick_ms`); every random
choice flows from one `random.Random(seed)`, so a seed replays exactly. No threads, sockets,
clock reads or sleeps. There is no second copy of any commit or recovery logic here: the
world only delivers, delays, loses and crashes.

Checkers (raising `SimulationError`, whose message names the seed), after every step:
- at most one leader per term, ever;
- for every sequence number, every replica that holds that block holds the identical
  stored bytes (a replica's journal is always a prefix of the cluster's);
- while a node is up, its Raft commit index and journal never go back; applied <= commit;
  committed Raft entries never change and (every `full_check_every_ms`) each is stored on a
  majority of the logs.
At the end, after healing and quiet time until every client finished: every replica has the
same digest, sequence number and derived state (documents, revisions, indexes, transaction
ids); each transaction a client was told committed is in the journal exactly once, one it
was told failed never, one whose outcome it could not learn at most once, no id twice, none
that no client ran; balances are conserved, never negative, and equal to the initial ones
plus the journaled transfers (serializability); the balance index holds exactly one entry per
account; each journal passes `core.queries.verify_journal`.

CLI: `python -m chaos.ledger_sim --seeds 100 --profile lossy`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import heapq
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import msgpack

from chaos.disk import PowerCutStorage
from chaos.network import SimNetwork
from chaos.sim import SimulationError
from chaos.sim_clients import (
    ACKED,
    FAILED,
    NOOP,
    PENDING,
    TRANSFER,
    UNKNOWN,
    Accounts,
    SimClient,
    TxRecord,
    payload,
    pick_operation,
    run_job,
)
from core import client_wire, codec, keys, queries, wire
from core.commit import CommitConfig, CommitMachine
from core.engine import Engine, Genesis
from core.ids import base62_id
from core.raft import Append, Entry, Message, RaftConfig, Role
from core.raftlog import LogStorage
from core.replica import Replica
from core.requests import Dispatch, Done, Job, Reply, Request, Serve
from core.storage import Storage
from core.transaction import value_key

__all__ = [
    "PROFILES",
    "LedgerSimOptions",
    "LedgerSimulation",
    "SimulationError",
    "main",
    "run_seeds",
]

GENESIS_MS = 1_700_000_000_000
READER_ID = "R" * 22  # the id of the read-only transactions the final checks run
DERIVED_PREFIXES = (b"B", b"N", b"D", b"R", b"X", b"T", b"F")  # not metadata, not the log


@dataclass(frozen=True, slots=True)
class LedgerSimOptions:
    nodes: int = 3
    clients: int = 3
    operations: int = 40  # client operations started with faults on, before the healing phase
    accounts: int = 4
    initial_balance: int = 100
    max_amount: int = 40
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    max_entries_per_message: int = 8
    max_inflight_entries: int = 32
    max_batch_transactions: int = 8
    max_inflight_batches: int = 2
    latency_ms: tuple[int, int] = (1, 8)
    drop_rate: float = 0.02
    duplicate_rate: float = 0.02
    corrupt_rate: float = 0.0  # per Append carrying entries: tamper with one block in it
    partition_rate: float = 0.001  # per ms: start a two-way partition (if none)
    one_way_rate: float = 0.0  # per ms: block every link out of (or into) one node
    heal_rate: float = 0.01  # per ms: end the partition / the one-way block
    crash_rate: float = 0.0003  # per ms per node: a power cut
    restart_ms: tuple[int, int] = (50, 400)
    depose_rate: float = 0.0  # per proposal: cut the leader off right after it
    worker_ms: tuple[int, int] = (0, 3)
    think_ms: tuple[int, int] = (0, 20)
    client_timeout_ms: int = 250
    max_sends: int = 12
    insert_rate: float = 0.2
    session_rate: float = 0.15
    poison_rate: float = 0.0
    full_check_every_ms: int = 250
    settle_ms: int = 30_000  # the healing phase must settle within this


PROFILES: dict[str, LedgerSimOptions] = {
    "default": LedgerSimOptions(),
    "lossy": LedgerSimOptions(drop_rate=0.25, duplicate_rate=0.1, latency_ms=(1, 30)),
    # late duplicates of old appends, and leaders that die: a follower that truncated what
    # it had acknowledged would lose a committed entry
    "echo": LedgerSimOptions(
        duplicate_rate=0.4, latency_ms=(1, 60), crash_rate=0.002, restart_ms=(20, 100)
    ),
    "partitions": LedgerSimOptions(
        partition_rate=0.004, one_way_rate=0.002, heal_rate=0.005, crash_rate=0.0015
    ),
    # patient clients still wait for the deposed leader's answer when it learns its fate
    "deposed": LedgerSimOptions(depose_rate=0.15, heal_rate=0.01, client_timeout_ms=3000),
    # hasty ones have long resent elsewhere
    "deposed-hasty": LedgerSimOptions(depose_rate=0.15, heal_rate=0.004, client_timeout_ms=120),
    "crashes": LedgerSimOptions(crash_rate=0.004, restart_ms=(20, 200), poison_rate=0.05),
    "five": LedgerSimOptions(nodes=5, partition_rate=0.003, crash_rate=0.001),
    "corrupt": LedgerSimOptions(corrupt_rate=0.1),
    "sessions": LedgerSimOptions(session_rate=0.7, drop_rate=0.05, partition_rate=0.003),
    "tight-flow": LedgerSimOptions(max_entries_per_message=1, max_inflight_entries=2),
}


@dataclass(slots=True)
class _Node:
    replica: Replica
    machine: CommitMachine
    incarnation: int


class LedgerSimulation:
    """One seeded run. `run()` returns a summary or raises SimulationError.

    For hand-built scenarios: `start()` (elect, create the accounts), then `advance(ms)` with
    `faults` and `net.partition` set as wanted (clients start operations while `operations`
    remain), then `finish()`.
    """

    def __init__(self, seed: int, options: LedgerSimOptions | None = None) -> None:
        self.seed = seed
        self.options = opts = options or LedgerSimOptions()
        if opts.nodes < 3 or opts.accounts < 2:
            raise ValueError("need at least three nodes and two accounts")
        self.rng = random.Random(seed)
        self.names = [f"n{i}" for i in range(opts.nodes)]
        self.raft_config = RaftConfig(
            election_ticks=opts.election_ticks,
            heartbeat_ticks=opts.heartbeat_ticks,
            max_entries_per_message=opts.max_entries_per_message,
            max_inflight_entries=opts.max_inflight_entries,
        )
        self.commit_config = CommitConfig(
            max_batch_transactions=opts.max_batch_transactions,
            max_inflight_batches=opts.max_inflight_batches,
        )
        self.genesis = Genesis(self._new_id(), self._new_id(), GENESIS_MS)
        self.now_ms = 0
        self.faults = False
        self.operations_left = 0
        self.net: SimNetwork[tuple[str, bytes, int]] = SimNetwork(  # (kind, bytes, client)
            self.rng,
            drop_rate=opts.drop_rate,
            duplicate_rate=opts.duplicate_rate,
            latency_ms=opts.latency_ms,
        )
        self.disks = {name: PowerCutStorage() for name in self.names}
        self.nodes: dict[str, _Node | None] = dict.fromkeys(self.names)
        self.restart_at = dict.fromkeys(self.names, 0)
        self._incarnations = 0
        self._jobs: list[
            tuple[int, int, str, int, Job]
        ] = []  # (due, order, node, incarnation, job)
        self._job_order = 0
        self._log_tips = dict.fromkeys(self.names, 0)
        self.accounts = Accounts([])
        self.clients = [
            SimClient(
                f"c{i}",
                self.names,
                self,
                timeout_ms=opts.client_timeout_ms,
                max_sends=opts.max_sends,
            )
            for i in range(opts.clients)
        ]
        self._by_client = {c.name: c for c in self.clients}
        # checker state
        self.leaders: dict[int, str] = {}  # term -> the leader of that term
        self.journal: list[bytes] = []  # sha256 of each applied block's stored bytes, by seq
        self.raft_terms: list[int] = [0]  # term of each committed Raft entry, by index
        self._compared = dict.fromkeys(self.names, -1)
        self._high_seq = dict.fromkeys(self.names, 0)
        self._high_commit = dict.fromkeys(self.names, 0)
        self.txs: dict[str, TxRecord] = {}
        self.final_digest = b""
        self._transfers_journaled = 0
        self.stats = dict.fromkeys(
            ("delivered", "dropped", "corrupted", "crashes", "deposed", "jobs", "replies",
             "one_way"),
            0,
        )  # fmt: skip
        for name in self.names:
            self._start(name)

    # ----------------------------------------------------------------- lifecycle
    def _new_id(self) -> str:
        return base62_id(self.rng.randbytes(16))

    def clock_ms(self) -> int:
        return GENESIS_MS + self.now_ms

    def _start(self, name: str) -> None:
        replica = Replica(
            name,
            self.names,
            self.disks[name],
            config=self.raft_config,
            rng=random.Random(self.rng.getrandbits(64)),
            genesis=self.genesis,
            now_ms=self.clock_ms(),
        )
        machine = CommitMachine(
            replica,
            rng=random.Random(self.rng.getrandbits(64)),
            now_ms=self.clock_ms(),
            config=self.commit_config,
        )
        self._incarnations += 1
        self.nodes[name] = _Node(replica, machine, self._incarnations)
        self._high_seq[name] = replica.engine.durable_seq
        self._high_commit[name] = replica.node.commit
        self._log_tips[name] = replica.node.last_index()

    def _crash(self, name: str) -> None:
        disk = self.disks[name]
        disk.power_cut(keep=self.rng.randint(0, disk.unsynced))
        self.nodes[name] = None
        self.restart_at[name] = self.now_ms + self.rng.randint(*self.options.restart_ms)
        self.stats["crashes"] += 1

    def live(self) -> list[Replica]:
        return [n.replica for n in self.nodes.values() if n is not None]

    def replica(self, name: str) -> Replica:
        node = self.nodes[name]
        if node is None:
            raise KeyError(f"{name} is down")
        return node.replica

    # ----------------------------------------------------------------- what clients call
    def register(self, txid: str, kind: str) -> None:
        if txid not in self.txs:
            self.txs[txid] = TxRecord(txid, kind, PENDING)

    def resolve(self, txid: str, status: str) -> None:
        self.txs[txid] = dataclasses.replace(self.txs[txid], status=status)

    def send_request(self, client: str, node: str, request_id: int, request: Request) -> None:
        data = client_wire.encode_request(request_id, request)
        self.net.send(self.now_ms, client, node, ("req", data, int(client[1:])))

    # ----------------------------------------------------------------- the world
    def advance(self, ms: int) -> None:
        for _ in range(ms):
            self.step()

    def step(self) -> None:
        """One simulated millisecond: faults, restarts, deliveries, jobs, ticks, clients, then
        the checkers."""
        self.now_ms += 1
        if self.faults:
            self._inject_faults()
        for name in self.names:
            if self.nodes[name] is None and self.now_ms >= self.restart_at[name]:
                self._start(name)
                self._drain(name)
        for to, (kind, data, client) in self.net.due(self.now_ms):
            self._deliver(to, kind, data, client)
        while self._jobs and self._jobs[0][0] <= self.now_ms:
            _, _, name, incarnation, job = heapq.heappop(self._jobs)
            self._run(name, incarnation, job)
        if self.now_ms % self.options.tick_ms == 0:
            for name in self.names:
                node = self.nodes[name]
                if node is not None:
                    node.replica.tick()
                    due = node.machine.next_due_ms()
                    if due is not None and due <= self.clock_ms():
                        node.machine.tick(self.clock_ms())
                    self._drain(name)
        self._drive_clients()
        self._observe()

    def _deliver(self, to: str, kind: str, data: bytes, client: int) -> None:
        if kind == "out":
            request_id, outcome = client_wire.decode_outcome(data)
            self._by_client[to].on_outcome(request_id, outcome)
            return
        node = self.nodes[to]
        if node is None:
            self.stats["dropped"] += 1
            return
        self.stats["delivered"] += 1
        if kind == "raft":
            node.replica.step(wire.decode(data))
        else:
            request_id, request, _ = client_wire.decode_request(data)
            node.machine.submit(client, request_id, request, self.clock_ms())
        self._drain(to)

    def _drain(self, name: str) -> None:
        """The host's duty, as cluster/node.py does it: process every Ready (persist,
        apply), send its messages, tell the machine, then carry out the machine's duties."""
        node = self.nodes[name]
        assert node is not None
        for _ in range(10_000):
            out = node.replica.process_ready(self._send)
            if out is not None:
                for message in out.messages:
                    self._send(message)
                node.machine.observe(out)
            duties = node.machine.take_duties()
            for duty in duties:
                self._carry_out(name, node, duty)
            if out is None and not duties and not node.replica.has_ready():
                break
        else:
            self._fail(f"{name}'s host loop did not settle")
        self._maybe_depose(name, node)

    def _carry_out(self, name: str, node: _Node, duty: Dispatch | Reply | Serve) -> None:
        if isinstance(duty, Dispatch):
            self._job_order += 1
            due = self.now_ms + self.rng.randint(*self.options.worker_ms)
            heapq.heappush(self._jobs, (due, self._job_order, name, node.incarnation, duty.job))
            self.stats["jobs"] += 1
        elif isinstance(duty, Reply):
            self.stats["replies"] += 1
            client = self.clients[duty.client].name
            data = client_wire.encode_outcome(duty.request_id, duty.outcome)
            self.net.send(self.now_ms, name, client, ("out", data, duty.client))
        else:  # the simulated clients make no reads; answer so nothing waits
            data = client_wire.encode_outcome(duty.request_id, Done())
            self.net.send(
                self.now_ms, name, self.clients[duty.client].name, ("out", data, duty.client)
            )

    def _run(self, name: str, incarnation: int, job: Job) -> None:
        """A worker finishes a job on node `name` (if that incarnation still lives)."""
        node = self.nodes[name]
        if node is None or node.incarnation != incarnation:
            return
        ids = random.Random(self.rng.getrandbits(64))
        result = run_job(
            node.replica.engine,
            job,
            self.accounts,
            self.clock_ms,
            lambda: base62_id(ids.randbytes(16)),
        )
        node.machine.ran(job.job_id, result, self.clock_ms())
        self._drain(name)

    def _send(self, m: Message) -> None:
        if isinstance(m, Append) and m.entries and self.rng.random() < self.options.corrupt_rate:
            m = self._corrupt(m)
        self.net.send(self.now_ms, m.sender, m.to, ("raft", wire.encode(m), -1))

    def _corrupt(self, m: Append) -> Append:
        """Tamper with one block of the message, leaving its hashes as they were."""
        carrying = [i for i, e in enumerate(m.entries) if e.data and e.data[0] == 0x94]
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
        entries = list(m.entries)
        entries[i] = Entry(entry.term, entry.index, msgpack.packb(body, use_bin_type=True))
        self.stats["corrupted"] += 1
        return dataclasses.replace(m, entries=tuple(entries))

    def _inject_faults(self) -> None:
        opts, rng, net = self.options, self.rng, self.net
        net.flip_partition(self.names, opts.partition_rate, opts.heal_rate)
        if not net.blocked and rng.random() < opts.one_way_rate:
            victim = rng.choice(self.names)
            others = [n for n in self.names if n != victim]
            outbound = rng.random() < 0.5
            net.blocked = {(victim, o) if outbound else (o, victim) for o in others}
            self.stats["one_way"] += 1
        elif net.blocked and rng.random() < opts.heal_rate:
            net.blocked = set()
        for name in self.names:
            if self.nodes[name] is not None and rng.random() < opts.crash_rate:
                self._crash(name)

    def _maybe_depose(self, name: str, node: _Node) -> None:
        """Cut a leader off right after it proposed (a leader deposed mid-batch)."""
        last = node.replica.node.last_index()
        proposed = last > self._log_tips[name] and node.replica.node.role is Role.LEADER
        self._log_tips[name] = last
        quiet = self.faults and self.net.partition is None
        if proposed and quiet and self.rng.random() < self.options.depose_rate:
            self.net.partition = [{name}, set(self.names) - {name}]
            self.stats["deposed"] += 1

    def _drive_clients(self) -> None:
        for client in self.clients:
            client.on_timer(self.now_ms)
            if client.busy or self.operations_left <= 0:
                continue
            if self.rng.random() >= 1 / max(1, self.rng.randint(*self.options.think_ms) + 1):
                continue
            self.operations_left -= 1
            kind, body = pick_operation(self.rng, self.options, self.options.accounts)
            client.start(kind, body, None if kind == "session" else self._new_id())

    # ----------------------------------------------------------------- the workload
    def start(self) -> None:
        """Elect a leader and create the accounts (no faults)."""
        faults, self.faults = self.faults, False
        try:
            client = self.clients[0]
            opts = self.options
            txid = self._new_id()
            body = payload("setup", opts.accounts, opts.initial_balance)
            client.start("setup", body, txid, patient=True)
            for _ in range(opts.settle_ms):
                self.step()
                if not client.busy:
                    break
            if self.txs[txid].status != ACKED:
                self._fail(f"the accounts could not be created: {self.txs[txid].status}")
            self._load_accounts()
        finally:
            self.faults = faults

    def _load_accounts(self) -> None:
        """The committed accounts (a setup run that did not commit may have made others)."""
        replica = max(self.live(), key=lambda r: r.engine.durable_seq)
        tx = replica.engine.begin(self.clock_ms(), self.clock_ms, READER_ID)
        found = sorted((doc["name"], doc_id) for doc_id, doc in tx.find("Account"))
        self.accounts.ids = [doc_id for _, doc_id in found]
        if len(found) != self.options.accounts:
            self._fail(f"{len(found)} accounts after the setup")

    def require_progress(self, ms: int) -> int:
        """Run `ms` more with the clients busy; a liveness checker: some transaction must be
        acknowledged meanwhile (use it while a majority of the nodes can talk both ways)."""
        before = sum(1 for r in self.txs.values() if r.status == ACKED)
        self.operations_left = max(self.operations_left, 10**6)
        self.advance(ms)
        self.operations_left = 0
        done = sum(1 for r in self.txs.values() if r.status == ACKED) - before
        if done == 0:
            self._fail(f"no transaction committed in {ms} ms although a majority can talk")
        return done

    # ----------------------------------------------------------------- checkers
    def _fail(self, what: str) -> NoReturn:
        raise SimulationError(f"seed {self.seed}, t={self.now_ms} ms: {what}")

    def _observe(self) -> None:
        for name in self.names:
            node = self.nodes[name]
            if node is None:
                continue
            replica, raft = node.replica, node.replica.node
            if raft.role is Role.LEADER:
                other = self.leaders.setdefault(raft.term, name)
                if other != name:
                    self._fail(f"two leaders in term {raft.term}: {other} and {name}")
            if raft.commit < self._high_commit[name]:
                self._fail(f"{name}'s commit index went back to {raft.commit}")
            self._high_commit[name] = raft.commit
            if replica.applied > raft.commit:
                self._fail(f"{name} applied log entry {replica.applied} beyond its commit")
            lo = min(len(self.raft_terms), max(1, raft.commit - 8))
            self._check_raft(name, replica, lo)
            seq = replica.engine.durable_seq
            if seq < self._high_seq[name]:
                self._fail(f"{name} lost committed blocks: its journal ends at {seq}")
            self._high_seq[name] = seq
            lo = min(self._compared[name] + 1, seq + 1)
            self._compare_blocks(name, replica.storage, max(0, lo - 2), seq)
            self._compared[name] = seq
        if self.now_ms % self.options.full_check_every_ms == 0:
            self.check()

    def _check_raft(self, name: str, replica: Replica, lo: int) -> None:
        """The node's committed entries from `lo` match the cluster's committed Raft log."""
        terms, raft = self.raft_terms, replica.node
        for index in range(lo, raft.commit + 1):
            term = raft.term_at(index)
            if index == len(terms):
                terms.append(term)
            elif terms[index] != term:
                self._fail(
                    f"{name}'s committed Raft entry {index} has term {term}, not {terms[index]}"
                )

    def _compare_blocks(self, who: str, storage: Storage, lo: int, hi: int) -> None:
        """Blocks lo..hi of `who` are the cluster's; new ones extend the cluster's journal."""
        for seq in range(lo, hi + 1):
            raw = storage.get(keys.block_key(seq))
            if raw is None:
                self._fail(f"{who} lost block {seq}")
            digest = hashlib.sha256(raw).digest()
            if seq < len(self.journal):
                if self.journal[seq] != digest and not self._redacted(seq):
                    self._fail(f"{who}'s block {seq} differs from the cluster's")
            else:
                self.journal.append(digest)

    def _redacted(self, seq: int) -> bool:
        del seq
        return False  # the workload redacts nothing: every copy of a block is identical

    def check(self) -> None:
        """Every invariant over whole journals and logs (the per-step checks look at the new)."""
        for name in self.names:
            node = self.nodes[name]
            if node is not None:
                self._compare_blocks(name, self.disks[name], 0, node.replica.engine.durable_seq)
                self._check_raft(name, node.replica, 1)
        majority = len(self.names) // 2 + 1
        logs = []
        for name in self.names:
            node = self.nodes[name]
            logs.append(
                node.replica.log if node is not None else LogStorage(self.disks[name], _no_rebuild)
            )
        for index in range(1, len(self.raft_terms)):
            term = self.raft_terms[index]
            stored = sum(1 for log in logs if index <= log.last_index() and log.term(index) == term)
            if stored < majority:
                self._fail(f"committed Raft entry {index} is stored on only {stored} logs")

    # ----------------------------------------------------------------- the end
    def finish(self) -> dict[str, int]:
        """Heal everything, run quiet time until every client is done and the cluster
        settles, then the final checks."""
        self.faults = False
        self.operations_left = 0
        self.net.partition = None
        self.net.blocked = set()
        for name in self.names:
            if self.nodes[name] is None:
                self.restart_at[name] = self.now_ms
        for _ in range(self.options.settle_ms):
            self.step()
            if self._settled():
                break
        else:
            self._fail("the cluster did not settle after the faults ended")
        self.check()
        self._check_final()
        return self.summary()

    def _settled(self) -> bool:
        if any(c.busy for c in self.clients) or self._jobs:
            return False
        replicas = self.live()
        if len(replicas) != len(self.names):
            return False
        leaders = [r for r in replicas if r.node.role is Role.LEADER]
        if len(leaders) != 1 or not leaders[0].ready_to_serve:
            return False
        raft = leaders[0].node
        return raft.commit == raft.last_index() and all(
            r.applied == raft.commit
            and r.node.commit == raft.commit
            and r.node.last_index() == raft.last_index()
            for r in replicas
        )

    def _check_final(self) -> None:
        replicas = self.live()
        leader = next(r for r in replicas if r.node.role is Role.LEADER)
        status = leader.status()
        seq, digest = status["sequence_no"], status["digest"]
        for replica in replicas:
            mine = replica.status()
            if (mine["sequence_no"], mine["digest"]) != (seq, digest):
                self._fail(
                    f"{replica.id} ends at block {mine['sequence_no']}, {leader.id} at {seq}"
                )
        self.final_digest = digest
        derived = {r.id: _derived_state(r.engine) for r in replicas}
        for name, state in derived.items():
            if state != derived[leader.id]:
                self._fail(f"{name}'s derived state differs from {leader.id}'s")
        for replica in replicas:
            report = queries.verify_journal(replica.engine)
            if not report.ok:
                self._fail(f"{replica.id}'s journal fails verification: {report}")
        self._check_transactions(leader.engine, replicas)
        for replica in replicas:
            self._check_balances(replica.id, replica.engine)

    def _check_transactions(self, journal: Engine, replicas: Sequence[Replica]) -> None:
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
                self._fail(
                    f"{record.status} transaction {record.txid} ({record.kind}) is in the journal"
                )
            if record.status == ACKED:
                for replica in replicas:
                    if replica.engine.committed_seq(record.txid) is None:
                        self._fail(
                            f"{replica.id} does not know acknowledged transaction {record.txid}"
                        )
        kinds = {TRANSFER, "session"}
        self._transfers_journaled = sum(
            1
            for t, n in counts.items()
            if self.txs[t].kind in kinds and n and self._moved(journal, t)
        )

    @staticmethod
    def _moved(journal: Engine, txid: str) -> bool:
        seq = journal.committed_seq(txid)
        assert seq is not None
        block = journal.read_block(seq)
        return any(
            d["tableName"] == "Transfer" for d in block["transactionInfo"]["documents"].values()
        )

    def _check_balances(self, name: str, engine: Engine) -> None:
        tx = engine.begin(self.clock_ms(), self.clock_ms, READER_ID)
        accounts = {doc_id: data["balance"] for doc_id, data in tx.find("Account")}
        transfers = [data for _, data in tx.find("Transfer")]
        initial = self.options.initial_balance
        expected = dict.fromkeys(self.accounts.ids, initial)
        for t in transfers:
            expected[self.accounts.ids[t["from"]]] -= t["amount"]
            expected[self.accounts.ids[t["to"]]] += t["amount"]
        if sum(accounts.values()) != initial * len(self.accounts.ids):
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
            self.operations_left = self.options.operations
            while self.operations_left > 0:
                self.step()
            return self.finish()
        except SimulationError:
            raise
        except Exception as exc:
            self._fail(f"unexpected {type(exc).__name__}: {exc}")

    def summary(self) -> dict[str, int]:
        statuses = [r.status for r in self.txs.values()]
        machines = [n.machine.stats for n in self.nodes.values() if n is not None]
        return {
            "seed": self.seed,
            "blocks": max(r.engine.durable_seq for r in self.live()),
            "acknowledged": statuses.count(ACKED),
            "unknown": statuses.count(UNKNOWN),
            "failed": statuses.count(FAILED),
            "noop": statuses.count(NOOP),
            "terms": len(self.leaders),
            "sim_ms": self.now_ms,
            "batches": sum(m["batches"] for m in machines),
            **self.stats,
            "dropped": self.stats["dropped"] + self.net.dropped,
        }


def _no_rebuild(first_seq: int, count: int) -> bytes:
    raise AssertionError("the checker reads terms only")


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

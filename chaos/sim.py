"""Deterministic simulation of Raft replication: the real core.raft code, a fake world.

Theory of operation. `Simulation(seed, options)` runs N replicas of `core.raft.RaftNode` in
one thread with a simulated clock (1 ms steps), a simulated network and simulated disks.
Every random choice flows from one `random.Random(seed)`, so a seed replays exactly. The
network drops, duplicates, delays (and so reorders) messages and partitions nodes; replicas
crash and restart. A replica's disk keeps what the host synced (log, hard state) and loses
the unsynced tail of its applied state on a crash, which the replica re-applies from its log.
Clients propose random payloads to whoever leads; a proposal is acknowledged when the leader
applies it.

Checkers run after every step (`Checker`), and raise `SimulationError` naming the seed:
- at most one leader per term, ever;
- every node's committed prefix equals the cluster's committed log (never rewritten);
- every committed entry is stored on a majority of the logs (so never lost);
- every node's applied state is a prefix of the committed log, chained by hash;
- at the end, after healing and quiescing: every acknowledged proposal is in the committed
  log exactly once, and every replica applied the same log.
The simulator never reads the wall clock and starts no threads.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.network import SimNetwork
from core.raft import (
    Entry,
    HardState,
    MemoryLogStore,
    Message,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)


class SimulationError(AssertionError):
    """A checker found a violated invariant; the message names the seed and the step."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    nodes: int = 3
    steps: int = 3000  # simulated milliseconds of faults, before the healing phase
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    latency_ms: tuple[int, int] = (1, 8)
    drop_rate: float = 0.05
    duplicate_rate: float = 0.02
    partition_rate: float = 0.002  # per step: start a partition (if none)
    heal_rate: float = 0.01  # per step: end the partition
    crash_rate: float = 0.001  # per step per node
    restart_ms: tuple[int, int] = (50, 400)
    propose_rate: float = 0.2  # per step
    max_entries_per_message: int = 8
    max_inflight_entries: int = 32
    full_check_every_ms: int = 250


@dataclass(slots=True)
class Disk:
    """What survives a crash: the synced log and hard state, and the synced applied prefix."""

    store: MemoryLogStore = field(default_factory=MemoryLogStore)
    hard_state: HardState = field(default_factory=lambda: HardState(0, None, 0))
    applied: list[tuple[int, bytes]] = field(default_factory=list)  # (index, chain hash)
    applied_synced: int = 0  # entries of `applied` that survive a crash


def chain(previous: bytes, entry: Entry) -> bytes:
    return hashlib.sha256(previous + entry.term.to_bytes(8, "big") + entry.data).digest()


@dataclass(slots=True)
class Replica:
    name: str
    disk: Disk
    node: RaftNode | None
    restart_at_ms: int = 0


class Simulation:
    """One seeded run. `run()` returns a summary or raises SimulationError."""

    def __init__(self, seed: int, options: SimOptions | None = None) -> None:
        self.seed = seed
        self.options = opts = options or SimOptions()
        self.rng = random.Random(seed)
        self.names = [f"n{i}" for i in range(opts.nodes)]
        self.config = RaftConfig(
            election_ticks=opts.election_ticks,
            heartbeat_ticks=opts.heartbeat_ticks,
            max_entries_per_message=opts.max_entries_per_message,
            max_inflight_entries=opts.max_inflight_entries,
        )
        self.replicas = {n: Replica(n, Disk(), None) for n in self.names}
        for name in self.names:
            self._start(name)
        self.now_ms = 0
        self.net: SimNetwork[Message] = SimNetwork(
            self.rng,
            drop_rate=opts.drop_rate,
            duplicate_rate=opts.duplicate_rate,
            latency_ms=opts.latency_ms,
        )
        self.leaders: dict[int, str] = {}  # term -> leader
        self.committed: list[Entry] = []  # the cluster's committed log
        self.proposed: dict[bytes, int] = {}  # payload -> index it was given
        self.acknowledged: set[bytes] = set()
        self._payloads = 0
        self._chain_hashes = [b""]  # chain hash after 0, 1, 2, ... committed entries
        self.stats = {"delivered": 0, "dropped": 0, "crashes": 0, "elections": 0}

    # ----------------------------------------------------------------- lifecycle
    def _start(self, name: str) -> None:
        replica = self.replicas[name]
        disk = replica.disk
        del disk.applied[disk.applied_synced :]  # the unsynced tail of the state is gone
        replica.node = RaftNode(
            name,
            self.names,
            disk.store,
            config=self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            hard_state=disk.hard_state,
            applied=len(disk.applied),
        )

    def _crash(self, name: str) -> None:
        replica = self.replicas[name]
        replica.node = None
        lo, hi = self.options.restart_ms
        replica.restart_at_ms = self.now_ms + self.rng.randint(lo, hi)
        # a random part of the applied state had been synced
        disk = replica.disk
        disk.applied_synced = self.rng.randint(disk.applied_synced, len(disk.applied))
        self.stats["crashes"] += 1

    # ----------------------------------------------------------------- the host's duties
    def _drain(self, name: str) -> None:
        replica = self.replicas[name]
        node = replica.node
        while node is not None and node.has_ready():
            rd = node.ready()
            self._persist(replica.disk, rd)
            for message in rd.messages:
                self._send(name, message)
            self._apply(replica, rd)
            node.advance(rd)

    def _persist(self, disk: Disk, rd: Ready) -> None:
        if rd.hard_state is not None:
            disk.hard_state = rd.hard_state
        disk.store.append(rd.entries)

    def _apply(self, replica: Replica, rd: Ready) -> None:
        applied = replica.disk.applied
        for entry in rd.committed:
            if entry.index != len(applied) + 1:
                self._fail(f"{replica.name} applied {entry.index} after {len(applied)}")
            previous = applied[-1][1] if applied else b""
            applied.append((entry.index, chain(previous, entry)))
            if rd.role is Role.LEADER and entry.data in self.proposed:
                self.acknowledged.add(entry.data)

    def _send(self, sender: str, m: Message) -> None:
        self.net.send(self.now_ms, sender, m.to, m)

    # ----------------------------------------------------------------- the world
    def step(self, *, faults: bool, propose: bool = True) -> None:
        self.now_ms += 1
        opts, rng = self.options, self.rng
        if faults:
            self._inject_faults()
        for name, replica in self.replicas.items():
            if replica.node is None and self.now_ms >= replica.restart_at_ms:
                self._start(name)
        for to, message in self.net.due(self.now_ms):
            node = self.replicas[to].node
            if node is None:
                continue
            node.step(message)
            self.stats["delivered"] += 1
            self._drain(to)
        if self.now_ms % opts.tick_ms == 0:
            for name in self.names:
                node = self.replicas[name].node
                if node is not None:
                    node.tick()
                    self._drain(name)
        if propose and rng.random() < opts.propose_rate:
            self._propose()
        self._observe()

    def _inject_faults(self) -> None:
        opts, rng = self.options, self.rng
        self.net.flip_partition(self.names, opts.partition_rate, opts.heal_rate)
        for name in self.names:
            if self.replicas[name].node is not None and rng.random() < opts.crash_rate:
                self._crash(name)

    def _propose(self) -> None:
        for name in self.names:
            node = self.replicas[name].node
            if node is not None and node.role is Role.LEADER:
                self._payloads += 1
                data = f"{self.seed}:{self._payloads}".encode()
                index = node.propose(data)
                assert index is not None
                self.proposed[data] = index
                self._drain(name)
                return

    # ----------------------------------------------------------------- checkers
    def _fail(self, what: str) -> None:
        raise SimulationError(f"seed {self.seed}, t={self.now_ms} ms: {what}")

    def _observe(self) -> None:
        for name, replica in self.replicas.items():
            node = replica.node
            if node is None:
                continue
            if node.role is Role.LEADER:
                other = self.leaders.setdefault(node.term, name)
                if other != name:
                    self._fail(f"two leaders in term {node.term}: {other} and {name}")
            if node.commit > len(self.committed):  # learn newly committed entries
                self.committed.extend(node.entries(len(self.committed) + 1, node.commit + 1))
        self.stats["elections"] = len(self.leaders)
        self._check_recent()
        if self.now_ms % self.options.full_check_every_ms == 0:
            self.check()

    def _check_recent(self) -> None:
        """Cheap checks of every step: each node's newest committed and applied entries."""
        for name, replica in self.replicas.items():
            node = replica.node
            if node is not None and node.commit:
                lo = max(1, node.commit - 8)
                if node.entries(lo, node.commit + 1) != self.committed[lo - 1 : node.commit]:
                    self._fail(f"{name}'s committed entries differ from the cluster's")
            applied = replica.disk.applied
            if len(applied) > len(self.committed):
                self._fail(f"{name} applied entries that are not committed")
            if applied:
                self._check_applied(name, applied[-2:], len(applied) - len(applied[-2:]))

    def check(self) -> None:
        """Every invariant, over the whole of every log."""
        majority = len(self.names) // 2 + 1
        for name, replica in self.replicas.items():
            node = replica.node
            if node is not None:
                mine = node.entries(1, node.commit + 1)
                if mine != self.committed[: node.commit]:
                    self._fail(f"{name}'s committed prefix differs from the cluster's")
            self._check_applied(name, replica.disk.applied, 0)
        stored_on = [0] * len(self.committed)
        for replica in self.replicas.values():
            log = replica.disk.store.log
            for i, entry in enumerate(self.committed):
                if i < len(log) and log[i] == entry:
                    stored_on[i] += 1
        for i, count in enumerate(stored_on):
            if count < majority:
                self._fail(f"committed entry {i + 1} is stored on only {count} logs")

    def _check_applied(self, name: str, applied: list[tuple[int, bytes]], start: int) -> None:
        """`applied` holds a replica's applied entries start+1, start+2, ..."""
        if start + len(applied) > len(self.committed):
            self._fail(f"{name} applied entries that are not committed")
        previous = self._chain_at(start)
        for (index, digest), entry in zip(applied, self.committed[start:], strict=False):
            previous = chain(previous, entry)
            if index != entry.index or digest != previous:
                self._fail(f"{name}'s applied state diverges at entry {entry.index}")

    def _chain_at(self, count: int) -> bytes:
        """The chain hash after the first `count` committed entries (memoised)."""
        hashes = self._chain_hashes
        while len(hashes) <= count:
            hashes.append(chain(hashes[-1], self.committed[len(hashes) - 1]))
        return hashes[count]

    # ----------------------------------------------------------------- a whole run
    def run(self) -> dict[str, int]:
        for _ in range(self.options.steps):
            self.step(faults=True)
        self.heal()
        return self.summary()

    def heal(self, quiet_ms_max: int = 20_000) -> None:
        """End faults, restart everyone, and run until every replica applied everything."""
        self.net.partition = None
        for replica in self.replicas.values():
            if replica.node is None:
                replica.restart_at_ms = self.now_ms
        for _ in range(quiet_ms_max):
            self.step(faults=False, propose=False)
            if self._settled():
                break
        else:
            self._fail("the cluster did not settle after faults ended")
        self.check()
        self._check_final()

    def _settled(self) -> bool:
        nodes = [r.node for r in self.replicas.values()]
        if any(n is None for n in nodes):
            return False
        live = [n for n in nodes if n is not None]
        leaders = [n for n in live if n.role is Role.LEADER]
        if len(leaders) != 1:
            return False
        leader = leaders[0]
        done = leader.commit == leader.last_index() and leader.term_at(leader.commit) == leader.term
        return done and all(
            n.applied == leader.commit and n.last_index() == leader.last_index() for n in live
        )

    def _check_final(self) -> None:
        logged: dict[bytes, int] = {}
        for entry in self.committed:
            if entry.data:
                logged[entry.data] = logged.get(entry.data, 0) + 1
        for data in self.acknowledged:
            if logged.get(data) != 1:
                self._fail(f"acknowledged {data!r} is {logged.get(data, 0)} times in the log")
        if any(count != 1 for count in logged.values()):
            self._fail("a proposal was committed twice")
        states = {name: r.disk.applied[-1:] for name, r in self.replicas.items()}
        if len({tuple(s) for s in states.values()}) != 1:
            self._fail(f"replicas ended in different states: {states}")

    def summary(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "committed": len(self.committed),
            "acknowledged": len(self.acknowledged),
            "terms": len(self.leaders),
            **self.stats,
            "dropped": self.net.dropped,
        }


def run_seeds(
    seeds: range | list[int], options: SimOptions | None = None,
    on_result: Callable[[dict[str, int]], None] | None = None,
) -> list[dict[str, int]]:  # fmt: skip
    """Run many seeds; raises on the first failure (its message names the seed)."""
    results = []
    for seed in seeds:
        result = Simulation(seed, options).run()
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results

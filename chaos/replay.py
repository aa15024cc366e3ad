"""A real chaos schedule replayed in the deterministic simulator (`python -m chaos replay`).

A run on the real cluster cannot be replayed step by step; the simulator can. `replay`
takes the schedule of an experiment file, or of a run's report.json (with the targets the
real run picked), maps each fault whose kind the simulator can express onto it, and runs
the real core state machines (chaos/ledger_sim.py: Raft, replicas, commit machines, the bank
workload and every checker there) under that schedule with a seed: the same seed gives the
same run, so a failure found here is replayed exactly.

Time is scaled so that the schedule keeps its meaning for Raft: one real second becomes
`scale` simulated seconds, where `scale` is the simulator's election timeout over the
real cluster's. Targets named by node ("a", "b", "c") map to the simulator's nodes in
order ("n0", "n1", "n2"); targets picked at run time ("the leader") are picked when the
fault starts in the simulation, from its seeded generator.

- partition-leader, isolate-follower, pause-node: the node cut from every other (a paused
  process neither sends nor answers);
- partition-random: a random minority cut from the majority;
- bridge: two nodes cut from each other, the bridge talking to both;
- one-way: what the followers send never reaches the leader;
- latency, bandwidth, slow-close: longer and more varied delays on every link;
- reset-peer, stall: messages lost (half of them; all of them);
- kill-leader, kill-follower, kill-node-process, restart-node: a power cut of the node, which
  restarts soon after; power-cut: a power cut of every node;
- disk-full: a power cut of the node, which stays down until the fault ends;
- clock-skew: not modelled (the simulator has one clock), reported as skipped.

Invariants: faults are applied and undone at their scaled times only; nothing here decides
whether the run passed (the simulator's checkers do); the simulator's own random faults are
off, so only the schedule disturbs the run.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.ledger_sim import LedgerSimOptions, LedgerSimulation
from core.raft import Role

QUIET = dict(
    drop_rate=0.0, duplicate_rate=0.0, partition_rate=0.0, one_way_rate=0.0, crash_rate=0.0,
    depose_rate=0.0, corrupt_rate=0.0, poison_rate=0.0,
)  # fmt: skip
UNMODELLED = frozenset({"clock-skew"})


@dataclass(frozen=True, slots=True)
class SimFault:
    """One fault of the schedule, in simulated milliseconds."""

    kind: str
    at_ms: int
    end_ms: int | None  # None: a one-off (kills, restarts)
    node: str | None  # a simulator node name, or None to pick when it starts
    params: dict[str, Any]


def schedule_from_file(
    path: str | Path, node_names: Sequence[str]
) -> tuple[list[dict[str, Any]], int]:
    """(faults as dicts with kind, at_s, end_s, node, params; the workload's seed) from an
    experiment TOML or a run's report.json (whose targets the real run resolved)."""
    path = Path(path)
    if path.suffix == ".json":
        report = json.loads(path.read_text())
        faults = []
        for fault in report["faults"]:
            target = str(fault.get("target", ""))
            faults.append({
                "kind": fault["kind"], "at_s": float(fault["at_s"]),
                "end_s": fault.get("healed_s"),
                "node": target if target in node_names else None,
                "params": dict(fault.get("params", {})),
            })  # fmt: skip
        return faults, int(report.get("seed", 1))
    from chaos.experiments import load_experiment

    experiment = load_experiment(path, tuple(node_names))
    faults = [
        {"kind": f.kind, "at_s": f.at_s, "end_s": f.end_s if f.duration_s else None,
         "node": f.param("node"), "params": dict(f.params)}
        for f in experiment.faults
    ]  # fmt: skip
    return faults, experiment.workload.seed


class Replay:
    """The schedule driven through one seeded LedgerSimulation (see the module docstring)."""

    def __init__(
        self, faults: Sequence[dict[str, Any]], node_names: Sequence[str], seed: int,
        real_election_timeout_ms: int, options: LedgerSimOptions | None = None,
    ) -> None:  # fmt: skip
        base = options or LedgerSimOptions(nodes=len(node_names))
        self.options = dataclasses.replace(base, **QUIET)  # type: ignore[arg-type]
        sim_timeout_ms = self.options.tick_ms * self.options.election_ticks
        self.scale = sim_timeout_ms / real_election_timeout_ms
        self.sim = LedgerSimulation(seed, self.options)
        self.rng = random.Random(seed ^ 0x5EED)
        rename = {real: sim for real, sim in zip(node_names, self.sim.names, strict=False)}
        self.faults = [
            SimFault(f["kind"], self._ms(f["at_s"]),
                     None if f.get("end_s") is None else self._ms(f["end_s"]),
                     rename.get(str(f["node"])) if f.get("node") else None,
                     dict(f.get("params", {})))
            for f in faults
        ]  # fmt: skip
        self.skipped = [f.kind for f in self.faults if f.kind in UNMODELLED]
        self.applied: list[str] = []
        self._undo: list[tuple[int, Any]] = []  # (at_ms, what undoes a fault)

    def _ms(self, seconds: float) -> int:
        return max(1, round(float(seconds) * 1000 * self.scale))

    # ----------------------------------------------------------------- targets
    def _leader(self) -> str:
        leaders = [r.node.id for r in self.sim.live() if r.node.role is Role.LEADER]
        return leaders[0] if leaders else self.rng.choice(self.sim.names)

    def _node(self, fault: SimFault, *, follower: bool = False) -> str:
        if fault.node is not None:
            return fault.node
        if follower:
            leader = self._leader()
            return self.rng.choice([n for n in self.sim.names if n != leader])
        return self._leader()

    # ----------------------------------------------------------------- faults
    def _isolate(self, node: str) -> Any:
        net = self.sim.net
        net.partition = [{node}, set(self.sim.names) - {node}]
        return lambda: setattr(net, "partition", None)

    def _start(self, fault: SimFault) -> Any:
        sim, net, kind = self.sim, self.sim.net, fault.kind
        if kind in ("partition-leader", "pause-node"):
            return self._isolate(self._node(fault))
        if kind == "isolate-follower":
            return self._isolate(self._node(fault, follower=True))
        if kind == "partition-random":
            size = self.rng.randint(1, (len(sim.names) - 1) // 2)
            minority = set(self.rng.sample(sim.names, size))
            net.partition = [minority, set(sim.names) - minority]
            return lambda: setattr(net, "partition", None)
        if kind == "bridge":
            bridge = self._node(fault)
            others = [n for n in sim.names if n != bridge]
            net.partition = [{others[0]}, set(others[1:])]  # the bridge is in neither side
            return lambda: setattr(net, "partition", None)
        if kind == "one-way":
            leader = self._leader()
            net.blocked = {(n, leader) for n in sim.names if n != leader}
            return lambda: setattr(net, "blocked", set())
        if kind in ("latency", "bandwidth", "slow-close"):
            before = net.latency_ms
            extra = max(1, round(int(fault.params.get("latency_ms", 50)) * self.scale))
            jitter = round(int(fault.params.get("jitter_ms", 0)) * self.scale)
            net.latency_ms = (before[0] + extra, before[1] + extra + jitter)
            return lambda: setattr(net, "latency_ms", before)
        if kind in ("reset-peer", "stall"):
            before_drop = net.drop_rate
            net.drop_rate = 1.0 if kind == "stall" else 0.5
            return lambda: setattr(net, "drop_rate", before_drop)
        if kind in ("kill-leader", "kill-node-process", "restart-node"):
            sim._crash(self._node(fault))  # noqa: SLF001
            return None
        if kind == "kill-follower":
            sim._crash(self._node(fault, follower=True))  # noqa: SLF001
            return None
        if kind == "power-cut":
            for name in sim.names:
                if sim.nodes[name] is not None:
                    sim._crash(name)  # noqa: SLF001
            return None
        if kind == "disk-full":
            node = self._node(fault)
            sim._crash(node)  # noqa: SLF001
            sim.restart_at[node] = fault.end_ms or sim.now_ms
            return None
        return None  # unmodelled (clock-skew)

    # ----------------------------------------------------------------- the run
    def run(self, tail_ms: int = 1000) -> dict[str, int]:
        """Run the schedule, then the simulator's healing phase and final checks; raises
        SimulationError on a violation."""
        sim = self.sim
        sim.start()
        sim.faults = True
        sim.operations_left = 10**9
        pending = sorted(self.faults, key=lambda f: f.at_ms)
        last = max([0, *(f.end_ms or f.at_ms for f in self.faults)])
        start_ms = sim.now_ms
        while sim.now_ms - start_ms < last + tail_ms:
            now = sim.now_ms - start_ms
            while pending and pending[0].at_ms <= now:
                fault = pending.pop(0)
                if fault.kind in UNMODELLED:
                    continue
                undo = self._start(fault)
                self.applied.append(fault.kind)
                if undo is not None and fault.end_ms is not None:
                    self._undo.append((fault.end_ms, undo))
            for item in [u for u in self._undo if u[0] <= now]:
                item[1]()
                self._undo.remove(item)
            sim.step()
        sim.operations_left = 0
        return sim.finish()

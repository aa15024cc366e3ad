"""The nemesis: each fault kind of chaos/experiments.py carried out on a real cluster.

`Nemesis.start(fault)` injects one fault now and returns what undoes it (None for one-off
faults: kills and restarts, which Ray or the node itself recovers from). Network faults act
on the proxies of chaos/toxiproxy.py, process faults on the node's OS process (by the PIDs the
node reports), disk faults on the tmpfs its LevelDB lives on, clock faults through the node's
clock offset. Targets chosen at run time (the leader, a follower, a random minority) are
picked when the fault starts, with the experiment's seeded random generator.

Invariants: an undo touches only what its fault changed; only processes of the cluster's
nodes are signalled; nothing here decides whether the cluster behaved (that is the checkers').
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.experiments import Fault
from chaos.toxiproxy import ProxiedNetwork
from cluster.client import LedgerCluster

Undo = Callable[[], None]


class Nemesis:
    """Faults on one running cluster; see the module docstring."""

    def __init__(
        self,
        cluster: LedgerCluster,
        network: ProxiedNetwork,
        rng: random.Random,
        disks: dict[str, Path] | None = None,
    ) -> None:
        self.cluster = cluster
        self.network = network
        self.rng = rng
        self.disks = disks or {}  # node -> the tmpfs its LevelDB is on (disk-full)
        self.nodes = cluster.config.node_names

    # ----------------------------------------------------------------- targets
    def leader(self) -> str:
        return self.cluster.leader() or self.rng.choice(self.nodes)

    def follower(self, fault: Fault) -> str:
        chosen = fault.param("node")
        if chosen is not None:
            return str(chosen)
        leader = self.cluster.leader()
        return self.rng.choice([n for n in self.nodes if n != leader])

    def _node(self, fault: Fault) -> str:
        chosen = fault.param("node")
        return str(chosen) if chosen is not None else self.leader()

    def _links(self, fault: Fault) -> list[tuple[str, str]] | None:
        link = fault.param("link")
        if link is None:
            return None
        src, _, dst = str(link).partition("->")
        return [(src, dst)]

    # ----------------------------------------------------------------- faults
    def start(self, fault: Fault) -> tuple[Undo | None, str]:
        """Inject `fault`; returns (its undo or None, what it targeted)."""
        handler = getattr(self, "_" + fault.kind.replace("-", "_"))
        result: tuple[Undo | None, str] = handler(fault)
        return result

    def _cut(self, links: list[tuple[str, str]], target: str) -> tuple[Undo, str]:
        for src, dst in links:
            self.network.cut(src, dst)

        def undo() -> None:
            for src, dst in links:
                self.network.restore(src, dst)

        return undo, target

    def _around(self, node: str) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.network.peer_links() if node in (a, b)]

    def _partition_leader(self, fault: Fault) -> tuple[Undo, str]:
        leader = self.leader()
        return self._cut(self._around(leader), leader)

    def _isolate_follower(self, fault: Fault) -> tuple[Undo, str]:
        node = self.follower(fault)
        return self._cut(self._around(node), node)

    def _partition_random(self, fault: Fault) -> tuple[Undo, str]:
        size = self.rng.randint(1, (len(self.nodes) - 1) // 2)
        minority = set(self.rng.sample(list(self.nodes), size))
        links = [(a, b) for a, b in self.network.peer_links() if (a in minority) != (b in minority)]
        return self._cut(links, ",".join(sorted(minority)))

    def _one_way(self, fault: Fault) -> tuple[Undo, str]:
        links = self._links(fault)
        if links is None:  # what the followers send never reaches the leader
            leader = self.leader()
            links = [(n, leader) for n in self.nodes if n != leader]
        return self._cut(links, ",".join(f"{a}->{b}" for a, b in links))

    def _bridge(self, fault: Fault) -> tuple[Undo, str]:
        bridge = self._node(fault)
        others = [n for n in self.nodes if n != bridge]
        links = [(a, b) for a in others for b in others if a != b]
        return self._cut(links, bridge)

    def _toxic(self, fault: Fault, kind: str, attributes: dict[str, int]) -> tuple[Undo, str]:
        name = f"{fault.kind}-{fault.at_s}"
        toxicity = float(fault.param("toxicity", 1.0))
        links = self.network.toxic(
            kind, attributes, self._links(fault), toxicity=toxicity, name=name
        )
        return (lambda: self.network.remove_toxic(links, name)), str(fault.param("link", "all"))

    def _latency(self, fault: Fault) -> tuple[Undo, str]:
        attributes = {"latency": int(fault.param("latency_ms", 50)),
                      "jitter": int(fault.param("jitter_ms", 0))}  # fmt: skip
        return self._toxic(fault, "latency", attributes)

    def _bandwidth(self, fault: Fault) -> tuple[Undo, str]:
        return self._toxic(fault, "bandwidth", {"rate": int(fault.param("rate_kbytes_per_s", 64))})

    def _slow_close(self, fault: Fault) -> tuple[Undo, str]:
        return self._toxic(fault, "slow_close", {"delay": int(fault.param("delay_ms", 1000))})

    def _reset_peer(self, fault: Fault) -> tuple[Undo, str]:
        return self._toxic(fault, "reset_peer", {"timeout": int(fault.param("timeout_ms", 0))})

    def _stall(self, fault: Fault) -> tuple[Undo, str]:
        return self._toxic(fault, "timeout", {"timeout": int(fault.param("timeout_ms", 0))})

    def _kill_leader(self, fault: Fault) -> tuple[None, str]:
        leader = self.leader()
        self.cluster.kill(leader, restart=True)
        return None, leader

    def _kill_follower(self, fault: Fault) -> tuple[None, str]:
        node = self.follower(fault)
        self.cluster.kill(node, restart=True)
        return None, node

    def _kill_node_process(self, fault: Fault) -> tuple[None, str]:
        node = self._node(fault)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.cluster.pids(node)[0], signal.SIGKILL)  # Ray restarts the actor
        return None, node

    def _power_cut(self, fault: Fault) -> tuple[None, str]:
        """Every node's process killed at once, as a power cut would (Ray restarts them; on
        the power-cut storage double, what they had not synced is lost)."""
        pids = []  # every process first, then the kills, so they go down together
        for node in self.nodes:
            with contextlib.suppress(Exception):  # one still restarting is down already
                pids += self.cluster.pids(node)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return None, ",".join(self.nodes)

    def _pause_node(self, fault: Fault) -> tuple[Undo, str]:
        node = self._node(fault)
        pids = self.cluster.pids(node)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

        def undo() -> None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

        return undo, node

    def _restart_node(self, fault: Fault) -> tuple[None, str]:
        node = self._node(fault)
        self.cluster.restart(node)
        return None, node

    def _disk_full(self, fault: Fault) -> tuple[Undo, str]:
        node = self._node(fault)
        mount = self.disks.get(node)
        if mount is None:
            raise RuntimeError("disk-full needs the nodes' LevelDB on tmpfs (the runner mounts)")
        filler = mount / "filler"
        stat = os.statvfs(mount)
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize)
        return (lambda: filler.unlink(missing_ok=True)), node

    def _clock_skew(self, fault: Fault) -> tuple[Undo, str]:
        import ray

        node = self._node(fault)
        actor: Any = self.cluster._actor(node)
        ray.get(actor.set_clock_offset_ms.remote(int(fault.param("skew_ms", 60_000))), timeout=30)

        def undo() -> None:
            with contextlib.suppress(Exception):  # the node may have restarted meanwhile
                ray.get(self.cluster._actor(node).set_clock_offset_ms.remote(0), timeout=30)

        return undo, node

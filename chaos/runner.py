"""Running one chaos experiment against a fresh real cluster, and judging it.

`run(experiment_file, out_dir)`:
1. starts a toxiproxy server of its own and a cluster from `--config` in `out_dir/data`
   (each node's LevelDB on a tmpfs of its own when a disk fault is scheduled, on the
   power-cut disk double when a power cut is), every link through a proxy
   (chaos/toxiproxy.py);
2. runs the workload's clients (chaos/clients.py) for `duration_s` while the nemesis
   (chaos/nemesis.py) injects and undoes each fault on schedule, and a monitor samples the
   leader and the digest;
3. heals every link, restarts every node still down, and waits for the replicas to converge;
4. checks: the workload's checker (bank invariants and the journal; linearizability of the
   register history; serializability of the list-append history), convergence of every
   replica to the digest actor's digest, `verify_journal` on every node, revision proofs
   against the final digest, a consistency proof from every digest saved during the run;
5. writes `out_dir/report.json` and `out_dir/timeline.png` (chaos/report.py).

Invariants: the run's verdict comes only from the checks in step 4; everything the run
started (cluster, toxiproxy server, mounts) is stopped or undone, whatever happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chaos import clients
from chaos.disk import POWER_CUT, STORAGE_ENV
from chaos.experiments import Experiment, load_experiment
from chaos.nemesis import Nemesis, Undo
from chaos.toxiproxy import HOW_TO_INSTALL, ProxiedNetwork, ToxiproxyServer, find_server
from cluster.client import LedgerCluster
from cluster.config import ClusterConfig, load_config
from core import verification
from core.errors import StrandError

DEFAULT_CONFIG = "configs/local-3az.toml"
TMPFS_BYTES = 64 * 1024 * 1024


class Run:
    """One experiment's run; see the module docstring."""

    def __init__(
        self, experiment: Experiment, config: ClusterConfig, out_dir: Path,
        converge_timeout_s: float = 120.0,
    ) -> None:  # fmt: skip
        self.experiment = experiment
        self.converge_timeout_s = converge_timeout_s
        self.out_dir = out_dir
        self.mounts: list[Path] = []
        self.config = self._relocate(config, out_dir / "data")
        self.history = clients.History(time.monotonic_ns())
        self.faults: list[dict[str, Any]] = []
        self.leaders: list[tuple[float, str | None]] = []
        self.digests: list[dict[str, Any]] = []
        self.unknown_resolved: dict[str, int] | None = None  # bank: from the final journal
        self.stale_reads_checked = 0
        self.storage = "leveldb"  # or the power-cut disk double (chaos/disk.py)
        self._stop = threading.Event()

    def _relocate(self, config: ClusterConfig, data: Path) -> ClusterConfig:
        if data.exists():
            shutil.rmtree(data)
        disks = any(f.kind == "disk-full" for f in self.experiment.faults)
        nodes = []
        for node in config.nodes:
            home = data / node.name
            home.mkdir(parents=True)
            if disks:
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                                str(home)], check=True)  # fmt: skip
                self.mounts.append(home)
            nodes.append(dataclasses.replace(node, data_dir=str(home / "db")))
        return dataclasses.replace(config, nodes=tuple(nodes))

    def now_s(self) -> float:
        return self.history.now_ns() / 1e9

    # ----------------------------------------------------------------- the run
    def execute(self, progress: Any = None) -> dict[str, Any]:
        binary = find_server()
        if binary is None:
            raise RuntimeError(HOW_TO_INSTALL)
        server = ToxiproxyServer(binary)
        network = ProxiedNetwork(server)
        cluster: LedgerCluster | None = None
        try:
            with _power_cut_disks(self.experiment):
                self.storage = os.environ.get(STORAGE_ENV) or "leveldb"
                cluster = LedgerCluster.start(network.install(self.config))
            workload = self.experiment.workload
            clients.prepare(cluster, workload.kind, workload.size)
            return self._drive(cluster, network, progress)
        finally:
            with contextlib.suppress(Exception):
                network.heal()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.shutdown()
            server.stop()
            for mount in self.mounts:
                subprocess.run(["umount", "-l", str(mount)], check=False)

    def _drive(
        self, cluster: LedgerCluster, network: ProxiedNetwork, progress: Any
    ) -> dict[str, Any]:
        workload = self.experiment.workload
        nemesis = Nemesis(cluster, network, random.Random(workload.seed),
                          {m.name: m for m in self.mounts})  # fmt: skip
        self.history.t0_ns = time.monotonic_ns()
        deadline_ns = int(workload.duration_s * 1e9)
        team = [
            clients.Client(cluster, workload.kind, workload.size, p, workload.seed,
                           self.history, deadline_ns)
            for p in range(workload.clients)
        ]  # fmt: skip
        monitor = threading.Thread(target=self._monitor, args=(cluster,), daemon=True)
        monitor.start()
        for client in team:
            client.thread.start()
        self._schedule(nemesis, workload.duration_s, progress)
        for client in team:
            client.thread.join(workload.duration_s + 120)
        self._stop.set()
        monitor.join(10)
        return self._finish(cluster, network)

    def _schedule(self, nemesis: Nemesis, duration_s: float, progress: Any) -> None:
        pending: list[tuple[float, int, Undo | None]] = []  # (when, fault index, undo)
        for index, fault in enumerate(self.experiment.faults):
            pending.append((fault.at_s, index, None))
        pending.sort(key=lambda item: item[0])
        while self.now_s() < duration_s:
            if progress is not None:
                progress(self.now_s(), duration_s, len(self.history.events))
            while pending and pending[0][0] <= self.now_s():
                _, index, undo = pending.pop(0)
                if undo is not None:
                    undo()
                    self.faults[index]["healed_s"] = round(self.now_s(), 3)
                    continue
                fault = self.experiment.faults[index]
                asked = self.now_s()
                try:
                    undo, target = nemesis.start(fault)
                except (StrandError, OSError, RuntimeError) as exc:
                    undo, target = None, f"not injected: {exc}"
                self.faults.append({
                    "kind": fault.kind, "asked_s": round(asked, 3),
                    "at_s": round(self.now_s(), 3),  # in effect from here
                    "target": target, "params": dict(fault.params),
                })  # fmt: skip
                if undo is not None:
                    pending.append((fault.end_s, len(self.faults) - 1, undo))
                    pending.sort(key=lambda item: item[0])
            time.sleep(0.05)
        for _, index, undo in pending:  # faults lasting past the end
            if undo is not None:
                undo()
                self.faults[index]["healed_s"] = round(self.now_s(), 3)

    def _monitor(self, cluster: LedgerCluster) -> None:
        last_digest = 0.0
        while not self._stop.wait(0.25):
            with contextlib.suppress(Exception):
                self.leaders.append((self.now_s(), cluster.leader()))
            if self.now_s() - last_digest >= 1.0:
                last_digest = self.now_s()
                with contextlib.suppress(Exception):
                    self.digests.append(cluster.get_digest())

    # ----------------------------------------------------------------- after the faults
    def _finish(self, cluster: LedgerCluster, network: ProxiedNetwork) -> dict[str, Any]:
        network.heal()
        for status in cluster.nodes():
            if status["role"] in ("down", "failed"):
                with contextlib.suppress(Exception):
                    cluster.restart(str(status["node"]))
        converged = _wait_converged(cluster, self.converge_timeout_s)
        violations: dict[str, list[str]] = {}
        linearizable = None
        kind = self.experiment.workload.kind
        if kind == "bank":
            violations["bank"] = self._check_bank(cluster)
        elif kind == "register":
            from chaos.checkers.linearizable import check_register

            register = check_register(self.history.ops)
            linearizable = register.ok is True
            violations["linearizability"] = [] if register.ok else [str(register)]
            violations["stale_reads"] = self._check_stale_reads(cluster)
        else:
            from chaos.checkers.append import check_append

            appends = check_append(self.history.txns)
            violations["serializability"] = [] if appends.ok else [str(appends)]
        violations["journal"] = self._check_journals(cluster)
        proofs, proof_problems = self._check_proofs(cluster)
        violations["proofs"] = proof_problems
        if self.history.unexpected:
            violations["clients"] = list(self.history.unexpected)
        return self._report(converged, violations, linearizable, proofs)

    def _check_bank(self, cluster: LedgerCluster) -> list[str]:
        h, problems = self.history, []
        expected = clients.expected_total(self.experiment.workload.size)
        problems += [f"a read saw the total {t}, not {expected}" for t in h.totals if t != expected]
        problems += [f"a read saw a negative balance {b}" for b in h.negative]
        for node in cluster.config.node_names:
            try:
                ids, _ = cluster.query("transaction_ids", consistency="stale", node=node)
            except StrandError as exc:
                problems.append(f"{node}: {exc}")
                continue
            counts = Counter(ids)
            problems += [f"{node}: acknowledged {t} is in the journal {counts[t]} times"
                         for t in h.acknowledged if counts[t] != 1]  # fmt: skip
            problems += [f"{node}: {t} was told failed but committed"
                         for t in h.failed if counts[t]]  # fmt: skip
            problems += [f"{node}: {t} (outcome unknown) is in the journal {counts[t]} times"
                         for t in h.unknown if counts[t] > 1]  # fmt: skip
            committed = sum(1 for t in h.unknown if counts[t])
            self.unknown_resolved = {"committed": committed,
                                     "not_committed": len(h.unknown) - committed}  # fmt: skip
        try:
            final = sum(cluster.execute_lambda(clients.read_balances))
        except StrandError as exc:
            return [*problems, f"the final balances cannot be read: {exc}"]
        if final != expected:
            problems.append(f"the final total is {final}, not {expected}")
        return problems

    def _check_stale_reads(self, cluster: LedgerCluster) -> list[str]:
        """Each stale read saw the register's value at the sequence number its node reported:
        the revision it names is in the final journal with that value, and the register's
        next revision (if any) came after that sequence number."""
        revisions: dict[str, list[tuple[int, Any]]] = {}
        for revision in cluster.history(clients.REGISTERS):
            seq = int(revision["blockAddress"]["sequenceNo"])
            doc = revisions.setdefault(str(revision["metadata"]["id"]), [])
            doc.append((seq, revision.get("data", {}).get("value")))
        problems = []
        for read in self.history.stale_reads:
            versions = sorted(revisions.get(read.document_id, []), key=lambda v: v[0])
            at = [i for i, (seq, _) in enumerate(versions) if seq == read.revision_seq]
            if not at or versions[at[0]][1] != read.value:
                problems.append(
                    f"{read.node} served {read.key}={read.value!r} from block "
                    f"{read.revision_seq}: the journal has no such revision"
                )
                continue
            following = versions[at[0] + 1] if at[0] + 1 < len(versions) else None
            if following is not None and following[0] <= read.node_seq:
                problems.append(
                    f"{read.node} reported sequence {read.node_seq} but served "
                    f"{read.key}={read.value!r}, overwritten at {following[0]}"
                )
        self.stale_reads_checked = len(self.history.stale_reads)
        return problems

    def _check_journals(self, cluster: LedgerCluster) -> list[str]:
        problems = []
        for node in cluster.config.node_names:
            try:
                report, _ = cluster.query("verify_journal", consistency="stale", node=node)
            except StrandError as exc:
                problems.append(f"{node}: {exc}")
                continue
            if not report.ok:
                problems.append(f"{node}: verify_journal: {report.problem}")
        return problems

    def _check_proofs(self, cluster: LedgerCluster) -> tuple[int, list[str]]:
        final = cluster.get_digest()
        tip = final["digestTipAddress"]
        problems, verified = [], 0
        rng = random.Random(self.experiment.workload.seed)
        for _ in range(5 if tip["sequenceNo"] >= 1 else 0):  # random blocks, final digest
            seq = rng.randint(1, tip["sequenceNo"])
            block = cluster.get_block({"strandId": tip["strandId"], "sequenceNo": seq}, tip)
            if verification.verify_block(block["block"], block["proof"], final["digest"]):
                verified += 1
            else:
                problems.append(f"block {seq} does not verify against the final digest")
        for saved in self.digests:  # every digest saved during the run extends to the final
            old = saved["digestTipAddress"]
            try:
                proof = cluster.get_consistency_proof(old, tip)
            except StrandError as exc:  # e.g. the journal is now shorter than it was
                problems.append(f"no consistency proof from the digest at {old['sequenceNo']}: "
                                f"{exc}")  # fmt: skip
                continue
            if verification.verify_consistency(
                old["sequenceNo"] + 1, tip["sequenceNo"] + 1, saved["digest"], final["digest"],
                proof["proof"],
            ):  # fmt: skip
                verified += 1
            else:
                problems.append(f"the digest at {old['sequenceNo']} is not extended by the final")
        return verified, problems

    def _report(
        self, converged: bool, violations: dict[str, list[str]], linearizable: bool | None,
        proofs: int,
    ) -> dict[str, Any]:  # fmt: skip
        from chaos.report import availability

        h = self.history
        outcomes = Counter(outcome for _, _, _, outcome in h.events)
        gaps_s, recoveries = availability(h.events, self.faults, self.experiment.workload)
        for fault, recovery in zip(self.faults, recoveries, strict=True):
            fault["recovery_s"] = recovery
        return {
            "experiment": self.experiment.name,
            "workload": self.experiment.workload.kind,
            "seed": self.experiment.workload.seed,
            "storage": self.storage,
            "attempted": len(h.events),
            "acknowledged": outcomes["ok"],
            "failed": outcomes["fail"],
            "unknown": outcomes["unknown"],
            "unknown_resolved": self.unknown_resolved,
            "stale_reads_checked": self.stale_reads_checked,
            "errors": dict(h.errors),
            "lost_acknowledged": sum(1 for v in violations.get("bank", []) if "acknowledged" in v),
            "violations": violations,
            "linearizable": linearizable,
            "converged": converged,
            "proofs_verified": proofs,
            "faults": self.faults,
            "unavailable_s": gaps_s,
            "leaders": [(round(t, 3), leader) for t, leader in self.leaders],
            "ok": converged and not any(violations.values()),
        }


@contextlib.contextmanager
def _power_cut_disks(experiment: Experiment) -> Iterator[None]:
    """Nodes started inside run on the power-cut disk double (chaos/disk.py) when the
    experiment cuts the power: a real LevelDB keeps unsynced writes in the page cache, which
    outlives a killed process, so only the double makes the cut lose what a power cut would."""
    wanted = any(f.kind == "power-cut" for f in experiment.faults)
    if not wanted or os.environ.get(STORAGE_ENV):
        yield
        return
    os.environ[STORAGE_ENV] = POWER_CUT
    try:
        yield
    finally:
        del os.environ[STORAGE_ENV]


def _wait_converged(cluster: LedgerCluster, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            digests = cluster.node_digests()
            audited = cluster.audit("get_digest")
            expected = (audited["digestTipAddress"]["sequenceNo"], audited["digest"])
            if len(digests) == len(cluster.config.node_names) and all(
                v == expected for v in digests.values()
            ):
                return True
        time.sleep(0.5)
    return False


def run(
    experiment_file: str | Path, out_dir: str | Path, config_file: str | Path = DEFAULT_CONFIG,
    progress: Any = None, converge_timeout_s: float = 120.0,
) -> dict[str, Any]:  # fmt: skip
    """Run one experiment; writes report.json and timeline.png into `out_dir`. The replicas
    get `converge_timeout_s` after the last fault to agree (a broken build may never)."""
    from chaos.report import write_report

    config = load_config(config_file)
    experiment = load_experiment(experiment_file, config.node_names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    the_run = Run(experiment, config, out, converge_timeout_s)
    report = the_run.execute(progress)
    write_report(report, the_run.history.events, the_run.faults, out)
    return report

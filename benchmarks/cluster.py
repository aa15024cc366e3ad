"""Cluster benchmark: Strand's 3-AZ cluster and embedded ledger, next to etcd and PostgreSQL.

    .venv/bin/python benchmarks/cluster.py [--seconds 8] [--clients 1,4,16,64] [--peers]

The workload on every system: single-document inserts of about 120 bytes, each its own
transaction, acknowledged only once durable (Strand's cluster: the block on a majority of
the three replicas, each fsynced; the embedded ledger: one synced LevelDB write per group
commit; etcd: a put committed on a majority; PostgreSQL: an insert plus a hash-chained audit
row, synchronous_commit on). Clients are threads of this process sharing one handle
(`LedgerCluster`, `Ledger`) or holding a connection each (the peers); the load harness is
benchmarks/peers.py's `run_load`, the same for all. With `--peers` the script also starts
a 3-member etcd (Debian's etcd-server) and a PostgreSQL (Debian's postgresql) on 127.0.0.1
in temporary directories, runs them with the same clients, and stops them; every ratio in
the table comes from this one run. Then the leader is killed (ray.kill) under a one-client
load (SIGKILL of its process) and the time from the kill to the first commit acknowledged
after it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # before benchmarks/cluster.py

from peers import EtcdCluster, PeerUnavailable, PostgresServer, run_load  # noqa: E402

from chaos.workload import insert_one  # noqa: E402
from cluster.client import LedgerCluster  # noqa: E402
from core.errors import TransactionCommittedError  # noqa: E402
from core.ledger import Ledger  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
Op = Callable[[], None]


def strand_ops(handle: Any) -> Callable[[], Op]:
    counter = iter(range(10**12))
    lock = threading.Lock()

    def factory() -> Op:
        def op() -> None:
            with lock:
                n = next(counter)
            handle.execute_lambda(partial(insert_one, n=n))

        return op

    return factory


def failover(cluster: LedgerCluster) -> float:
    """Seconds from killing the leader's process (SIGKILL: it is dead when the call
    returns) to the first commit acknowledged among those started after the kill. Ray
    restarts the node, which rejoins as a follower, before the next round."""
    leader = cluster.wait_ready()
    [pid, *_] = cluster.pids(leader)
    done = threading.Event()
    first_after: list[float] = []
    killed_at: list[float] = []

    def client() -> None:
        n = 0
        while not done.is_set():
            started_after_kill = bool(killed_at)
            # TransactionCommittedError: it committed; the leader that ran it died first
            with contextlib.suppress(TransactionCommittedError):
                cluster.execute_lambda(partial(insert_one, n=9 * 10**9 + n))
            n += 1
            if started_after_kill and not first_after:
                first_after.append(time.monotonic())
                done.set()

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    killed_at.append(time.monotonic())
    thread.join(60)
    done.set()
    deadline = time.monotonic() + 60
    while len(cluster.node_digests()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    return first_after[0] - killed_at[0]


def measure(name: str, factory: Callable[[], Op], clients: list[int], seconds: float,
            console: Console) -> dict[int, dict[str, float]]:  # fmt: skip
    rows = {}
    run_load(factory, 4, min(2.0, seconds))  # warm up
    for n in clients:
        rows[n] = run_load(factory, n, seconds)
        row = rows[n]
        console.print(
            f"  {name:>16} {n:>3} clients: {row['tx_per_s']:8,.0f} tx/s  "
            f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "local-3az.toml"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--peers", action="store_true", help="also run etcd and PostgreSQL")
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    console = Console(width=200)
    results: dict[str, dict[int, dict[str, float]]] = {}
    failover_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="strand-bench-") as root:
        cluster = LedgerCluster.start(args.config, data_root=Path(root) / "cluster")
        try:
            cluster.execute_lambda(lambda tx: tx.create_table("Bench"))
            results["Strand cluster"] = measure("Strand cluster", strand_ops(cluster), clients,
                                                args.seconds, console)  # fmt: skip
            if not args.no_failover:
                failover_s = [failover(cluster) for _ in range(3)]
        finally:
            cluster.shutdown()
        with Ledger.open(Path(root) / "embedded") as ledger:
            ledger.execute_lambda(lambda tx: tx.create_table("Bench"))
            results["Strand embedded"] = measure("Strand embedded", strand_ops(ledger), clients,
                                                 args.seconds, console)  # fmt: skip
    if args.peers:
        for name, peer_class in (("etcd", EtcdCluster), ("PostgreSQL", PostgresServer)):
            try:
                with peer_class() as peer:
                    results[name] = measure(name, peer.client_op_factory(), clients,
                                            args.seconds, console)  # fmt: skip
            except PeerUnavailable as exc:
                console.print(f"[yellow]{name}: {exc}")
    console.print(table(results, clients))
    if failover_s:
        console.print(
            "leader kill -> first commit after it: "
            + ", ".join(f"{s:.2f} s" for s in failover_s)
            + f" (median {statistics.median(failover_s):.2f} s)"
        )
    return 0


def table(results: dict[str, dict[int, dict[str, float]]], clients: list[int]) -> Table:
    out = Table(title="single-document inserts, acknowledged once durable (one run)")
    out.add_column("clients", justify="right")
    for name in results:
        out.add_column(f"{name} tx/s", justify="right")
        out.add_column("p50 / p99 ms", justify="right")
    ratios = [("Strand cluster", "etcd"), ("Strand embedded", "PostgreSQL")]
    for a, b in ratios:
        if a in results and b in results:
            out.add_column(f"{a.split()[1]}/{b}", justify="right")
    for n in clients:
        cells = [str(n)]
        for name in results:
            row = results[name][n]
            cells += [f"{row['tx_per_s']:,.0f}", f"{row['p50_ms']:.2f} / {row['p99_ms']:.1f}"]
        for a, b in ratios:
            if a in results and b in results:
                cells.append(f"x{results[a][n]['tx_per_s'] / results[b][n]['tx_per_s']:.2f}")
        out.add_row(*cells)
    return out


if __name__ == "__main__":
    raise SystemExit(main())

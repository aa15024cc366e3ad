"""Cluster benchmark: commit throughput and latency on 3 AZ replicas, and failover time.

    .venv/bin/python benchmarks/cluster.py [--seconds 10] [--config configs/local-3az.toml]

Single-document transactions (one insert each) committed on a majority (synced LevelDB
write on each of at least two nodes, plus the coordinator's copy), with 1 and with 16
concurrent clients (threads sharing one LedgerCluster handle, which batches concurrent
calls); then the leader is killed (ray.kill) under a one-client load and the time from the
kill to the first commit acknowledged after it is measured, at the configured timeouts.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.client import LedgerCluster  # noqa: E402
from core.errors import TransactionCommittedError  # noqa: E402
from core.transaction import Transaction  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def insert_one(tx: Transaction, n: int) -> str:
    return tx.insert("Bench", {"n": n, "payload": "x" * 100})


def measure(cluster: LedgerCluster, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        own: list[float] = []
        n = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            cluster.execute_lambda(lambda tx, n=n: insert_one(tx, k * 10**6 + n))
            own.append((time.perf_counter() - started) * 1000)
            n += 1
        with lock:
            latencies.extend(own)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "tx_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "count": len(latencies),
    }


def failover(cluster: LedgerCluster) -> float:
    """Seconds from killing the leader to the first commit acknowledged among those started
    after the kill."""
    leader = cluster.wait_ready()
    done = threading.Event()
    first_after: list[float] = []
    killed_at: list[float] = []

    def client() -> None:
        n = 0
        while not done.is_set():
            started_after_kill = bool(killed_at)
            # TransactionCommittedError: it committed; the leader that ran it died first
            with contextlib.suppress(TransactionCommittedError):
                cluster.execute_lambda(lambda tx, n=n: insert_one(tx, 9 * 10**6 + n))
            n += 1
            if started_after_kill and not first_after:
                first_after.append(time.monotonic())
                done.set()

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.0)
    killed_at.append(time.monotonic())
    cluster.kill(leader)
    thread.join(60)
    done.set()
    cluster.restart(leader)
    return first_after[0] - killed_at[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "configs" / "local-3az.toml"))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="strand-bench-") as root:
        cluster = LedgerCluster.start(args.config, data_root=root)
        try:
            cluster.execute_lambda(lambda tx: tx.create_table("Bench"))
            measure(cluster, 4, 2.0)  # warm up
            rows = [(clients, measure(cluster, clients, args.seconds)) for clients in (1, 16)]
            failover_s = [failover(cluster) for _ in range(3)]
            status = [s.get("machine") for s in cluster.nodes()]
        finally:
            cluster.shutdown()
    table = Table(title="Strand cluster: 3 replicas, majority-synced, single-document transactions")
    for column in ("clients", "committed tx/s", "p50 ms", "p99 ms", "transactions"):
        table.add_column(column, justify="right")
    for clients, row in rows:
        table.add_row(
            str(clients),
            f"{row['tx_per_s']:,.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['count']:,.0f}",
        )
    console.print(table)
    console.print(
        "leader kill -> first commit after it: "
        + ", ".join(f"{s:.2f} s" for s in failover_s)
        + f" (median {statistics.median(failover_s):.2f} s)"
    )
    console.print(f"commit machines: {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

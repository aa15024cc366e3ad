"""Failover of the real cluster under a partition and under a kill, over many trials.

    .venv/bin/python benchmarks/failover.py [--trials 10] [--config configs/local-3az.toml]

Every link goes through toxiproxy (chaos/toxiproxy.py; needs toxiproxy-server on PATH or in
STRAND_TOXIPROXY_SERVER). Each trial: one client commits single-document inserts back to
back; the leader is cut from both followers (its clients still reach it), or its OS process
is SIGKILLed (Ray restarts it); failover is the time from the fault to the first commit
acknowledged among those invoked after it. The partition is healed (the node is back) and
every replica converges before the next trial. Prints each trial, the median and the max.
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
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.toxiproxy import HOW_TO_INSTALL, ProxiedNetwork, ToxiproxyServer, find_server  # noqa: E402
from chaos.workload import insert_one  # noqa: E402
from cluster.client import LedgerCluster, _with_data_root  # noqa: E402
from cluster.config import load_config  # noqa: E402
from core.errors import StrandError  # noqa: E402


def trial(cluster: LedgerCluster, network: ProxiedNetwork, mode: str) -> float:
    leader = cluster.wait_ready()
    done = threading.Event()
    fault_at: list[float] = []
    first_after: list[float] = []

    def client() -> None:
        n = 0
        while not done.is_set():
            invoked_after = bool(fault_at)
            with contextlib.suppress(StrandError):
                cluster.execute_lambda(partial(insert_one, n=7 * 10**9 + n))
                if invoked_after and not first_after:
                    first_after.append(time.monotonic())
                    done.set()
            n += 1

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.0)
    if mode == "partition":
        network.isolate(leader)
    else:
        os.kill(cluster.pids(leader)[0], signal.SIGKILL)
    fault_at.append(time.monotonic())
    thread.join(60)
    done.set()
    network.heal()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        digests = cluster.node_digests()
        if len(digests) == 3 and len(set(digests.values())) == 1:
            break
        time.sleep(0.2)
    return first_after[0] - fault_at[0] if first_after else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--config", default="configs/local-3az.toml")
    args = parser.parse_args()
    binary = find_server()
    if binary is None:
        print(HOW_TO_INSTALL, file=sys.stderr)
        return 2
    server = ToxiproxyServer(binary)
    network = ProxiedNetwork(server)
    data = Path(tempfile.mkdtemp(prefix="strand-failover-"))
    config = network.install(_with_data_root(load_config(args.config), data))
    cluster = LedgerCluster.start(config)
    try:
        cluster.execute_lambda(lambda tx: tx.create_table("Bench"))
        for mode in ("partition", "kill"):
            times = []
            for i in range(args.trials):
                seconds = trial(cluster, network, mode)
                times.append(seconds)
                print(f"{mode} trial {i + 1}: {seconds:.2f} s", flush=True)
            print(f"{mode}: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
                  f"over {len(times)} trials (election timeout "
                  f"{config.election_timeout_ms}-{2 * config.election_timeout_ms} ms)")  # fmt: skip
    finally:
        cluster.shutdown()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

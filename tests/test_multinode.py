"""The ledger on a real three-node Ray cluster (chaos.raycluster): three "machines", one per AZ.

`ray start` runs a head node with the resource az-a and two more nodes with az-b and az-c
(token authentication on, every process on the loopback interface, each node's Strand
peer and client ports on its own address: 127.0.0.2, .3, .4). A driver process attaches
with RAY_ADDRESS and starts the ledger there (LedgerCluster.start), detached; this test
process, which is no Ray driver, is a client over TCP with the config file alone. It
checks that the ledger's nodes landed one per AZ, SIGKILLs every process of the az-b Ray
node (its raylet, its workers, the StorageNode on it), keeps committing, brings the Ray
node back, and sees Ray restart StorageNode b there, caught up to the same digest.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from chaos.raycluster import DEFAULT_ZONES, RayCluster
from cluster.client import LedgerCluster
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent

DRIVER = r"""
import sys
from cluster.client import LedgerCluster
config, data_root, action = sys.argv[1:4]
if action == "start":
    handle = LedgerCluster.start(config, data_root=data_root, detached=True)
    print("started", handle.leader(), flush=True)
else:
    LedgerCluster.connect(config).shutdown()
    print("stopped", flush=True)
"""


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_config(path: Path) -> Path:
    nodes = []
    base = free_port("127.0.0.1")  # the client port base: any free one, checked below
    for i, (name, az) in enumerate(zip("abc", DEFAULT_ZONES, strict=True)):
        host = DEFAULT_ZONES[az]
        with socket.socket() as probe:
            probe.bind((host, base + i))  # free on that node's address
        nodes.append(
            f'[[nodes]]\nname = "{name}"\naz = "{az}"\nhost = "{host}"\n'
            f'port = {free_port(host)}\ndata_dir = "data/{name}"\n'
        )
    path.write_text(
        'cluster_name = "strand-multinode"\n'
        'secret = "multinode-test-secret-0123456789"\n'
        f"client_port_base = {base}\n\n" + "\n".join(nodes)
    )
    return path


def driver(ray_cluster: RayCluster, config: Path, data_root: Path, action: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(config), str(data_root), action],
        cwd=ROOT, env={**os.environ, **ray_cluster.env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_ledger_survives_losing_a_ray_node(tmp_path: Path) -> None:
    config = write_config(tmp_path / "multinode.toml")
    with RayCluster() as ray_cluster:
        assert "started" in driver(ray_cluster, config, tmp_path / "data", "start")
        client = LedgerCluster.connect(config)
        try:
            placed = {s["node"]: s["ray_node_id"] for s in client.nodes()}
            for name, az in zip("abc", DEFAULT_ZONES, strict=True):
                assert placed[name] == ray_cluster.node_id(az), f"node {name} is not on {az}"
            client.execute_lambda(lambda tx: tx.create_table("Car"))
            for n in range(10):
                client.execute_lambda(lambda tx, n=n: tx.insert("Car", {"n": n}))
            ray_cluster.kill_node("az-b")  # node b's raylet, workers and StorageNode: gone
            for n in range(10, 30):
                client.execute_lambda(lambda tx, n=n: tx.insert("Car", {"n": n}))
            assert "b" not in client.node_digests()
            ray_cluster.restart_node("az-b")
            tip = client.get_digest()

            def b_caught_up() -> bool:
                digests = client.node_digests()
                want = (tip["digestTipAddress"]["sequenceNo"], tip["digest"])
                return digests.get("b", (0, b""))[0] >= want[0]

            wait_for(b_caught_up, 90, "node b to come back on the new az-b node and catch up")
            [status] = [s for s in client.nodes() if s["node"] == "b"]
            assert status["ray_node_id"] == ray_cluster.node_id("az-b")
            assert client.execute_lambda(lambda tx: len(tx.find("Car"))) == 30
        finally:
            client.close()
            driver(ray_cluster, config, tmp_path / "data", "stop")

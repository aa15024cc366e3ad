"""Network faults on the real cluster, through toxiproxy on every link.

Every node-to-node link and every client-to-node link goes through a proxy of its own
(chaos/toxiproxy.py). While clients run transfers, a fault is injected and healed; each test
ends with every replica at one digest, every acknowledged transfer in every journal exactly
once, none the client was told failed, and the balances conserved. Needs a toxiproxy server
(PATH or STRAND_TOXIPROXY_SERVER); without one the module is skipped with a message, unless
STRAND_REQUIRE_TOXIPROXY=1 (CI), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chaos.toxiproxy import HOW_TO_INSTALL, ProxiedNetwork, ToxiproxyServer, find_server
from chaos.workload import open_accounts
from cluster.client import LedgerCluster
from cluster.config import load_config
from tests.conftest import private_cluster_config, wait_for
from tests.test_cluster import ACCOUNTS, check_journal, run_in_background


@pytest.fixture(scope="module")
def network() -> Iterator[ProxiedNetwork]:
    binary = find_server()
    if binary is None:
        if os.environ.get("STRAND_REQUIRE_TOXIPROXY") == "1":
            pytest.fail(HOW_TO_INSTALL)
        pytest.skip(HOW_TO_INSTALL)
    server = ToxiproxyServer(binary)
    try:
        yield ProxiedNetwork(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    ray_runtime: None, network: ProxiedNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LedgerCluster]:
    root = tmp_path_factory.mktemp("chaos")
    config = network.install(load_config(private_cluster_config(root, "strand-chaos", 600)))
    handle = LedgerCluster.start(config)
    try:
        open_accounts(handle, ACCOUNTS)
        yield handle
    finally:
        network.heal()
        handle.shutdown()
        network.destroy()


def _new_leader(cluster: LedgerCluster, old: str) -> bool:
    leader = cluster.leader()
    return leader is not None and leader != old


def test_a_partitioned_leader_is_replaced_and_loses_nothing(
    cluster: LedgerCluster, network: ProxiedNetwork
) -> None:
    old = cluster.leader()
    assert old is not None
    thread, result = run_in_background(cluster, threads=4, count=80, seed=61)
    network.isolate(old)  # its clients still reach it; its peers do not
    wait_for(lambda: _new_leader(cluster, old), timeout_s=30, what="a leader on the majority")
    network.heal()
    thread.join(120)
    assert not thread.is_alive()
    check_journal(cluster, result)


def test_a_one_way_partition_into_the_leader_is_survived(
    cluster: LedgerCluster, network: ProxiedNetwork
) -> None:
    """The leader's messages reach its followers; theirs never reach it (check-quorum makes
    it step down; pre-vote alone would keep the followers loyal to it forever)."""
    old = cluster.leader()
    assert old is not None
    thread, result = run_in_background(cluster, threads=4, count=80, seed=62)
    for peer in cluster.config.node_names:
        if peer != old:
            network.cut(peer, old)
    wait_for(lambda: _new_leader(cluster, old), timeout_s=30, what="a leader on the majority")
    network.heal()
    thread.join(120)
    assert not thread.is_alive()
    check_journal(cluster, result)


def test_latency_and_jitter_on_every_link_slow_commits_but_lose_nothing(
    cluster: LedgerCluster, network: ProxiedNetwork
) -> None:
    network.latency(40, jitter_ms=20)
    try:
        thread, result = run_in_background(cluster, threads=4, count=40, seed=63)
        thread.join(180)
        assert not thread.is_alive()
    finally:
        network.heal()
    check_journal(cluster, result)

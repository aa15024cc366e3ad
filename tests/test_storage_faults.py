"""Storage faults on a real cluster: a full disk, damaged entries, a node corrupt at open.

Each test ends with every node up, every replica at one digest, every stored entry
verifying on every node, and every acknowledged transfer in every journal exactly once.
Real Ray, real LevelDB (each node's directory on a tmpfs of its own, so the disk can
really fill: ENOSPC), real TCP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.workload import WorkloadResult, open_accounts
from cluster.client import LedgerCluster
from cluster.config import load_config
from core import keys
from core.storage import LevelDBStorage
from tests.conftest import private_cluster_config, wait_for
from tests.test_cluster import ACCOUNTS, check_journal, converged, run_in_background

ROOT = Path(__file__).resolve().parent.parent
TMPFS_BYTES = 64 * 1024 * 1024


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)], check=True
    )


@pytest.fixture(scope="module")
def cluster(ray_runtime: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerCluster]:
    root = tmp_path_factory.mktemp("faults")
    path = private_cluster_config(root, "strand-faults", 300, scrub_interval_ms=1500)
    config = load_config(path)
    mounts = [root / name for name in config.node_names]
    for mount in mounts:
        _mount_tmpfs(mount)
    handle = LedgerCluster.start(config)
    try:
        open_accounts(handle, ACCOUNTS)
        yield handle
        handle.shutdown()
    finally:
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _status(cluster: LedgerCluster, name: str) -> dict[str, object]:
    return next(s for s in cluster.nodes() if s["node"] == name)


def _data_dir(cluster: LedgerCluster, name: str) -> Path:
    return Path(cluster.config.node(name).data_dir)


def _all_whole(cluster: LedgerCluster) -> None:
    """Every node scrubs now and finds nothing."""
    for name in cluster.config.node_names:
        report = cluster.scrub(name)
        assert report["health"] == "ok", (name, report)
        assert report["findings"] == [], (name, report)


@pytest.mark.slow  # CI time; the disk-full experiment runs by default
def test_a_full_disk_stops_only_its_node_which_recovers_once_space_is_freed(
    cluster: LedgerCluster,
) -> None:
    victim = cluster.leader()
    assert victim is not None
    mount = _data_dir(cluster, victim).parent
    old_pid = _status(cluster, victim)["pid"]
    thread, result = run_in_background(cluster, threads=4, count=600, seed=41)
    stat = os.statvfs(mount)
    filler = mount / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):  # every free page of the tmpfs
        os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize)
    # The node exits at its first failed write; Ray restarts it; it cannot open on a
    # full disk, so it stays up as "failed", saying why, while the others go on. Writes go
    # on until it has failed (a workload that ended first would leave it nothing to write).
    more: list[tuple[threading.Thread, WorkloadResult]] = []
    deadline = time.monotonic() + 90
    while _status(cluster, victim)["role"] != "failed":
        assert time.monotonic() < deadline, f"{victim} did not fail: {_status(cluster, victim)}"
        if not thread.is_alive() and all(not t.is_alive() for t, _ in more):
            more.append(run_in_background(cluster, threads=2, count=40, seed=42 + len(more)))
        time.sleep(0.2)
    status = _status(cluster, victim)
    assert status["pid"] != old_pid
    assert "No space left" in str(status["error"]) or "space" in str(status["error"]).lower()
    leaders = [s for s in cluster.nodes() if s["role"] == "leader"]
    wait_for(lambda: cluster.leader() not in (None, victim), what="a new leader")
    assert all(s["node"] != victim for s in leaders)
    filler.unlink()  # the operator frees space: the node opens by itself and catches up
    for worker in [thread, *(t for t, _ in more)]:
        worker.join(120)
        assert not worker.is_alive()
    wait_for(lambda: _status(cluster, victim)["role"] in ("leader", "follower"), timeout_s=60)
    for outcome in [result, *(r for _, r in more)]:
        check_journal(cluster, outcome)
    _all_whole(cluster)


def _flip(storage: LevelDBStorage, key: bytes) -> None:
    value = storage.get(key)
    assert value
    damaged = bytearray(value)
    damaged[len(damaged) // 2] ^= 0x10
    storage.write([(key, bytes(damaged))])


def test_damaged_entries_are_found_repaired_from_a_peer_and_mended(
    cluster: LedgerCluster,
) -> None:
    """A flipped byte in a block before the tip, in a Merkle node, in a document and in an
    index entry (bytes that pass LevelDB's own checksums, as a bad disk or bad memory
    makes them): the node finds them, gives up leading, fetches the block from a peer by
    hash, mends the rest, and serves again; reads of the range meanwhile go elsewhere."""
    # a document (and its index entry) the workload never rewrites, so only the scrub mends it
    cluster.execute_statement("CREATE TABLE Untouched")
    cluster.execute_statement("CREATE INDEX ON Untouched (tag)")
    [inserted] = cluster.execute_statement("INSERT INTO Untouched ?", {"tag": "kept"})
    untouched = inserted["documentId"].encode()
    victim = cluster.leader()
    assert victim is not None
    digest = cluster.get_digest()
    tip = digest["digestTipAddress"]["sequenceNo"]
    cluster.kill(victim)
    wait_for(lambda: cluster.leader() not in (None, victim), what="a new leader")
    storage = LevelDBStorage(_data_dir(cluster, victim))
    try:
        _flip(storage, keys.block_key(tip // 2))
        _flip(storage, keys.node_key(1, tip // 4))
        doc_key = next(
            k for k, _ in storage.scan(keys.DOC_PREFIX, keys.prefix_end(keys.DOC_PREFIX))
            if k.endswith(untouched)
        )  # fmt: skip
        _flip(storage, doc_key)
        index_key = next(
            k for k, _ in storage.scan(keys.INDEX_PREFIX, keys.prefix_end(keys.INDEX_PREFIX))
            if k.endswith(untouched)
        )  # fmt: skip
        stray = index_key[:-1] + (b"Z" if index_key[-1:] != b"Z" else b"Y")
        storage.write([(stray, b"")], [index_key])  # as a flipped key byte does
    finally:
        storage.close()
    thread, result = run_in_background(cluster, threads=4, count=300, seed=42)
    cluster.restart(victim)
    cluster.scrub(victim)  # a pass that began after the restart, under load
    thread.join(120)
    assert not thread.is_alive()
    status = cluster.scrub(victim)  # and one with nothing committed meanwhile
    assert status["health"] == "ok", status
    assert int(status["blocks_repaired"]) >= 1, status  # type: ignore[call-overload]
    # the Merkle node, the document, the stray and the missing index entry
    assert int(status["entries_mended"]) >= 4, status  # type: ignore[call-overload]
    assert int(status["findings_total"]) >= 4, status  # type: ignore[call-overload]
    check_journal(cluster, result)
    for name in cluster.config.node_names:
        verdict, _ = cluster.query("verify_journal", consistency="stale", node=name)
        assert verdict.ok, (name, verdict)
    _all_whole(cluster)


@pytest.mark.slow  # CI time: run with -m slow
def test_a_node_corrupt_at_open_is_reported_and_rebuilt_from_its_peers(
    cluster: LedgerCluster,
) -> None:
    victim = next(n for n in cluster.config.node_names if n != cluster.leader())
    cluster.kill(victim)
    data_dir = _data_dir(cluster, victim)
    for table in data_dir.glob("*.ldb"):  # garble every table file's middle
        raw = bytearray(table.read_bytes())
        raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xa5" * 64
        table.write_bytes(bytes(raw))
    for manifest in data_dir.glob("MANIFEST-*"):
        manifest.write_bytes(b"\0" * 64)
    cluster.restart(victim)  # comes up "failed", saying why, instead of dying
    wait_for(lambda: _status(cluster, victim)["role"] == "failed", what="the node to fail")
    assert "Corrupt" in str(_status(cluster, victim)["error"])
    thread, result = run_in_background(cluster, threads=4, count=300, seed=43)
    config_file = _data_dir(cluster, "a").parent.parent / "strand-faults.toml"
    out = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "--config", str(config_file), "status"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
    )  # fmt: skip
    roles = {line["node"]: line["role"] for line in map(json.loads, out.stdout.splitlines())}
    assert roles.pop(victim) == "down"  # a client that is not a Ray driver: it cannot tell
    assert sorted(roles.values()) == ["follower", "leader"]
    cluster.rebuild(victim)
    thread.join(120)
    assert not thread.is_alive()
    wait_for(lambda: converged(cluster), timeout_s=120, what="the rebuilt node to catch up")
    check_journal(cluster, result)
    assert any(p.name.startswith("db.replaced-") for p in data_dir.parent.iterdir())
    _all_whole(cluster)

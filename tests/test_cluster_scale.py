"""A cluster on a journal past 65,536 blocks (the old digest actor's cap), restarted pieces.

Every node is seeded with the same 70,000-block journal (chaos.journals: what nodes restored
from one backup hold), then the cluster starts on it: the digest (through the digest actor,
which checks every answer) covers every block committed before the call, a block past the
old cap is served with a proof that verifies, and a restarted digest actor serves at once
with nothing to rebuild. `-m slow` does the same at 10^6 blocks.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from chaos.journals import build_journal, seed_cluster
from cluster.client import LedgerCluster, _with_data_root
from cluster.common import genesis_of
from cluster.config import load_config
from core import verification

ROOT = Path(__file__).resolve().parent.parent


def run_on_a_big_journal(tmp_path: Path, blocks: int) -> None:
    config = _with_data_root(load_config(ROOT / "configs" / "test-3az.toml"), tmp_path / "nodes")
    last = build_journal(tmp_path / "seed", genesis_of(config), blocks)
    seed_cluster(config, tmp_path / "seed")
    cluster = LedgerCluster.start(config)
    try:
        first = cluster.audit("get_digest")
        assert first["digestTipAddress"]["sequenceNo"] == last
        doc_id = cluster.execute_lambda(lambda tx: tx.insert("Scale", {"after": True}))
        killed = time.monotonic()
        cluster.kill("digest", restart=True)
        up = ready = killed
        for _ in range(200):  # Ray restarts the actor: a new process, its imports
            try:
                ray.get(cluster._actor("digest").ping.remote(), timeout=5)  # noqa: SLF001
                up = time.monotonic()
                digest = cluster.audit("get_digest")
                ready = time.monotonic()
                break
            except Exception:
                time.sleep(0.05)
        # figures for the README, not timed assertions
        print(f"\ndigest actor at {blocks:,} blocks: Ray restarted it in {up - killed:.2f} s; "
              f"its first digest took {1000 * (ready - up):.0f} ms more")  # fmt: skip
        assert digest["digestTipAddress"]["sequenceNo"] == last + 1
        answer = cluster.audit("get_block", {"strandId": first["digestTipAddress"]["strandId"],
                                             "sequenceNo": 65_537})  # fmt: skip
        assert verification.verify_block(
            answer["block"], answer["proof"], answer["digest"]["digest"]
        )
        [revision] = cluster.history("Scale", doc_id)
        assert revision["blockAddress"]["sequenceNo"] == last + 1
        statuses = cluster.nodes()
        assert {s["sequence_no"] for s in statuses} == {last + 1}
    finally:
        cluster.shutdown()


@pytest.mark.slow  # CI time: run with -m slow
def test_digests_cover_a_journal_past_the_old_cap(ray_runtime: None, tmp_path: Path) -> None:
    run_on_a_big_journal(tmp_path, 70_000)


@pytest.mark.slow
def test_digests_cover_a_million_blocks(ray_runtime: None, tmp_path: Path) -> None:
    run_on_a_big_journal(tmp_path, 1_000_000)

"""Big journals, fast: seed a ledger (or every node of a cluster) with N blocks for scale tests.

`build_journal(path, genesis, blocks)` writes a LevelDB ledger of `blocks` single-document
blocks after genesis through the real engine (prepare, write, publish: every hash, Merkle
node and derived key as a live ledger has them), many transactions per group commit and
unsynced, so 10^5 blocks take seconds. `seed_cluster(config, source)` copies that directory
to every node's data directory: identical replicas that have applied the journal with an
empty Raft log, as nodes restored from a backup are; a cluster started on them elects a
leader and carries on from the last block.

Invariants: the journal verifies (`core.queries.verify_journal`); its strand and genesis are
the cluster's when `genesis` is `cluster.common.genesis_of(config)`.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from cluster.config import ClusterConfig
from core.engine import Engine, Genesis
from core.ids import IdSource
from core.storage import LevelDBStorage

TABLE = "Scale"


def build_journal(
    path: str | os.PathLike[str], genesis: Genesis, blocks: int, *, per_batch: int = 2_000
) -> int:
    """Write a ledger of `blocks` blocks after genesis at `path`; returns the last sequence no."""
    Path(path).mkdir(parents=True, exist_ok=True)
    storage = LevelDBStorage(path, sync=False)
    try:
        engine = Engine(
            storage, IdSource(random.Random(0).randbytes), genesis.created_ms, genesis=genesis
        )
        now = genesis.created_ms + 1_000
        clock = lambda: now  # noqa: E731
        first = engine.begin(now, clock)
        first.create_table(TABLE)
        engine.commit([first], now)
        while engine.durable_seq < blocks:
            now += 1
            count = min(per_batch, blocks - engine.durable_seq)
            pending = []
            for n in range(count):
                tx = engine.begin(now, clock)
                tx.insert(TABLE, {"n": engine.durable_seq + n})
                pending.append(tx)
            batch, _ = engine.prepare(pending, now)
            engine.write(batch, sync=False)
            engine.publish(batch)
        return engine.durable_seq
    finally:
        storage.close()


def seed_cluster(config: ClusterConfig, source: str | os.PathLike[str]) -> None:
    """Copy a ledger directory to every node of `config` (replacing what is there)."""
    for node in config.nodes:
        shutil.rmtree(node.data_dir, ignore_errors=True)
        shutil.copytree(source, node.data_dir)

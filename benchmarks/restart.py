"""Restart cost: how long a replica takes to open, as its Raft log and journal grow.

    .venv/bin/python benchmarks/restart.py [--sizes 10000,100000,1000000]

For each size N, a single-node replica on LevelDB commits N log entries of one block each
(so the log has N entries and the journal N blocks, as a node that applied N proposals),
is closed, and is opened again several times: the median open time is printed, with the
bytes the Raft log takes on disk against the journal's. Opening reads the tip block, the
Merkle frontier, the catalog and the log's last key (entries are read on demand): it does
not grow with N. Building the 10^6 case takes several minutes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import keys  # noqa: E402
from core.engine import Engine, Genesis  # noqa: E402
from core.ids import IdSource  # noqa: E402
from core.raft import RaftConfig  # noqa: E402
from core.raftlog import encode_batch_raw  # noqa: E402
from core.replica import Replica  # noqa: E402
from core.storage import LevelDBStorage  # noqa: E402

GENESIS = Genesis("0" * 21 + "A", "0" * 21 + "B", 1_700_000_000_000)


def replica(storage: LevelDBStorage) -> Replica:
    return Replica("a", ("a",), storage, config=RaftConfig(election_ticks=2),
                   rng=random.Random(0), genesis=GENESIS, now_ms=0)  # fmt: skip


def build(path: Path, entries: int) -> None:
    storage = LevelDBStorage(path, sync=False)
    node = replica(storage)
    while not node.ready_to_serve:
        node.tick()
        node.process_ready()
    # the blocks are made by a second ledger (on LevelDB: a million keys in memory sorted
    # lists would dominate the run), as a leader would make them
    source_storage = LevelDBStorage(path.parent / "source", sync=False)
    source = Engine(source_storage, IdSource(random.Random(1).randbytes), 0, genesis=GENESIS)
    clock = lambda: 1_700_000_000_000  # noqa: E731
    tx = source.begin(clock(), clock)
    tx.create_table("Car")
    for n in range(entries):
        if n:
            tx = source.begin(clock(), clock)
            tx.insert("Car", {"n": n})
        batch, _ = source.prepare([tx], clock())
        source.write(batch, sync=False)
        source.publish(batch)
        prev = batch.blocks[0]["previousBlockHash"]
        node.propose(encode_batch_raw(batch.first_seq, prev, batch.tip_hash, batch.raw_blocks))
        while node.process_ready() is not None:
            pass
    storage.close()
    source_storage.close()


def disk_bytes(path: Path, prefix: bytes) -> int:
    storage = LevelDBStorage(path)
    try:
        return sum(len(k) + len(v) for k, v in storage.scan(prefix, keys.prefix_end(prefix)))
    finally:
        storage.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    table = Table(title="opening a replica (median of 5)")
    for column in ("log entries = blocks", "open ms", "Raft log bytes", "journal bytes"):
        table.add_column(column, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="strand-restart-") as root:
            path = Path(root) / "node"
            started = time.perf_counter()
            build(path, size)
            built_s = time.perf_counter() - started
            times = []
            for _ in range(5):
                started = time.perf_counter()
                storage = LevelDBStorage(path)
                opened = replica(storage)
                times.append((time.perf_counter() - started) * 1000)
                assert opened.engine.durable_seq == size
                storage.close()
            log = disk_bytes(path, keys.LOG_PREFIX)
            journal = disk_bytes(path, keys.BLOCK_PREFIX)
            table.add_row(
                f"{size:,}", f"{statistics.median(times):.1f}", f"{log:,}", f"{journal:,}"
            )
            print(f"{size:,} entries built in {built_s:.0f} s", flush=True)
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

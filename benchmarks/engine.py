"""Embedded engine benchmark: group-commit throughput vs the raw LevelDB ceiling, and
digest / proof / verify times as the journal grows (to show O(log n)).

    .venv/bin/python benchmarks/engine.py            # full run (about 3 minutes)
    .venv/bin/python benchmarks/engine.py --quick    # smaller sizes

Throughput: C client threads each commit single-document insert transactions through
`Ledger.execute_lambda` on LevelDB (synced group commit). The ceiling is measured in the same
run on the same disk: raw plyvel WriteBatch(sync=True) batches holding the same number of
records per batch as the engine's average group commit, each record SHA-256 hashed. The
ratio of the two is the figure of merit (absolute numbers drift on shared machines).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import plyvel
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Ledger, verification  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.ids import IdSource  # noqa: E402
from core.storage import LevelDBStorage  # noqa: E402

DOC = {
    "owner": "owner-00042",
    "balance": 1000,
    "currency": "EUR",
    "active": True,
    "tags": ["retail", "eu"],
}


def engine_throughput(workdir: Path, clients: int, seconds: float) -> tuple[float, float]:
    """(committed tx/s, mean transactions per group commit)."""
    path = workdir / f"tput-{clients}"
    with Ledger.open(path) as ledger:
        ledger.execute_lambda(lambda tx: tx.create_table("T"))
        engine = ledger._engine
        writes_before = engine.stats_batches
        stop = time.perf_counter() + seconds
        counts = [0] * clients

        def worker(i: int) -> None:
            while time.perf_counter() < stop:
                ledger.execute_lambda(lambda tx: tx.insert("T", DOC))
                counts[i] += 1

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        batches = engine.stats_batches - writes_before
    shutil.rmtree(path)
    total = sum(counts)
    return total / elapsed, total / max(batches, 1)


def raw_ceiling(workdir: Path, per_batch: int, seconds: float) -> float:
    """Records/s of synced plyvel WriteBatches of `per_batch` SHA-256-hashed records."""
    path = workdir / "raw"
    db = plyvel.DB(str(path), create_if_missing=True)
    record = os.urandom(200)
    n = 0
    seq = 0
    stop = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        with db.write_batch(sync=True, transaction=True) as batch:
            for _ in range(per_batch):
                seq += 1
                digest = hashlib.sha256(record + seq.to_bytes(8, "big")).digest()
                batch.put(b"B" + seq.to_bytes(8, "big"), digest + record)
        n += per_batch
    elapsed = time.perf_counter() - started
    db.close()
    shutil.rmtree(path)
    return n / elapsed


def grow(engine: Engine, target_blocks: int) -> None:
    """Append single-document transactions in batches of 500 until the journal has target."""
    while engine.durable_seq + 1 < target_blocks:
        count = min(500, target_blocks - engine.durable_seq - 1)
        txs = []
        for i in range(count):
            tx = engine.begin(0, lambda: 0)
            tx.insert("T", {"n": engine.durable_seq + i})
            txs.append(tx)
        engine.commit(txs, 0)


def proof_times(engine: Engine, samples: int) -> dict[str, float]:
    from core import queries

    rng = random.Random(1)
    tip = engine.durable_seq
    digest = queries.get_digest(engine)["digest"]
    t_digest = _timed(lambda: queries.get_digest(engine), samples)
    fetch, check = [], []
    for _ in range(samples):
        seq = rng.randint(1, tip)
        address = {"strandId": engine.strand_id, "sequenceNo": seq}
        doc_id = engine.read_block(seq)["revisions"][0]["metadata"]["id"]
        started = time.perf_counter()
        got = queries.get_revision(engine, address, doc_id)
        fetch.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert verification.verify_revision(got["revision"], got["proof"], digest)
        check.append(time.perf_counter() - started)
    proof_only = _timed(
        lambda: verification.verify_proof(got["revision"]["hash"], got["proof"], digest), samples
    )
    return {
        "digest_ms": t_digest,
        "revision_proof_ms": statistics.median(fetch) * 1000,
        "verify_revision_ms": statistics.median(check) * 1000,
        "verify_proof_ms": proof_only,
        "proof_len": len(got["proof"]),
    }


def _timed(fn: object, samples: int) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="strand-bench-"))
    try:
        tput = Table(title="group commit: single-document transactions on LevelDB (synced)")
        for column in (
            "clients",
            "committed tx/s",
            "tx per group commit",
            "raw ceiling rec/s (same batch)",
            "ratio",
        ):
            tput.add_column(column, justify="right")
        for clients in (1, 4, 16):
            rate, per_batch = engine_throughput(workdir, clients, args.seconds)
            ceiling = raw_ceiling(workdir, max(1, round(per_batch)), args.seconds)
            tput.add_row(
                str(clients),
                f"{rate:,.0f}",
                f"{per_batch:.1f}",
                f"{ceiling:,.0f}",
                f"{rate / ceiling:.1%}",
            )
            console.print(f"  measured {clients} clients", style="dim")
        console.print(tput)

        sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5, 10**6]
        proofs = Table(title="digest and proofs vs journal size (median, ms)")
        for column in (
            "blocks",
            "get_digest",
            "get_revision+proof",
            "verify_revision",
            "verify_proof",
            "proof hashes",
            "build s",
        ):
            proofs.add_column(column, justify="right")
        storage = LevelDBStorage(workdir / "grow")
        counter = iter(range(1, 1 << 62))
        engine = Engine(storage, IdSource(lambda n: next(counter).to_bytes(n, "big")), 0)
        tx = engine.begin(0, lambda: 0)
        tx.create_table("T")
        engine.commit([tx], 0)
        for size in sizes:
            started = time.perf_counter()
            grow(engine, size)
            built = time.perf_counter() - started
            figures = proof_times(engine, 300)
            proofs.add_row(
                f"{size:,}",
                f"{figures['digest_ms']:.3f}",
                f"{figures['revision_proof_ms']:.3f}",
                f"{figures['verify_revision_ms']:.3f}",
                f"{figures['verify_proof_ms']:.3f}",
                str(figures["proof_len"]),
                f"{built:.0f}",
            )
            console.print(f"  measured {size:,} blocks", style="dim")
        storage.close()
        console.print(proofs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

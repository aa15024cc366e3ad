"""PartiQL overhead on the embedded ledger: statements per second, native API beside it;
then scans and point lookups on tables of 10^4 to 10^6 documents.

Usage: .venv/bin/python benchmarks/partiql.py [--count N] [--scan-sizes 10000,100000,1000000]
       [--no-scan | --scan-only] [--rebuild] [--no-old]
The first part runs on an in-memory ledger (no fsync) so the figures are the CPU cost of the
statement path: parse (cached after the first time), static checks, evaluation, and the
transaction's work; then joins: two ledger tables joined with an index on the join field
(the second table looked up by index once per row of the first) and without one (read once,
hash-joined), and a hash self-join in memory.

Scans: a LevelDB ledger of N vehicle documents (7 fields, an index on VIN) per size, built
once through the engine (unsynced group commits) under data/bench-partiql/ and reused
(`--rebuild` builds it again). Each size is measured in a fresh process: `SELECT COUNT(*)`
(counted from storage keys), `COUNT(*)` with a WHERE on an unindexed field (every document
streamed and decoded), the same count with the table loaded into memory first (what every
scan did before scans streamed; `--no-old` skips it), and indexed point lookups spelled as
the index is and otherwise (`vin`, `"VIN"`, `v['VIN']`), each checked to find its one row.
Memory: the tracemalloc peak of Python allocations during one run of the statement (a
separate run from the timed ones) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import Ledger
from core.engine import Engine, Genesis
from core.ids import IdSource
from core.partiql import evaluate
from core.partiql.data import Bag
from core.partiql.parser import _parse_cached, parse
from core.storage import LevelDBStorage, MemoryStorage
from core.transaction import Transaction

SCAN_DIR = Path(__file__).resolve().parent.parent / "data" / "bench-partiql"
_MAKES = ["Mercedes", "Ford", "Toyota", "Tesla", "Nissan"]


def _timed(count: int, fn: Callable[[int], Any]) -> tuple[float, float]:
    """(operations per second, median ms) of `fn(i)` for i in range(count)."""
    samples = []
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return count / total, statistics.median(samples) * 1000


def _one(rows: list[Any]) -> None:
    """A point query or update must find (change) exactly one document: an index that
    found nothing would look faster."""
    assert len(rows) == 1, rows


def _joins(ledger: Ledger, size: int) -> list[tuple[str, tuple[float, float]]]:
    """Two-table joins on the ledger (each of `size` rows) and a self-join in memory."""

    def setup(tx: Transaction) -> None:
        for table in ("Person", "Vehicle", "PersonNoIndex"):
            tx.execute_statement(f"CREATE TABLE {table}")
        tx.execute_statement("CREATE INDEX ON Person (GovId)")

    ledger.execute_lambda(setup)

    def load(tx: Transaction, start: int) -> None:  # 39 documents: QLDB's limit is 40
        for i in range(start, min(start + 13, size)):
            tx.execute_statement("INSERT INTO Person ?", {"GovId": f"G{i}", "Name": f"N{i}"})
            tx.execute_statement("INSERT INTO PersonNoIndex ?", {"GovId": f"G{i}"})
            tx.execute_statement("INSERT INTO Vehicle ?", {"VIN": f"V{i}", "Owner": f"G{i}"})

    for chunk in range(0, size, 13):
        ledger.execute_lambda(lambda tx, c=chunk: load(tx, c))
    indexed = "SELECT v.VIN, p.Name FROM Vehicle AS v, Person AS p WHERE v.Owner = p.GovId"
    scanned = "SELECT v.VIN FROM Vehicle AS v, PersonNoIndex AS p WHERE v.Owner = p.GovId"

    def query(text: str) -> Callable[[int], Any]:
        def run(_: int) -> None:
            found = ledger.execute_lambda(lambda tx: list(tx.execute_statement(text)))
            assert len(found) == size, len(found)

        return run

    table = [{"k": i % (size * 10), "v": i} for i in range(size * 10)]

    def self_join(_: int) -> None:
        found = evaluate("SELECT a.v FROM t AS a, t AS b WHERE a.k = b.k", {"t": table})
        assert len(found) == size * 10

    return [
        (f"join {size} x {size} docs, index probe per row", _timed(5, query(indexed))),
        (f"join {size} x {size} docs, no index (one scan, hash join)", _timed(2, query(scanned))),
        (
            f"self-join of {size * 10} values in memory (hash, {size * 10} rows out)",
            _timed(5, self_join),
        ),
    ]


# ============================================================================ scans


def vehicle(i: int) -> dict[str, Any]:
    return {
        "VIN": f"VIN{i:09d}",
        "Type": "Sedan",
        "Year": 1990 + i % 35,
        "Make": _MAKES[i % 5],
        "Model": f"M{i % 97}",
        "Color": ["Red", "Blue", "Silver"][i % 3],
        "Price": i % 50_000,
    }


def scan_ledger(size: int, rebuild: bool) -> Path:
    """The directory of a ledger whose table Vehicle holds `size` documents (index on VIN),
    built through the engine (40 documents per transaction, 50 transactions per unsynced
    group commit) unless a complete one is there already."""
    path = SCAN_DIR / f"vehicles-{size}"
    if (path / "COMPLETE").exists() and not rebuild:
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    started = time.perf_counter()
    storage = LevelDBStorage(path, sync=False)
    try:
        ids = IdSource(random.Random(size).randbytes)
        now = 1_700_000_000_000
        engine = Engine(storage, ids, now, genesis=Genesis(ids.new_id(), ids.new_id(), now))
        tx = engine.begin(now, lambda: 1_700_000_000_000)
        tx.create_table("Vehicle")
        tx.create_index("Vehicle", "VIN")
        engine.commit([tx], now)
        i = 0
        while i < size:
            now += 1
            pending: list[Transaction] = []
            while i < size and len(pending) < 50:
                tx = engine.begin(now, _fixed_clock(now))
                for _ in range(min(40, size - i)):
                    tx.insert("Vehicle", vehicle(i))
                    i += 1
                pending.append(tx)
            batch, _ = engine.prepare(pending, now)
            engine.write(batch, sync=False)
            engine.publish(batch)
    finally:
        storage.close()
    (path / "COMPLETE").write_text(str(size))
    print(f"built {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def _fixed_clock(ms: int) -> Callable[[], int]:
    return lambda: ms


def _statement(text: str, *params: Any) -> Callable[[Transaction], list[Any]]:
    return lambda tx: list(tx.execute_statement(text, *params))


def _measure(fn: Callable[[], Any], repeat: int, traced: bool = True) -> dict[str, float]:
    """Median wall and CPU seconds of `fn` over `repeat` runs, then (`traced`) one more run
    under tracemalloc for its peak of Python allocations (nan: not traced)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    peak = float("nan")
    if traced:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "peak_mb": peak / 2**20,
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scan_child(size: int, old: bool) -> dict[str, Any]:
    """One size's figures (run in a process of its own, so RSS is this size's)."""
    # a long transaction limit: the loaded-first and traced runs of 10^6 documents may pass
    # QLDB's 30 s on a busy machine
    storage = LevelDBStorage(scan_ledger(size, rebuild=False), create_if_missing=False)
    ledger = Ledger(storage, transaction_timeout_ms=3_600_000)
    traced = size <= 100_000  # tracemalloc slows a scan of 10^6 documents severalfold
    parse("SELECT 1 FROM x")  # build the parser before anything is measured
    run = ledger.execute_lambda
    out: dict[str, Any] = {"size": size}

    def count(text: str, expected: int) -> Callable[[], Any]:
        def go() -> None:
            [row] = run(lambda tx: list(tx.execute_statement(text)))
            assert row["_1"] == expected, (row, expected)

        return go

    year = sum(1 for i in range(size) if 1990 + i % 35 == 2000)

    def loaded_first() -> None:
        def body(tx: Transaction) -> Any:
            docs = tx.select_documents(tx.table("Vehicle"))  # the table as a list
            return evaluate("SELECT COUNT(*) FROM t", {"t": Bag(d for _, d in docs)})

        [row] = run(body)
        assert row["_1"] == size

    out["count"] = _measure(count("SELECT COUNT(*) FROM Vehicle", size), 3)
    out["count_where"] = _measure(
        count("SELECT COUNT(*) FROM Vehicle AS v WHERE v.Year = 2000", year), 1, traced
    )

    rng = random.Random(7)
    for name, text in [
        ("lookup", "SELECT * FROM Vehicle AS v WHERE v.VIN = ?"),
        ("lookup_lower", "SELECT * FROM Vehicle AS v WHERE v.vin = ?"),
        ("lookup_quoted", 'SELECT * FROM Vehicle WHERE "VIN" = ?'),
        ("lookup_bracket", "SELECT * FROM Vehicle AS v WHERE v['VIN'] = ?"),
    ]:
        samples = []
        for _ in range(300):
            i = rng.randrange(size)
            t0 = time.perf_counter()
            rows: list[Any] = run(_statement(text, f"VIN{i:09d}"))
            samples.append(time.perf_counter() - t0)
            _one(rows)  # found it, and only it
            assert rows[0]["VIN"] == f"VIN{i:09d}", rows
        out[name] = statistics.median(samples) * 1000
    out["max_rss_mb"] = _rss_mb()  # before the table is ever loaded whole
    if old:
        out["count_old"] = _measure(loaded_first, 1, traced)
        out["max_rss_old_mb"] = _rss_mb()
    ledger.close()
    return out


def scans(sizes: list[int], rebuild: bool, old: bool) -> None:
    results = []
    for size in sizes:
        scan_ledger(size, rebuild)
        args = [sys.executable, __file__, "--scan-child", str(size)] + ([] if old else ["--no-old"])
        done = subprocess.run(args, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print()
    print(
        f"{'documents':>10} {'COUNT(*) s':>11} {'cpu s':>6} {'peak MB':>8} "
        f"{'WHERE scan s':>13} {'peak MB':>8} {'loaded first s':>15} {'peak MB':>8} "
        f"{'lookup ms':>10} {'vin':>6} {'quoted':>7} {'[VIN]':>6} {'max RSS MB':>11} "
        f"{'(loaded)':>9}"
    )
    for r in results:
        c, w = r["count"], r["count_where"]
        o = r.get("count_old")
        old_cols = f"{o['wall']:>15.2f} {o['peak_mb']:>8.1f}" if o else f"{'-':>15} {'-':>8}"
        print(
            f"{r['size']:>10,} {c['wall']:>11.3f} {c['cpu']:>6.3f} {c['peak_mb']:>8.2f} "
            f"{w['wall']:>13.2f} {w['peak_mb']:>8.2f} {old_cols} "
            f"{r['lookup']:>10.3f} {r['lookup_lower']:>6.3f} {r['lookup_quoted']:>7.3f} "
            f"{r['lookup_bracket']:>6.3f} {r['max_rss_mb']:>11.0f} "
            f"{r.get('max_rss_old_mb', float('nan')):>9.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--scan-sizes", default="10000,100000,1000000")
    parser.add_argument("--no-scan", action="store_true")
    parser.add_argument("--scan-only", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="build the scan ledgers again")
    parser.add_argument("--no-old", action="store_true", help="skip the table-loaded-first run")
    parser.add_argument("--scan-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan_child is not None:
        print(json.dumps(scan_child(args.scan_child, not args.no_old)))
        return
    if not args.scan_only:
        statements(args.count)
    if not args.no_scan:
        sizes = [int(x) for x in args.scan_sizes.split(",") if x]
        scans(sizes, args.rebuild, not args.no_old)


def statements(n: int) -> None:
    ledger = Ledger(MemoryStorage())

    def setup(tx: Transaction) -> None:
        tx.execute_statement("CREATE TABLE Car")
        tx.execute_statement("CREATE INDEX ON Car (VIN)")

    ledger.execute_lambda(setup)
    run = ledger.execute_lambda
    rows: list[tuple[str, tuple[float, float]]] = [
        (
            "INSERT INTO Car ? (PartiQL)",
            _timed(
                n,
                lambda i: run(
                    lambda tx: tx.execute_statement(
                        "INSERT INTO Car ?", {"VIN": f"V{i}", "Year": 2000 + i % 20}
                    )
                ),
            ),
        ),
        (
            "tx.insert (native)",
            _timed(
                n,
                lambda i: run(lambda tx: tx.insert("Car", {"VIN": f"W{i}", "Year": 2000 + i % 20})),
            ),
        ),
        (
            "SELECT ... WHERE c.VIN = ? (index)",
            _timed(
                n,
                lambda i: _one(
                    run(
                        lambda tx: list(
                            tx.execute_statement("SELECT * FROM Car AS c WHERE c.VIN = ?", f"V{i}")
                        )
                    )
                ),
            ),
        ),
        (
            "tx.find(VIN=...) (native, index)",
            _timed(n, lambda i: _one(run(lambda tx: tx.find("Car", VIN=f"V{i}")))),
        ),
        (
            "UPDATE ... SET ... WHERE c.VIN = ?",
            _timed(
                n,
                lambda i: _one(
                    run(
                        lambda tx: tx.execute_statement(
                            "UPDATE Car AS c SET c.Year = c.Year + 1 WHERE c.VIN = ?", f"V{i}"
                        )
                    )
                ),
            ),
        ),
        (
            f"SELECT COUNT(*) over {2 * n} docs (scan)",
            _timed(
                max(n // 100, 5),
                lambda i: run(lambda tx: list(tx.execute_statement("SELECT COUNT(*) FROM Car"))),
            ),
        ),
    ]
    text = "SELECT v.VIN, p.Name FROM Vehicle AS v, Person AS p BY pid WHERE v.Owner = pid"

    def parse_uncached(_: int) -> None:
        _parse_cached.cache_clear()
        parse(text)

    rows.append(("parse a join (uncached)", _timed(n, parse_uncached)))
    rows += _joins(ledger, max(n // 4, 50))
    print(f"{'operation':<58} {'ops/s':>9} {'median ms':>10}")
    for name, (rate, median) in rows:
        print(f"{name:<58} {rate:>9,.0f} {median:>10.3f}")


if __name__ == "__main__":
    main()

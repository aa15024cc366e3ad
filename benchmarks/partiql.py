"""PartiQL overhead on the embedded ledger: statements per second, native API beside it.

Usage: .venv/bin/python benchmarks/partiql.py [--count N]
Runs on an in-memory ledger (no fsync) so the figures are the CPU cost of the statement path:
parse (cached after the first time), static checks, evaluation, and the transaction's work;
then joins: two ledger tables joined with an index on the join field (the second table
looked up by index once per row of the first) and without one (read once, hash-joined), and
a hash self-join in memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from core import Ledger
from core.partiql import evaluate
from core.partiql.parser import _parse_cached, parse
from core.storage import MemoryStorage
from core.transaction import Transaction


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
        (f"self-join of {size * 10} values in memory (hash)", _timed(5, self_join)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    n = parser.parse_args().count
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
                lambda i: run(
                    lambda tx: list(
                        tx.execute_statement("SELECT * FROM Car AS c WHERE c.VIN = ?", f"V{i}")
                    )
                ),
            ),
        ),
        (
            "tx.find(VIN=...) (native, index)",
            _timed(n, lambda i: run(lambda tx: tx.find("Car", VIN=f"V{i}"))),
        ),
        (
            "UPDATE ... SET ... WHERE c.VIN = ?",
            _timed(
                n,
                lambda i: run(
                    lambda tx: tx.execute_statement(
                        "UPDATE Car AS c SET c.Year = c.Year + 1 WHERE c.VIN = ?", f"V{i}"
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
    print(f"{'operation':<42} {'ops/s':>9} {'median ms':>10}")
    for name, (rate, median) in rows:
        print(f"{name:<42} {rate:>9,.0f} {median:>10.3f}")


if __name__ == "__main__":
    main()

"""PartiQL overhead on the embedded ledger: statements per second, native API beside it.

Usage: .venv/bin/python benchmarks/partiql.py [--count N]
Runs on an in-memory ledger (no fsync) so the figures are the CPU cost of the statement path:
parse (cached after the first time), static checks, evaluation, and the transaction's work.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from core import Ledger
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
    print(f"{'operation':<42} {'ops/s':>9} {'median ms':>10}")
    for name, (rate, median) in rows:
        print(f"{name:<42} {rate:>9,.0f} {median:>10.3f}")


if __name__ == "__main__":
    main()

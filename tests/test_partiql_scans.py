"""Scans that stream: results, OCC and memory of table scans, COUNT(*) and index lookups.

A table scan streams documents from storage (`Transaction.scan_documents`), `COUNT(*)` with
no WHERE counts storage keys (`Transaction.count_documents`), groups keep counts and values
instead of rows, and an index is used whatever the spelling of its field. Checked here:
results equal a straightforward evaluation of the same query over the table's documents
(held in a list, with the transaction's own writes applied), on random tables and queries;
OCC still sees a phantom inserted into a scanned or counted table and a value appearing
under a differently spelled index lookup; the read set of a lookup is the index's, not the
table's; and the memory a scan takes does not grow with the table.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Ledger
from core.engine import CommitResult, Engine
from core.errors import OccConflictError
from core.ids import IdSource
from core.partiql import evaluate
from core.partiql.data import Bag
from core.storage import LevelDBStorage, MemoryStorage
from core.transaction import Transaction

FIELDS = ["VIN", "vin", "Year", "Make"]  # `vin` and `VIN` may both be in one document
VALUES = st.one_of(st.integers(0, 3), st.sampled_from(["a", "b", "A"]), st.none())
DOCS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4)

# (query text, how the field is spelled); `T` is the table, every query is run on both paths
QUERIES = [
    "SELECT COUNT(*) FROM T",
    "SELECT VALUE COUNT(*) FROM T AS t",
    "SELECT COUNT(*) AS n, COUNT(t.Year) AS y FROM T AS t",
    "SELECT COUNT(*) FROM T AS t WHERE t.VIN = ?",
    "SELECT COUNT(*) FROM T AS t WHERE t.vin = ?",
    'SELECT COUNT(*) FROM T AS t WHERE t."vin" = ?',
    "SELECT COUNT(*) FROM T AS t WHERE t['VIN'] = ?",
    "SELECT COUNT(*) FROM T WHERE vin = ?",
    "SELECT t.VIN, t.Year FROM T AS t WHERE t.Vin = ?",
    "SELECT * FROM T AS t WHERE t.Year = ?",
    "SELECT t.Make, COUNT(*) AS n, SUM(t.Year) AS s FROM T AS t GROUP BY t.Make",
    "SELECT VALUE t.Year FROM T AS t WHERE t.Make = ? OR t.Year > 1",
    "SELECT t.Year FROM T AS t WHERE t.VIN IN (?, 'b')",
    "SELECT a.VIN FROM T AS a, T AS b WHERE a.VIN = b.Year",
]


def _ledger(index_field: str | None) -> Ledger:
    ledger = Ledger.in_memory()

    def setup(tx: Transaction) -> None:
        tx.execute_statement("CREATE TABLE T")
        if index_field is not None:
            tx.execute_statement(f'CREATE INDEX ON T ("{index_field}")')

    ledger.execute_lambda(setup)
    return ledger


def _canon(rows: Any) -> list[str]:
    return sorted(repr(sorted(r.items()) if isinstance(r, dict) else r) for r in rows)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    committed=st.lists(DOCS, max_size=12),
    own_inserts=st.lists(DOCS, max_size=3),
    changes=st.lists(st.tuples(st.integers(0, 11), st.one_of(st.none(), DOCS)), max_size=3),
    index_field=st.sampled_from([None, "VIN", "vin", "Year"]),
    query=st.sampled_from(QUERIES),
    param=VALUES,
)
def test_streamed_results_equal_a_straightforward_evaluation(
    committed: list[dict[str, Any]],
    own_inserts: list[dict[str, Any]],
    changes: list[tuple[int, dict[str, Any] | None]],
    index_field: str | None,
    query: str,
    param: Any,
) -> None:
    ledger = _ledger(index_field)
    ids: list[str] = []
    for start in range(0, len(committed), 10):
        ids += ledger.execute_lambda(
            lambda tx, s=start: [tx.insert("T", d) for d in committed[s : s + 10]]
        )
    params = [param] * query.count("?")

    def body(tx: Transaction) -> tuple[list[Any], list[Any]]:
        expected = dict(zip(ids, committed, strict=True))
        for position, doc in changes:  # own updates and deletes, pending in the transaction
            if position < len(ids) and ids[position] in expected:
                if doc is None:
                    tx.delete("T", ids[position])
                    del expected[ids[position]]
                else:
                    tx.update("T", ids[position], doc)
                    expected[ids[position]] = doc
        for doc in own_inserts:
            expected[tx.insert("T", doc)] = doc
        got = list(tx.execute_statement(query, *params))
        want = evaluate(query, {"T": Bag(expected.values())}, "coerce", parameters=params)
        return got, list(want if isinstance(want, list) else [want])

    got, want = ledger.execute_lambda(body)
    assert _canon(got) == _canon(want), (query, params)


# ---------------------------------------------------------------- OCC


def _engine() -> Engine:
    counter = itertools.count(1)
    engine = Engine(MemoryStorage(), IdSource(lambda n: next(counter).to_bytes(n, "big")), 0)
    tx = engine.begin(0, lambda: 0)
    tx.create_table("T")
    tx.create_index("T", "VIN")
    for i in range(5):
        tx.insert("T", {"VIN": f"V{i}", "x": i % 2})
    assert isinstance(engine.commit([tx], 0)[0], CommitResult)
    return engine


def _race(reader: Callable[[Transaction], Any], writer: Callable[[Transaction], Any]) -> bool:
    """Whether the reading transaction (which then writes a document of its own) still
    commits after `writer` committed between its read and its commit."""
    engine = _engine()
    first = engine.begin(1, lambda: 1)
    reader(first)
    first.insert("T", {"VIN": "mine"})  # not read-only, so it is validated
    second = engine.begin(1, lambda: 1)
    writer(second)
    assert isinstance(engine.commit([second], 1)[0], CommitResult)
    outcome = engine.commit([first], 2)[0]
    assert isinstance(outcome, CommitResult | OccConflictError), outcome
    return isinstance(outcome, CommitResult)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT COUNT(*) FROM T",  # counted from keys
        "SELECT COUNT(*) FROM T AS t WHERE t.x = 1",  # streamed, filtered
        "SELECT t.VIN FROM T AS t WHERE t.x = 7",  # streamed, nothing found
    ],
)
def test_a_phantom_in_a_scanned_table_conflicts(query: str) -> None:
    assert not _race(
        lambda tx: tx.execute_statement(query), lambda tx: tx.insert("T", {"VIN": "new", "x": 7})
    )


@pytest.mark.parametrize("spelling", ["t.VIN", "t.vin", 't."VIN"', "t['VIN']", "vin", "VIN"])
def test_differently_spelled_lookups_read_the_index_narrowly(spelling: str) -> None:
    query = f"SELECT * FROM T AS t WHERE {spelling} = ?"
    if spelling in ("vin", "VIN"):
        query = f"SELECT * FROM T WHERE {spelling} = ?"
    engine = _engine()
    tx = engine.begin(1, lambda: 1)
    assert [r["VIN"] for r in tx.execute_statement(query, "V3")] == ["V3"]
    table = engine.catalog.by_name("T")
    kinds = {item[0] for item in tx.reads}
    assert "x" in kinds  # an index read ...
    assert ("t", table.table_id) not in tx.reads  # ... and no table read
    # a value appearing under the looked-up key conflicts (whatever its field's spelling);
    # another value does not
    read = lambda t: t.execute_statement(query, "V9")  # noqa: E731
    assert not _race(read, lambda t: t.insert("T", {"vin": "V9"}))
    assert _race(read, lambda t: t.insert("T", {"VIN": "V8"}))


def test_a_lookup_on_a_field_with_no_index_of_any_spelling_scans() -> None:
    engine = _engine()
    tx = engine.begin(1, lambda: 1)
    assert len(tx.execute_statement("SELECT * FROM T AS t WHERE t.VI = 'V1'")) == 0
    assert ("t", engine.catalog.by_name("T").table_id) in tx.reads


# ---------------------------------------------------------------- memory


def _leveldb_table(path: Path, size: int) -> Ledger:
    storage = LevelDBStorage(path, sync=False)
    rng = random.Random(size)
    engine = Engine(storage, IdSource(rng.randbytes), 0)
    tx = engine.begin(0, lambda: 0)
    tx.create_table("T")
    engine.commit([tx], 0)
    done = 0
    while done < size:
        batch = []
        for _ in range(50):
            tx = engine.begin(0, lambda: 0)
            for _ in range(min(40, size - done)):
                tx.insert("T", {"n": done, "Year": 2000 + done % 7, "Fill": "x" * 40})
                done += 1
            batch.append(tx)
        engine.commit(batch, 0)
    storage.close()
    return Ledger.open(path)


def _peak(ledger: Ledger, query: str) -> tuple[int, Any]:
    ledger.execute_lambda(lambda tx: list(tx.execute_statement(query)))  # warm caches
    tracemalloc.start()
    try:
        rows = ledger.execute_lambda(lambda tx: list(tx.execute_statement(query)))
        return tracemalloc.get_traced_memory()[1], rows
    finally:
        tracemalloc.stop()


def _check_flat(tmp_path: Path, small: int, big: int) -> None:
    ledgers = [_leveldb_table(tmp_path / str(n), n) for n in (small, big)]
    try:
        for query in (
            "SELECT COUNT(*) FROM T",
            "SELECT COUNT(*) FROM T AS t WHERE t.Year = 2003",
            "SELECT COUNT(*) AS n, MAX(t.n) AS m FROM T AS t WHERE t.Fill = 'y'",
        ):
            (low, _), (high, rows) = (_peak(ledger, query) for ledger in ledgers)
            assert rows[0]["_1" if "AS n" not in query else "n"] <= big
            # five or ten times the documents, about the same peak (not 5 or 10 times it)
            assert high < low * 1.5 + 64 * 1024, (query, low, high)
    finally:
        for ledger in ledgers:
            ledger.close()


def test_scan_memory_does_not_grow_with_the_table(tmp_path: Path) -> None:
    _check_flat(tmp_path, 2_000, 10_000)


@pytest.mark.slow
def test_scan_memory_does_not_grow_with_the_table_at_scale(tmp_path: Path) -> None:
    _check_flat(tmp_path, 10_000, 100_000)

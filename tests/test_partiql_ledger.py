"""PartiQL on the embedded ledger: the tutorial data file, the journal record of statements,
OCC read sets of queries, round trips of random documents, and typed errors.

The cluster runs the same tutorial file in tests/test_cluster.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Ledger
from core.errors import (
    InvalidArgumentError,
    LimitExceededError,
    OccConflictError,
    PartiQLEvaluationError,
    PartiQLSemanticError,
    PartiQLSyntaxError,
    TableNotFoundError,
    ValueOutOfRangeError,
)
from core.ionhash import dot, ion_hash
from core.iontext import load_text
from core.storage import MemoryStorage
from core.transaction import Transaction
from tests.ion_strategies import documents
from tests.partiql_steps import load_steps, run_steps


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStorage())


def _tip(ledger: Ledger) -> int:
    return ledger.engine.durable_seq


def test_vehicle_registration_tutorial_in_memory(ledger: Ledger) -> None:
    steps = load_steps("vehicle_registration.ion")
    assert run_steps(ledger.execute_lambda, lambda: _tip(ledger), steps) == len(steps)
    assert ledger.verify_journal().ok


def test_vehicle_registration_tutorial_on_leveldb(tmp_path: Path) -> None:
    steps = load_steps("vehicle_registration.ion")
    with Ledger.open(tmp_path / "vr") as ledger:
        run_steps(ledger.execute_lambda, lambda: _tip(ledger), steps)
    with Ledger.open(tmp_path / "vr") as ledger:  # the state is derived again on open
        rows = ledger.execute_lambda(
            lambda tx: list(tx.execute_statement("SELECT COUNT(*) FROM Person"))
        )
        assert rows == [{"_1": 5}]
        assert ledger.verify_journal().ok


def _statements(ledger: Ledger, seq: int) -> list[dict[str, Any]]:
    address = {"strandId": ledger.strand_id, "sequenceNo": seq}
    block = ledger.get_block(address)["block"]
    return list(block["transactionInfo"]["statements"])


def test_statements_are_journaled_with_digests_and_the_commit_digest(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))

    def fn(tx: Transaction) -> list[Any]:
        tx.execute_statement("SELECT * FROM Car")
        return list(tx.execute_statement("INSERT INTO Car << ?, ? >>", {"v": 1}, {"v": 2}))

    result = ledger.execute_transaction(fn)
    assert len(result.value) == 2
    assert result.block_address is not None
    statements = _statements(ledger, result.block_address["sequenceNo"])
    assert [s["statement"] for s in statements] == [
        "SELECT * FROM Car",
        "INSERT INTO Car << ?, ? >>",
    ]
    assert statements[0]["statementDigest"] == ion_hash("SELECT * FROM Car")
    insert_digest = dot(
        dot(ion_hash("INSERT INTO Car << ?, ? >>"), ion_hash({"v": 1})), ion_hash({"v": 2})
    )
    assert statements[1]["statementDigest"] == insert_digest
    expected = dot(
        dot(ion_hash(result.transaction_id), statements[0]["statementDigest"]), insert_digest
    )
    assert result.commit_digest == expected
    block = ledger.get_block(result.block_address)["block"]
    documents = block["transactionInfo"]["documents"]
    assert {d["documentId"] for d in result.value} == set(documents)
    assert all(d["statements"] == [1] for d in documents.values())


def test_a_failed_statement_leaves_the_transaction_as_it_was(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Car"))

    def fn(tx: Transaction) -> None:
        tx.execute_statement("INSERT INTO Car VALUE {'n': 1}")
        with pytest.raises(LimitExceededError):  # 41 documents: refused as a whole
            tx.execute_statement("INSERT INTO Car ?", [{"n": i} for i in range(41)])
        with pytest.raises(PartiQLSyntaxError) as info:
            tx.execute_statement("SELECT *\nFROM Car WHERE")
        assert info.value.line == 2
        tx.execute_statement("INSERT INTO Car VALUE {'n': 2}")

    ledger.execute_lambda(fn)
    rows = ledger.execute_lambda(
        lambda tx: list(tx.execute_statement("SELECT VALUE c.n FROM Car AS c"))
    )
    assert sorted(rows) == [1, 2]
    statements = _statements(ledger, _tip(ledger))
    assert [s["statement"] for s in statements] == [
        "INSERT INTO Car VALUE {'n': 1}",
        "INSERT INTO Car VALUE {'n': 2}",
    ]


def _occ_case(ledger: Ledger, query: str, *params: Any) -> bool:
    """Does a transaction that ran `query` conflict with an unrelated insert into the table?"""
    reader = ledger.engine.begin(0, lambda: 0)
    reader.execute_statement(query, *params)
    reader.execute_statement("INSERT INTO Log VALUE {'x': 1}")
    ledger.execute_lambda(
        lambda tx: tx.execute_statement("INSERT INTO Car VALUE {'VIN': 'NEW', 'Make': 'Kia'}")
    )
    [outcome] = ledger.engine.commit([reader], 1)
    return isinstance(outcome, OccConflictError)


def test_indexed_lookups_are_narrow_reads_and_scans_read_the_table(ledger: Ledger) -> None:
    def setup(tx: Transaction) -> Any:
        tx.execute_statement("CREATE TABLE Car")
        tx.execute_statement("CREATE TABLE Log")
        tx.execute_statement("CREATE INDEX ON Car (VIN)")
        return tx.execute_statement(
            "INSERT INTO Car << {'VIN': 'A', 'Make': 'Audi'}, {'VIN': 'B', 'Make': 'BMW'} >>"
        )

    ids = [r["documentId"] for r in ledger.execute_lambda(setup)]
    assert not _occ_case(ledger, "SELECT * FROM Car AS c WHERE c.VIN = ?", "A")
    assert not _occ_case(ledger, "SELECT * FROM Car AS c WHERE c.VIN IN ('A', 'B')")
    assert not _occ_case(ledger, "SELECT * FROM Car AS c BY id WHERE id = ?", ids[0])
    assert _occ_case(ledger, "SELECT * FROM Car AS c WHERE c.Make = 'Audi'")  # no index
    assert _occ_case(ledger, "SELECT * FROM Car AS c WHERE c.VIN = 'A' OR c.Make = 'x'")
    assert _occ_case(ledger, "SELECT * FROM Car AS c WHERE c.VIN = ?", "NEW")  # the phantom


def test_update_and_delete_conflict_with_a_concurrent_change(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE Acct"))
    ledger.execute_lambda(
        lambda tx: tx.execute_statement("INSERT INTO Acct VALUE {'id': 1, 'bal': 10}")
    )
    first = ledger.engine.begin(0, lambda: 0)
    second = ledger.engine.begin(0, lambda: 0)
    for tx in (first, second):
        tx.execute_statement("UPDATE Acct AS a SET a.bal = a.bal - 5 WHERE a.id = 1")
    outcomes = ledger.engine.commit([first, second], 1)
    assert not isinstance(outcomes[0], Exception)
    assert isinstance(outcomes[1], OccConflictError)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(documents(), min_size=1, max_size=4))
def test_random_documents_round_trip_through_insert_and_select(docs: list[dict[str, Any]]) -> None:
    ledger = Ledger(MemoryStorage())
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE T"))
    for doc in docs:
        [row] = ledger.execute_lambda(
            lambda tx, d=doc: list(tx.execute_statement("INSERT INTO T ?", d))
        )
        [got] = ledger.execute_lambda(
            lambda tx, i=row["documentId"]: list(
                tx.execute_statement("SELECT VALUE t FROM T AS t BY id WHERE id = ?", i)
            )
        )
        assert simpleion.dumps(got) == simpleion.dumps(doc)
        assert ion_hash(got) == ion_hash(doc)


def test_typed_errors(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE T"))
    tip = _tip(ledger)
    cases: list[tuple[str, tuple[Any, ...], type[Exception]]] = [
        ("SELECT * FROM Nowhere", (), TableNotFoundError),
        ("SELECT * FROM T WHERE x = ?", (), PartiQLSemanticError),
        ("SELECT * FROM T", (1,), PartiQLSemanticError),
        ("SELECT nosuchfunction(1) FROM T", (), PartiQLSemanticError),
        ("INSERT INTO Nowhere VALUE {'a': 1}", (), TableNotFoundError),
        ('DROP INDEX "AAAAAAAAAAAAAAAAAAAAAA" ON T', (), PartiQLSemanticError),
        ("EXEC no_such_procedure 1", (), PartiQLSemanticError),
        ("SELECT * FROM T", (object(),), InvalidArgumentError),
        ("x" * 100_001, (), LimitExceededError),
    ]
    for text, params, error in cases:
        with pytest.raises(error):
            ledger.execute_lambda(lambda tx, t=text, p=params: tx.execute_statement(t, *p))
    assert _tip(ledger) == tip


def test_values_python_cannot_convert_are_typed_errors_or_missing(ledger: Ledger) -> None:
    from decimal import Decimal

    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE T"))
    ledger.execute_lambda(lambda tx: tx.execute_statement("INSERT INTO T ?", {"a": 1}))

    def rows(text: str, *params: Any) -> list[Any]:
        return ledger.execute_lambda(lambda tx: list(tx.execute_statement(text, *params)))

    before = ledger.get_digest()
    assert rows("SELECT CAST(? AS FLOAT) AS x FROM T", 10**4299) == [{}]  # coerce: MISSING
    for value in ("1" * 5000, Decimal("1E+5000")):  # out of int64: a data error in every mode
        with pytest.raises(PartiQLEvaluationError, match="does not fit a 64-bit integer"):
            rows("SELECT CAST(? AS INT) AS x FROM T", value)
    # fractions beyond microseconds are kept digit for digit (they used to give MISSING)
    [row] = rows("SELECT DATE_ADD(second, 1, `2020-01-01T00:00:00.123456789Z`) AS x FROM T")
    assert row["x"] == load_text("2020-01-01T00:00:01.123456789Z")
    assert row["x"].fractional_seconds == Decimal("0.123456789")
    [row] = rows("SELECT TO_TIMESTAMP('2020-01-01T00:00:00.1234567890123Z') AS x FROM T")
    assert row["x"].fractional_seconds == Decimal("0.1234567890123")
    assert rows("SELECT CAST(? AS STRING) AS x FROM T", 10**4299) == [{"x": "1" + "0" * 4299}]
    with pytest.raises(ValueOutOfRangeError, match="4300 digits"):  # core/limits.py
        rows("SELECT CAST(? AS STRING) AS x FROM T", 10**5000)
    with pytest.raises(PartiQLSyntaxError, match="4300 digits"):
        rows("SELECT " + "1" * 5000 + " FROM T")
    for text in ("SELECT * FROM history() AS h", "SELECT * FROM history(T, `2020T`, `2030T`, 1)"):
        with pytest.raises(PartiQLSemanticError, match="history takes 1 to 3"):
            rows(text)
    assert ledger.get_digest() == before


@pytest.mark.parametrize("name", ["information_schema", "_ql_committed_Car", "_QL_x"])
def test_the_ledgers_own_names_are_not_table_names(ledger: Ledger, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="the ledger's own"):
        ledger.execute_lambda(lambda tx: tx.execute_statement(f'CREATE TABLE "{name}"'))

"""PartiQL DML, history, redaction and index edge cases inside ledger transactions.

Complements tests/test_partiql_ledger.py and tests/test_ddl_redaction.py: each test here
pins a behaviour that was once wrong (index keys, DML paths, history by table id, reads of
a failed statement) or a QLDB rule that nothing else checked.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from amazon.ion.simpleion import loads

from core import Ledger
from core.errors import (
    InvalidArgumentError,
    LimitExceededError,
    OccConflictError,
    PartiQLEvaluationError,
    PartiQLSemanticError,
    TableNotFoundError,
)
from core.ids import timestamp_from_ms
from core.ionhash import dot, ion_hash
from core.partiql.data import MISSING, Bag
from core.storage import MemoryStorage
from core.transaction import Transaction, value_key
from core.verification import revision_hash
from tests.conftest import FakeClock


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStorage())


def _run(ledger: Ledger, statement: str, *params: Any) -> list[Any]:
    return ledger.execute_lambda(lambda tx: list(tx.execute_statement(statement, *params)))


def _one(ledger: Ledger, table: str = "T") -> dict[str, Any]:
    [row] = _run(ledger, f"SELECT * FROM {table}")
    return dict(row)


def _tip_block(ledger: Ledger) -> dict[str, Any]:
    address = {"strandId": ledger.strand_id, "sequenceNo": ledger.engine.durable_seq}
    return dict(ledger.get_block(address)["block"])


# ============================================================================ index keys


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        (decimal.Decimal("100"), 100),  # 100. normalises to 1E+2, the int did not
        (1e2, 100),
        (decimal.Decimal("1.00E+2"), decimal.Decimal("100.000")),
        (-0.0, 0),
        (loads("2020-01-01T00:00Z"), loads("2020-01-01T00:00:00.000Z")),
        (loads("2020-01-01T00:00Z"), loads("2020-01-01T01:00+01:00")),
        ([1, decimal.Decimal("2.0")], [decimal.Decimal("1.0"), 2]),
        ({"x": 1}, {"x": 1.0}),
        (loads("a::true"), True),
    ],
)
def test_an_indexed_lookup_finds_what_a_scan_finds(ledger: Ledger, stored: Any, query: Any) -> None:
    def setup(tx: Transaction) -> None:
        tx.execute_statement("CREATE TABLE T")
        tx.execute_statement("CREATE INDEX ON T (f)")

    ledger.execute_lambda(setup)
    _run(ledger, "INSERT INTO T ?", {"f": stored, "k": 1})
    scan = _run(ledger, "SELECT VALUE r.k FROM T AS r WHERE (r.f = ?) = true", query)
    assert scan == [1]  # the evaluator's `=` says they are equal...
    assert _run(ledger, "SELECT VALUE r.k FROM T AS r WHERE r.f = ?", query) == [1]
    assert _run(ledger, "SELECT VALUE r.k FROM T AS r WHERE r.f IN (?, 'x')", query) == [1]
    assert value_key(stored) == value_key(query)  # ...so the index files them together


def test_index_keys_keep_unequal_numbers_apart() -> None:
    assert value_key(100) != value_key(10)
    assert value_key(decimal.Decimal("0.1")) != value_key(decimal.Decimal("0.01"))
    assert value_key(1) == value_key(decimal.Decimal("1.000")) == value_key(1.0)
    assert value_key(10**30) == value_key(decimal.Decimal("1E+30"))


def test_drop_and_recreate_an_index_on_the_same_field_in_one_transaction(ledger: Ledger) -> None:
    def setup(tx: Transaction) -> str:
        tx.execute_statement("CREATE TABLE T")
        tx.execute_statement("CREATE INDEX ON T (f)")
        return tx.table("T").indexes[0].index_id

    old = ledger.execute_lambda(setup)
    _run(ledger, "INSERT INTO T << {'f': 1, 'g': 'a'}, {'f': 2, 'g': 'b'} >>")

    def recreate(tx: Transaction) -> None:
        tx.execute_statement(f'DROP INDEX "{old}" ON T WITH (purge = true)')
        tx.execute_statement("CREATE INDEX ON T (f)")

    ledger.execute_lambda(recreate)
    [table] = _run(ledger, "SELECT * FROM information_schema.user_tables")
    [index] = table["indexes"]
    assert index["indexId"] != old
    assert index["expr"] == "[f]"
    assert _run(ledger, "SELECT VALUE r.g FROM T AS r WHERE r.f = 1") == ["a"]
    assert sorted(_run(ledger, "SELECT VALUE r.g FROM T AS r WHERE r.f IN (1, 2)")) == ["a", "b"]
    # and in a later transaction: purge, then a fresh index
    ledger.execute_lambda(
        lambda tx: tx.execute_statement(f'DROP INDEX "{index["indexId"]}" ON T WITH (purge = true)')
    )
    _run(ledger, "UPDATE T AS r SET r.f = 3 WHERE r.g = 'a'")
    _run(ledger, "CREATE INDEX ON T (f)")
    assert _run(ledger, "SELECT VALUE r.g FROM T AS r WHERE r.f = 3") == ["a"]
    assert _run(ledger, "SELECT VALUE r.g FROM T AS r WHERE r.f = 1") == []


# ============================================================================ UPDATE paths


def test_update_set_creates_paths_assigns_list_items_and_reads_the_old_document(
    ledger: Ledger,
) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T {'a': 1, 'l': [1, 2, 3]}")
    _run(ledger, "UPDATE T AS r SET r.n.m.o = 5, r.l[1] = 9, r.a = r.a + 1, r.b = r.a")
    assert _one(ledger) == {"a": 2, "b": 1, "l": [1, 9, 3], "n": {"m": {"o": 5}}}
    _run(ledger, "UPDATE T AS r SET r = {'whole': r.a}")
    assert _one(ledger) == {"whole": 2}


def test_negative_list_positions_are_not_paths(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T {'l': [1, 2, 3]}")
    assert _run(ledger, "SELECT VALUE r.l[-1] FROM T AS r") == [None]  # MISSING in a query
    with pytest.raises(PartiQLEvaluationError):
        _run(ledger, "UPDATE T AS r SET r.l[-1] = 7")
    with pytest.raises(PartiQLEvaluationError):
        _run(ledger, "UPDATE T AS r SET r.l[3] = 7")
    _run(ledger, "UPDATE T AS r REMOVE r.l[-1]")  # nothing there: nothing removed
    assert _one(ledger) == {"l": [1, 2, 3]}
    _run(ledger, "UPDATE T AS r REMOVE r.l[0]")
    assert _one(ledger) == {"l": [2, 3]}


def test_remove_of_a_missing_path_changes_nothing_at_any_depth(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T {'a': {'b': 1}, 'n': 5}")
    for path in ("r.zz", "r.zz.yy", "r.a.zz.yy", "r.n.x", "r.a.b[0]", "r.a[0].b"):
        assert len(_run(ledger, f"UPDATE T AS r REMOVE {path}")) == 1
    assert _one(ledger) == {"a": {"b": 1}, "n": 5}
    _run(ledger, "FROM T AS r REMOVE r.a.b")
    assert _one(ledger) == {"a": {}, "n": 5}


def test_from_insert_into_a_list_or_struct(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    [doc] = _run(ledger, "INSERT INTO T {'k': 1, 'o': {'s': [1]}}")
    assert _run(ledger, "FROM T AS v WHERE v.k = 1 INSERT INTO v.o.s VALUE ?", 2) == [doc]
    _run(ledger, "FROM T AS v INSERT INTO v.o.s VALUE 0 AT 0")
    _run(ledger, "FROM T AS v INSERT INTO v.o.s VALUE ? AT ?", 3, 3)  # AT len appends
    _run(ledger, "FROM T AS v INSERT INTO v.o VALUE 'x' AT 'name'")
    assert _one(ledger) == {"k": 1, "o": {"s": [0, 1, 2, 3], "name": "x"}}
    for statement in (
        "FROM T AS v INSERT INTO v.o.s VALUE 9 AT 5",  # past the end
        "FROM T AS v INSERT INTO v.o.s VALUE 9 AT -1",
        "FROM T AS v INSERT INTO v.k VALUE 9",  # not a list
        "FROM T AS v INSERT INTO v.o VALUE 9 AT 'name'",  # the field exists
        "FROM T AS v INSERT INTO v.nope VALUE 9",
    ):
        with pytest.raises(PartiQLEvaluationError):
            _run(ledger, statement)
    assert _one(ledger) == {"k": 1, "o": {"s": [0, 1, 2, 3], "name": "x"}}
    assert _run(ledger, "FROM T AS v WHERE v.k = 2 SET v.z = 1") == []


# ============================================================================ atomicity


def test_a_statement_over_the_document_limit_rolls_back_whole(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T ?", [{"i": i} for i in range(25)])
    _run(ledger, "INSERT INTO T ?", [{"i": i} for i in range(25, 45)])

    def fn(tx: Transaction) -> list[Any]:
        [mine] = tx.execute_statement("INSERT INTO T {'i': 100}")
        with pytest.raises(LimitExceededError):
            tx.execute_statement("UPDATE T AS r SET r.s = 'y'")
        assert [s.text for s in tx.statements] == ["INSERT INTO T {'i': 100}"]
        assert len(tx.writes) == 1
        assert tx.execute_statement("SELECT * FROM T AS r WHERE r.s = 'y'") == []
        with pytest.raises(LimitExceededError):  # 128 KB per document
            tx.execute_statement("UPDATE T AS r SET r.s = ? WHERE r.i < 2", "z" * 140_000)
        assert len(tx.writes) == 1
        tx.execute_statement("UPDATE T AS r SET r.s = 'ok' WHERE r.i = 100")
        return [mine["documentId"]]

    [mine] = ledger.execute_lambda(fn)
    assert _run(ledger, "SELECT VALUE r.s FROM T AS r WHERE r.s IS NOT MISSING") == ["ok"]
    block = _tip_block(ledger)
    assert set(block["transactionInfo"]["documents"]) == {mine}
    assert block["transactionInfo"]["documents"][mine]["statements"] == [0, 2]


def test_a_failed_statement_still_reads_what_it_read(ledger: Ledger) -> None:
    """The caller saw the statement fail because of what it read; if that changes before
    the commit, the commit must conflict (else it commits on a stale observation)."""
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "CREATE TABLE Log")
    _run(ledger, "INSERT INTO T ?", [{"i": i} for i in range(21)])
    _run(ledger, "INSERT INTO T ?", [{"i": i} for i in range(21, 41)])
    reader = ledger.engine.begin(0, lambda: 0)
    with pytest.raises(LimitExceededError):
        reader.execute_statement("UPDATE T AS r SET r.frozen = true")  # 41 documents
    reader.execute_statement("INSERT INTO Log VALUE {'too_many': true}")
    _run(ledger, "DELETE FROM T AS r WHERE r.i < 5")  # now the update would succeed
    [outcome] = ledger.engine.commit([reader], 1)
    assert isinstance(outcome, OccConflictError)


def test_own_writes_are_visible_to_later_statements(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "CREATE INDEX ON T (k)")
    [keep, gone] = [r["documentId"] for r in _run(ledger, "INSERT INTO T << {'k': 1}, {'k': 2} >>")]

    def fn(tx: Transaction) -> None:
        tx.execute_statement("DELETE FROM T AS r WHERE r.k = 2")
        assert tx.execute_statement("SELECT * FROM T AS r BY id WHERE id = ?", gone) == []
        assert tx.execute_statement("SELECT VALUE r.k FROM T AS r WHERE r.k = 2") == []
        assert tx.execute_statement("SELECT COUNT(*) FROM T") == [{"_1": 1}]
        [new] = tx.execute_statement("INSERT INTO T {'k': 3}")
        assert tx.execute_statement("UPDATE T AS r SET r.k = 4 WHERE r.k = 3") == [new]
        assert tx.execute_statement("SELECT VALUE r.k FROM T AS r WHERE r.k = 4") == [4]
        rows = tx.execute_statement(
            "SELECT VALUE id FROM T AS a BY id WHERE id IN (?, ?)", keep, new["documentId"]
        )
        assert sorted(rows) == sorted([keep, new["documentId"]])
        joined = tx.execute_statement(
            "SELECT a.k AS ak, b.k AS bk FROM T AS a BY aid, T AS b BY bid "
            "WHERE aid = ? AND bid = ?",
            keep,
            new["documentId"],
        )
        assert joined == [{"ak": 1, "bk": 4}]

    ledger.execute_lambda(fn)
    assert sorted(_run(ledger, "SELECT VALUE r.k FROM T AS r")) == [1, 4]


# ============================================================================ parameters, digests


def test_parameters_and_the_commit_digest(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    when = datetime.datetime(2021, 6, 2, 7, 3, 5, 226000, tzinfo=datetime.UTC)
    params: list[Any] = [
        {"when": when, "amount": decimal.Decimal("1.50"), "raw": b"\x00\x01"},
        ("a", ["b", {"c": None}]),
    ]

    def fn(tx: Transaction) -> list[Any]:
        tx.execute_statement("INSERT INTO T {'p': ?, 'q': ?}", *params)
        return list(
            tx.execute_statement("SELECT VALUE r.p FROM T AS r WHERE r.q IN (?, ?)", 1, params[1])
        )

    result = ledger.execute_transaction(fn)
    assert [dict(v) for v in result.value] == [params[0]]
    stored = _one(ledger)
    assert stored["q"] == ["a", ["b", {"c": None}]]
    assert stored["p"]["when"] == when
    block = _tip_block(ledger)
    statements = block["transactionInfo"]["statements"]
    digests = [
        dot(
            dot(ion_hash("INSERT INTO T {'p': ?, 'q': ?}"), ion_hash(params[0])),
            ion_hash(list(params[1])),
        ),
        dot(
            dot(ion_hash("SELECT VALUE r.p FROM T AS r WHERE r.q IN (?, ?)"), ion_hash(1)),
            ion_hash(list(params[1])),
        ),
    ]
    assert [s["statementDigest"] for s in statements] == digests
    expected = dot(dot(ion_hash(result.transaction_id), digests[0]), digests[1])
    assert result.commit_digest == expected
    with pytest.raises(InvalidArgumentError):
        _run(ledger, "INSERT INTO T ?", {"x": object()})
    with pytest.raises(InvalidArgumentError):
        _run(ledger, "INSERT INTO T ?", {"x": {1, 2}})


def _plain(value: Any) -> bool:
    if isinstance(value, Bag) or value is MISSING:
        return False
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return True


@pytest.mark.parametrize(
    "query",
    [
        "SELECT VALUE <<1, 2>> FROM T",
        "SELECT VALUE {'x': <<1, r.nope>>} FROM T AS r",
        "SELECT r.l[*] AS z FROM T AS r",
        "SELECT VALUE [r.nope, (SELECT x FROM r.l AS x)] FROM T AS r",
        "SELECT VALUE r.nope FROM T AS r",
        "SELECT * FROM history(T) AS h",
    ],
)
def test_rows_are_plain_ion(ledger: Ledger, query: str) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T {'l': [1, 2]}")
    rows = ledger.execute_lambda(lambda tx: tx.execute_statement(query))
    assert rows
    assert all(_plain(row) for row in rows)
    assert not any(isinstance(row, Bag) for row in rows)


# ============================================================================ history


def test_history_bounds_are_inclusive() -> None:
    clock = FakeClock()
    ledger = Ledger(MemoryStorage(), clock_ms=clock)
    _run(ledger, "CREATE TABLE T")
    times = []
    for statement in (
        "INSERT INTO T {'a': 0}",
        "UPDATE T AS r SET r.a = 1",
        "UPDATE T AS r SET r.a = 2",
    ):
        clock.advance(1000)
        times.append(clock.now_ms)
        _run(ledger, statement)
    clock.advance(1000)

    def between(start: int, end: int) -> list[Any]:
        return _run(
            ledger,
            "SELECT VALUE h.data.a FROM history(T, ?, ?) AS h",
            timestamp_from_ms(start),
            timestamp_from_ms(end),
        )

    t0, t1, t2 = times
    assert between(t1, t1) == [1]  # revision 0 ended exactly at t1: not active at t1
    assert between(t1 - 1, t1 - 1) == [0]
    assert between(t0, t1) == [0, 1]  # revision 1 began exactly at the end bound
    assert between(t2, t2 + 5000) == [2]
    assert between(t0 - 5000, t0 - 1) == []


def test_history_by_table_id_reaches_a_dropped_table(ledger: Ledger) -> None:
    [created] = _run(ledger, "CREATE TABLE T")
    table_id = created["tableId"]
    _run(ledger, "INSERT INTO T {'a': 1}")
    _run(ledger, "DROP TABLE T")
    _run(ledger, "CREATE TABLE T")  # the name now belongs to another table
    _run(ledger, "INSERT INTO T {'a': 2}")
    old = _run(ledger, f"SELECT VALUE h.data.a FROM history('{table_id}') AS h")
    assert old == [1]
    assert _run(ledger, "SELECT VALUE h.data.a FROM history(T) AS h") == [2]
    [status] = _run(
        ledger,
        "SELECT VALUE t.status FROM information_schema.user_tables AS t WHERE t.tableId = ?",
        table_id,
    )
    assert status == "INACTIVE"
    with pytest.raises(TableNotFoundError):
        _run(ledger, "SELECT * FROM history('0000000000000000000000')")
    with pytest.raises(TableNotFoundError):
        _run(ledger, "SELECT * FROM history('AAAAAAAAAAAAAAAAAAAAAA')")


def test_committed_view_rows_verify(ledger: Ledger) -> None:
    _run(ledger, "CREATE TABLE T")
    _run(ledger, "INSERT INTO T << {'a': 1}, {'a': 2} >>")
    _run(ledger, "UPDATE T AS r SET r.a = 3 WHERE r.a = 2")
    rows = _run(ledger, "SELECT * FROM _ql_committed_T")
    assert sorted(r["data"]["a"] for r in rows) == [1, 3]
    for row in rows:
        assert set(row) == {"blockAddress", "hash", "data", "metadata"}
        assert revision_hash(row) == row["hash"]


# ============================================================================ redaction


def test_redaction_of_a_deleted_documents_revision_survives_a_reopen(tmp_path: Any) -> None:
    path = tmp_path / "x"
    with Ledger.open(path) as ledger:
        [created] = _run(ledger, "CREATE TABLE T")
        table_id = created["tableId"]
        [doc] = _run(ledger, "INSERT INTO T {'secret': 'x'}")
        doc_id = doc["documentId"]
        _run(ledger, "UPDATE T AS r SET r.secret = 'y'")
        first, second = _run(ledger, "SELECT * FROM history(T)")
        _run(ledger, "DELETE FROM T")
        _run(ledger, "EXEC redact_revision ?, ?, ?", first["blockAddress"], table_id, doc_id)
        with pytest.raises(InvalidArgumentError):  # already redacted: refused, nothing written
            _run(ledger, "EXEC redact_revision ?, ?, ?", first["blockAddress"], table_id, doc_id)
        _run(ledger, "EXEC redact_revision ?, ?, ?", second["blockAddress"], table_id, doc_id)
    with Ledger.open(path) as ledger:
        rows = _run(ledger, f"SELECT * FROM history('{table_id}')")
        assert [("data" in r, "dataHash" in r) for r in rows] == [
            (False, True),
            (False, True),
            (False, False),
        ]
        assert rows[0]["dataHash"] == ion_hash({"secret": "x"})
        assert [revision_hash(r) == r["hash"] for r in rows] == [True, True, True]
        revision = ledger.get_revision(first["blockAddress"], doc_id)["revision"]
        assert revision["hash"] == first["hash"]
        assert "data" not in revision
        assert ledger.verify_journal().ok


def test_update_remove_of_the_whole_document_deletes_it(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE VR"))
    ledger.execute_lambda(
        lambda tx: tx.execute_statement(
            "INSERT INTO VR << {'VIN': 'V1'}, {'VIN': 'V2'}, {'VIN': 'V3'} >>"
        )
    )
    for statement in (
        "UPDATE VR AS r REMOVE r WHERE r.VIN = 'V1'",
        "FROM VR AS r WHERE r.VIN = 'V2' REMOVE r",
    ):
        [row] = ledger.execute_lambda(lambda tx, s=statement: list(tx.execute_statement(s)))
        assert set(row) == {"documentId"}
    left = ledger.execute_lambda(
        lambda tx: list(tx.execute_statement("SELECT VALUE r.VIN FROM VR AS r"))
    )
    assert left == ["V3"]
    with pytest.raises(PartiQLSemanticError):
        ledger.execute_lambda(
            lambda tx: tx.execute_statement(
                "UPDATE VR AS r SET r.x = 1 REMOVE r WHERE r.VIN = 'V3'"
            )
        )

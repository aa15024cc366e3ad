"""The FROM clause's narrowing is invisible: hash joins, per-row lookups and pushed-down
filters give exactly what a plain nested loop gives.

Each property runs a query twice: as written (the evaluator narrows its scans by the WHERE
clause's top-level conjuncts) and with the WHERE clause wrapped as `(...) OR FALSE`, which
has the same truth value for every row but no top-level conjunct, so nothing is narrowed.
The outcomes (the bag of rows, or the type of the error) must be the same (in error mode
the narrowed query may skip an error for a row another conjunct rejects, as SQL allows),
over collections with duplicates, numbers of different types that are `=`, nulls, absent
fields, repeated and differently-cased field names, and items that are not structs.
On the ledger the same comparison runs over two tables, with and without an index, and the
narrow reads are checked to stay narrow (OCC).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Ledger
from core.errors import OccConflictError, PartiQLError
from core.partiql import evaluate, values
from core.storage import MemoryStorage
from core.transaction import Transaction

_KEYS = st.sampled_from([1, 2, Decimal("1.0"), Decimal(2), 1.0, 2e0, "1", "a", None, True])


@st.composite
def _items(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([5, "x", [1]]))  # not a struct
    fields: list[tuple[str, Any]] = [("v", draw(st.integers(0, 5)))]
    if kind != 1:  # kind 1: no k at all
        fields.append((draw(st.sampled_from(["k", "k", "k", "K"])), draw(_KEYS)))
    if kind == 2:  # a repeated field name
        fields.append(("k", draw(_KEYS)))
    out = IonPyDict.from_value(IonType.STRUCT, {})
    for name, value in fields:
        out.add_item(name, value)
    return out


_COLLECTIONS = st.lists(_items(), max_size=8)

_QUERIES = [
    "SELECT a.v AS av, b.v AS bv FROM t AS a, t AS b WHERE a.k = b.k",
    "SELECT a.v AS av, b.v AS bv FROM t AS a, u AS b WHERE b.k = a.k AND a.v < 3",
    "SELECT a.v AS av, b.v AS bv FROM t AS a, u AS b WHERE a.k = b.k AND b.v >= a.v",
    "SELECT a.v AS av FROM t AS a, u AS b WHERE a.k = b.k + 1",
    "SELECT a.v AS av, b.v AS bv FROM t AS a LEFT JOIN u AS b ON a.v = b.v WHERE b.v IS NULL",
    "SELECT a.v AS av, b.v AS bv FROM t AS a LEFT JOIN u AS b ON a.k = b.k WHERE b.k = a.k",
    "SELECT a.v AS av, b.v AS bv FROM t AS a INNER JOIN u AS b ON a.k = b.k WHERE a.v IN (1, 2)",
    "SELECT a.v AS av FROM t AS a, u AS b, t AS c WHERE a.k = b.k AND c.k = b.k AND c.v < a.v",
    "SELECT a.v AS av FROM t AS a AT i, u AS b WHERE b.v = i",
    'SELECT a.v AS av, "A".v AS bv FROM t AS a, u AS "A" WHERE A.k = a.k AND a.v < 3',
    "SELECT a.v AS av, b.v AS bv FROM t AS a, u AS b LET a.v AS z WHERE z = b.v",
    "SELECT a.v AS av FROM t AS a, u AS b LET 2 AS k WHERE a.k = k AND b.k = a.k",
    "SELECT a.v AS av FROM t AS a, u AS a WHERE a.k = 1",
]


def _outcome(query: str, env: dict[str, Any], mode: str) -> Any:
    try:
        result = evaluate(query, env, mode)
    except PartiQLError as exc:
        return type(exc).__name__
    return sorted(repr(values.group_key(row)) for row in result)


def _unnarrowed(query: str) -> str:
    head, where = query.split(" WHERE ")
    return f"{head} WHERE ({where}) OR FALSE"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=_COLLECTIONS, u=_COLLECTIONS, query=st.sampled_from(_QUERIES))
def test_narrowed_scans_give_what_the_nested_loop_gives(
    t: list[Any], u: list[Any], query: str
) -> None:
    env = {"t": t, "u": u}
    assert _outcome(query, env, "coerce") == _outcome(_unnarrowed(query), env, "coerce")
    # error mode: the same rows, or an error the narrowed query may skip because another
    # conjunct rejects the row anyway (SQL leaves that open); never an error of its own
    narrowed, plain = _outcome(query, env, "error"), _outcome(_unnarrowed(query), env, "error")
    assert narrowed == plain or (isinstance(plain, str) and not isinstance(narrowed, str))


def test_a_self_join_of_a_large_collection_is_a_hash_join() -> None:
    # 3,000 x 3,000 pairs would take minutes as a nested loop; the hash join is linear
    t = [{"k": i % 1000, "v": i} for i in range(3000)]
    rows = evaluate("SELECT a.v AS x, b.v AS y FROM t AS a, t AS b WHERE a.k = b.k", {"t": t})
    assert len(rows) == 3000 * 3
    assert all(row["x"] % 1000 == row["y"] % 1000 for row in rows)


# ============================================================================ on the ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStorage())


def _load(ledger: Ledger, indexed: bool) -> None:
    def setup(tx: Transaction) -> None:
        tx.execute_statement("CREATE TABLE Owner")
        tx.execute_statement("CREATE TABLE Car")
        if indexed:
            tx.execute_statement("CREATE INDEX ON Owner (GovId)")
        for gov, name in [("G1", "Ann"), ("G2", "Bo"), ("G2", "Bea"), (None, "Cy")]:
            tx.execute_statement("INSERT INTO Owner ?", {"GovId": gov, "Name": name})
        tx.execute_statement("INSERT INTO Owner ?", {"Name": "Di"})  # no GovId
        for vin, gov in [("V1", "G1"), ("V2", "G2"), ("V3", "G9"), ("V4", None)]:
            tx.execute_statement("INSERT INTO Car ?", {"VIN": vin, "Owner": gov})

    ledger.execute_lambda(setup)


_LEDGER_QUERIES = [
    "SELECT c.VIN, o.Name FROM Car AS c, Owner AS o WHERE c.Owner = o.GovId",
    "SELECT c.VIN, o.Name FROM Car AS c, Owner AS o WHERE o.GovId = c.Owner AND c.VIN <> 'V1'",
    "SELECT c.VIN, o.Name FROM Car AS c LEFT JOIN Owner AS o ON c.Owner = o.GovId "
    "WHERE o.Name IS NULL",
]


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("query", _LEDGER_QUERIES)
def test_ledger_joins_match_the_nested_loop(ledger: Ledger, indexed: bool, query: str) -> None:
    _load(ledger, indexed)

    def rows(text: str) -> list[str]:
        found = ledger.execute_lambda(lambda tx: list(tx.execute_statement(text)))
        return sorted(repr(values.group_key(r)) for r in found)

    assert rows(query) == rows(_unnarrowed(query))
    assert rows(query)  # the data gives every query some rows


@pytest.mark.parametrize("indexed", [True, False])
def test_a_join_probing_an_index_reads_only_the_probed_keys(ledger: Ledger, indexed: bool) -> None:
    _load(ledger, indexed=indexed)
    query = (
        "SELECT c.VIN, o.Name FROM Car AS c, Owner AS o WHERE c.VIN = 'V1' AND c.Owner = o.GovId"
    )

    def conflicts(gov_id: str) -> bool:
        reader = ledger.engine.begin(0, lambda: 0)
        assert list(reader.execute_statement(query)) == [{"VIN": "V1", "Name": "Ann"}]
        ledger.execute_lambda(
            lambda tx: tx.execute_statement("INSERT INTO Owner ?", {"GovId": gov_id, "Name": "Ed"})
        )
        [outcome] = ledger.engine.commit([reader], 1)
        return isinstance(outcome, OccConflictError)

    # with the index, an owner nobody probed does not conflict (Owner was read narrowly);
    # without it Owner was read whole (once, hash-joined), so any new owner conflicts
    assert conflicts("G7") is not indexed
    assert conflicts("G1")  # a new owner of V1's key: the join's answer changed


def _rows(ledger: Ledger, text: str, *params: Any) -> list[Any]:
    return ledger.execute_lambda(lambda tx: list(tx.execute_statement(text, *params)))


def test_an_indexed_lookup_of_missing_or_null_selects_nothing(ledger: Ledger) -> None:
    _load(ledger, indexed=True)
    _rows(ledger, "INSERT INTO Car ?", {"VIN": "V5"})  # no Owner: c.Owner is MISSING
    joined = _rows(ledger, "SELECT c.VIN FROM Car AS c, Owner AS o WHERE c.Owner = o.GovId")
    assert sorted(r["VIN"] for r in joined) == ["V1", "V2", "V2"]
    assert _rows(ledger, "SELECT * FROM Owner AS o WHERE o.GovId = MISSING") == []
    assert _rows(ledger, "SELECT * FROM Owner AS o WHERE o.GovId = ?", None) == []
    names = _rows(ledger, "SELECT VALUE o.Name FROM Owner AS o WHERE o.GovId IN (?, NULL)", "G1")
    assert names == ["Ann"]
    assert _rows(ledger, "DELETE FROM Owner AS o WHERE o.GovId = MISSING") == []


def test_a_right_join_with_a_where_over_both_sides(ledger: Ledger) -> None:
    _load(ledger, indexed=True)
    query = (
        "SELECT c.VIN, o.Name FROM Car AS c RIGHT JOIN Owner AS o ON c.Owner = o.GovId "
        "WHERE o.GovId = c.Owner"
    )
    found = sorted((r["VIN"], r["Name"]) for r in _rows(ledger, query))
    assert found == [("V1", "Ann"), ("V2", "Bea"), ("V2", "Bo")]


def test_a_subquery_variable_shadows_the_outer_one(ledger: Ledger) -> None:
    _load(ledger, indexed=True)
    query = (
        "SELECT o.Name, (SELECT VALUE c.VIN FROM Car AS c, Owner AS o WHERE c.Owner = o.GovId) "
        "AS vins FROM Owner AS o WHERE o.Name = 'Ann'"
    )
    [row] = _rows(ledger, query)
    assert sorted(row["vins"]) == ["V1", "V2", "V2"]  # the inner o, not Ann


def test_an_unqualified_indexed_predicate_reads_narrowly(ledger: Ledger) -> None:
    _load(ledger, indexed=True)
    for query in (
        "SELECT * FROM Owner WHERE GovId = 'G1'",
        "SELECT * FROM Owner WHERE GovId IN ('G1')",
    ):
        reader = ledger.engine.begin(0, lambda: 0)
        assert [r["Name"] for r in reader.execute_statement(query)] == ["Ann"]
        _rows(ledger, "INSERT INTO Owner ?", {"GovId": "G8", "Name": "Flo"})  # elsewhere
        [outcome] = ledger.engine.commit([reader], 1)
        assert not isinstance(outcome, OccConflictError), query


def test_a_from_variable_named_like_a_table_stays_the_variable(ledger: Ledger) -> None:
    _rows(ledger, "CREATE TABLE Person")
    _rows(
        ledger, "INSERT INTO Person ?", {"Name": "Ann", "Addresses": [{"City": "A"}, {"City": "B"}]}
    )
    query = "SELECT person.Name, a.City FROM Person AS person, person.Addresses AS a"
    assert sorted(r["City"] for r in _rows(ledger, query)) == ["A", "B"]


def test_ledger_lookups_by_symbol_by_date_and_by_a_repeated_field(ledger: Ledger) -> None:
    _load(ledger, indexed=True)
    [owner] = _rows(ledger, "SELECT VALUE pid FROM Owner AS o BY pid WHERE o.Name = 'Ann'")
    by_symbol = "SELECT o.Name FROM Owner AS o BY pid WHERE pid = CAST(? AS SYMBOL)"
    assert _rows(ledger, by_symbol, owner) == [{"Name": "Ann"}]
    dated = "SELECT o.Name FROM Owner AS o WHERE o.GovId = CAST('2020-01-01' AS DATE)"
    assert _rows(ledger, dated) == []  # no untyped error from the index
    twice = IonPyDict.from_value(IonType.STRUCT, {})
    twice.add_item("GovId", "G5")
    twice.add_item("GovId", "G6")
    twice.add_item("Name", "Twice")
    _rows(ledger, "INSERT INTO Owner ?", twice)
    first = "SELECT VALUE o.Name FROM Owner AS o WHERE o.GovId = 'G5'"
    assert _rows(ledger, first) == ["Twice"]  # PartiQL reads the first GovId
    assert _rows(ledger, _unnarrowed(first)) == ["Twice"]


def test_let_names_and_the_scanned_variable_are_not_fields(ledger: Ledger) -> None:
    _rows(ledger, "CREATE TABLE T")
    _rows(ledger, "CREATE INDEX ON T (z)")
    _rows(ledger, "CREATE INDEX ON T (r)")
    _rows(ledger, "INSERT INTO T ?", {"k": 1, "z": 5, "r": 1})
    assert _rows(ledger, "SELECT t.k FROM T AS t LET t.k AS z WHERE z = 1") == [{"k": 1}]
    whole = _rows(ledger, "SELECT VALUE r.k FROM T AS r WHERE r = ?", {"k": 1, "z": 5, "r": 1})
    assert whole == [1]


def test_group_keys_with_the_same_name_and_unnamed_aggregates() -> None:
    t, u = [{"a": 1}, {"a": 2}, {"a": 2}], [{"a": 10}]
    rows = evaluate(
        "SELECT x.a AS xa, y.a AS ya, COUNT(*) FROM t AS x, u AS y GROUP BY x.a, y.a",
        {"t": t, "u": u},
    )
    assert sorted((r["xa"], r["ya"], r["_1"]) for r in rows) == [(1, 10, 1), (2, 10, 2)]
    named = evaluate("SELECT COUNT(*) + 1, COUNT(*) FROM t GROUP BY t.a", {"t": t})
    assert sorted((r["_1"], r["_2"]) for r in named) == [(2, 1), (3, 2)]


def test_sources_bound_by_derived_aliases_and_group_keys(ledger: Ledger) -> None:
    _rows(ledger, "CREATE TABLE T")
    _rows(ledger, "INSERT INTO T ?", {"a": 1, "items": [{"x": 1}, {"x": 2}]})
    grouped = (
        "SELECT a, (SELECT VALUE i.x FROM its AS i) AS xs FROM T AS t "
        "GROUP BY t.a AS a, t.items AS its"
    )
    assert _rows(ledger, grouped) == [{"a": 1, "xs": [1, 2]}]
    derived = "SELECT VALUE i.x FROM T AS t, t.items, items AS i"
    assert sorted(_rows(ledger, derived)) == [1, 2]
    local = "SELECT VALUE h.metadata.version FROM T AS t BY tid, history(T) AS h"
    assert _rows(ledger, local) == [0]  # T is the table, not the variable t


def test_an_index_finds_fields_an_unquoted_name_finds(ledger: Ledger) -> None:
    _rows(ledger, "CREATE TABLE T")
    _rows(ledger, "CREATE INDEX ON T (k)")
    _rows(ledger, "INSERT INTO T << {'k': 1, 'n': 'lower'}, {'K': 1, 'n': 'upper'} >>")
    found = _rows(ledger, "SELECT VALUE t.n FROM T AS t WHERE t.k = 1")
    assert sorted(found) == ["lower", "upper"]  # t.k matches K as well, through the index
    assert _rows(ledger, 'SELECT VALUE t.n FROM T AS t WHERE t."k" = 1') == ["lower"]
    assert len(_rows(ledger, "DELETE FROM T WHERE k = 1")) == 2
    assert _rows(ledger, "SELECT * FROM T") == []

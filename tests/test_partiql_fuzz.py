"""Random well-formed statements against a ledger: each one either returns rows or raises a
typed Strand error (core.errors), and a statement that raises changes nothing.

The statements are built from a small grammar of PartiQL (queries, DML with nested paths,
joins, aggregates, every built-in function with a random number of arguments, literals of
every Ion type, parameters of every Python type the driver accepts), so hypothesis reaches
the evaluator's and the executor's corners, not just the parser's (tests/test_partiql_parser.py
fuzzes the parser with random text).
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Ledger
from core.errors import StrandError
from core.partiql.functions import SCALAR_FUNCTIONS
from core.storage import MemoryStorage

_LITERALS = [
    "1",
    "-2",
    "0",
    "1.5",
    "1e0",
    "'a'",
    "''",
    "'%a_'",
    "NULL",
    "MISSING",
    "TRUE",
    "`2020-01-01T`",
    "`2021-06-02T07:03:05.226Z`",
    "`{{aGVsbG8=}}`",
    "`(1 2)`",
    "[1, 'b']",
    "<<1, 2>>",
    "{'a': 1}",
    "`a::1`",
    "99999999999999999999999",
]
_PATHS = ["c.a", "c.b", "c.b[0]", "c.s.t", "c.l[*]", "c.s.*", "c", "d.a", "cid"]
_OPS = ["+", "-", "*", "/", "%", "||", "=", "<>", "<", ">=", "AND", "OR"]
_FUNCTIONS = sorted(SCALAR_FUNCTIONS)
_AGGREGATES = ["COUNT", "SUM", "AVG", "MIN", "MAX"]


def _expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(_LITERALS + _PATHS + ["?"])
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(_OPS), sub),
        st.builds(lambda a: f"(NOT {a})", sub),
        st.builds(lambda a: f"(-({a}))", sub),
        st.builds(
            lambda f, args: f"{f}({', '.join(args)})",
            st.sampled_from(_FUNCTIONS),
            st.lists(sub, max_size=3),
        ),
        st.builds(
            lambda a, t: f"CAST({a} AS {t})",
            sub,
            st.sampled_from(["INT", "STRING", "DECIMAL", "FLOAT", "BOOL", "TIMESTAMP", "LIST"]),
        ),
        st.builds(lambda a, b: f"({a} LIKE {b})", sub, sub),
        st.builds(lambda a, b, c: f"({a} BETWEEN {b} AND {c})", sub, sub, sub),
        st.builds(lambda a, b: f"({a} IN ({b}, 2))", sub, sub),
        st.builds(lambda a: f"({a} IS NULL)", sub),
        st.builds(lambda a, b: f"CASE WHEN {a} THEN {b} ELSE 0 END", sub, sub),
        st.builds(
            lambda u, a: f"DATE_ADD({u}, {a}, c.ts)",
            st.sampled_from(["day", "second", "year"]),
            sub,
        ),
        st.builds(lambda a: f"EXTRACT(YEAR FROM {a})", sub),
        st.builds(lambda a, b: f"TRIM(LEADING {a} FROM {b})", leaf, sub),
        st.builds(lambda a: f"(SELECT VALUE x.a FROM T AS x WHERE x.a = {a})", sub),
    )


_EXPR = _expr(2)
_FROM = st.sampled_from(
    [
        "T AS c",
        "T AS c BY cid",
        "T AS c, U AS d",
        "T AS c LEFT JOIN U AS d ON c.a = d.a",
        "T AS c, c.l AS d",
        "_ql_committed_T AS c",
        "history(T) AS c",
    ]
)


@st.composite
def _statement(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    e1, e2 = draw(_EXPR), draw(_EXPR)
    if kind <= 3:
        proj = draw(
            st.sampled_from(
                [f"{e1} AS x", "*", f"VALUE {e1}", f"{draw(st.sampled_from(_AGGREGATES))}({e1})"]
            )
        )
        tail = draw(st.sampled_from(["", f" ORDER BY {e2}", f" GROUP BY {e2}", " LIMIT 2"]))
        return f"SELECT {proj} FROM {draw(_FROM)} WHERE {e2}{tail}"
    if kind == 4:
        target = draw(st.sampled_from(["a", "s.t", "l[0]", "b"]))
        return f"UPDATE T AS c SET c.{target} = {e1} WHERE {e2}"
    if kind == 5:
        return (
            f"UPDATE T AS c REMOVE c.{draw(st.sampled_from(['a', 's.t', 'l[1]', 'zz']))} WHERE {e2}"
        )
    if kind == 6:
        return f"FROM T AS c WHERE {e2} INSERT INTO c.l VALUE {e1}"
    if kind == 7:
        return f"DELETE FROM T AS c WHERE {e2}"
    if kind == 8:
        return f"INSERT INTO U VALUE {{'a': {e1}, 'n': {e2}}}"
    return e1  # a bare expression is a query too


_PARAMETERS = st.one_of(
    st.integers(-(10**30), 10**30),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.floats(allow_nan=True),
    st.just(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
    st.binary(max_size=4),
)


def _ledger() -> Ledger:
    ledger = Ledger(MemoryStorage())

    def setup(tx: Any) -> None:
        tx.execute_statement("CREATE TABLE T")
        tx.execute_statement("CREATE TABLE U")
        tx.execute_statement("CREATE INDEX ON T (a)")
        for doc in [
            {
                "a": 1,
                "b": [1, 2],
                "s": {"t": "x"},
                "l": [1, "y"],
                "ts": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            },
            {"a": Decimal("1.0"), "b": None, "s": {}, "l": []},
            {"a": "1", "l": [[1], {"k": 2}]},
        ]:
            tx.execute_statement("INSERT INTO T ?", doc)
        tx.execute_statement("INSERT INTO U ?", {"a": 1})

    ledger.execute_lambda(setup)
    return ledger


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(statement=_statement(), parameters=st.lists(_PARAMETERS, max_size=3))
def test_random_statements_return_rows_or_a_typed_error_that_changes_nothing(
    statement: str, parameters: list[Any]
) -> None:
    ledger = _ledger()
    params = parameters[: statement.count("?")]
    params += [0] * (statement.count("?") - len(params))
    before = ledger.get_digest()
    try:
        rows = ledger.execute_lambda(lambda tx: list(tx.execute_statement(statement, *params)))
    except StrandError:
        assert ledger.get_digest() == before, statement
        return
    assert isinstance(rows, list)

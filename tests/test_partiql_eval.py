"""The evaluator's own tests: the Source hooks (Lookup narrowing from WHERE, BY ids),
evaluate_expr, scan_matches, parameters, COUNT(*)'s `{_1: n}`, ORDER BY's list result and
the typed errors. Statements are built as ASTs so these tests do not depend on the parser;
the fake Source below is an in-memory table that records the Lookup it was given."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import ast
from core.partiql.checks import check_statement
from core.partiql.data import Bag, Context, Lookup, Source
from core.partiql.evaluator import evaluate, evaluate_expr, scan_matches


class FakeTable(Source):
    """An in-memory Source that honours and records Lookups."""

    def __init__(self, name: str, rows: dict[str, dict[str, Any]]) -> None:
        self._name = name
        self.rows = rows
        self.lookups: list[Lookup | None] = []

    @property
    def name(self) -> str:
        return self._name

    def narrow(self, field: str | None) -> bool:
        return True  # it filters by the hint itself

    def scan(self, lookup: Lookup | None) -> Iterable[tuple[str | None, Any]]:
        self.lookups.append(lookup)
        for doc_id, doc in self.rows.items():
            if lookup is not None:
                key = doc_id if lookup.field is None else doc.get(lookup.field)
                if key not in lookup.values:
                    continue
            yield doc_id, doc


def _table() -> FakeTable:
    return FakeTable(
        "Vehicle",
        {
            "id1": {"VIN": "A", "Year": 2011, "Color": "red"},
            "id2": {"VIN": "B", "Year": 2015, "Color": "blue"},
            "id3": {"VIN": "C", "Year": 2015, "Color": "red"},
        },
    )


def v(name: str) -> ast.Var:
    return ast.Var(name)


def path(root: str, *fields: str) -> ast.Path:
    return ast.Path(v(root), tuple(ast.Field(f) for f in fields))


def lit(value: Any) -> ast.Lit:
    return ast.Lit(value)


def select_value(expr: ast.Expr, scan: ast.Scan, where: ast.Expr | None = None) -> ast.Query:
    return ast.Query(ast.Select(ast.ProjectValue(expr), scan, where=where))


def test_equality_on_field_gives_lookup() -> None:
    table = _table()
    q = select_value(
        path("v", "Year"), ast.Scan(v("Vehicle"), "v"), ast.Binary("=", path("v", "VIN"), lit("B"))
    )
    assert evaluate(q, {"Vehicle": table}) == Bag([2015])
    assert table.lookups == [Lookup("VIN", ("B",))]


def test_in_gives_several_values_and_parameters_are_closed() -> None:
    table = _table()
    where = ast.In(path("v", "VIN"), ast.ListLit((ast.Param(0), lit("C"))))
    q = select_value(path("v", "VIN"), ast.Scan(v("Vehicle"), "v"), where)
    assert sorted(evaluate(q, {"Vehicle": table}, parameters=["A"])) == ["A", "C"]
    assert table.lookups == [Lookup("VIN", ("A", "C"))]


def test_by_variable_gives_document_id_lookup() -> None:
    table = _table()
    where = ast.Binary("and", ast.Binary("=", v("pid"), ast.Param(0)), lit(True))
    q = select_value(v("pid"), ast.Scan(v("Vehicle"), "v", by="pid"), where)
    assert evaluate(q, {"Vehicle": table}, parameters=["id3"]) == Bag(["id3"])
    assert table.lookups == [Lookup(None, ("id3",))]


@pytest.mark.parametrize(
    "where",
    [
        ast.Binary("or", ast.Binary("=", path("v", "VIN"), lit("A")), lit(False)),
        ast.Binary("=", path("v", "VIN"), path("v", "Color")),
    ],
    ids=["or", "not-closed"],
)
def test_no_lookup_without_a_usable_conjunct(where: ast.Expr) -> None:
    table = _table()
    q = select_value(path("v", "VIN"), ast.Scan(v("Vehicle"), "v"), where)
    result = evaluate(q, {"Vehicle": table})
    assert table.lookups == [None]
    assert list(result) == (["A"] if isinstance(where, ast.Binary) and where.op == "or" else [])


def test_where_is_reapplied_after_lookup() -> None:
    table = _table()
    table.scan = lambda lookup: iter(table.rows.items())  # type: ignore[method-assign]
    where = ast.Binary("=", path("v", "Year"), lit(2015))
    q = select_value(path("v", "VIN"), ast.Scan(v("Vehicle"), "v"), where)
    assert sorted(evaluate(q, {"Vehicle": table})) == ["B", "C"]


def test_count_star_shape_and_source_as_value() -> None:
    table = _table()
    q = ast.Query(
        ast.Select(
            ast.ProjectList((ast.ProjectItem(ast.Aggregate("count", None)),)),
            ast.Scan(v("Vehicle")),
        )
    )
    assert list(evaluate(q, {"Vehicle": table})) == [{"_1": 3}]
    assert len(evaluate(ast.Query(v("Vehicle")), {"Vehicle": table})) == 3


def test_order_by_returns_list() -> None:
    table = _table()
    sel = ast.Select(
        ast.ProjectValue(path("v", "VIN")),
        ast.Scan(v("Vehicle"), "v"),
        order_by=(ast.OrderItem(path("v", "VIN"), descending=True),),
    )
    result = evaluate(ast.Query(sel), {"Vehicle": table})
    assert type(result) is list
    assert result == ["C", "B", "A"]


def test_evaluate_expr_uses_bindings() -> None:
    expr = ast.Binary("+", path("r", "Year"), ast.Param(0))
    got = evaluate_expr(expr, {"r": {"Year": 2000}}, {}, [5], Context())
    assert got == 2005


def test_scan_matches_binds_implicit_alias_and_id() -> None:
    table = _table()
    where = ast.Binary("=", path("Vehicle", "Color"), lit("red"))
    rows = scan_matches(ast.Scan(v("Vehicle")), where, {"Vehicle": table}, [], Context())
    assert sorted(doc_id or "" for doc_id, _ in rows) == ["id1", "id3"]
    assert all(set(b) == {"Vehicle"} for _, b in rows)
    assert table.lookups == [Lookup("Color", ("red",))]
    rows = scan_matches(
        ast.Scan(v("Vehicle"), "x", by="i"), None, {"Vehicle": table}, [], Context()
    )
    assert {b["i"] for _, b in rows} == {"id1", "id2", "id3"}


def test_wrong_parameter_count_is_semantic_error() -> None:
    q = ast.Query(ast.Param(0))
    with pytest.raises(PartiQLSemanticError):
        evaluate(q, {})
    with pytest.raises(PartiQLSemanticError):
        check_statement(q, 2)
    assert evaluate(q, {}, parameters=[7]) == 7


def test_unknown_function_is_semantic_error() -> None:
    with pytest.raises(PartiQLSemanticError):
        evaluate(ast.Query(ast.Call("no_such_function", (lit(1),))), {})


def test_extra_function_receives_source() -> None:
    table = _table()
    seen: list[Any] = []

    def history(t: Any) -> Any:
        seen.append(t)
        return Bag([1])

    ctx = Context(functions={"history": history})
    assert evaluate(
        ast.Query(ast.Call("history", (v("Vehicle"),))), {"Vehicle": table}, context=ctx
    ) == Bag([1])
    assert seen == [table]


def test_aggregate_in_where_is_semantic_error() -> None:
    sel = ast.Select(ast.ProjectStar(), ast.Scan(v("t")), where=ast.Aggregate("count", None))
    with pytest.raises(PartiQLSemanticError):
        check_statement(ast.Query(sel), 0)


def test_dml_needs_a_ledger_and_errors_are_typed() -> None:
    with pytest.raises(PartiQLSemanticError):
        evaluate(ast.CreateTable(ast.TableName("t")), {})
    with pytest.raises(PartiQLSemanticError, match="nowhere"):  # found before it runs
        evaluate(ast.Query(v("nowhere")), {}, "error")
    with pytest.raises(PartiQLEvaluationError, match="nowhere"):  # coerce mode: at run time
        evaluate(ast.Query(v("nowhere")), {}, "coerce")

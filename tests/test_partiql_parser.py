"""Tests of the PartiQL parser (core/partiql/parser.py, lower.py, grammar.lark).

Covers: every QLDB statement form (qldb.md section 3) lowering to the expected AST, the
precedence and shape of expressions, syntax-error locations and expected sets, a property
test that arbitrary text and token soups only ever raise PartiQLSyntaxError, and the
official partiql-tests syntax suites (success/syntax must parse, fail/syntax must not).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import PartiQLSyntaxError
from core.partiql import ast
from core.partiql.data import MISSING
from core.partiql.functions import Quantifier
from core.partiql.parser import parse

V = ast.Var
F = ast.Field
P = ast.Param
L = ast.Lit


def q(text: str) -> Any:
    """The expression of a query statement."""
    stmt = parse(text)
    assert isinstance(stmt, ast.Query)
    return stmt.expr


def path(root: str, *names: str) -> ast.Path:
    return ast.Path(V(root), tuple(F(n) for n in names))


# ============================================================================ QLDB forms


def test_select_star_where_param() -> None:
    assert parse("SELECT * FROM Vehicle AS v WHERE v.VIN = ?") == ast.Query(
        ast.Select(
            ast.ProjectStar(),
            from_=ast.Scan(V("Vehicle"), "v"),
            where=ast.Binary("=", path("v", "VIN"), P(0)),
        )
    )


def test_inner_join_on() -> None:
    assert parse(
        "SELECT v.VIN FROM Vehicle AS v INNER JOIN VehicleRegistration AS r "
        "ON v.VIN = r.VIN WHERE r.Owners.PrimaryOwner.PersonId = ?"
    ) == ast.Query(
        ast.Select(
            ast.ProjectList((ast.ProjectItem(path("v", "VIN")),)),
            from_=ast.Join(
                "inner",
                ast.Scan(V("Vehicle"), "v"),
                ast.Scan(V("VehicleRegistration"), "r"),
                ast.Binary("=", path("v", "VIN"), path("r", "VIN")),
            ),
            where=ast.Binary("=", path("r", "Owners", "PrimaryOwner", "PersonId"), P(0)),
        )
    )


def test_comma_join() -> None:
    assert q("SELECT * FROM a, b AS x").from_ == ast.Join(
        "inner", ast.Scan(V("a")), ast.Scan(V("b"), "x")
    )


def test_from_insert_into() -> None:
    assert parse(
        "FROM VehicleRegistration AS r WHERE r.VIN = ? INSERT INTO r.Owners.SecondaryOwners VALUE ?"
    ) == ast.Update(
        ast.Scan(V("VehicleRegistration"), "r"),
        (ast.InsertAt(path("r", "Owners", "SecondaryOwners"), P(1)),),
        ast.Binary("=", path("r", "VIN"), P(0)),
    )


def test_from_set_and_remove() -> None:
    assert parse("FROM t AS x BY id SET x.a = 1 REMOVE x.b") == ast.Update(
        ast.Scan(V("t"), "x", by="id"),
        (ast.Assign(path("x", "a"), L(1)), ast.Remove(path("x", "b"))),
    )
    assert parse("FROM t AS x INSERT INTO x.l VALUE 5 AT 0") == ast.Update(
        ast.Scan(V("t"), "x"), (ast.InsertAt(path("x", "l"), L(5), L(0)),)
    )


def test_update_set_where() -> None:
    assert parse(
        "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ? WHERE r.VIN = ?"
    ) == ast.Update(
        ast.Scan(V("VehicleRegistration"), "r"),
        (ast.Assign(path("r", "Owners", "PrimaryOwner", "PersonId"), P(0)),),
        ast.Binary("=", path("r", "VIN"), P(1)),
    )


def test_update_several_clauses() -> None:
    stmt = parse("UPDATE t AS x BY d SET x.a = 1, x.b['c'] = 2 REMOVE x.e SET x.f = 3")
    assert stmt == ast.Update(
        ast.Scan(V("t"), "x", by="d"),
        (
            ast.Assign(path("x", "a"), L(1)),
            ast.Assign(ast.Path(V("x"), (F("b"), ast.Field("c", True, bracket=True))), L(2)),
            ast.Remove(path("x", "e")),
            ast.Assign(path("x", "f"), L(3)),
        ),
    )


def test_update_remove() -> None:
    assert parse("UPDATE Person REMOVE Person.Address") == ast.Update(
        ast.Scan(V("Person")), (ast.Remove(path("Person", "Address")),)
    )


def test_history_function_in_from() -> None:
    stmt = q("SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?")
    assert stmt == ast.Select(
        ast.ProjectStar(),
        from_=ast.Scan(ast.Call("history", (V("VehicleRegistration"),)), "h"),
        where=ast.Binary("=", path("h", "metadata", "id"), P(0)),
    )
    bounded = q("SELECT * FROM history(Vehicle, `2019-06-05T00:00:00Z`) AS h")
    call = bounded.from_.expr
    assert call.name == "history"
    assert len(call.args) == 2
    assert call.args[1].value.year == 2019


def test_by_clause() -> None:
    assert q("SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r.VIN = ?") == ast.Select(
        ast.ProjectList((ast.ProjectItem(V("r_id")),)),
        from_=ast.Scan(V("VehicleRegistration"), "r", by="r_id"),
        where=ast.Binary("=", path("r", "VIN"), P(0)),
    )


def test_exec_redact_revision() -> None:
    assert parse("EXEC redact_revision ?, 'tableId', 'documentId'") == ast.Exec(
        "redact_revision", (P(0), L("tableId"), L("documentId"))
    )


def test_information_schema() -> None:
    assert q("SELECT * FROM information_schema.user_tables") == ast.Select(
        ast.ProjectStar(), from_=ast.Scan(path("information_schema", "user_tables"))
    )


def test_count_star() -> None:
    assert q("SELECT COUNT(*) FROM t") == ast.Select(
        ast.ProjectList((ast.ProjectItem(ast.Aggregate("count", None)),)),
        from_=ast.Scan(V("t")),
    )


def test_ddl() -> None:
    assert parse("CREATE TABLE Vehicle") == ast.CreateTable(ast.TableName("Vehicle"))
    assert parse('create table "Vehicle";') == ast.CreateTable(ast.TableName("Vehicle", True))
    assert parse("DROP TABLE Vehicle") == ast.DropTable(ast.TableName("Vehicle"))
    assert parse('UNDROP TABLE "5PLf9SXwndd63lPaSIa0O6"') == ast.UndropTable(
        "5PLf9SXwndd63lPaSIa0O6"
    )
    assert parse("CREATE INDEX ON Vehicle (VIN)") == ast.CreateIndex(
        ast.TableName("Vehicle"), (("VIN",),)
    )
    assert parse('DROP INDEX "4tPW3fUhaVhDinRgKRLhGU" ON Vehicle WITH (purge = true)') == (
        ast.DropIndex("4tPW3fUhaVhDinRgKRLhGU", ast.TableName("Vehicle"), (("purge", True),))
    )
    assert parse('DROP INDEX "i" ON t') == ast.DropIndex("i", ast.TableName("t"))


def test_insert_forms() -> None:
    t = ast.TableName("Person")
    assert parse("INSERT INTO Person ?") == ast.Insert(t, P(0))
    assert parse("INSERT INTO Person << ?, ? >>") == ast.Insert(t, ast.BagLit((P(0), P(1))))
    assert parse("INSERT INTO Person VALUE {'FirstName': 'Ann', 'n': 1.5}") == ast.Insert(
        t,
        ast.StructLit(((L("FirstName"), L("Ann")), (L("n"), L(Decimal("1.5"))))),
        single=True,
    )


def test_delete() -> None:
    assert parse("DELETE FROM Person AS p WHERE p.GovId = ?") == ast.Delete(
        ast.Scan(V("Person"), "p"), ast.Binary("=", path("p", "GovId"), P(0))
    )
    assert parse("DELETE FROM Person") == ast.Delete(ast.Scan(V("Person")))


def test_select_value_and_committed_view() -> None:
    assert q("SELECT VALUE x.data FROM _ql_committed_Person AS x") == ast.Select(
        ast.ProjectValue(path("x", "data")), from_=ast.Scan(V("_ql_committed_Person"), "x")
    )


def test_where_predicates() -> None:
    where = q(
        "SELECT * FROM t WHERE a IN (1, 2) AND b NOT BETWEEN 1 AND 5 AND c LIKE 'x%' "
        "AND d IS NOT NULL AND e IS MISSING OR NOT f <> 2"
    ).where
    a_in = ast.In(V("a"), ast.ListLit((L(1), L(2))))
    b_btw = ast.Between(V("b"), L(1), L(5), negated=True)
    c_like = ast.Like(V("c"), L("x%"))
    d_is = ast.Is(V("d"), "null", negated=True)
    e_is = ast.Is(V("e"), "missing")
    conj = ast.Binary(
        "and",
        ast.Binary("and", ast.Binary("and", ast.Binary("and", a_in, b_btw), c_like), d_is),
        e_is,
    )
    assert where == ast.Binary("or", conj, ast.Unary("not", ast.Binary("<>", V("f"), L(2))))


def test_keywords_case_insensitive_and_quoted_identifiers() -> None:
    assert q('select "Foo", bar from T as t where t."X" = 1') == ast.Select(
        ast.ProjectList((ast.ProjectItem(V("Foo", True)), ast.ProjectItem(V("bar")))),
        from_=ast.Scan(V("T"), "t"),
        where=ast.Binary("=", ast.Path(V("t"), (F("X", True),)), L(1)),
    )


# ============================================================================ expressions


def test_precedence() -> None:
    assert q("1 + 2 * 3 - 4") == ast.Binary(
        "-", ast.Binary("+", L(1), ast.Binary("*", L(2), L(3))), L(4)
    )
    assert q("a || b = c + d") == ast.Binary(
        "=", ast.Binary("||", V("a"), V("b")), ast.Binary("+", V("c"), V("d"))
    )
    assert q("NOT a = b AND c OR d") == ast.Binary(
        "or",
        ast.Binary("and", ast.Unary("not", ast.Binary("=", V("a"), V("b"))), V("c")),
        V("d"),
    )
    assert q("-a.b * 2") == ast.Binary("*", ast.Unary("-", path("a", "b")), L(2))
    assert q("a != b") == ast.Binary("<>", V("a"), V("b"))
    assert q("10 % 3 / 2") == ast.Binary("/", ast.Binary("%", L(10), L(3)), L(2))


def test_literals() -> None:
    assert q("'it''s'") == L("it's")
    assert q("42") == L(42)
    lit = q("1.50")
    assert isinstance(lit.value, Decimal)
    assert lit.value == Decimal("1.50")
    exp = q("100e0")
    assert isinstance(exp.value, Decimal)
    assert exp.value == Decimal("100")
    assert q("TRUE") == L(True)
    assert q("false") == L(False)
    assert q("NULL") == L(None)
    assert q("MISSING").value is MISSING
    assert q("`{a: 1}`").value == {"a": 1}


def test_parameters_numbered_in_order() -> None:
    assert q("[?, ?, {'a': ?}]") == ast.ListLit((P(0), P(1), ast.StructLit(((L("a"), P(2)),))))


def test_paths() -> None:
    assert q("a.b[0]['c'].\"D\"[*].*") == ast.Path(
        V("a"),
        (
            F("b"),
            ast.Index(L(0)),
            ast.Field("c", True, bracket=True),
            F("D", True),
            ast.Wildcard(),
            ast.UnpivotStep(),
        ),
    )
    assert q("@x.y") == ast.Path(V("x", local_first=True), (F("y"),))
    assert q("f(x).a") == ast.Path(ast.Call("f", (V("x"),)), (F("a"),))


def test_collections() -> None:
    assert q("<< 1, [2], (3, 4), SEXP(5) >>") == ast.BagLit(
        (L(1), ast.ListLit((L(2),)), ast.ListLit((L(3), L(4))), ast.SexpLit((L(5),)))
    )
    assert q("{}") == ast.StructLit(())
    assert q("<<>>") == ast.BagLit(())


def test_case_cast_and_calls() -> None:
    assert q("CASE WHEN a THEN 1 ELSE 2 END") == ast.Case(None, ((V("a"), L(1)),), L(2))
    assert q("CASE x WHEN 1 THEN 'a' END") == ast.Case(V("x"), ((L(1), L("a")),), None)
    assert q("CAST(a AS DECIMAL(5, 2))") == ast.Cast(V("a"), "decimal", (5, 2))
    assert q("CAN_CAST(a AS VARCHAR(3))") == ast.Cast(V("a"), "varchar", (3,), "can_cast")
    assert q("CAST(a AS DOUBLE PRECISION)") == ast.Cast(V("a"), "double precision")
    assert q("COALESCE(a, NULLIF(b, 1))") == ast.Call(
        "coalesce", (V("a"), ast.Call("nullif", (V("b"), L(1))))
    )
    assert q("UPPER(To_String(x))") == ast.Call("upper", (ast.Call("to_string", (V("x"),)),))
    assert q("utcnow()") == ast.Call("utcnow", ())


def test_special_syntaxes() -> None:
    assert q("SUBSTRING(s FROM 2 FOR 3)") == ast.Call("substring", (V("s"), L(2), L(3)))
    assert q("substring(s, 2)") == ast.Call("substring", (V("s"), L(2)))
    assert q("POSITION('a' IN s)") == ast.Call("position", (L("a"), V("s")))
    assert q("OVERLAY(s PLACING 'x' FROM 2)") == ast.Call("overlay", (V("s"), L("x"), L(2)))
    assert q("TRIM(s)") == ast.Trim(V("s"))
    assert q("TRIM(LEADING 'x' FROM s)") == ast.Trim(V("s"), "leading", L("x"))
    assert q("TRIM(trailing FROM s)") == ast.Trim(V("s"), "trailing")
    assert q("TRIM('x' FROM s)") == ast.Trim(V("s"), "both", L("x"))
    assert q("EXTRACT(YEAR FROM t)") == ast.Extract("year", V("t"))
    assert q("DATE_ADD(day, 1, t)") == ast.Call("date_add", (ast.DatePart("day"), L(1), V("t")))
    assert q("date_diff(MONTH, a, b)") == ast.Call(
        "date_diff", (ast.DatePart("month"), V("a"), V("b"))
    )
    assert q("DATE '2021-02-28'") == ast.DateLit("2021-02-28")
    assert q("TIME (3) WITH TIME ZONE '12:00:01.5+01:00'") == ast.TimeLit(
        "12:00:01.5+01:00", 3, True
    )
    assert q("EXISTS(SELECT * FROM t)") == ast.Call(
        "exists", (ast.Select(ast.ProjectStar(), from_=ast.Scan(V("t"))),)
    )


def test_aggregates_anywhere() -> None:
    assert q("SELECT COUNT(DISTINCT x), SUM(y) + 1 FROM t").project == ast.ProjectList(
        (
            ast.ProjectItem(ast.Aggregate("count", V("x"), True)),
            ast.ProjectItem(ast.Binary("+", ast.Aggregate("sum", V("y")), L(1))),
        )
    )
    distinct = ast.Lit(Quantifier("distinct"))
    assert q("coll_sum(DISTINCT x)") == ast.Call("coll_sum", (distinct, V("x")))


def test_query_clauses() -> None:
    sel = q(
        "SELECT DISTINCT t.a AS k, t.* FROM t AT i LET t.b AS b WHERE b > 1 "
        "GROUP BY t.a AS g GROUP AS grp HAVING COUNT(*) > 1 "
        "ORDER BY k DESC NULLS FIRST, i LIMIT 10 OFFSET 2"
    )
    assert sel == ast.Select(
        ast.ProjectList((ast.ProjectItem(path("t", "a"), "k"), ast.ProjectAll(V("t")))),
        from_=ast.Scan(V("t"), None, at="i"),
        distinct=True,
        let=((path("t", "b"), "b"),),
        where=ast.Binary(">", V("b"), L(1)),
        group_by=ast.GroupBy((ast.ProjectItem(path("t", "a"), "g"),), "grp"),
        having=ast.Binary(">", ast.Aggregate("count", None), L(1)),
        order_by=(ast.OrderItem(V("k"), True, True), ast.OrderItem(V("i"))),
        limit=L(10),
        offset=L(2),
    )


def test_joins_and_unpivot() -> None:
    sel = q("SELECT * FROM a LEFT OUTER JOIN b ON x CROSS JOIN UNPIVOT c AS v AT k")
    assert sel.from_ == ast.Join(
        "inner",
        ast.Join("left", ast.Scan(V("a")), ast.Scan(V("b")), V("x")),
        ast.UnpivotScan(V("c"), "v", "k"),
    )
    assert q("PIVOT v AT k FROM t").project == ast.Pivot(V("v"), V("k"))


def test_set_operations() -> None:
    assert q("SELECT a FROM t UNION ALL SELECT a FROM u") == ast.SetOp(
        "union",
        ast.Select(ast.ProjectList((ast.ProjectItem(V("a")),)), from_=ast.Scan(V("t"))),
        ast.Select(ast.ProjectList((ast.ProjectItem(V("a")),)), from_=ast.Scan(V("u"))),
        all=True,
    )
    op = q("(SELECT a FROM t) OUTER EXCEPT (SELECT a FROM u) ORDER BY a LIMIT 1")
    assert isinstance(op, ast.SetOp)
    assert (op.op, op.outer, op.all, op.limit) == ("except", True, False, L(1))
    assert op.order_by == (ast.OrderItem(V("a")),)


def test_subqueries() -> None:
    sel = q("SELECT * FROM (SELECT a FROM t) AS s WHERE s.a IN (SELECT VALUE b FROM u)")
    assert isinstance(sel.from_.expr, ast.Select)
    assert isinstance(sel.where, ast.In)
    assert isinstance(sel.where.collection, ast.Select)


def test_comments_and_trailing_semicolon() -> None:
    assert parse("SELECT * -- all\nFROM /* the table */ t;") == parse("SELECT * FROM t")


# ============================================================================ errors


def err(text: str) -> PartiQLSyntaxError:
    with pytest.raises(PartiQLSyntaxError) as info:
        parse(text)
    return info.value


def test_error_location_and_expected() -> None:
    e = err("SELECT * FORM t")
    assert (e.line, e.column) == (1, 10)
    assert "FROM" in e.expected
    assert "end of statement" in e.expected
    assert str(e).startswith("line 1, column 10: unexpected 'FORM'; expected one of: ")


def test_error_multiline() -> None:
    e = err("SELECT a,\n  b\nFROM t\nWHERE a = = 1")
    assert (e.line, e.column) == (4, 11)
    assert "identifier" in e.expected
    assert "'('" in e.expected


def test_error_at_end() -> None:
    e = err("SELECT a FROM t WHERE")
    assert "end of statement" in str(e)
    assert (e.line, e.column) == (1, 22)
    assert "identifier" in e.expected


def test_lexical_errors() -> None:
    assert err("").expected
    e = err("SELECT 'abc")
    assert (e.line, e.column) == (1, 8)
    assert "unterminated string" in str(e)
    e = err("SELECT a FROM t WHERE a = #")
    assert (e.line, e.column) == (1, 27)
    e = err("SELECT `{a: ` FROM t")
    assert (e.line, e.column) == (1, 8)
    e = err("SELECT `{{ not base64 }}` FROM t")
    assert "Ion" in str(e)
    err("SELECT /* never closed")


def test_reserved_words_are_not_identifiers() -> None:
    e = err("SELECT x.table FROM t")
    assert e.column == 10
    err("SELECT select FROM t")
    assert q('SELECT x."table" FROM t').project == ast.ProjectList(
        (ast.ProjectItem(ast.Path(V("x"), (F("table", True),))),)
    )


def test_semantic_syntax_errors() -> None:
    assert err("EXTRACT(fortnight FROM t)").column == 9
    err("DATE '2021-02-30'")
    err("TIME '25:00:00'")
    err("TRIM(sideways 'x' FROM s)")
    err("SUM(*)")
    err("FOO TABLE x")


# ============================================================================ robustness

_WORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    "VALUE",
    "AS",
    "AT",
    "BY",
    "JOIN",
    "INNER",
    "LEFT",
    "ON",
    "CROSS",
    "UNPIVOT",
    "PIVOT",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "ALL",
    "DISTINCT",
    "INSERT",
    "INTO",
    "UPDATE",
    "SET",
    "REMOVE",
    "DELETE",
    "CREATE",
    "DROP",
    "TABLE",
    "INDEX",
    "EXEC",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "TRIM",
    "SUBSTRING",
    "EXTRACT",
    "DATE",
    "TIME",
    "NOT",
    "AND",
    "OR",
    "IN",
    "IS",
    "NULL",
    "MISSING",
    "LIKE",
    "BETWEEN",
    "COUNT",
    "x",
    "y",
    '"q"',
    "'s'",
    "1",
    "2.5",
    "1e3",
    "?",
    "`1`",
    "`{a:1}`",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "<<",
    ">>",
    ",",
    ".",
    ":",
    ";",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "<>",
    "<",
    ">=",
    "||",
    "@",
    "`",
    "'",
    '"',
    "--",
    "/*",
]


def _attempt(text: str) -> None:
    """Parse `text`; anything but success or a well-formed PartiQLSyntaxError fails."""
    error: PartiQLSyntaxError | None = None
    try:
        parse(text)
    except PartiQLSyntaxError as exc:
        error = exc
    if error is not None:
        assert error.line >= 1
        assert error.column >= 1
        assert isinstance(error.expected, tuple)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_random_text_only_raises_syntax_errors(text: str) -> None:
    _attempt(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_WORDS), max_size=25))
def test_random_tokens_only_raise_syntax_errors(words: list[str]) -> None:
    _attempt(" ".join(words))


def test_deep_nesting_is_a_syntax_error_or_parses() -> None:
    _attempt("(" * 3000 + "1" + ")" * 3000)
    _attempt("-" * 5000 + "1")


# ============================================================================ conformance

_DATA = Path(__file__).parent / "vectors" / "partiql-tests" / "partiql-tests-data"

# Forms of success/syntax that Strand does not parse, with the reason. Empty: all parse.
_UNSUPPORTED_SUCCESS: frozenset[str] = frozenset()


def _walk(value: Any, tests: list[Mapping[str, Any]], classes: dict[str, list[str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, tests, classes)
    elif isinstance(value, Mapping):
        annotations = [a.text for a in getattr(value, "ion_annotations", ())]
        if "equiv_class" in annotations:
            classes[str(value["id"])] = [str(s) for s in value["statements"]]
        elif "statement" in value:
            tests.append(value)


def _statements(folder: str) -> Iterator[tuple[str, str]]:
    root = _DATA / folder
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.endswith(".ion"):
                continue
            file = Path(dirpath) / name
            with file.open("rb") as fh:
                docs = simpleion.load(fh, single_value=False)
            tests: list[Mapping[str, Any]] = []
            classes: dict[str, list[str]] = {}
            _walk(docs, tests, classes)
            for test in tests:
                stmt = test["statement"]
                texts = classes[str(stmt)] if type(stmt).__name__ == "IonPySymbol" else [stmt]
                for text in texts:
                    yield str(file.relative_to(_DATA)), str(text)


needs_vectors = pytest.mark.skipif(not _DATA.exists(), reason="partiql-tests not checked out")


@needs_vectors
def test_success_syntax_suite_parses() -> None:
    failures = []
    count = 0
    for file, text in _statements("success/syntax"):
        count += 1
        if text in _UNSUPPORTED_SUCCESS:
            continue
        try:
            parse(text)
        except PartiQLSyntaxError as exc:
            failures.append(f"{file}: {text!r}: {exc}")
    assert count > 300
    assert not failures, "\n".join(failures)


@needs_vectors
def test_fail_syntax_suite_is_rejected() -> None:
    accepted = []
    count = 0
    for file, text in _statements("fail/syntax"):
        count += 1
        try:
            parse(text)
        except PartiQLSyntaxError:
            continue
        accepted.append(f"{file}: {text!r}")
    assert count > 90
    assert not accepted, "\n".join(accepted)


@needs_vectors
def test_eval_suite_mostly_parses() -> None:
    """Statements of eval/ the parser rejects come only from forms Strand lacks (INTERVAL,
    TIMESTAMP literals, OVERLAPS, graph MATCH, WITH, CORRESPONDING, `()`)."""
    unsupported = ("INTERVAL", "TIMESTAMP", "OVERLAPS", "MATCH", "WITH", "CORRESPONDING", "()")
    unexpected = []
    for file, text in _statements("eval"):
        try:
            parse(text)
        except PartiQLSyntaxError as exc:
            if not any(word in text.upper() for word in unsupported):
                unexpected.append(f"{file}: {text!r}: {exc}")
    assert not unexpected, "\n".join(unexpected[:20])

"""PartiQL evaluation for Strand: the public entry points over the closure compiler.

- `evaluate(statement, env, mode, parameters=, context=)`: parse (if text), check, compile
  and run a query; the result is an Ion value (a Bag for an unordered query result, a list
  with ORDER BY, dicts for structs, possibly MISSING).
- `check_statement(statement, parameter_count)`: the static checks of `checks` (unknown
  functions, arities, constant argument types, aggregates where none is allowed, the number
  of `?` against the parameters given) for any statement, DML included; `evaluate` also
  refuses variables no FROM variable or global can supply.
- `evaluate_expr`, `scan_matches`: the ledger's hooks for DML (an expression in given
  bindings; the matching rows of a table named in UPDATE/DELETE).

Invariants: a statement is compiled once per call and cached by AST identity (the AST is
immutable); checks run before any evaluation, so a statement that fails them reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import ast
from core.partiql.checks import check_statement
from core.partiql.data import Context, Source
from core.partiql.exprs import Compiler
from core.partiql.from_clause import FromCompiler, narrowings, scan_alias
from core.partiql.runtime import Fn, Runtime, Scope, is_true

_CACHE: dict[int, tuple[ast.Expr, Fn]] = {}
_CACHE_MAX = 512


def _parse(text: str) -> ast.Statement:
    from core.partiql.parser import parse  # noqa: PLC0415  (written alongside)

    return parse(text)


def evaluate(
    statement: str | ast.Statement,
    env: Mapping[str, Any],
    mode: str = "coerce",
    *,
    parameters: Sequence[Any] = (),
    context: Context | None = None,
    checked: bool = False,
) -> Any:
    """Evaluate a query statement (text or AST) over `env` and return its Ion result.
    `checked`: the caller ran check_statement on it already (the ledger's executor)."""
    stmt = _parse(statement) if isinstance(statement, str) else statement
    ctx = context if context is not None else Context(mode=mode)
    if not isinstance(stmt, ast.Query):
        raise PartiQLSemanticError(f"{type(stmt).__name__} needs a ledger")
    if not checked:
        check_statement(
            stmt,
            len(parameters),
            extra_functions=list(ctx.functions),
            globals_=list(env),
            strict=ctx.mode == "error",
        )
    fn = _compiled(stmt.expr)
    return fn(Runtime(env, parameters, ctx), {})


def _compiled(expr: ast.Expr) -> Fn:
    hit = _CACHE.get(id(expr))
    if hit is not None and hit[0] is expr:
        return hit[1]
    fn = Compiler().value(expr, Scope())
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[id(expr)] = (expr, fn)
    return fn


def evaluate_expr(
    expr: ast.Expr,
    bindings: Mapping[str, Any],
    env: Mapping[str, Any],
    parameters: Sequence[Any],
    context: Context,
) -> Any:
    """`expr` evaluated with `bindings` as its local variables."""
    names = tuple(bindings)
    fn = Compiler().value(expr, Scope(names, (names,)))
    return fn(Runtime(env, parameters, context), dict(bindings))


def scan_matches(
    source: ast.Scan,
    where: ast.Expr | None,
    env: Mapping[str, Any],
    parameters: Sequence[Any],
    context: Context,
) -> list[tuple[str | None, dict[str, Any]]]:
    """(document id, bindings {alias: document, by: id}) of every row of the table named by
    `source.expr` that satisfies `where`."""
    rt = Runtime(env, parameters, context)
    table = source.expr
    if not isinstance(table, ast.Var):
        raise PartiQLEvaluationError("UPDATE and DELETE need a table name")
    value = rt.global_raw(table.name, table.case_sensitive)
    if not isinstance(value, Source):
        raise PartiQLEvaluationError(f"{table.name} is not a table")
    comp = Compiler()
    alias = scan_alias(source, 1)
    by = source.by if source.by is not None else "\x00id"
    fc = FromCompiler(comp, narrowings(where), where)
    rows, scope = fc.item(ast.Scan(source.expr, alias, source.at, by), Scope())
    scope = scope.query(fc.variables)
    cond = comp.value(where, scope) if where is not None else None
    out: list[tuple[str | None, dict[str, Any]]] = []
    for row in rows(rt, {}):
        if cond is None or is_true(cond(rt, row)):
            doc_id = row[by]
            if source.by is None:
                del row[by]
            out.append((doc_id, row))
    return out

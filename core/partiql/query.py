"""Compiles PartiQL queries (SELECT-FROM-WHERE and set operations) into closures.

The clauses run in the specification's order: FROM (lateral, left to right, joins,
UNPIVOT) -> LET -> WHERE -> GROUP BY / aggregates -> HAVING -> ORDER BY -> projection ->
DISTINCT -> OFFSET/LIMIT. The FROM clause and its narrowing by the WHERE clause are
compiled by `from_clause`. After GROUP BY an expression that denotes a group key by meaning
(`T.a`, `t.A` or `a` for the key `T.a`) reads the key; a key may name a select-list alias;
unnamed aggregates are `_1`, `_2`, ... in turn. ORDER BY after a set operation names the
output rows' fields.

Aggregation streams: a group keeps a count per `COUNT(*)` and the argument's values per
other aggregate, not its rows, unless GROUP AS needs them (or error mode an aggregate other
than COUNT(*), whose argument must not be evaluated early); a query whose aggregates are all
`COUNT(*)` over one FROM item with no WHERE or LET asks its Source to count (`Source.count`:
a ledger table counts storage keys, decoding nothing).

Invariants: the result of a SELECT is a Bag, or a list when it has ORDER BY; grouping keeps
the first-seen order of groups (bags are unordered anyway); the runtime's deadline is charged
per row aggregated, per ORDER BY comparison and per row DISTINCT sees (the FROM clause
charges per row it produces).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cmp_to_key
from typing import Any

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import ast, ops
from core.partiql.data import MISSING, Bag
from core.partiql.exprs import Compiler, same_expr, scalar_subquery
from core.partiql.from_clause import FromCompiler, narrowings, scan_alias
from core.partiql.runtime import (
    AMBIGUOUS,
    BLOCK_ROWS,
    Bindings,
    Fn,
    Runtime,
    Scope,
    as_int,
    charge_size,
    is_null,
    is_struct,
    is_text,
    is_true,
    make_struct,
    materialise,
    struct_items,
)

_ROWS = "\x00rows"  # the pre-group rows of a group, for aggregates
_ABSENT = "\x00absent"  # the keys of a group whose first value was MISSING (for `SELECT *`)
_ROW = "\x00row"  # an output row of a set operation, for its ORDER BY
_AGGS = "\x00aggs"  # what a group accumulated for each aggregate (see _compile_group)


def compile_query(node: ast.Select | ast.SetOp, scope: Scope) -> Fn:
    if isinstance(node, ast.SetOp):
        return _compile_setop(node, scope)
    return compile_select(node, scope)


# ============================================================================ SELECT


def _aggregates_in(node: Any) -> bool:
    """Whether an aggregate occurs in `node` outside any nested query."""
    if isinstance(node, ast.Aggregate):
        return True
    if isinstance(node, (ast.Select, ast.SetOp)):
        return False
    if isinstance(node, tuple):
        return any(_aggregates_in(x) for x in node)
    slots = getattr(type(node), "__slots__", None)
    if slots is None or not hasattr(node, "__dataclass_fields__"):
        return False
    return any(_aggregates_in(getattr(node, s)) for s in node.__dataclass_fields__)


def _key_alias(item: ast.ProjectItem, position: int) -> str:
    if item.alias is not None:
        return item.alias
    expr = item.expr
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Path) and expr.steps and isinstance(expr.steps[-1], ast.Field):
        return expr.steps[-1].name
    return f"_{position}"


def compile_select(sel: ast.Select, outer: Scope) -> Fn:
    comp = Compiler()
    count_rows: Fn | None = None
    if sel.from_ is not None:
        fc = FromCompiler(comp, narrowings(sel.where), sel.where, tuple(n for _, n in sel.let))
        from_rows, scope = fc.item(sel.from_, outer)
        if sel.where is None and not sel.let and isinstance(sel.from_, ast.Scan):
            count_rows = fc.count(sel.from_, outer)  # its rows, counted by the source
        from_vars = list(fc.variables)
        aliases = list(fc.aliases)
        at_names = frozenset(fc.at_names)
    else:
        from_rows = _one_row
        scope, from_vars, aliases = outer, [], []
        at_names = frozenset()
    scope = scope.query(from_vars)
    lets: list[tuple[str, Fn]] = []
    for expr, name in sel.let:
        lets.append((name, comp.value(expr, scope)))
        scope = scope.extend([name])
        from_vars.append(name)
    where = comp.value(sel.where, scope) if sel.where is not None else None

    def rows(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
        for row in from_rows(rt, b):
            if lets:
                row = dict(row)
                for name, fn in lets:
                    row[name] = fn(rt, row)
            if where is None or is_true(where(rt, row)):
                yield row

    grouped = sel.group_by is not None or any(
        _aggregates_in(x) for x in (sel.project, sel.having, sel.order_by)
    )
    post_scope = scope
    post = comp
    group_fn: Callable[[Runtime, Bindings, Iterator[Bindings]], list[Bindings]] | None = None
    star_vars = aliases
    if grouped:
        sel = replace(sel, group_by=_group_by_select_aliases(sel, scope))
        group_fn, post, post_scope = _compile_group(sel, scope, from_vars, count_rows)
        star_vars = [n for n in post_scope.names[len(outer.names) :] if n != _ROWS]
    elif sel.having is not None:
        raise PartiQLSemanticError("HAVING without GROUP BY or aggregates")
    having = post.value(sel.having, post_scope) if sel.having is not None else None
    order = _compile_order(sel.order_by, sel.project, post, post_scope)
    project = _compile_projection(
        sel.project, post, post_scope, star_vars, sel.group_by is not None, at_names
    )
    limit = comp.value(sel.limit, outer) if sel.limit is not None else None
    offset = comp.value(sel.offset, outer) if sel.offset is not None else None
    distinct = sel.distinct

    def run(rt: Runtime, b: Bindings) -> Any:
        stream: Any = rows(rt, b)
        if group_fn is not None:
            stream = group_fn(rt, b, stream)
        if having is not None:
            stream = (r for r in stream if is_true(having(rt, r)))
        if order is not None:
            stream = order(rt, list(stream))
        if isinstance(project, _PivotFn):
            pairs = _limit_offset(rt, b, [project(rt, r) for r in stream], limit, offset)
            return _pivot(rt, pairs)
        out = [project(rt, r) for r in stream]
        if distinct:
            charge_size(rt, len(out))
            out = ops.distinct(out)
        out = _limit_offset(rt, b, out, limit, offset)
        return out if order is not None else Bag(out)

    return run


def _one_row(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
    yield b


def _limit_offset(
    rt: Runtime, b: Bindings, out: list[Any], limit: Fn | None, offset: Fn | None
) -> list[Any]:
    if offset is not None:
        n = _count_arg(rt, offset(rt, b), "OFFSET")
        if n is not None:
            out = out[n:]
    if limit is not None:
        n = _count_arg(rt, limit(rt, b), "LIMIT")
        if n is not None:
            out = out[:n]
    return out


def _count_arg(rt: Runtime, value: Any, what: str) -> int | None:
    n = as_int(value)
    if n is None or n < 0:
        if rt.strict:
            raise PartiQLEvaluationError(f"{what} needs a non-negative integer")
        return None
    return n


def _compile_group(
    sel: ast.Select, scope: Scope, from_vars: list[str], count_rows: Fn | None = None
) -> tuple[Callable[[Runtime, Bindings, Iterator[Bindings]], list[Bindings]], Compiler, Scope]:
    pre = Compiler()
    group_by = sel.group_by
    keys: list[tuple[str, Fn, ast.Expr]] = []
    if group_by is not None:
        for i, item in enumerate(group_by.keys, 1):
            alias = _group_alias(item, i)
            if any(alias == k for k, _, _ in keys):  # `GROUP BY x.a, y.a`: both are `a`
                alias = f"\x00key{i}"  # the first keeps the name; this one is reached by meaning
            keys.append((alias, pre.value(item.expr, scope), item.expr))
    group_as = group_by.group_as if group_by is not None else None
    forms = [(_normal_form(expr, scope), alias) for alias, _, expr in keys]

    def group_key(node: ast.Expr) -> str | None:
        """The key binding an expression after GROUP BY denotes (`T.a`, `t.A` and `a` all
        denote the key `T.a` when T is the only FROM variable)."""
        form = _normal_form(node, scope)
        return next((alias for f, alias in forms if same_expr(f, form)), None)

    # every aggregate the clauses after GROUP BY use: (argument or None for COUNT(*)); a
    # group accumulates what they need as rows arrive (`_AGGS`) unless it must keep its rows
    aggregates: list[Fn | None] = []

    def aggregate(node: ast.Aggregate, agg_scope: Scope) -> Fn:
        arg = pre.value(node.arg, scope) if node.arg is not None else None
        name, distinct = node.name, node.distinct
        position = len(aggregates)
        aggregates.append(arg)

        def run(rt: Runtime, b: Bindings) -> Any:
            accumulated = b.get(_AGGS)
            if accumulated is not None:
                if arg is None:
                    count: int = accumulated[position]
                    return count
                return ops.aggregate(rt, name, accumulated[position], distinct)
            group = b[_ROWS]
            charge_size(rt, len(group))
            if arg is None:
                values: list[Any] = [1] * len(group)
                return ops.aggregate(rt, "count", values, False, star=True)
            return ops.aggregate(rt, name, [arg(rt, r) for r in group], distinct)

        return run

    post = Compiler(aggregate)
    post.group_key = group_key
    names = [alias for alias, _, _ in keys]
    if group_as is not None:
        names.append(group_as)
    # after grouping the FROM variables are gone; the empty level keeps "inside a query"
    post_scope = Scope(scope.names[: len(scope.names) - len(from_vars)], ((), *scope.from_vars[1:]))
    post_scope = post_scope.extend([*names, _ROWS])
    whole_table = group_by is None or not group_by.keys  # no GROUP BY, or GROUP ALL

    def group(rt: Runtime, b: Bindings, stream: Iterator[Bindings]) -> list[Bindings]:
        if group_as is None and (not rt.strict or all(a is None for a in aggregates)):
            return accumulate(rt, b, stream)
        groups: dict[Any, Bindings] = {}
        for row in stream:
            key_values = [fn(rt, row) for _, fn, _ in keys]
            hkey = tuple(ops.group_key(None if v is MISSING else v) for v in key_values)
            g = groups.get(hkey)
            if g is None:
                g = _new_group(b, keys, key_values)
                g[_ROWS] = []
                if group_as is not None:
                    g[group_as] = Bag()
                groups[hkey] = g
            g[_ROWS].append(row)
            if group_as is not None:
                g[group_as].append(make_struct((v, row[v]) for v in from_vars if v in row))
        if whole_table and not groups:
            g = {**b, _ROWS: []}
            if group_as is not None:
                g[group_as] = Bag()
            groups[()] = g
        return list(groups.values())

    def accumulate(rt: Runtime, b: Bindings, stream: Iterator[Bindings]) -> list[Bindings]:
        """`group` keeping no rows: each group holds a count per COUNT(*) and the argument's
        values per other aggregate, taken from each row as it streams by (without GROUP AS,
        nothing after grouping reads the rows themselves). In error mode only COUNT(*),
        whose argument cannot raise, is taken early: an aggregate that is never evaluated
        (in a CASE branch not taken) must not raise."""
        groups: dict[Any, Bindings] = {}
        total = None
        if whole_table and not keys and count_rows is not None and not any(aggregates):
            total = count_rows(rt, b)  # only COUNT(*): the source may count without rows
        if total is not None:
            stream = iter(())
        for row in stream:
            key_values = [fn(rt, row) for _, fn, _ in keys]
            hkey = tuple(ops.group_key(None if v is MISSING else v) for v in key_values)
            g = groups.get(hkey)
            if g is None:
                g = _new_group(b, keys, key_values)
                g[_AGGS] = [0 if a is None else [] for a in aggregates]
                groups[hkey] = g
            accumulated = g[_AGGS]
            for i, arg in enumerate(aggregates):
                if arg is None:
                    accumulated[i] += 1
                else:
                    accumulated[i].append(arg(rt, row))
        if whole_table and not groups:
            groups[()] = {**b, _AGGS: [0 if a is None else [] for a in aggregates]}
        if total is not None:
            accumulated = groups[()][_AGGS]
            for i, arg in enumerate(aggregates):
                if arg is None:
                    accumulated[i] = total
        for g in groups.values():
            g[_ROWS] = []  # never read: every aggregate reads _AGGS
        return list(groups.values())

    return group, post, post_scope


def _new_group(b: Bindings, keys: list[tuple[str, Fn, ast.Expr]], values: list[Any]) -> Bindings:
    """A group's bindings from the key values of its first row. NULL and MISSING fall in
    one group: its key reads as null, and `SELECT *` leaves it out (`_ABSENT`) when the
    first value seen was MISSING."""
    g = {**b}
    absent = []
    for (alias, _, _), v in zip(keys, values, strict=True):
        g[alias] = None if v is MISSING else v
        if v is MISSING:
            absent.append(alias)
    g[_ABSENT] = frozenset(absent)
    return g


def _group_alias(item: ast.ProjectItem, position: int) -> str:
    """A GROUP BY key's name: its alias, else that of the expression a CAST converts, else
    the select-list rule (`GROUP BY CAST(num AS INT)` binds num)."""
    expr = item.expr
    while item.alias is None and isinstance(expr, ast.Cast):
        expr = expr.value
    return _key_alias(ast.ProjectItem(expr, item.alias), position)


def _normal_form(node: ast.Expr, scope: Scope) -> Any:
    """What a variable or `.field` path denotes in `scope`: ("var", binding, field...) with
    unquoted names folded to lower case and an unqualified name read as an attribute of
    the only FROM variable; any other expression stands for itself."""
    if isinstance(node, ast.Var):
        key = scope.resolve(node.name, node.case_sensitive)
        if key is not None and key != AMBIGUOUS:
            return ("var", key)
        level = scope.from_vars[0] if scope.from_vars else ()
        if key is None and len(level) == 1:
            return ("var", level[0], _folded(node.name, node.case_sensitive))
        return ("expr", node)
    if isinstance(node, ast.Path) and all(isinstance(s, ast.Field) for s in node.steps):
        root = _normal_form(node.root, scope)
        if root[0] == "var":
            fields = tuple(_folded(s.name, s.case_sensitive) for s in node.steps)  # type: ignore[union-attr]
            return (*root, *fields)
    return ("expr", node)


def _folded(name: str, case_sensitive: bool) -> str:
    return name if case_sensitive else name.lower()


def _group_by_select_aliases(sel: ast.Select, scope: Scope) -> ast.GroupBy | None:
    """GROUP BY with a key that names a select-list alias (and no local variable) replaced
    by that item's expression under the alias (`SELECT a || b AS ab ... GROUP BY ab`)."""
    group_by = sel.group_by
    if group_by is None or not isinstance(sel.project, ast.ProjectList):
        return group_by
    aliases = {
        i.alias.lower(): i.expr
        for i in sel.project.items
        if isinstance(i, ast.ProjectItem) and i.alias is not None
    }
    keys = []
    for key in group_by.keys:
        expr = key.expr
        if (
            key.alias is None
            and isinstance(expr, ast.Var)
            and scope.resolve(expr.name, expr.case_sensitive) is None
            and expr.name.lower() in aliases
            and not _aggregates_in(aliases[expr.name.lower()])
        ):
            key = ast.ProjectItem(aliases[expr.name.lower()], expr.name)
        keys.append(key)
    return replace(group_by, keys=tuple(keys))


def _compile_order(
    items: tuple[ast.OrderItem, ...], project: ast.Projection, comp: Compiler, scope: Scope
) -> Callable[[Runtime, list[Bindings]], list[Bindings]] | None:
    if not items:
        return None
    aliases: dict[str, ast.Expr] = {}
    if isinstance(project, ast.ProjectList):
        for proj in project.items:
            if isinstance(proj, ast.ProjectItem) and proj.alias is not None:
                aliases[proj.alias.lower()] = proj.expr
    keys: list[tuple[Fn, bool, bool]] = []
    for item in items:
        expr = item.expr
        if (
            isinstance(expr, ast.Var)
            and scope.resolve(expr.name, expr.case_sensitive) is None
            and expr.name.lower() in aliases
        ):
            expr = aliases[expr.name.lower()]
        nulls_first = item.nulls_first if item.nulls_first is not None else item.descending
        keys.append((comp.value(expr, scope), item.descending, nulls_first))

    def order(rt: Runtime, rows: list[Bindings]) -> list[Bindings]:
        decorated = [([fn(rt, r) for fn, _, _ in keys], r) for r in rows]
        charge = rt.deadline.charge
        left = 0

        def cmp(a: tuple[list[Any], Bindings], b: tuple[list[Any], Bindings]) -> int:
            nonlocal left  # comparisons are charged a block at a time; a deadline that
            if not left:  # passes mid-sort stops the sort
                charge(BLOCK_ROWS)
                left = BLOCK_ROWS
            left -= 1
            for (_, desc, nulls_first), x, y in zip(keys, a[0], b[0], strict=True):
                c = ops.order_compare(x, y, desc, nulls_first)
                if c:
                    return c
            return 0

        decorated.sort(key=cmp_to_key(cmp))
        return [r for _, r in decorated]

    return order


def _compile_projection(
    project: ast.Projection,
    comp: Compiler,
    scope: Scope,
    from_vars: list[str],
    grouped: bool = False,
    at_names: frozenset[str] = frozenset(),
) -> Fn:
    if isinstance(project, ast.ProjectValue):
        return scalar_subquery(project.expr, comp.value(project.expr, scope))
    if isinstance(project, ast.Pivot):
        value = comp.value(project.value, scope)
        key = comp.value(project.key, scope)
        return _PivotFn(key, value)
    if isinstance(project, ast.ProjectStar) and grouped:
        # after GROUP BY, `*` is the group's variables by name: its keys (a MISSING key is
        # left out) and its GROUP AS
        names = [v for v in from_vars if not v.startswith("\x00")]

        def group_star(rt: Runtime, b: Bindings) -> Any:
            absent = b.get(_ABSENT, ())
            return make_struct((v, b[v]) for v in names if v in b and v not in absent)

        return group_star
    if isinstance(project, ast.ProjectStar):
        visible = [v for v in from_vars if not v.startswith("\x00")]

        def star(rt: Runtime, b: Bindings) -> Any:
            pairs: list[tuple[str, Any]] = []
            for position, var in enumerate(visible, 1):
                if var not in b:
                    continue
                value = b[var]
                if var in at_names:
                    pairs.append((var, value))
                elif is_struct(value):
                    pairs.extend(struct_items(value))
                else:
                    pairs.append((f"_{position}", value))
            return make_struct(pairs)

        return star
    parts: list[tuple[str | None, Fn]] = []
    unnamed_aggregate = [
        grouped
        and isinstance(item, ast.ProjectItem)
        and item.alias is None
        and isinstance(item.expr, ast.Aggregate)
        for item in project.items
    ]
    taken = {
        _key_alias(item, i)
        for i, (item, agg) in enumerate(zip(project.items, unnamed_aggregate, strict=True), 1)
        if isinstance(item, ast.ProjectItem) and not agg
    }
    aggregates = 0
    for i, item in enumerate(project.items, 1):
        if isinstance(item, ast.ProjectAll):
            parts.append((None, comp.value(item.expr, scope)))
            continue
        fn = scalar_subquery(item.expr, comp.value(item.expr, scope))
        name = _key_alias(item, i)
        if unnamed_aggregate[i - 1]:  # after GROUP BY, unnamed aggregates are _1, _2, ...
            aggregates += 1
            while f"_{aggregates}" in taken:  # ... skipping names other items have
                aggregates += 1
            name = f"_{aggregates}"
        parts.append((name, fn))

    def select_list(rt: Runtime, b: Bindings) -> Any:
        pairs: list[tuple[str, Any]] = []
        for name, fn in parts:
            value = fn(rt, b)
            if name is not None:
                pairs.append((name, value))
            elif is_struct(value):
                pairs.extend(struct_items(value))
            elif value is not MISSING and not is_null(value):
                pairs.append((f"_{len(pairs) + 1}", value))  # `x.*` of a non-struct x
            elif rt.strict and value is MISSING:
                raise PartiQLEvaluationError(".* over MISSING")
        return make_struct(pairs)

    return select_list


class _PivotFn:
    """A projection marker: PIVOT builds one struct from all rows, not one value per row."""

    def __init__(self, key: Fn, value: Fn) -> None:
        self.key = key
        self.value = value

    def __call__(self, rt: Runtime, b: Bindings) -> Any:
        return (self.key(rt, b), self.value(rt, b))


def _pivot(rt: Runtime, pairs: list[tuple[Any, Any]]) -> Any:
    fields: list[tuple[str, Any]] = []
    for key, value in pairs:
        if not is_text(key):
            if rt.strict:
                raise PartiQLEvaluationError("a PIVOT key must be text")
            continue
        fields.append((str(key), value))
    return make_struct(fields)


# ============================================================================ set operations


def _compile_setop(node: ast.SetOp, scope: Scope) -> Fn:
    comp = Compiler()
    left = comp.value(node.left, scope)
    right = comp.value(node.right, scope)
    op, all_, outer = node.op, node.all, node.outer
    order = None
    if node.order_by:  # its names are the output rows' fields
        row_scope = Scope((*scope.names, _ROW), ((_ROW,), *scope.from_vars))
        order = _compile_order(node.order_by, ast.ProjectStar(), comp, row_scope)
    limit = comp.value(node.limit, scope) if node.limit is not None else None
    offset = comp.value(node.offset, scope) if node.offset is not None else None

    def run(rt: Runtime, b: Bindings) -> Any:
        lv, rv = left(rt, b), right(rt, b)
        out = ops.set_op(rt, op, all_, outer, lv, rv)
        if order is not None:
            rows = order(rt, [{**b, _ROW: v} for v in out])
            out = [r[_ROW] for r in rows]
        out = _limit_offset(rt, b, list(out), limit, offset)
        return out if order is not None else Bag(out)

    return run


__all__ = ["compile_query", "compile_select", "materialise", "narrowings", "scan_alias"]

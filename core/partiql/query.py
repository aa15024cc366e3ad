"""Compiles PartiQL queries (SELECT-FROM-WHERE and set operations) into closures.

The clauses run in the specification's order: FROM (lateral, left to right, joins,
UNPIVOT) -> LET -> WHERE -> GROUP BY / aggregates -> HAVING -> ORDER BY -> projection ->
DISTINCT -> OFFSET/LIMIT. A FROM item over a `Source` (a ledger table) is scanned with a
`Lookup` derived from the WHERE clause's top-level conjuncts (`alias.f = e`, `alias.f IN
(...)`, `by = e`) whose other side is closed; the full WHERE is applied regardless.

Invariants: the result of a SELECT is a Bag, or a list when it has ORDER BY; a Source is
scanned once per evaluation of its FROM item; grouping keeps the first-seen order of
groups (bags are unordered anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import ast, ops
from core.partiql.data import MISSING, Bag, Lookup, Source
from core.partiql.exprs import Compiler
from core.partiql.runtime import (
    Bindings,
    Fn,
    Runtime,
    Scope,
    as_int,
    is_bag,
    is_null,
    is_sequence,
    is_struct,
    is_text,
    is_true,
    make_struct,
    materialise,
    struct_items,
)

RowsFn = Callable[[Runtime, Bindings], Iterator[Bindings]]
_ROWS = "\x00rows"  # the pre-group rows of a group, for aggregates


@dataclass(frozen=True, slots=True)
class Narrowing:
    """A WHERE conjunct usable as a Lookup: the variable it constrains (a FROM alias, or a
    BY variable with field None) and the closed expressions giving the values."""

    var: str
    case_sensitive: bool
    field: str | None
    values: tuple[ast.Expr, ...]


def compile_query(node: ast.Select | ast.SetOp, scope: Scope) -> Fn:
    if isinstance(node, ast.SetOp):
        return _compile_setop(node, scope)
    return compile_select(node, scope)


# ============================================================================ FROM


def scan_alias(scan: ast.Scan | ast.UnpivotScan, position: int) -> str:
    """The variable a FROM item binds: its alias, else a variable's or field's own name,
    else `_<position>`."""
    if scan.alias is not None:
        return scan.alias
    expr = scan.expr
    if isinstance(scan, ast.Scan):
        if isinstance(expr, ast.Var):
            return expr.name
        if isinstance(expr, ast.Path) and expr.steps and isinstance(expr.steps[-1], ast.Field):
            return expr.steps[-1].name
    return f"_{position}"


class FromCompiler:
    """Compiles a FROM tree; `variables` collects the names it binds, in order."""

    def __init__(self, comp: Compiler, narrowings: list[Narrowing]) -> None:
        self.comp = comp
        self.narrowings = narrowings
        self.variables: list[str] = []

    def item(self, node: ast.FromItem, scope: Scope) -> tuple[RowsFn, Scope]:
        if isinstance(node, ast.Join):
            return self._join(node, scope)
        if isinstance(node, ast.UnpivotScan):
            return self._unpivot(node, scope)
        return self._scan(node, scope)

    def _names(self, *names: str | None) -> list[str]:
        out = [n for n in names if n is not None]
        self.variables.extend(out)
        return out

    def _scan(self, node: ast.Scan, scope: Scope) -> tuple[RowsFn, Scope]:
        source = self.comp.expr(node.expr, scope)
        alias = scan_alias(node, len(self.variables) + 1)
        at, by = node.at, node.by
        self._names(alias, at, by)
        lookup = self._lookup(alias, by, scope)

        def rows(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            value = source(rt, b)
            if isinstance(value, Source) and not isinstance(value, (list, dict)):
                for doc_id, doc in value.scan(lookup(rt) if lookup is not None else None):
                    row = {**b, alias: doc}
                    if at is not None:
                        row[at] = MISSING
                    if by is not None:
                        row[by] = doc_id
                    yield row
                return
            if is_sequence(value):
                if at is not None and is_bag(value) and rt.strict:
                    raise PartiQLEvaluationError("AT over a bag")
                ordered = not is_bag(value)
                for pos, item in enumerate(value):
                    row = {**b, alias: item}
                    if at is not None:
                        row[at] = pos if ordered else MISSING
                    if by is not None:
                        row[by] = MISSING
                    yield row
                return
            if rt.strict:
                raise PartiQLEvaluationError("FROM over a value that is not a collection")
            row = {**b, alias: value}
            if at is not None:
                row[at] = MISSING
            if by is not None:
                row[by] = MISSING
            yield row

        return rows, scope.extend(n for n in (alias, at, by) if n is not None)

    def _lookup(
        self, alias: str, by: str | None, scope: Scope
    ) -> Callable[[Runtime], Lookup | None] | None:
        chosen: Narrowing | None = None
        for nar in self.narrowings:
            target = by if nar.field is None else alias
            if target is None:
                continue
            same = nar.var == target or (
                not nar.case_sensitive and nar.var.lower() == target.lower()
            )
            if same and (chosen is None or (nar.field is None and chosen.field is not None)):
                chosen = nar
        if chosen is None:
            return None
        empty = Scope()
        fns = [Compiler().value(e, empty) for e in chosen.values]
        field = chosen.field

        def lookup(rt: Runtime) -> Lookup | None:
            try:
                return Lookup(field, tuple(fn(rt, {}) for fn in fns))
            except PartiQLEvaluationError:
                return None

        return lookup

    def _unpivot(self, node: ast.UnpivotScan, scope: Scope) -> tuple[RowsFn, Scope]:
        source = self.comp.value(node.expr, scope)
        alias = scan_alias(node, len(self.variables) + 1)
        at = node.at
        self._names(alias, at)

        def rows(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            value = source(rt, b)
            if is_struct(value):
                pairs = struct_items(value)
            elif value is MISSING:
                if rt.strict:
                    raise PartiQLEvaluationError("UNPIVOT over MISSING")
                pairs = []
            else:
                if rt.strict:
                    raise PartiQLEvaluationError("UNPIVOT over a non-struct")
                pairs = [("_1", value)]
            for key, item in pairs:
                if item is MISSING:
                    continue
                row = {**b, alias: item}
                if at is not None:
                    row[at] = key
                yield row

        return rows, scope.extend(n for n in (alias, at) if n is not None)

    def _join(self, node: ast.Join, scope: Scope) -> tuple[RowsFn, Scope]:
        before = len(self.variables)
        left, left_scope = self.item(node.left, scope)
        middle = len(self.variables)
        right, joined = self.item(node.right, left_scope)
        left_vars = self.variables[before:middle]
        right_vars = self.variables[middle:]
        on = self.comp.value(node.on, joined) if node.on is not None else None
        kind = node.kind

        def matches(rt: Runtime, row: Bindings) -> bool:
            return on is None or is_true(on(rt, row))

        def inner(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            for lrow in left(rt, b):
                for row in right(rt, lrow):
                    if matches(rt, row):
                        yield row

        def left_outer(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            for lrow in left(rt, b):
                hit = False
                for row in right(rt, lrow):
                    if matches(rt, row):
                        hit = True
                        yield row
                if not hit:
                    yield {**lrow, **dict.fromkeys(right_vars)}

        def outer(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            lrows = list(left(rt, b))
            rrows = list(right(rt, {**b, **dict.fromkeys(left_vars)}))
            used = [False] * len(rrows)
            for lrow in lrows:
                hit = False
                for i, rrow in enumerate(rrows):
                    row = {**lrow, **{v: rrow[v] for v in right_vars}}
                    if matches(rt, row):
                        hit = used[i] = True
                        yield row
                if not hit and kind == "full":
                    yield {**lrow, **dict.fromkeys(right_vars)}
            for i, rrow in enumerate(rrows):
                if not used[i]:
                    yield {**rrow, **dict.fromkeys(left_vars)}

        if kind == "inner":
            return inner, joined
        if kind == "left":
            return left_outer, joined
        return outer, joined


def narrowings(where: ast.Expr | None) -> list[Narrowing]:
    """The WHERE clause's top-level conjuncts usable as Lookups."""
    out: list[Narrowing] = []
    stack = [where] if where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Binary) and node.op == "and":
            stack += [node.right, node.left]
        elif isinstance(node, ast.Binary) and node.op == "=":
            for target, other in ((node.left, node.right), (node.right, node.left)):
                found = _target(target)
                if found is not None and _closed(other):
                    out.append(Narrowing(found[0], found[1], found[2], (other,)))
                    break
        elif isinstance(node, ast.In) and not node.negated:
            found = _target(node.value)
            coll = node.collection
            if (
                found is not None
                and isinstance(coll, (ast.ListLit, ast.BagLit))
                and all(_closed(e) for e in coll.items)
            ):
                out.append(Narrowing(found[0], found[1], found[2], coll.items))
    return out


def _target(node: ast.Expr) -> tuple[str, bool, str | None] | None:
    if isinstance(node, ast.Var):
        return node.name, node.case_sensitive, None
    if (
        isinstance(node, ast.Path)
        and isinstance(node.root, ast.Var)
        and len(node.steps) == 1
        and isinstance(node.steps[0], ast.Field)
    ):
        return node.root.name, node.root.case_sensitive, node.steps[0].name
    return None


def _closed(node: ast.Expr) -> bool:
    if isinstance(node, (ast.Lit, ast.Param)):
        return True
    if isinstance(node, ast.Unary) and node.op in ("-", "+"):
        return _closed(node.operand)
    if isinstance(node, ast.Binary) and node.op in ("+", "-", "*", "/", "%", "||"):
        return _closed(node.left) and _closed(node.right)
    if isinstance(node, ast.Cast):
        return _closed(node.value)
    return False


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
    if sel.from_ is not None:
        fc = FromCompiler(comp, narrowings(sel.where))
        from_rows, scope = fc.item(sel.from_, outer)
        from_vars = list(fc.variables)
    else:
        from_rows = _one_row
        scope, from_vars = outer, []
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
    star_vars = from_vars
    if grouped:
        group_fn, post, post_scope = _compile_group(sel, scope, from_vars)
        star_vars = [n for n in post_scope.names[len(outer.names) :] if n != _ROWS]
    elif sel.having is not None:
        raise PartiQLSemanticError("HAVING without GROUP BY or aggregates")
    having = post.value(sel.having, post_scope) if sel.having is not None else None
    order = _compile_order(sel.order_by, sel.project, post, post_scope)
    project = _compile_projection(sel.project, post, post_scope, star_vars)
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
            return _pivot(rt, [project(rt, r) for r in stream])
        out = [project(rt, r) for r in stream]
        if distinct:
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
    sel: ast.Select, scope: Scope, from_vars: list[str]
) -> tuple[Callable[[Runtime, Bindings, Iterator[Bindings]], list[Bindings]], Compiler, Scope]:
    pre = Compiler()
    group_by = sel.group_by
    keys: list[tuple[str, Fn, ast.Expr]] = []
    if group_by is not None:
        for i, item in enumerate(group_by.keys, 1):
            keys.append((_key_alias(item, i), pre.value(item.expr, scope), item.expr))
    group_as = group_by.group_as if group_by is not None else None

    def aggregate(node: ast.Aggregate, agg_scope: Scope) -> Fn:
        arg = pre.value(node.arg, scope) if node.arg is not None else None
        name, distinct = node.name, node.distinct

        def run(rt: Runtime, b: Bindings) -> Any:
            group = b[_ROWS]
            if arg is None:
                values: list[Any] = [1] * len(group)
                return ops.aggregate(rt, "count", values, False, star=True)
            return ops.aggregate(rt, name, [arg(rt, r) for r in group], distinct)

        return run

    post = Compiler(aggregate)
    post.group_keys = tuple((expr, alias) for alias, _, expr in keys)
    names = [alias for alias, _, _ in keys]
    if group_as is not None:
        names.append(group_as)
    post_scope = Scope(scope.names[: len(scope.names) - len(from_vars)], scope.from_vars[1:])
    post_scope = post_scope.extend([*names, _ROWS])
    whole_table = group_by is None

    def group(rt: Runtime, b: Bindings, stream: Iterator[Bindings]) -> list[Bindings]:
        groups: dict[Any, Bindings] = {}
        for row in stream:
            key_values = [fn(rt, row) for _, fn, _ in keys]
            key_values = [None if v is MISSING else v for v in key_values]
            hkey = tuple(ops.group_key(v) for v in key_values)
            g = groups.get(hkey)
            if g is None:
                g = {**b, **{a: v for (a, _, _), v in zip(keys, key_values, strict=True)}}
                g[_ROWS] = []
                if group_as is not None:
                    g[group_as] = Bag()
                groups[hkey] = g
            g[_ROWS].append(row)
            if group_as is not None:
                g[group_as].append(make_struct((v, row[v]) for v in from_vars if v in row))
        if whole_table and not groups:
            g = {**b, _ROWS: []}
            groups[()] = g
        return list(groups.values())

    return group, post, post_scope


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
        nulls_first = item.nulls_first if item.nulls_first is not None else not item.descending
        keys.append((comp.value(expr, scope), item.descending, nulls_first))

    def order(rt: Runtime, rows: list[Bindings]) -> list[Bindings]:
        decorated = [([fn(rt, r) for fn, _, _ in keys], r) for r in rows]

        def cmp(a: tuple[list[Any], Bindings], b: tuple[list[Any], Bindings]) -> int:
            for (_, desc, nulls_first), x, y in zip(keys, a[0], b[0], strict=True):
                c = ops.order_compare(x, y, desc, nulls_first)
                if c:
                    return c
            return 0

        decorated.sort(key=cmp_to_key(cmp))
        return [r for _, r in decorated]

    return order


def _compile_projection(
    project: ast.Projection, comp: Compiler, scope: Scope, from_vars: list[str]
) -> Fn:
    if isinstance(project, ast.ProjectValue):
        return comp.value(project.expr, scope)
    if isinstance(project, ast.Pivot):
        value = comp.value(project.value, scope)
        key = comp.value(project.key, scope)
        return _PivotFn(key, value)
    if isinstance(project, ast.ProjectStar):
        visible = [v for v in from_vars if not v.startswith("\x00")]

        def star(rt: Runtime, b: Bindings) -> Any:
            pairs: list[tuple[str, Any]] = []
            for var in visible:
                if var not in b:
                    continue
                value = b[var]
                if is_struct(value):
                    pairs.extend(struct_items(value))
                else:
                    pairs.append((var, value))
            return make_struct(pairs)

        return star
    parts: list[tuple[str | None, Fn]] = []
    for i, item in enumerate(project.items, 1):
        if isinstance(item, ast.ProjectAll):
            parts.append((None, comp.value(item.expr, scope)))
        else:
            parts.append((_key_alias(item, i), comp.value(item.expr, scope)))

    def select_list(rt: Runtime, b: Bindings) -> Any:
        pairs: list[tuple[str, Any]] = []
        for name, fn in parts:
            value = fn(rt, b)
            if name is not None:
                pairs.append((name, value))
            elif is_struct(value):
                pairs.extend(struct_items(value))
            elif value is not MISSING and not is_null(value):
                if rt.strict:
                    raise PartiQLEvaluationError(".* over a non-struct")
                pairs.append((f"_{len(pairs) + 1}", value))
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
    if node.order_by:
        order = _compile_order(node.order_by, ast.ProjectStar(), comp, scope)
    limit = comp.value(node.limit, scope) if node.limit is not None else None
    offset = comp.value(node.offset, scope) if node.offset is not None else None

    def run(rt: Runtime, b: Bindings) -> Any:
        lv, rv = left(rt, b), right(rt, b)
        out = ops.set_op(rt, op, all_, outer, lv, rv)
        if order is not None:
            rows = order(rt, [{**b, "\x00v": v} for v in out])
            out = [r["\x00v"] for r in rows]
        out = _limit_offset(rt, b, list(out), limit, offset)
        return out if order is not None else Bag(out)

    return run


__all__ = ["compile_query", "compile_select", "materialise", "narrowings", "scan_alias"]

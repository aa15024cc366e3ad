"""Compiles PartiQL expressions (ast.Expr) into closures `fn(runtime, bindings) -> value`.

Variables are resolved at compile time against the `Scope` (local names, exact match
first, then case-insensitively for unquoted names); what is not local is looked up at run
time in SQL's implicit attribute way (a field of a FROM variable of the enclosing queries)
and then in the global environment. An unbound variable is an error outside any query; inside
one it is a missing attribute (MISSING in coerce mode, an error in error mode). A FROM item's
source resolves a global of exactly its spelling first (`from_source`). Paths implement
PartiQL navigation (`.f`, `[i]`, `['f']`, `[*]`, `.*`; `a[e]` names a struct field only for a
string literal, a parameter or a CAST to a string); a path into the null tuple an outer join
pads with is null, into any other null MISSING. SQL subqueries used as values are coerced
to scalars (`scalar_subquery`). Operators, casts and functions are delegated to `values`
and `functions` through `ops`.

Invariants: compiling never evaluates anything; a compiled closure only reads its
bindings; a path wildcard charges the runtime's deadline per value it expands (LIKE and IN
charge theirs in `ops`); a `Select`/`SetOp` in expression position is compiled by `query`
(a subquery, correlated through the bindings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import ast, ops
from core.partiql.data import MISSING, NULL_TUPLE, Bag, Source
from core.partiql.runtime import (
    AMBIGUOUS,
    UNBOUND,
    Bindings,
    Fn,
    Runtime,
    Scope,
    as_int,
    charge_size,
    is_absent,
    is_null,
    is_sequence,
    is_struct,
    is_text,
    is_true,
    make_struct,
    materialise,
    struct_get,
    struct_items,
)

# The binding a global FROM source's value is passed in (see Compiler.from_source).
_GLOBAL_KEY = "\x00global"
_GLOBAL = ast.Var(_GLOBAL_KEY, case_sensitive=True)

# Aggregates are compiled by `query` when grouping; this hook lets it intercept them.
AggregateHook = Callable[[ast.Aggregate, Scope], Fn]


class Compiler:
    """Compiles expressions; `aggregate` is set by the query compiler inside a grouped
    SELECT (None elsewhere: an aggregate there is a semantic error)."""

    def __init__(self, aggregate: AggregateHook | None = None) -> None:
        self.aggregate = aggregate
        # After GROUP BY: the binding of the group key an expression denotes, if any.
        self.group_key: Callable[[ast.Expr], str | None] | None = None

    # ------------------------------------------------------------------ dispatch

    def expr(self, node: ast.Expr, scope: Scope) -> Fn:
        if self.group_key is not None:
            key_name = self.group_key(node)
            if key_name is not None:
                return _binding(key_name)
        method = _DISPATCH.get(type(node))
        if method is None:
            raise PartiQLSemanticError(f"unsupported expression {type(node).__name__}")
        return method(self, node, scope)

    def value(self, node: ast.Expr, scope: Scope) -> Fn:
        """An expression whose Source value (a table) is materialised as a bag."""
        fn = self.expr(node, scope)
        if isinstance(node, ast.Var):

            def run(rt: Runtime, b: Bindings) -> Any:
                return materialise(fn(rt, b), rt)

            return run
        return fn

    # ------------------------------------------------------------------ leaves

    def _lit(self, node: ast.Lit, scope: Scope) -> Fn:
        value = node.value
        return lambda rt, b: value

    def _param(self, node: ast.Param, scope: Scope) -> Fn:
        index = node.index

        def run(rt: Runtime, b: Bindings) -> Any:
            if index >= len(rt.params):
                raise PartiQLSemanticError(f"no value for parameter {index + 1}")
            return rt.params[index]

        return run

    def _var(self, node: ast.Var, scope: Scope) -> Fn:
        key = scope.resolve(node.name, node.case_sensitive)
        name, cs = node.name, node.case_sensitive
        if key == AMBIGUOUS:

            def ambiguous(rt: Runtime, b: Bindings) -> Any:
                raise PartiQLEvaluationError(f"variable {name} is ambiguous")

            return ambiguous
        if key is not None:
            if not cs and scope.folds_onto(key):
                # exact match, but other locals differ only in case: ambiguous in error mode

                def loose(rt: Runtime, b: Bindings, key: str = key) -> Any:
                    if rt.strict:
                        raise PartiQLEvaluationError(f"variable {name} is ambiguous")
                    return b[key]

                return loose
            return _binding(key)
        levels = scope.from_vars

        def run(rt: Runtime, b: Bindings) -> Any:
            for level in levels:
                found = [
                    v for var in level if is_struct(v := b.get(var)) and _has_field(v, name, cs)
                ]
                if len(found) == 1:
                    return struct_get(found[0], name, cs, rt)
                if len(found) > 1:
                    raise PartiQLEvaluationError(f"variable {name} is ambiguous")
            value = rt.global_raw(name, cs)
            if value is not UNBOUND:
                return value
            if levels and len(levels[0]) == 1 and levels[0][0] in b:
                return _field(rt, b[levels[0][0]], name, cs)
            if levels:  # inside a query: a missing attribute (MISSING in coerce mode)
                return rt.fail(f"variable {name} is not defined")
            raise PartiQLEvaluationError(f"variable {name} is not defined")

        return run

    def from_source(self, node: ast.Expr, scope: Scope) -> Fn:
        """A FROM item's source expression. Its root variable resolves against the global
        environment first (PartiQL's scoping rule for FROM: `FROM a, a.b` reads the global
        a if there is one); `@x` looks among the local variables first."""
        root = node.root if isinstance(node, ast.Path) else node
        if not isinstance(root, ast.Var) or root.local_first:
            return self.expr(node, scope)
        if scope.resolve(root.name, root.case_sensitive) is None:
            return self.expr(node, scope)
        local = self.expr(node, scope)
        name = root.name
        rest = None
        if isinstance(node, ast.Path):
            rest = self.expr(ast.Path(_GLOBAL, node.steps), scope.extend([_GLOBAL_KEY]))

        def run(rt: Runtime, b: Bindings) -> Any:
            # only a global of exactly this spelling wins over the local variable, so
            # `FROM Person AS person, person.Addresses` keeps reading the FROM variable
            value = rt.global_raw(name, True)
            if value is UNBOUND:
                return local(rt, b)
            if rest is None:
                return value
            return rest(rt, {**b, _GLOBAL_KEY: value})

        return run

    # ------------------------------------------------------------------ paths

    def _path(self, node: ast.Path, scope: Scope) -> Fn:
        root = self.value(node.root, scope)
        steps = [self._step(step, scope) for step in node.steps]
        fanout = any(isinstance(s, (ast.Wildcard, ast.UnpivotStep)) for s in node.steps)
        if not fanout:

            def single(rt: Runtime, b: Bindings) -> Any:
                value = root(rt, b)
                for step in steps:
                    value = step(rt, b, value)[0]
                return value

            return single

        def many(rt: Runtime, b: Bindings) -> Any:
            current = [root(rt, b)]
            for step in steps:
                charge_size(rt, len(current))
                nxt: list[Any] = []
                for value in current:
                    nxt.extend(step(rt, b, value))
                current = nxt
            return Bag(current)

        return many

    def _step(
        self, step: ast.PathStep, scope: Scope
    ) -> Callable[[Runtime, Bindings, Any], list[Any]]:
        if isinstance(step, ast.Field):
            name, cs = step.name, step.case_sensitive
            return lambda rt, b, v: [_field(rt, v, name, cs)]
        if isinstance(step, ast.Index):
            index = self.expr(step.expr, scope)
            if _names_field(step.expr):
                return lambda rt, b, v: [_index(rt, v, index(rt, b))]

            def dynamic(rt: Runtime, b: Bindings, v: Any) -> list[Any]:
                # `a[e]` names a struct field only when e is a string literal or an
                # explicit CAST to a string (PartiQL spec 4.1): anything else is not
                # evaluated against a struct.
                if is_struct(v):
                    return [rt.fail("a struct subscript needs a string literal or a CAST")]
                return [_index(rt, v, index(rt, b))]

            return dynamic
        if isinstance(step, ast.Wildcard):
            return lambda rt, b, v: _wildcard(rt, v)
        return lambda rt, b, v: _unpivot_step(rt, v)

    # ------------------------------------------------------------------ operators

    def _unary(self, node: ast.Unary, scope: Scope) -> Fn:
        operand = self.value(node.operand, scope)
        op = node.op
        return lambda rt, b: ops.unary(rt, op, operand(rt, b))

    def _binary(self, node: ast.Binary, scope: Scope) -> Fn:
        left = self.value(node.left, scope)
        right = self.value(node.right, scope)
        op = node.op
        if _is_sql_subquery(node.left):
            left = _scalar(left)
        if _is_sql_subquery(node.right):
            right = _scalar(right)
        if op == "and":

            def and_(rt: Runtime, b: Bindings) -> Any:
                lv = left(rt, b)
                if lv is False and not rt.strict:
                    return False
                return ops.binary(rt, "and", lv, right(rt, b))

            return and_
        if op == "or":

            def or_(rt: Runtime, b: Bindings) -> Any:
                lv = left(rt, b)
                if lv is True and not rt.strict:
                    return True
                return ops.binary(rt, "or", lv, right(rt, b))

            return or_
        return lambda rt, b: ops.binary(rt, op, left(rt, b), right(rt, b))

    def _chain(self, node: ast.BinaryChain, scope: Scope) -> Fn:
        """A flat run of arithmetic: one closure that folds its operands left to right (as
        the left-deep Binary would), so a run of any length nests no closures."""
        operands = []
        for expr in node.operands:
            fn = self.value(expr, scope)
            operands.append(_scalar(fn) if _is_sql_subquery(expr) else fn)
        first, rest = operands[0], list(zip(node.ops, operands[1:], strict=True))

        def fold(rt: Runtime, b: Bindings) -> Any:
            acc = first(rt, b)
            for op, operand in rest:
                acc = ops.binary(rt, op, acc, operand(rt, b))
            return acc

        return fold

    def _like(self, node: ast.Like, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        pattern = self.value(node.pattern, scope)
        escape = self.value(node.escape, scope) if node.escape is not None else None
        negated = node.negated

        def run(rt: Runtime, b: Bindings) -> Any:
            esc = escape(rt, b) if escape is not None else ops.NO_ESCAPE
            result = ops.like(rt, value(rt, b), pattern(rt, b), esc)
            return ops.unary(rt, "not", result) if negated else result

        return run

    def _between(self, node: ast.Between, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        low = self.value(node.low, scope)
        high = self.value(node.high, scope)
        negated = node.negated

        def run(rt: Runtime, b: Bindings) -> Any:
            result = ops.between(rt, value(rt, b), low(rt, b), high(rt, b))
            return ops.unary(rt, "not", result) if negated else result

        return run

    def _in(self, node: ast.In, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        if _is_sql_subquery(node.value):
            value = _scalar(value)
        collection = self.value(node.collection, scope)
        sub = _is_sql_subquery(node.collection)
        negated = node.negated

        def run(rt: Runtime, b: Bindings) -> Any:
            coll = collection(rt, b)
            if sub and is_sequence(coll):
                coll = Bag(_single_field(v) for v in coll)
            result = ops.in_(rt, value(rt, b), coll, negated)
            return ops.unary(rt, "not", result) if negated else result

        return run

    def _is(self, node: ast.Is, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        type_name, negated, type_args = node.type_name, node.negated, node.type_args

        def run(rt: Runtime, b: Bindings) -> Any:
            result = ops.is_type(rt, value(rt, b), type_name, type_args)
            if result is MISSING or is_null(result):
                return result
            return (not result) if negated else result

        return run

    # ------------------------------------------------------------------ constructors

    def _struct(self, node: ast.StructLit, scope: Scope) -> Fn:
        fields = [(self.value(k, scope), self.value(v, scope)) for k, v in node.fields]

        def run(rt: Runtime, b: Bindings) -> Any:
            pairs: list[tuple[str, Any]] = []
            for key_fn, value_fn in fields:
                key = key_fn(rt, b)
                if not is_text(key):
                    if rt.strict:
                        raise PartiQLEvaluationError("a struct field name must be text")
                    continue  # coerce mode leaves the field out
                pairs.append((str(key), value_fn(rt, b)))
            return make_struct(pairs)

        return run

    def _list(self, node: ast.ListLit, scope: Scope) -> Fn:
        items = [self.value(i, scope) for i in node.items]
        return lambda rt, b: [f(rt, b) for f in items]

    def _sexp(self, node: ast.SexpLit, scope: Scope) -> Fn:
        items = [self.value(i, scope) for i in node.items]
        return lambda rt, b: ops.make_sexp([f(rt, b) for f in items])

    def _bag(self, node: ast.BagLit, scope: Scope) -> Fn:
        items = [self.value(i, scope) for i in node.items]
        return lambda rt, b: Bag(f(rt, b) for f in items)

    def _case(self, node: ast.Case, scope: Scope) -> Fn:
        operand = self.value(node.operand, scope) if node.operand is not None else None
        whens = [(self.value(c, scope), self.value(r, scope)) for c, r in node.whens]
        default = self.value(node.default, scope) if node.default is not None else None

        def run(rt: Runtime, b: Bindings) -> Any:
            subject = operand(rt, b) if operand is not None else None
            for cond, result in whens:
                test = cond(rt, b)
                if operand is not None:
                    test = ops.binary(rt, "=", subject, test)
                if is_true(test):
                    return result(rt, b)
            return default(rt, b) if default is not None else None

        return run

    # ------------------------------------------------------------------ functions

    def _call(self, node: ast.Call, scope: Scope) -> Fn:
        name = node.name
        # a table passed to a ledger function (`history(T)`) is found as a FROM source is
        raw = [self.from_source(a, scope) if isinstance(a, ast.Var) else None for a in node.args]
        args = [self.value(a, scope) for a in node.args]

        def run(rt: Runtime, b: Bindings) -> Any:
            extra = rt.context.functions.get(name)
            if extra is not None:
                values = []
                for raw_fn, fn in zip(raw, args, strict=True):
                    value = raw_fn(rt, b) if raw_fn is not None else fn(rt, b)
                    values.append(value)
                return extra(*values)
            return ops.call(rt, name, [fn(rt, b) for fn in args])

        return run

    def _datepart(self, node: ast.DatePart, scope: Scope) -> Fn:
        part = ops.date_part(node.part)
        return lambda rt, b: part

    def _extract(self, node: ast.Extract, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        part = node.part
        return lambda rt, b: ops.extract(rt, part, value(rt, b))

    def _trim(self, node: ast.Trim, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        chars = self.value(node.chars, scope) if node.chars is not None else None
        spec = node.spec
        if chars is None:
            return lambda rt, b: ops.trim(rt, value(rt, b), spec)
        return lambda rt, b: ops.trim(rt, value(rt, b), spec, chars(rt, b))

    def _cast(self, node: ast.Cast, scope: Scope) -> Fn:
        value = self.value(node.value, scope)
        type_name, type_args, kind = node.type_name, node.type_args, node.kind
        return lambda rt, b: ops.cast(rt, value(rt, b), type_name, type_args, kind)

    def _aggregate(self, node: ast.Aggregate, scope: Scope) -> Fn:
        if self.aggregate is None:
            raise PartiQLSemanticError(f"aggregate {node.name.upper()} is not allowed here")
        return self.aggregate(node, scope)

    def _datelit(self, node: ast.DateLit, scope: Scope) -> Fn:
        value = ops.date_literal(node.text)
        return lambda rt, b: value

    def _timelit(self, node: ast.TimeLit, scope: Scope) -> Fn:
        value = ops.time_literal(node.text, node.precision, node.with_time_zone)
        return lambda rt, b: value

    def _timestamplit(self, node: ast.TimestampLit, scope: Scope) -> Fn:
        value = ops.timestamp_literal(node.text, node.precision, node.with_time_zone)
        return lambda rt, b: value

    def _intervallit(self, node: ast.IntervalLit, scope: Scope) -> Fn:
        value = ops.interval_literal(node)
        return lambda rt, b: value

    def _query(self, node: ast.Select | ast.SetOp, scope: Scope) -> Fn:
        from core.partiql import query  # noqa: PLC0415  (query imports this module)

        return query.compile_query(node, scope)


def _binding(key: str) -> Fn:
    return lambda rt, b: b[key]


def _has_field(value: Any, name: str, case_sensitive: bool) -> bool:
    low = name.lower()
    return any(
        k == name or (not case_sensitive and k.lower() == low) for k, _ in struct_items(value)
    )


def same_expr(a: Any, b: Any) -> bool:
    """Structural equality of two AST nodes (Ion values inside literals compared as such)."""
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (Ion values inside Lit may refuse comparison)
        return False


def _is_sql_subquery(node: ast.Expr) -> bool:
    return isinstance(node, ast.Select) and isinstance(node.project, ast.ProjectList)


def _single_field(value: Any) -> Any:
    if is_struct(value):
        items = struct_items(value)
        if len(items) == 1:
            return items[0][1]
    return value


def scalar_subquery(node: ast.Expr, fn: Fn) -> Fn:
    """`fn` coerced as a SQL scalar subquery if `node` is one (a SELECT with a select list
    used as an operand or a projected value), else `fn` itself."""
    return _scalar(fn) if _is_sql_subquery(node) else fn


def _scalar(fn: Fn) -> Fn:
    """SQL's coercion of a subquery used as a value: a single row of a single column is
    that column's value, no row is NULL, more than one row is a type error."""

    def run(rt: Runtime, b: Bindings) -> Any:
        value = fn(rt, b)
        if is_sequence(value):
            if len(value) == 1:
                return _single_field(value[0])
            if not value:
                return None
            return rt.fail("a scalar subquery returned more than one row")
        return value

    return run


def _field(rt: Runtime, value: Any, name: str, case_sensitive: bool) -> Any:
    if is_struct(value):
        return struct_get(value, name, case_sensitive, rt)
    if is_null(value):  # a missing tuple's field is null (see query.NULL_TUPLE)
        return None if value is NULL_TUPLE else MISSING
    return rt.fail(f"cannot read field {name} of a non-struct")


_STRING_TYPES = frozenset(["string", "varchar", "char", "character", "symbol"])


def _names_field(node: ast.Expr) -> bool:
    """Whether `[node]` may name a struct field: a literal, a parameter, or a CAST to a
    string type."""
    if isinstance(node, (ast.Lit, ast.Param)):
        return True
    return isinstance(node, ast.Cast) and node.type_name.lower() in _STRING_TYPES


def _index(rt: Runtime, value: Any, key: Any) -> Any:
    index = as_int(key)
    if index is not None and is_sequence(value) and not isinstance(value, Bag):
        if 0 <= index < len(value):
            return value[index]
        return rt.fail("index out of range")
    if is_text(key) and is_struct(value):
        return struct_get(value, str(key), True, rt)
    if is_null(value) and not rt.strict:
        return MISSING
    return rt.fail("cannot index this value")


def _wildcard(rt: Runtime, value: Any) -> list[Any]:
    if is_sequence(value):
        return list(value)
    if rt.strict:
        raise PartiQLEvaluationError("[*] over a non-collection")
    return [] if value is MISSING else [value]


def _unpivot_step(rt: Runtime, value: Any) -> list[Any]:
    if is_struct(value):
        return [v for _, v in struct_items(value)]
    if rt.strict:
        raise PartiQLEvaluationError(".* over a non-struct")
    return [] if value is MISSING else [value]


_DISPATCH: dict[type, Callable[[Compiler, Any, Scope], Fn]] = {
    ast.Lit: Compiler._lit,
    ast.Param: Compiler._param,
    ast.Var: Compiler._var,
    ast.Path: Compiler._path,
    ast.Unary: Compiler._unary,
    ast.Binary: Compiler._binary,
    ast.BinaryChain: Compiler._chain,
    ast.Like: Compiler._like,
    ast.Between: Compiler._between,
    ast.In: Compiler._in,
    ast.Is: Compiler._is,
    ast.StructLit: Compiler._struct,
    ast.ListLit: Compiler._list,
    ast.SexpLit: Compiler._sexp,
    ast.BagLit: Compiler._bag,
    ast.Case: Compiler._case,
    ast.Call: Compiler._call,
    ast.DatePart: Compiler._datepart,
    ast.Extract: Compiler._extract,
    ast.Trim: Compiler._trim,
    ast.Cast: Compiler._cast,
    ast.Aggregate: Compiler._aggregate,
    ast.DateLit: Compiler._datelit,
    ast.TimeLit: Compiler._timelit,
    ast.TimestampLit: Compiler._timestamplit,
    ast.IntervalLit: Compiler._intervallit,
    ast.Select: Compiler._query,
    ast.SetOp: Compiler._query,
}

__all__ = ["Compiler", "Source", "is_absent"]

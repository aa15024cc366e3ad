"""Compiles a query's FROM clause into a row generator, and narrows its scans by the WHERE.

`FromCompiler.item(node, scope)` returns `rows(runtime, bindings) -> iterator of bindings`
(one dict per combination of the FROM variables, lateral and left to right: each item sees
the variables bound before it) and the scope extended by the names it binds. Joins are
nested loops; LEFT / RIGHT / FULL ones pad the side with no match with NULL_TUPLE.

Narrowing. The WHERE clause's top-level conjuncts of the form `alias.f = e`, `alias.f IN
(e, ...)` or `by = e` (`narrowings`) tell a scan which rows can pass:

- over a ledger table (a `Source`) the scan asks for those rows only (`Lookup`): an
  equality on an indexed field or the document id reads narrowly, which is QLDB's OCC rule.
  `e` may be closed (literals, parameters) or read FROM variables bound before the scan
  (`p BY pid ... WHERE r.Owner = pid` looks each owner up by id);
- over a list or bag held by the environment, an equality with a correlated `e` probes a
  hash index of the collection built once per evaluation (a hash join), so
  `FROM t AS a, t AS b WHERE a.k = b.k` is linear, not quadratic. Items whose field is
  absent or not hashable are always visited, so every row the conjunct could accept is
  still produced.

Conjuncts that are simple predicates over variables bound so far are also applied by the
scan itself (predicate pushdown), except on the padded side of an outer join. Either way
the full WHERE is applied to every row afterwards: narrowing only ever skips rows for which
a conjunct is not true. In coerce mode that is exactly the nested loop's result; in error
mode a pushed-down conjunct that raises keeps its row (the WHERE raises when it sees it),
so an error can be skipped only where SQL allows it, for a row another conjunct rejects.

Deadlines. Every row a scan produces (kept by a pushed-down filter or not), every pair an
outer join compares and every item a hash index files is charged one unit to the runtime's
deadline (core.deadline; rows a block at a time, `runtime.blocks`), which raises
TransactionExpiredError once the transaction's time is up: a cross join of big tables stops
soon after the deadline.

Streaming. A FROM item that no variable is bound before (a query's first item, not nested
in another query's FROM variables) runs once per evaluation: its Source's rows stream
through (`stream_blocks`), never held whole. A table scanned by a later item is read once
per evaluation and kept (`_table_rows`), since it is scanned again for every outer row.

Invariants: a Source is scanned once per evaluation of its FROM item (per outer row when
correlated); indexes live in the Runtime of one evaluation only; bag order carries no
meaning, list positions (AT) are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from core.errors import PartiQLEvaluationError
from core.partiql import ast
from core.partiql.data import MISSING, NULL_TUPLE, Lookup, Source
from core.partiql.exprs import Compiler
from core.partiql.runtime import (
    AMBIGUOUS,
    Bindings,
    Fn,
    Runtime,
    Scope,
    blocks,
    charge_size,
    is_absent,
    is_bag,
    is_sequence,
    is_struct,
    is_true,
    stream_blocks,
    struct_items,
)
from core.partiql.values import group_key

RowsFn = Callable[[Runtime, Bindings], Iterator[Bindings]]
LookupFn = Callable[[Runtime, Bindings], Lookup | None]


@dataclass(frozen=True, slots=True)
class Narrowing:
    """A WHERE conjunct usable as a Lookup: the variable it constrains (a FROM alias, or a
    BY variable with field None), the expressions giving the values, and the variables
    those expressions read (`refs`, empty when they are closed)."""

    var: str
    case_sensitive: bool
    field: str | None
    values: tuple[ast.Expr, ...]
    field_case_sensitive: bool = True
    refs: frozenset[tuple[str, bool]] = frozenset()


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

    def __init__(
        self,
        comp: Compiler,
        narrowings: list[Narrowing],
        where: ast.Expr | None = None,
        later: tuple[str, ...] = (),
    ) -> None:
        """`later`: the names the query binds after its FROM clause and before its WHERE
        (LET), which the WHERE clause sees but no scan can."""
        self.comp = comp
        self.narrowings = narrowings
        self.filters = _pushable(where)
        self._later = later
        self._nullable = 0  # > 0 while compiling the side of an outer join that pads
        self._declared: list[str] | None = None  # every name this FROM clause binds
        self._final = Scope()  # the scope the WHERE clause is compiled in
        self._hidden: set[str] = set()  # placeholders (a RIGHT/FULL join's left variables)
        self.variables: list[str] = []
        self.aliases: list[str] = []
        self.at_names: set[str] = set()

    def item(self, node: ast.FromItem, scope: Scope) -> tuple[RowsFn, Scope]:
        if self._declared is None:
            self._declared = _declared_names(node)
            self._final = scope.extend([*self._declared, *self._later])
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
        source = self.comp.from_source(node.expr, scope)
        alias = scan_alias(node, len(self.variables) + 1)
        at, by = node.at, node.by
        self._names(alias, at, by)
        self.aliases.append(alias)
        found = self._lookup(alias, by, scope)
        lookup, chosen = found if found is not None else (None, None)
        source_refs = _refs(node.expr)
        uncorrelated = source_refs is not None and not any(
            _local(scope, n, cs) for n, cs in source_refs
        )
        probe: _Probe | None = None
        if (
            lookup is not None
            and chosen is not None
            and chosen.refs
            and chosen.field is not None
            and uncorrelated
        ):  # a correlated equality over an uncorrelated collection: hash join
            probe = _Probe(chosen.field, chosen.field_case_sensitive, lookup)
        field = chosen.field if chosen is not None else None
        out_scope = scope.extend(n for n in (alias, at, by) if n is not None)
        early = self._early_filters(alias, out_scope)
        # no variable is bound before this scan (the first FROM item of a query that is not
        # nested in another's FROM variables): it runs once per evaluation
        once = uncorrelated and not scope.names

        def keep(rt: Runtime, row: Bindings) -> bool:
            try:
                return all(is_true(f(rt, row)) for f in early)
            except PartiQLEvaluationError:
                return True  # error mode: the WHERE clause raises if the row reaches it

        def rows(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            for row in scan(rt, b):
                if not early or keep(rt, row):
                    yield row

        def scan(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            value = source(rt, b)
            # every row is charged (filtered out or not), a block at a time
            if isinstance(value, Source) and not isinstance(value, (list, dict)):
                if lookup is not None and (not uncorrelated or value.narrow(field)):
                    wanted = lookup(rt, b)
                    if uncorrelated:
                        found = _looked_up(rt, value, wanted)
                    else:
                        found = list(value.scan(wanted))
                    for block in blocks(rt, found):
                        for doc_id, doc in block:
                            yield bind(b, doc, MISSING, doc_id)
                    return
                if once and probe is None:  # scanned once: streamed, never held whole
                    for block in stream_blocks(rt, value.scan(None)):
                        for doc_id, doc in block:
                            yield bind(b, doc, MISSING, doc_id)
                    return
                # the whole table: read once per evaluation, hash-joined if correlated
                ids, docs = _table_rows(rt, value) if uncorrelated else _rows_of(value)
                positions = probe.positions(rt, b, docs) if probe is not None else None
                for block in blocks(rt, range(len(docs)) if positions is None else positions):
                    for pos in block:
                        yield bind(b, docs[pos], MISSING, ids[pos])
                return
            if is_sequence(value):
                if at is not None and is_bag(value) and rt.strict:
                    raise PartiQLEvaluationError("AT over a bag")
                ordered = not is_bag(value)
                items = list(value)
                positions = probe.positions(rt, b, value) if probe is not None else None
                for block in blocks(rt, range(len(items)) if positions is None else positions):
                    for pos in block:
                        yield bind(b, items[pos], pos if ordered else MISSING, MISSING)
                return
            if rt.strict:
                raise PartiQLEvaluationError("FROM over a value that is not a collection")
            yield bind(b, value, MISSING, MISSING)

        def bind(b: Bindings, item: Any, position: Any, doc_id: Any) -> Bindings:
            row = {**b, alias: item}
            if at is not None:
                row[at] = position
            if by is not None:
                row[by] = doc_id
            return row

        return rows, out_scope

    def count(self, node: ast.Scan, scope: Scope) -> Fn:
        """For a FROM clause that is this one scan and a query with no WHERE or LET: the
        number of rows the scan gives, when its value is a Source that can count them
        without producing them (`Source.count`), else None (the caller counts rows)."""
        source = self.comp.from_source(node.expr, scope)

        def count(rt: Runtime, b: Bindings) -> int | None:
            value = source(rt, b)
            if isinstance(value, Source) and not isinstance(value, (list, dict)):
                return value.count(rt.deadline.charge)
            return None

        return count

    def _early_filters(self, alias: str, scope: Scope) -> list[Fn]:
        """The WHERE conjuncts a scan can apply to its rows at once (predicate pushdown):
        those that read this scan's variable and otherwise only variables bound before it.
        None on the padded side of an outer join, where a conjunct such as `b IS NULL` must
        see the padding."""
        if self._nullable or len(self.variables) >= len(self._declared or ()):
            return []  # (the last item: the WHERE clause itself comes next)
        out: list[Fn] = []
        for expr, refs in self.filters:
            keys = {scope.resolve(n, cs) for n, cs in refs}
            if alias in keys and all(self._usable(scope, n, cs) for n, cs in refs):
                out.append(self.comp.value(expr, scope))
        return out

    def _lookup(
        self, alias: str, by: str | None, scope: Scope
    ) -> tuple[LookupFn, Narrowing] | None:
        """The narrowing a scan of `alias` (BY `by`) uses, if any: an id lookup before a
        field lookup, a closed one before a correlated one (whose variables must all be
        bound before the scan)."""
        best: tuple[int, Narrowing] | None = None
        for candidate in self.narrowings:
            nar = self._implicit(candidate, alias, by, scope)
            if not self._targets(nar, by if nar.field is None else alias):
                continue
            if not all(self._usable(scope, n, cs) for n, cs in nar.refs):
                continue
            rank = (2 if nar.refs else 0) + (0 if nar.field is None else 1)
            if best is None or rank < best[0]:
                best = (rank, nar)
        if best is None:
            return None
        chosen = best[1]
        fns = [Compiler().value(e, scope) for e in chosen.values]
        field = chosen.field

        def lookup(rt: Runtime, b: Bindings) -> Lookup | None:
            try:
                found = [fn(rt, b) for fn in fns]
            except PartiQLEvaluationError:
                return None  # the WHERE clause will raise (or drop the row) itself
            # `= NULL` / `= MISSING` is never true: such values select nothing
            return Lookup(field, tuple(v for v in found if not is_absent(v)))

        return lookup, chosen

    def _implicit(self, nar: Narrowing, alias: str, by: str | None, scope: Scope) -> Narrowing:
        """`WHERE Plate = ?` over a FROM clause with one variable names that variable's
        field (SQL's implicit attribute), unless Plate is a variable itself."""
        if nar.field is not None or self._final.resolve(nar.var, nar.case_sensitive) is not None:
            return nar
        names = [n for n in self._declared or () if not n.startswith("\x00")]
        if names != [alias] or self._later:
            return nar
        return replace(
            nar,
            var=alias,
            case_sensitive=True,
            field=nar.var,
            field_case_sensitive=nar.case_sensitive,
        )

    def _targets(self, nar: Narrowing, name: str | None) -> bool:
        """Whether the narrowing's variable is, for the WHERE clause, the variable `name`
        this scan binds (bound once only)."""
        if name is None or self._final.resolve(nar.var, nar.case_sensitive) != name:
            return False
        return (self._declared or []).count(name) + self._later.count(name) == 1

    def _usable(self, scope: Scope, name: str, case_sensitive: bool) -> bool:
        """Whether a narrowing may read variable `name` at this point: here it denotes
        what it denotes for the WHERE clause (the same binding, not one this FROM clause
        or a LET makes later, not two variables differing only in case), and it is no
        placeholder."""
        key = scope.resolve(name, case_sensitive)
        if key is None or key == AMBIGUOUS or key in self._hidden:
            return False
        if self._final.resolve(name, case_sensitive) != key:
            return False
        bound_here = self.variables.count(key)
        declared = (self._declared or []).count(key) + self._later.count(key)
        return bound_here == declared  # every binding of the name is in place already

    def _unpivot(self, node: ast.UnpivotScan, scope: Scope) -> tuple[RowsFn, Scope]:
        source = self.comp.value(node.expr, scope)
        alias = scan_alias(node, len(self.variables) + 1)
        at = node.at
        self._names(alias, at)
        self.aliases.append(alias)
        if at is not None:  # SELECT * shows an UNPIVOT's AT name as a field of its own
            self.aliases.append(at)
            self.at_names.add(at)

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
            for block in blocks(rt, pairs):
                for key, item in block:
                    if item is MISSING:
                        continue
                    row = {**b, alias: item}
                    if at is not None:
                        row[at] = key
                    yield row

        return rows, scope.extend(n for n in (alias, at) if n is not None)

    def _join(self, node: ast.Join, scope: Scope) -> tuple[RowsFn, Scope]:
        before = len(self.variables)
        kind = node.kind
        pads_left, pads_right = kind in ("right", "full"), kind in ("left", "full")
        self._nullable += pads_left
        left, left_scope = self.item(node.left, scope)
        self._nullable += pads_right - pads_left
        middle = len(self.variables)
        hidden = set(self.variables[before:middle]) - self._hidden if pads_left else set()
        self._hidden |= hidden  # the right side of RIGHT/FULL runs once, left side unbound
        right, joined = self.item(node.right, left_scope)
        self._hidden -= hidden
        self._nullable -= pads_right
        left_vars = self.variables[before:middle]
        right_vars = self.variables[middle:]
        on = self.comp.value(node.on, joined) if node.on is not None else None

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
                    yield {**lrow, **dict.fromkeys(right_vars, NULL_TUPLE)}

        def outer(rt: Runtime, b: Bindings) -> Iterator[Bindings]:
            lrows = list(left(rt, b))
            rrows = list(right(rt, {**b, **dict.fromkeys(left_vars, NULL_TUPLE)}))
            used = [False] * len(rrows)
            for lrow in lrows:
                hit = False
                for block in blocks(rt, range(len(rrows))):
                    for i in block:
                        row = {**lrow, **{v: rrows[i][v] for v in right_vars}}
                        if matches(rt, row):
                            hit = used[i] = True
                            yield row
                if not hit and kind == "full":
                    yield {**lrow, **dict.fromkeys(right_vars, NULL_TUPLE)}
            for i, rrow in enumerate(rrows):
                if not used[i]:
                    yield {**rrow, **dict.fromkeys(left_vars, NULL_TUPLE)}

        if kind == "inner":
            return inner, joined
        if kind == "left":
            return left_outer, joined
        return outer, joined


def narrowings(where: ast.Expr | None) -> list[Narrowing]:
    """The WHERE clause's top-level conjuncts usable as Lookups (an equality between two
    FROM variables' fields yields one narrowing for each side)."""
    out: list[Narrowing] = []
    stack = [where] if where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Binary) and node.op == "and":
            stack += [node.right, node.left]
        elif isinstance(node, ast.Binary) and node.op == "=":
            for target, other in ((node.left, node.right), (node.right, node.left)):
                found = _target(target)
                refs = _refs(other)
                if found is not None and refs is not None:
                    var, cs, field, field_cs = found
                    if (var, cs) not in refs:
                        out.append(Narrowing(var, cs, field, (other,), field_cs, refs))
        elif isinstance(node, ast.In) and not node.negated:
            found = _target(node.value)
            coll = node.collection
            if (
                found is not None
                and isinstance(coll, (ast.ListLit, ast.BagLit))
                and all(_refs(e) == frozenset() for e in coll.items)
            ):
                var, cs, field, field_cs = found
                out.append(Narrowing(var, cs, field, coll.items, field_cs))
    return out


_COMPARISONS = frozenset(["=", "<>", "<", "<=", ">", ">="])


def _pushable(where: ast.Expr | None) -> list[tuple[ast.Expr, frozenset[tuple[str, bool]]]]:
    """The WHERE clause's top-level conjuncts that are simple predicates over variables
    (comparisons, BETWEEN, LIKE, IN a literal list, IS, NOT of one), with the variables
    each reads."""
    out = []
    stack = [where] if where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Binary) and node.op == "and":
            stack += [node.right, node.left]
            continue
        refs = _predicate_refs(node)
        if refs:
            out.append((node, refs))
    return out


def _predicate_refs(node: ast.Expr) -> frozenset[tuple[str, bool]] | None:
    parts: list[ast.Expr]
    if isinstance(node, ast.Binary) and node.op in _COMPARISONS:
        parts = [node.left, node.right]
    elif isinstance(node, ast.Between):
        parts = [node.value, node.low, node.high]
    elif isinstance(node, ast.Like):
        parts = [node.value, node.pattern] + ([node.escape] if node.escape else [])
    elif isinstance(node, ast.Is):
        parts = [node.value]
    elif isinstance(node, ast.In) and isinstance(node.collection, ast.ListLit | ast.BagLit):
        parts = [node.value, *node.collection.items]
    elif isinstance(node, ast.Unary) and node.op == "not":
        return _predicate_refs(node.operand)
    else:
        return None
    refs: frozenset[tuple[str, bool]] = frozenset()
    for part in parts:
        more = _refs(part)
        if more is None:
            return None
        refs |= more
    return refs


def _target(node: ast.Expr) -> tuple[str, bool, str | None, bool] | None:
    """(variable, its case sensitivity, top-level field or None, the field's) of `v` or
    `v.f`."""
    if isinstance(node, ast.Var):
        return node.name, node.case_sensitive, None, True
    if (
        isinstance(node, ast.Path)
        and isinstance(node.root, ast.Var)
        and len(node.steps) == 1
        and isinstance(node.steps[0], ast.Field)
    ):
        step = node.steps[0]
        return node.root.name, node.root.case_sensitive, step.name, step.case_sensitive
    return None


def _refs(node: ast.Expr) -> frozenset[tuple[str, bool]] | None:
    """The variables a simple, side-effect-free expression reads (literals, parameters,
    variables and `.field` / `[literal]` paths, arithmetic, ||, CAST); None for any other
    expression. Empty: the expression is closed."""
    if isinstance(node, (ast.Lit, ast.Param)):
        return frozenset()
    if isinstance(node, ast.Var):
        return frozenset([(node.name, node.case_sensitive)])
    if isinstance(node, ast.Path):
        simple = all(
            isinstance(s, ast.Field) or (isinstance(s, ast.Index) and isinstance(s.expr, ast.Lit))
            for s in node.steps
        )
        return _refs(node.root) if simple else None
    if isinstance(node, ast.Unary) and node.op in ("-", "+"):
        return _refs(node.operand)
    if isinstance(node, ast.Binary) and node.op in ("+", "-", "*", "/", "%", "||"):
        left, right = _refs(node.left), _refs(node.right)
        return None if left is None or right is None else left | right
    if isinstance(node, ast.Cast):
        return _refs(node.value)
    return None


def _declared_names(node: ast.FromItem) -> list[str]:
    """The names a FROM tree binds, in order (aliases as scan_alias makes them, AT, BY)."""
    out: list[str] = []

    def walk(item: ast.FromItem) -> None:
        if isinstance(item, ast.Join):
            walk(item.left)
            walk(item.right)
            return
        out.append(scan_alias(item, len(out) + 1))
        out.extend(n for n in (item.at, getattr(item, "by", None)) if n is not None)

    walk(node)
    return out


def _same_name(name: str, case_sensitive: bool, target: str) -> bool:
    return name == target or (not case_sensitive and name.lower() == target.lower())


def _local(scope: Scope, name: str, case_sensitive: bool) -> bool:
    key = scope.resolve(name, case_sensitive)
    return key is not None and key != AMBIGUOUS


# ============================================================================ hash join


def _rows_of(source: Source) -> tuple[list[Any], list[Any]]:
    """(document ids, documents) of a whole table."""
    pairs = list(source.scan(None))
    return [d for d, _ in pairs], [doc for _, doc in pairs]


def _looked_up(rt: Runtime, source: Source, wanted: Lookup | None) -> list[tuple[Any, Any]]:
    """A table's rows for a Lookup, read once per evaluation and Lookup: a join that probes
    the same key for many rows of the other side reads it once (the read set is the same)."""
    try:
        values = None if wanted is None else tuple(group_key(v) for v in wanted.values)
        key = ("lookup", source.name, None if wanted is None else wanted.field, values)
        hit = rt.cache.get(key)
    except (PartiQLEvaluationError, TypeError):  # a value with no key: read it afresh
        return list(source.scan(wanted))
    if hit is None:
        hit = rt.cache[key] = list(source.scan(wanted))
    rows: list[tuple[Any, Any]] = hit
    return rows


def _table_rows(rt: Runtime, source: Source) -> tuple[list[Any], list[Any]]:
    """A table's rows read once per evaluation (the read set is the same each time: the
    whole table), so a join does not scan it again for every row of the other side."""
    key = ("table", source.name)
    hit = rt.cache.get(key)
    if hit is None:
        hit = rt.cache[key] = _rows_of(source)
    rows: tuple[list[Any], list[Any]] = hit
    return rows


_NO_KEY: Any = object()


class _Probe:
    """The positions of a collection's items whose `field` can equal a correlated value:
    a hash index of the collection (per evaluation, in `Runtime.cache`) probed with the
    value's `group_key` (equal keys exactly when `=` is true), plus the items the index
    cannot judge (not a struct, the field absent or ambiguous, an unhashable key), which
    are always visited."""

    __slots__ = ("field", "field_case_sensitive", "lookup")

    def __init__(self, field: str, field_case_sensitive: bool, lookup: LookupFn) -> None:
        self.field = field
        self.field_case_sensitive = field_case_sensitive
        self.lookup = lookup

    def positions(self, rt: Runtime, b: Bindings, collection: Any) -> list[int] | None:
        """Sorted positions to visit; None: visit every item."""
        wanted = self.lookup(rt, b)
        if wanted is None or len(wanted.values) > 1:
            return None
        buckets, wild = self._index(rt, collection)
        if not wanted.values:
            return wild  # `x = NULL` / `x = MISSING` is never true
        value = wanted.values[0]
        try:
            hit = buckets.get(group_key(value), [])
        except (PartiQLEvaluationError, TypeError):
            return None
        return sorted(hit + wild) if wild else hit

    def _index(self, rt: Runtime, collection: Any) -> tuple[dict[Hashable, list[int]], list[int]]:
        key = (id(collection), self.field, self.field_case_sensitive)
        hit = rt.cache.get(key)
        if hit is not None and hit[0] is collection:
            return hit[1], hit[2]
        buckets: dict[Hashable, list[int]] = {}
        wild: list[int] = []
        charge_size(rt, len(collection))
        for pos, item in enumerate(collection):
            value = _field_of(item, self.field, self.field_case_sensitive)
            if value is _NO_KEY:
                wild.append(pos)
            elif not is_absent(value):  # a null key never satisfies `=`
                try:
                    buckets.setdefault(group_key(value), []).append(pos)
                except (PartiQLEvaluationError, TypeError):
                    wild.append(pos)
        rt.cache[key] = (collection, buckets, wild)
        return buckets, wild


def _field_of(item: Any, name: str, case_sensitive: bool) -> Any:
    """The value `item.name` has (the evaluator's lookup: exact, then case-insensitive for
    an unquoted name), or _NO_KEY when the index cannot tell (no struct, absent, repeated)."""
    if not is_struct(item):
        return _NO_KEY
    pairs = struct_items(item)
    exact = [v for k, v in pairs if k == name]
    if len(exact) == 1:
        return exact[0]
    if exact or case_sensitive:
        return _NO_KEY
    low = name.lower()
    loose = [v for k, v in pairs if k.lower() == low]
    return loose[0] if len(loose) == 1 else _NO_KEY

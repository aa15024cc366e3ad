"""Static checks of a parsed PartiQL statement: what can be refused before anything is read.

`check_statement(statement, parameter_count, extra_functions=, globals_=)` raises
PartiQLSemanticError for (extra functions: names, or names with (min, max) argument counts):

- an unknown function, or a wrong number of arguments to one (`functions.check_call`);
- an aggregate where none is allowed (outside a SELECT list, HAVING or ORDER BY), and
  HAVING in a query without GROUP BY;
- a constant argument of a type the function or operator never accepts: `UPPER(1)`,
  `'a' || 1`, `1 LIKE 'x'`, `TRIM(LEADING 1 FROM '')`, `EXTRACT(YEAR FROM 1)` (only
  literals and constructors have a static type here; anything else is checked when it runs);
- a date part DATE_ADD or DATE_DIFF does not take (TIMEZONE_HOUR, TIMEZONE_MINUTE), in
  every mode;
- a CAST to DECIMAL(p, s) with p < 1 or s > p;
- a select-list item without an alias whose path fans out (`SELECT foo[*]`, `SELECT
  foo.*.bar`), or a `.*` after anything but a variable and `.field` steps (`SELECT foo[1].*`);
- with `globals_` given (the names of the global environment): a variable that no FROM
  variable, LET, GROUP BY name or global can supply (where SQL's implicit attribute lookup
  is possible, i.e. inside a query with FROM variables, a name is left to run time);
- a number of `?` different from `parameter_count`.

Invariants: checks only read the tree (their one memory is which statement objects passed
which checks, so a cached statement is not walked again); a statement that passes them can
still fail at run time with PartiQLEvaluationError, never with PartiQLSemanticError from
these rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from core.errors import PartiQLSemanticError
from core.partiql import ast, functions
from core.partiql import values as pv
from core.partiql.data import MISSING
from core.partiql.from_clause import scan_alias

_TEXT = pv.TEXT
_DATETIME = frozenset({"timestamp", "date", "time"})
_DECIMALS = frozenset({"decimal", "dec", "numeric"})


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Where a node sits: may it hold an aggregate, which local names are bound, and may
    an unbound name be an implicit attribute of a FROM variable."""

    aggregates: bool = False
    locals: tuple[str, ...] = ()
    implicit: bool = False


def check_statement(
    statement: ast.Statement,
    parameter_count: int,
    *,
    extra_functions: Iterable[str] | Mapping[str, tuple[int, int | None]] = (),
    globals_: Collection[str] | None = None,
    strict: bool = True,
) -> None:
    """Raise PartiQLSemanticError if the statement breaks a rule of the module docstring.
    `strict` False leaves constant argument types and undefined variables to run time,
    where coerce mode makes them MISSING (the stand-alone evaluator in coerce mode does
    this, for the conformance suite's sake; the ledger checks strictly, with no globals)."""
    if isinstance(extra_functions, Mapping):
        extra = {str(k): v for k, v in extra_functions.items()}
    else:
        extra = {str(name): (0, None) for name in extra_functions}
    names = frozenset(globals_) if strict and globals_ is not None else None
    key = (parameter_count, frozenset(extra.items()), names, strict)
    hit = _PASSED.get(id(statement))
    if hit is not None and hit[0] is statement and hit[1] == key:
        return  # the same statement object passed the same checks before
    checker = _Checker(extra, names, strict)
    checker.walk(statement, _Ctx())
    if checker.params != parameter_count:
        raise PartiQLSemanticError(
            f"the statement has {checker.params} parameters, {parameter_count} given"
        )
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED[id(statement)] = (statement, key)


# Statements that passed, by identity (parsed statements are cached and immutable, so a
# statement run again is the same object): the key records what they were checked against.
_PASSED: dict[int, tuple[ast.Statement, Any]] = {}
_PASSED_MAX = 1024


class _Checker:
    def __init__(
        self,
        extra: dict[str, tuple[int, int | None]],
        globals_: Collection[str] | None,
        strict: bool,
    ) -> None:
        self.extra = extra
        self.strict = strict
        self.params = 0
        self.globals: frozenset[str] | None = None
        self.globals_folded: frozenset[str] = frozenset()
        if globals_ is not None:
            self.globals = frozenset(globals_)
            self.globals_folded = frozenset(g.lower() for g in self.globals)

    # ------------------------------------------------------------------ traversal

    def walk(self, node: Any, ctx: _Ctx) -> None:
        if isinstance(node, tuple):
            for item in node:
                self.walk(item, ctx)
            return
        if not hasattr(node, "__dataclass_fields__") or isinstance(node, ast.Lit):
            return
        if isinstance(node, ast.Param):
            self.params = max(self.params, node.index + 1)
            return
        if isinstance(node, ast.Var):
            self._var(node, ctx)
            return
        if isinstance(node, ast.Aggregate):
            if not ctx.aggregates:
                raise PartiQLSemanticError(f"aggregate {node.name.upper()} is not allowed here")
            self.walk(node.arg, replace(ctx, aggregates=False))
            return
        if isinstance(node, ast.Select):
            self._select(node, ctx)
            return
        if isinstance(node, ast.SetOp):
            self.walk((node.left, node.right, node.limit, node.offset), ctx)
            rows = _Ctx(False, ctx.locals, True)  # ORDER BY names the output rows' fields
            for item in node.order_by:
                self.walk(item.expr, rows)
            return
        self._types(node)
        for name in node.__dataclass_fields__:
            self.walk(getattr(node, name), ctx)

    def _var(self, node: ast.Var, ctx: _Ctx) -> None:
        if self.globals is None or ctx.implicit or _bound(node, ctx.locals):
            return
        if node.name in self.globals:
            return
        if not node.case_sensitive and node.name.lower() in self.globals_folded:
            return
        raise PartiQLSemanticError(f"variable {node.name} is not defined")

    def _select(self, sel: ast.Select, ctx: _Ctx) -> None:
        outer = replace(ctx, aggregates=False)
        names = list(ctx.locals)
        if sel.from_ is not None:
            self._from(sel.from_, outer, names)
        inner = _Ctx(False, tuple(names), ctx.implicit or sel.from_ is not None)
        for expr, name in sel.let:
            self.walk(expr, inner)
            inner = replace(inner, locals=(*inner.locals, name))
        self.walk(sel.where, inner)
        post = inner
        if sel.group_by is not None:
            for key in sel.group_by.keys:
                self.walk(key.expr, inner)
            extra = [k.alias for k in sel.group_by.keys if k.alias is not None]
            if sel.group_by.group_as is not None:
                extra.append(sel.group_by.group_as)
            post = replace(inner, locals=(*inner.locals, *extra))
        elif sel.having is not None:
            raise PartiQLSemanticError("HAVING needs GROUP BY")
        post = replace(post, aggregates=True)
        self._projection(sel.project, post)
        self.walk(sel.having, post)
        aliases = _output_names(sel.project)
        ordered = replace(post, locals=(*post.locals, *aliases))
        for item in sel.order_by:
            self.walk(item.expr, ordered)
        for what, count in (("LIMIT", sel.limit), ("OFFSET", sel.offset)):
            if _negative_literal(count):
                raise PartiQLSemanticError(f"{what} needs a non-negative integer")
            self.walk(count, outer)

    def _from(self, item: ast.FromItem, ctx: _Ctx, names: list[str]) -> None:
        """Check a FROM tree left to right (each item sees the names bound before it) and
        append the names it binds to `names`."""
        if isinstance(item, ast.Join):
            self._from(item.left, ctx, names)
            self._from(item.right, ctx, names)
            self.walk(item.on, _Ctx(False, tuple(names), True))
            return
        self.walk(item.expr, replace(ctx, locals=tuple(names)))
        names.append(scan_alias(item, len(names) + 1))
        names.extend(n for n in (item.at, getattr(item, "by", None)) if n is not None)

    def _projection(self, project: ast.Projection, ctx: _Ctx) -> None:
        if isinstance(project, ast.ProjectList):
            for item in project.items:
                _check_projected_path(item)
        self.walk(project, ctx)

    # ------------------------------------------------------------------ types

    def _types(self, node: Any) -> None:
        if isinstance(node, ast.Call):
            self._call(node)
        elif not self.strict:
            return
        elif isinstance(node, ast.Binary) and node.op == "||":
            _expect("||", [node.left, node.right], [_TEXT, _TEXT])
        elif isinstance(node, ast.Like):
            _expect("LIKE", [node.value, node.pattern, node.escape], [_TEXT] * 3)
        elif isinstance(node, ast.Trim):
            _expect("trim", [node.value, node.chars], [_TEXT, _TEXT])
        elif isinstance(node, ast.Extract):
            _expect("extract", [node.value], [_DATETIME | {"interval"}])
        elif isinstance(node, ast.Cast) and node.type_name.lower() in _DECIMALS:
            args = node.type_args
            if args and (args[0] < 1 or (len(args) > 1 and not 0 <= args[1] <= args[0])):
                raise PartiQLSemanticError(
                    f"DECIMAL{args}: the precision is at least 1 and the scale at most it"
                )

    def _call(self, node: ast.Call) -> None:
        if node.name in self.extra:
            lo, hi = self.extra[node.name]
            if not lo <= len(node.args) <= (hi if hi is not None else len(node.args)):
                raise PartiQLSemanticError(
                    f"{node.name} takes {lo} to {hi} arguments, not {len(node.args)}"
                )
            return
        quantified = bool(node.args) and _is_quantifier(node.args[0])
        functions.check_call(node.name, len(node.args), quantified)
        if node.name in ("date_add", "date_diff") and node.args:
            part = node.args[0]
            if isinstance(part, ast.DatePart) and part.part not in functions.ARITHMETIC_DATE_PARTS:
                raise PartiQLSemanticError(f"{node.name} does not take {part.part.upper()}")
        signature = functions.ARGUMENT_TYPES.get(node.name)
        if signature is not None and self.strict:
            _expect(node.name, list(node.args), list(signature))


def _bound(node: ast.Var, names: tuple[str, ...]) -> bool:
    if node.name in names:
        return True
    return not node.case_sensitive and node.name.lower() in {n.lower() for n in names}


def _output_names(project: ast.Projection) -> list[str]:
    if not isinstance(project, ast.ProjectList):
        return []
    return [i.alias for i in project.items if isinstance(i, ast.ProjectItem) and i.alias]


def _check_projected_path(item: ast.ProjectItem | ast.ProjectAll) -> None:
    """A select-list item without an alias may not fan out (its values have no name: `AS`
    names the bag they form), and `x.*` needs x to be a variable followed by `.field` steps
    only."""
    expr = item.expr
    if not isinstance(expr, ast.Path):
        return
    unnamed = isinstance(item, ast.ProjectAll) or item.alias is None
    if unnamed and any(isinstance(s, ast.Wildcard | ast.UnpivotStep) for s in expr.steps):
        raise PartiQLSemanticError(
            "a SELECT list item cannot use [*] or .* inside a path; use SELECT VALUE or FROM"
        )
    if isinstance(item, ast.ProjectAll) and not (
        isinstance(expr.root, ast.Var)
        and all(isinstance(s, ast.Field) and not s.bracket for s in expr.steps)
    ):
        raise PartiQLSemanticError(".* in a SELECT list follows a variable and .field steps")


# The type of what a constructor or a typed literal makes, whatever its contents.
_CONSTRUCTED: dict[type, str] = {
    ast.ListLit: "list",
    ast.BagLit: "bag",
    ast.SexpLit: "sexp",
    ast.StructLit: "struct",
    ast.DateLit: "date",
    ast.TimeLit: "time",
    ast.TimestampLit: "timestamp",
    ast.IntervalLit: "interval",
}


def static_type(node: Any) -> str | None:
    """The PartiQL type of a constant expression (a literal or a constructor), else None."""
    if isinstance(node, ast.Lit):
        value = node.value
        if isinstance(value, functions.Quantifier | functions.DatePartValue):
            return None
        return "missing" if value is MISSING else pv.type_name(value)
    constructed = _CONSTRUCTED.get(type(node))
    if constructed is not None:
        return constructed
    if isinstance(node, ast.Unary) and node.op in ("-", "+"):
        inner = static_type(node.operand)
        return inner if inner in pv.NUMERIC else None
    return None


def _expect(what: str, args: list[Any], allowed: list[frozenset[str] | None]) -> None:
    for i, (arg, types) in enumerate(zip(args, allowed, strict=False)):
        if arg is None or types is None:
            continue
        t = static_type(arg)
        if t is not None and t not in ("null", "missing") and t not in types:
            raise PartiQLSemanticError(f"{what}: argument {i + 1} cannot be {t}")


def _negative_literal(node: Any) -> bool:
    """`-1` (a minus applied to a number literal)."""
    return (
        isinstance(node, ast.Unary)
        and node.op == "-"
        and isinstance(node.operand, ast.Lit)
        and pv.type_name(node.operand.value) in pv.NUMERIC
    ) or (isinstance(node, ast.Lit) and pv.type_name(node.value) in pv.NUMERIC and node.value < 0)


def _is_quantifier(node: ast.Expr) -> bool:
    return isinstance(node, ast.Lit) and isinstance(node.value, functions.Quantifier)

"""Lowering of PartiQL parses into `ast.py` nodes (the callbacks lark runs as it reduces).

`Lower` has one method per rule or alias of `grammar.lark`; each receives the rule's
children (lark Tokens, lowered nodes, internal clause records, and None for an absent
`[optional]` part) and returns an `ast` node or an internal record that a parent rule
consumes. Internal records (`_Clause` subclasses, `_Name`, ...) never reach the result.

Binary operators. lark reduces `a OR b OR c ...` one operator at a time; `binop` links the
operands of such a run (one precedence level: OR, AND, ||, + -, * / %) into a `_Run`, and
`start` turns each run into the left-deep `Binary` tree it always was when it is short,
else into a balanced tree (OR, AND, ||: they associate, and the balanced tree evaluates
exactly the operands the left-deep one would, in the same order) or a flat `BinaryChain`
(arithmetic, which does not associate). So a run of thousands of operators is a few levels
deep, and no later walk of the tree recurses once per operand.

Invariants: the callbacks are pure (no state on the instance), so one `Lower` is shared by
every parse; the only errors they raise are `PartiQLSyntaxError`, located at a token, for
text the grammar admits but PartiQL does not (an unknown date part, a bad DATE string), or
at the start for a statement nested MAX_EXPRESSION_DEPTH (core/limits.py) or more levels
deep. No callback recurses deeper than the nesting it accepts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from lark import Token, Transformer

from core.errors import PartiQLSyntaxError
from core.limits import MAX_EXPRESSION_DEPTH, expression_depth_message
from core.partiql import ast
from core.partiql.data import MISSING
from core.partiql.functions import Quantifier

__all__ = ["IonText", "Lower"]

DATE_PARTS = frozenset(
    ["year", "month", "day", "hour", "minute", "second", "timezone_hour", "timezone_minute"]
)
TRIM_SPECS = frozenset(["both", "leading", "trailing"])
INTERVAL_FIELDS = frozenset(["year", "month", "day", "hour", "minute", "second"])

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([+-])(\d{2}):(\d{2}))?")


class IonText:
    """The value of an ION token: the literal as written and the Ion value it denotes."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Any) -> None:
        self.text = text
        self.value = value

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _Name:
    """An alias or field name with its quoting."""

    name: str
    case_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class _Clause:
    value: Any
    token: Token | None = None


class _From(_Clause):
    pass


class _Let(_Clause):
    pass


class _Where(_Clause):
    pass


class _Group(_Clause):
    pass


class _Having(_Clause):
    pass


class _OrderBy(_Clause):
    pass


class _Limit(_Clause):
    pass


class _Offset(_Clause):
    pass


class _When(_Clause):
    pass


class _Pair(_Clause):
    pass


class _Ops(_Clause):
    pass


class _Aliases(_Clause):
    pass


class _SetKw(_Clause):
    pass


class _Clauses(_Clause):
    """The clauses of a `q_*` chain (see grammar.lark), in order."""


@dataclass(frozen=True, slots=True)
class _Paren:
    """A parenthesised expression other than a query, kept until the parse ends (only
    `IN (e)` reads it) and then replaced by the expression itself."""

    expr: Any


@dataclass(frozen=True, slots=True)
class _Run:
    """A run of left-associative binary operators of one precedence level while it is being
    reduced: `prev` is the run so far (a _Run of the same level) or its first operand, then
    `op right`. Linked leftwards, so each operand costs O(1) however long the run; `_finish`
    turns it into ast nodes once the whole statement is parsed."""

    level: str
    prev: Any
    op: str
    right: Any


# The precedence level of each operator `binop` reduces; OR, AND and || associate (their
# operands' values, and which of them are evaluated, do not depend on the grouping).
_LEVELS = {"or": "or", "and": "and", "||": "||", "+": "+", "-": "+", "*": "*", "/": "*", "%": "*"}
_ASSOCIATIVE = frozenset(["or", "and", "||"])
# A run of at most this many operands is the left-deep Binary it always was; a longer run of
# an associative operator is a balanced Binary tree, of + - or * / % a BinaryChain.
_SHORT_RUN = 8


def _too_deep(depth: int) -> PartiQLSyntaxError:
    return PartiQLSyntaxError(f"line 1, column 1: {expression_depth_message(depth)}", 1, 1)


def _finish(node: Any, depth: int) -> Any:
    """`node`, at `depth` in the statement, with every _Paren replaced by its expression
    (see _Paren) and every _Run by ast nodes; PartiQLSyntaxError when a node lies
    MAX_EXPRESSION_DEPTH or more levels deep (so this recursion, and every later walk of
    the tree, is bounded)."""
    while isinstance(node, _Paren):
        node = node.expr
    if isinstance(node, _Run):
        return _finish_run(node, depth)
    if isinstance(node, tuple):
        return tuple(_finish(x, depth) for x in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, ast.Lit | type):
        return node
    if depth >= MAX_EXPRESSION_DEPTH:
        raise _too_deep(depth + 1)
    changes = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        new = _finish(value, depth + 1)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node


def _finish_run(run: _Run, depth: int) -> Any:
    """The ast of a run of operators, its root at `depth` (see _SHORT_RUN)."""
    ops: list[str] = []
    operands: list[Any] = []
    node: Any = run
    while isinstance(node, _Run) and node.level == run.level:
        ops.append(node.op)
        operands.append(node.right)
        node = node.prev
    operands.append(node)
    ops.reverse()
    operands.reverse()
    n = len(operands)
    if n <= _SHORT_RUN:
        if depth + n - 2 >= MAX_EXPRESSION_DEPTH:
            raise _too_deep(depth + n - 1)
        tree = _finish(operands[0], depth + n - 1)
        for i in range(1, n):
            tree = ast.Binary(ops[i - 1], tree, _finish(operands[i], depth + n - i))
        return tree
    if depth >= MAX_EXPRESSION_DEPTH:
        raise _too_deep(depth + 1)
    if run.level in _ASSOCIATIVE:
        return _balanced(run.op, operands, 0, n, depth)
    return ast.BinaryChain(tuple(ops), tuple(_finish(x, depth + 1) for x in operands))


def _balanced(op: str, operands: list[Any], lo: int, hi: int, depth: int) -> Any:
    """operands[lo:hi] joined by `op` as a balanced tree (the left half the larger), its root
    at `depth`: log2 of the run's length deep."""
    if hi - lo == 1:
        return _finish(operands[lo], depth)
    if depth >= MAX_EXPRESSION_DEPTH:
        raise _too_deep(depth + 1)
    mid = lo + (hi - lo + 1) // 2
    left = _balanced(op, operands, lo, mid, depth + 1)
    return ast.Binary(op, left, _balanced(op, operands, mid, hi, depth + 1))


@dataclass(frozen=True, slots=True)
class _Type:
    name: str
    args: tuple[int, ...] = ()


def _fail(token: Token, message: str) -> PartiQLSyntaxError:
    line = token.line or 1
    column = token.column or 1
    return PartiQLSyntaxError(f"line {line}, column {column}: {message}", line, column)


def _exprs(children: list[Any]) -> tuple[Any, ...]:
    """The lowered expressions among `children` (not tokens, records or placeholders)."""
    return tuple(
        c
        for c in children
        if c is not None and not isinstance(c, str | _Clause | _Name | _Type | tuple)
    )


def _tok(children: list[Any], ttype: str) -> Token | None:
    for c in children:
        if isinstance(c, Token) and c.type == ttype:
            return c
    return None


def _clause(children: list[Any], cls: type[_Clause]) -> Any:
    for c in children:
        if isinstance(c, cls):
            return c.value
        if isinstance(c, _Clauses):
            found = _clause(list(c.value), cls)
            if found is not None:
                return found
    return None


def _aliases(children: list[Any]) -> tuple[str | None, str | None, str | None]:
    """(alias, at, by) from `[[AS] alias] [AT alias] [BY alias]` children."""
    alias: str | None = None
    at: str | None = None
    by: str | None = None
    previous: Any = None
    for c in children:
        if isinstance(c, _Name):
            if isinstance(previous, Token) and previous.type == "AT":
                at = c.name
            elif isinstance(previous, Token) and previous.type == "BY":
                by = c.name
            else:
                alias = c.name
        if c is not None:
            previous = c
    return alias, at, by


def _append(base: Any, step: ast.PathStep) -> ast.Path:
    if isinstance(base, ast.Path):
        return ast.Path(base.root, (*base.steps, step))
    return ast.Path(base, (step,))


def _check_date(token: Token, text: str) -> None:
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise _fail(token, f"malformed DATE {text!r}; expected 'YYYY-MM-DD'")
    year, month, day = (int(g) for g in m.groups())
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not 1 <= month <= 12 or not 1 <= day <= days[month - 1]:
        raise _fail(token, f"invalid DATE {text!r}")


def _check_time(token: Token, text: str) -> None:
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise _fail(token, f"malformed TIME {text!r}; expected 'HH:MM:SS[.fff][+hh:mm]'")
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3))
    ok = hour <= 23 and minute <= 59 and second <= 59
    if m.group(5) is not None:
        ok = ok and int(m.group(6)) <= 23 and int(m.group(7)) <= 59
    if not ok:
        raise _fail(token, f"invalid TIME {text!r}")


_BINOPS = {
    "OR": "or",
    "AND": "and",
    "CONCAT": "||",
    "PLUS": "+",
    "MINUS": "-",
    "STAR": "*",
    "SLASH": "/",
    "PERCENT": "%",
    "EQ": "=",
    "NEQ": "<>",
    "LT": "<",
    "LTE": "<=",
    "GT": ">",
    "GTE": ">=",
}


class Lower(Transformer[Token, Any]):
    """The lowering callbacks; see the module docstring."""

    # ------------------------------------------------------------------ statements

    def start(self, c: list[Any]) -> Any:
        return _finish(c[0], 0)

    def query_stmt(self, c: list[Any]) -> ast.Query:
        return ast.Query(c[0])

    def table_name(self, c: list[Any]) -> ast.TableName:
        tok = c[0]
        return ast.TableName(str(tok.value), tok.type == "QIDENT")

    def object_id(self, c: list[Any]) -> _Name:
        return _Name(str(c[0].value), c[0].type != "IDENT")

    def _table(self, c: list[Any]) -> ast.TableName:
        for x in c:
            if isinstance(x, ast.TableName):
                return x
        raise AssertionError("no table name")  # pragma: no cover

    def create_table(self, c: list[Any]) -> ast.CreateTable:
        return ast.CreateTable(self._table(c))

    def drop_table(self, c: list[Any]) -> ast.DropTable:
        return ast.DropTable(self._table(c))

    def undrop_table(self, c: list[Any]) -> ast.UndropTable:
        word: Token = c[0]
        if str(word.value).lower() != "undrop":
            raise _fail(word, f"unexpected {str(word.value)!r}; expected UNDROP before TABLE")
        return ast.UndropTable(c[2].name)

    def index_path(self, c: list[Any]) -> tuple[str, ...]:
        return tuple(x.name for x in c if isinstance(x, _Name))

    def create_index(self, c: list[Any]) -> ast.CreateIndex:
        paths = tuple(x for x in c if isinstance(x, tuple))
        return ast.CreateIndex(self._table(c), paths)

    def option(self, c: list[Any]) -> _Pair:
        return _Pair((str(c[0].value).lower(), c[2]))

    def option_value(self, c: list[Any]) -> Any:
        tok: Token = c[0]
        return {"TRUE": True, "FALSE": False, "NULL": None}.get(tok.type, tok.value)

    def drop_index(self, c: list[Any]) -> ast.DropIndex:
        options = tuple(x.value for x in c if isinstance(x, _Pair))
        return ast.DropIndex(c[2].name, self._table(c), options)

    def insert_bulk(self, c: list[Any]) -> ast.Insert:
        return ast.Insert(self._table(c), c[-1], single=False)

    def insert_value(self, c: list[Any]) -> ast.Insert:
        return ast.Insert(self._table(c), c[-1], single=True)

    def dml_alias(self, c: list[Any]) -> _Aliases:
        return _Aliases(_aliases(c))

    def _source(self, c: list[Any]) -> ast.Scan:
        table = self._table(c)
        alias, at, by = _clause(c, _Aliases)
        return ast.Scan(ast.Var(table.name, table.case_sensitive), alias, at, by)

    def _ops(self, c: list[Any]) -> tuple[ast.DmlOp, ...]:
        return tuple(op for x in c if isinstance(x, _Ops) for op in x.value)

    def update(self, c: list[Any]) -> ast.Update:
        return ast.Update(self._source(c), self._ops(c), _clause(c, _Where))

    def from_dml(self, c: list[Any]) -> ast.Update:
        return ast.Update(self._source(c), self._ops(c), _clause(c, _Where))

    def delete(self, c: list[Any]) -> ast.Delete:
        return ast.Delete(self._source(c), _clause(c, _Where))

    def exec(self, c: list[Any]) -> ast.Exec:
        return ast.Exec(str(c[1].value).lower(), _exprs(c[2:]))

    def dml_set(self, c: list[Any]) -> _Ops:
        return _Ops(tuple(x for x in c if isinstance(x, ast.Assign)))

    def assignment(self, c: list[Any]) -> ast.Assign:
        return ast.Assign(c[0], c[2])

    def dml_remove(self, c: list[Any]) -> _Ops:
        return _Ops((ast.Remove(c[1]),))

    def dml_insert(self, c: list[Any]) -> _Ops:
        return _Ops((ast.InsertAt(c[2], c[4], c[6]),))

    def dml_target(self, c: list[Any]) -> ast.Path | ast.Var:
        if len(c) == 1:
            root: ast.Var = c[0]
            return root
        return ast.Path(c[0], tuple(c[1:]))

    def tstep_field(self, c: list[Any]) -> ast.Field:
        name: _Name = c[1]
        return ast.Field(name.name, name.case_sensitive)

    def tstep_index(self, c: list[Any]) -> ast.PathStep:
        return _index_step(c[1])

    # ------------------------------------------------------------------ queries

    def query(self, c: list[Any]) -> Any:
        expr = c[0]
        tail: _Clauses = c[1]
        if not tail.value:
            return expr
        order = _clause(c, _OrderBy) or ()
        limit = _clause(c, _Limit)
        offset = _clause(c, _Offset)
        if (
            isinstance(expr, ast.Select | ast.SetOp)
            and not expr.order_by
            and expr.limit is None
            and expr.offset is None
        ):
            return dataclasses.replace(expr, order_by=order, limit=limit, offset=offset)
        first: _Clause = tail.value[0]
        where = first.token if first.token is not None else Token("ORDER", "", 0, 1, 1)
        raise _fail(
            where,
            f"unexpected {str(where.value)!r}; ORDER BY, LIMIT and OFFSET here need a query "
            "(SELECT or a set operation) that has none of its own",
        )

    def _chain(self, c: list[Any]) -> _Clauses:
        flat: list[_Clause] = []
        for x in c:
            if isinstance(x, _Clauses):
                flat.extend(x.value)
            elif x is not None:
                flat.append(x)
        return _Clauses(tuple(flat))

    q_from = q_let = q_where = q_group = q_having = q_order = q_limit = q_offset = _chain

    def set_op(self, c: list[Any]) -> ast.SetOp:
        op, quant, outer = c[1].value
        return ast.SetOp(op, c[0], c[2], all=quant == "all", outer=outer)

    def set_kw(self, c: list[Any]) -> _SetKw:
        return _SetKw((c[1], c[2], c[0] is not None))

    def set_name(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def set_quant(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def _select(self, c: list[Any], project: ast.Projection, distinct: bool) -> ast.Select:
        return ast.Select(
            project=project,
            from_=_clause(c, _From),
            distinct=distinct,
            let=_clause(c, _Let) or (),
            where=_clause(c, _Where),
            group_by=_clause(c, _Group),
            having=_clause(c, _Having),
            order_by=_clause(c, _OrderBy) or (),
            limit=_clause(c, _Limit),
            offset=_clause(c, _Offset),
        )

    def select(self, c: list[Any]) -> ast.Select:
        return self._select(c, c[2], c[1] == "distinct")

    def pivot(self, c: list[Any]) -> ast.Select:
        return self._select(c, ast.Pivot(c[1], c[3]), False)

    def proj_star(self, c: list[Any]) -> ast.ProjectStar:
        return ast.ProjectStar()

    def proj_value(self, c: list[Any]) -> ast.ProjectValue:
        return ast.ProjectValue(c[1])

    def proj_list(self, c: list[Any]) -> ast.ProjectList:
        return ast.ProjectList(
            tuple(x for x in c if isinstance(x, ast.ProjectItem | ast.ProjectAll))
        )

    def proj_item(self, c: list[Any]) -> ast.ProjectItem | ast.ProjectAll:
        expr = c[0]
        alias = c[-1]
        if (
            alias is None
            and isinstance(expr, ast.Path)
            and isinstance(expr.steps[-1], ast.UnpivotStep)
        ):
            rest = expr.steps[:-1]
            return ast.ProjectAll(ast.Path(expr.root, rest) if rest else expr.root)
        return ast.ProjectItem(expr, alias.name if alias is not None else None)

    def alias(self, c: list[Any]) -> _Name:
        return _Name(str(c[0].value), c[0].type == "QIDENT")

    def from_clause(self, c: list[Any]) -> _From:
        return _From(c[1])

    def join_comma(self, c: list[Any]) -> ast.Join:
        return ast.Join("inner", c[0], c[2])

    def join_on(self, c: list[Any]) -> ast.Join:
        return ast.Join(c[1], c[0], c[3], c[5])

    def join_cross(self, c: list[Any]) -> ast.Join:
        return ast.Join(c[1], c[0], c[4])

    def jq_inner(self, c: list[Any]) -> str:
        return "inner"

    def jq_left(self, c: list[Any]) -> str:
        return "left"

    def jq_right(self, c: list[Any]) -> str:
        return "right"

    def jq_full(self, c: list[Any]) -> str:
        return "full"

    def scan(self, c: list[Any]) -> ast.Scan:
        alias, at, by = _aliases(c[1:])
        return ast.Scan(c[0], alias, at, by)

    def lateral(self, c: list[Any]) -> Any:
        return c[1]  # every FROM item after the first is lateral already

    def unpivot_scan(self, c: list[Any]) -> ast.UnpivotScan:
        alias, at, _ = _aliases(c[2:])
        return ast.UnpivotScan(c[1], alias, at)

    def paren_join(self, c: list[Any]) -> Any:
        return c[1]

    def let_clause(self, c: list[Any]) -> _Let:
        return _Let(tuple(x.value for x in c if isinstance(x, _Pair)))

    def let_binding(self, c: list[Any]) -> _Pair:
        return _Pair((c[0], c[2].name))

    def where_clause(self, c: list[Any]) -> _Where:
        return _Where(c[1])

    def group_clause(self, c: list[Any]) -> _Group:
        keys = tuple(x for x in c if isinstance(x, ast.ProjectItem))
        group_as = c[-1].name if isinstance(c[-1], _Name) else None
        return _Group(ast.GroupBy(keys, group_as, partial=c[1] is not None))

    def group_all(self, c: list[Any]) -> _Group:
        return _Group(ast.GroupBy((), c[3].name))  # one group of every row

    def group_key(self, c: list[Any]) -> ast.ProjectItem:
        return ast.ProjectItem(c[0], c[2].name if c[2] is not None else None)

    def having_clause(self, c: list[Any]) -> _Having:
        return _Having(c[1])

    def order_by(self, c: list[Any]) -> _OrderBy:
        return _OrderBy(tuple(x for x in c if isinstance(x, ast.OrderItem)), c[0])

    def order_item(self, c: list[Any]) -> ast.OrderItem:
        nulls = c[3]
        return ast.OrderItem(c[0], c[1] == "desc", None if nulls is None else nulls == "first")

    def direction(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def null_order(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def limit_clause(self, c: list[Any]) -> _Limit:
        return _Limit(c[1], c[0])

    def offset_clause(self, c: list[Any]) -> _Offset:
        return _Offset(c[1], c[0])

    # ------------------------------------------------------------------ operators

    def binop(self, c: list[Any]) -> _Run:
        op = _BINOPS[c[1].type]
        level = _LEVELS[op]
        return _Run(level, c[0], op, c[2])

    def compare(self, c: list[Any]) -> ast.Binary:
        return ast.Binary(c[1], c[0], c[2])

    def comp_op(self, c: list[Any]) -> str:
        return _BINOPS[c[0].type]

    def not_op(self, c: list[Any]) -> ast.Unary:
        return ast.Unary("not", c[1])

    def sign_op(self, c: list[Any]) -> ast.Unary:
        return ast.Unary(str(c[0].value), c[1])

    def is_op(self, c: list[Any]) -> ast.Is:
        t: _Type = c[3]
        return ast.Is(c[0], t.name, negated=c[2] is not None, type_args=t.args)

    def in_op(self, c: list[Any]) -> ast.In:
        collection = c[3]
        if isinstance(collection, _Paren):  # SQL: `x IN (e)` is `x IN [e]`
            collection = ast.ListLit((collection.expr,))
        return ast.In(c[0], collection, negated=c[1] is not None)

    def like_op(self, c: list[Any]) -> ast.Like:
        return ast.Like(c[0], c[3], c[5], negated=c[1] is not None)

    def between_op(self, c: list[Any]) -> ast.Between:
        return ast.Between(c[0], c[3], c[5], negated=c[1] is not None)

    # ------------------------------------------------------------------ paths

    def field_name(self, c: list[Any]) -> _Name:
        return _Name(str(c[0].value), c[0].type == "QIDENT")

    def step_field(self, c: list[Any]) -> ast.Path:
        name: _Name = c[2]
        return _append(c[0], ast.Field(name.name, name.case_sensitive))

    def step_field_str(self, c: list[Any]) -> ast.Path:
        return _append(c[0], ast.Field(str(c[2].value), True))

    def step_unpivot(self, c: list[Any]) -> ast.Path:
        return _append(c[0], ast.UnpivotStep())

    def step_index(self, c: list[Any]) -> ast.Path:
        return _append(c[0], _index_step(c[2]))

    def step_wildcard(self, c: list[Any]) -> ast.Path:
        return _append(c[0], ast.Wildcard())

    # ------------------------------------------------------------------ atoms

    def literal(self, c: list[Any]) -> ast.Lit:
        tok: Token = c[0]
        if tok.type == "ION":
            ion: IonText = tok.value
            return ast.Lit(ion.value)
        if tok.type in ("TRUE", "FALSE", "NULL", "MISSING"):
            return ast.Lit(
                {"TRUE": True, "FALSE": False, "NULL": None, "MISSING": MISSING}[tok.type]
            )
        return ast.Lit(tok.value)

    def param(self, c: list[Any]) -> ast.Param:
        return ast.Param(int(c[0].value))

    def var(self, c: list[Any]) -> ast.Var:
        return ast.Var(str(c[0].value), c[0].type == "QIDENT")

    def at_var(self, c: list[Any]) -> ast.Var:
        return ast.Var(str(c[1].value), c[1].type == "QIDENT", local_first=True)

    def paren(self, c: list[Any]) -> Any:
        inner = c[1]
        if isinstance(inner, ast.Select | ast.SetOp | ast.BagLit):  # queries, VALUES
            return inner
        return _Paren(inner)

    def paren_list(self, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(_exprs(c))

    def list_lit(self, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(_exprs(c))

    def bag_lit(self, c: list[Any]) -> ast.BagLit:
        return ast.BagLit(_exprs(c))

    def sexp_lit(self, c: list[Any]) -> ast.SexpLit:
        return ast.SexpLit(_exprs(c))

    def struct_lit(self, c: list[Any]) -> ast.StructLit:
        return ast.StructLit(tuple(x.value for x in c if isinstance(x, _Pair)))

    def struct_field(self, c: list[Any]) -> _Pair:
        key = c[0]
        if isinstance(key, ast.Var) and not key.local_first:
            key = ast.Lit(key.name)  # `{a: 1}`: an identifier is the field's name
        return _Pair((key, c[2]))

    def values_lit(self, c: list[Any]) -> ast.BagLit:
        return ast.BagLit(_exprs(c))

    def value_row(self, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(_exprs(c))

    def func_name(self, c: list[Any]) -> _Name:
        return _Name(str(c[0].value).lower())

    def call(self, c: list[Any]) -> ast.Call | ast.ListLit:
        if c[0].name == "row":  # ROW(a, b): a row value, an ordered list
            return ast.ListLit(_exprs(c[1:]))
        return ast.Call(c[0].name, _exprs(c[1:]))

    def call_quantified(self, c: list[Any]) -> ast.Call:
        """`f(DISTINCT e)` / `f(ALL e)` (the COLL_ aggregates): the quantifier is passed as
        a first argument of its own type, which only this form can produce."""
        return ast.Call(c[0].name, (ast.Lit(Quantifier(c[2])), c[3]))

    def call_star(self, c: list[Any]) -> ast.Call:
        return ast.Call(c[0].name, ())

    def agg_name(self, c: list[Any]) -> Token:
        tok: Token = c[0]
        return tok

    def aggregate(self, c: list[Any]) -> ast.Aggregate:
        return ast.Aggregate(str(c[0].type).lower(), c[3], distinct=c[2] == "distinct")

    def aggregate_star(self, c: list[Any]) -> ast.Aggregate:
        name: Token = c[0]
        if name.type != "COUNT":
            raise _fail(c[2], f"unexpected '*'; only COUNT takes '*', not {name.type}")
        return ast.Aggregate("count", None)

    def cast_kind(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def cast(self, c: list[Any]) -> ast.Cast:
        t: _Type = c[4]
        return ast.Cast(c[2], t.name, t.args, c[0])

    def case_when(self, c: list[Any]) -> _When:
        return _When((c[1], c[3]))

    def case(self, c: list[Any]) -> ast.Case:
        whens = tuple(x.value for x in c if isinstance(x, _When))
        return ast.Case(c[1], whens, c[-2])

    def substring_sql(self, c: list[Any]) -> ast.Call:
        return ast.Call("substring", _exprs(c))

    def substring_call(self, c: list[Any]) -> ast.Call:
        return ast.Call("substring", _exprs(c))

    def position_sql(self, c: list[Any]) -> ast.Call:
        return ast.Call("position", _exprs(c))

    def overlay_sql(self, c: list[Any]) -> ast.Call:
        return ast.Call("overlay", _exprs(c))

    def trim_plain(self, c: list[Any]) -> ast.Trim:
        return ast.Trim(_exprs(c)[0])

    def trim_from(self, c: list[Any]) -> ast.Trim:
        first = c[2]
        if (
            isinstance(first, ast.Var)
            and not first.case_sensitive
            and not first.local_first
            and first.name.lower() in TRIM_SPECS
        ):
            return ast.Trim(c[4], first.name.lower())
        return ast.Trim(c[4], "both", first)

    def trim_spec_chars(self, c: list[Any]) -> ast.Trim:
        spec: Token = c[2]
        if str(spec.value).lower() not in TRIM_SPECS:
            raise _fail(spec, f"unexpected {str(spec.value)!r}; expected BOTH, LEADING or TRAILING")
        return ast.Trim(c[5], str(spec.value).lower(), c[3])

    def trim_chars(self, c: list[Any]) -> Any:
        x = c[0]
        if isinstance(x, Token):
            if x.type == "PARAM":
                return ast.Param(int(x.value))
            if x.type == "ION":
                ion: IonText = x.value
                return ast.Lit(ion.value)
            return ast.Lit(x.value)
        return x

    def _part(self, tok: Token) -> str:
        part = str(tok.value).lower()
        if part not in DATE_PARTS:
            raise _fail(
                tok,
                f"unexpected {str(tok.value)!r}; expected a date part ("
                + ", ".join(p.upper() for p in sorted(DATE_PARTS))
                + ")",
            )
        return part

    def extract(self, c: list[Any]) -> ast.Extract:
        return ast.Extract(self._part(c[2]), c[4])

    def date_fn(self, c: list[Any]) -> str:
        return str(c[0].type).lower()

    def date_fn_call(self, c: list[Any]) -> ast.Call:
        return ast.Call(c[0], (ast.DatePart(self._part(c[2])), c[4], c[6]))

    def date_lit(self, c: list[Any]) -> ast.DateLit:
        text = str(c[1].value)
        _check_date(c[1], text)
        return ast.DateLit(text)

    def time_lit(self, c: list[Any]) -> ast.TimeLit:
        string: Token = c[-1]
        _check_time(string, str(string.value))
        precision = int(c[2].value) if c[2] is not None else None
        return ast.TimeLit(str(string.value), precision, c[4])

    def timestamp_lit(self, c: list[Any]) -> ast.TimestampLit:
        string: Token = c[-1]
        precision = int(c[2].value) if c[2] is not None else None
        return ast.TimestampLit(str(string.value), precision, c[4])

    def interval_lit(self, c: list[Any]) -> ast.IntervalLit:
        q: ast.IntervalLit = c[2]
        return ast.IntervalLit(str(c[1].value), q.start, q.end, q.lead, q.frac)

    def interval_qualifier(self, c: list[Any]) -> ast.IntervalLit:
        """The qualifier, carried in an IntervalLit with no text."""
        start, end = str(c[0].value).lower(), c[7]
        for tok in (c[0], end):
            if tok is not None and str(tok.value).lower() not in INTERVAL_FIELDS:
                raise _fail(tok, f"unexpected {str(tok.value)!r}; expected an interval field")
        lead = int(c[2].value) if c[2] is not None else None
        frac = int(c[4].value) if c[4] is not None else None
        if end is not None and c[9] is not None:
            frac = int(c[9].value)
        return ast.IntervalLit("", start, str(end.value).lower() if end else None, lead, frac)

    def overlaps_op(self, c: list[Any]) -> ast.Binary:
        return ast.Binary("overlaps", c[0], c[2])

    def tz_with(self, c: list[Any]) -> bool:
        return True

    def tz_without(self, c: list[Any]) -> bool:
        word: Token = c[0]
        if str(word.value).lower() != "without":
            raise _fail(word, f"unexpected {str(word.value)!r}; expected WITH or WITHOUT")
        return False

    # ------------------------------------------------------------------ types

    def t_simple(self, c: list[Any]) -> _Type:
        return _Type(str(c[0].type).removesuffix("_KW").lower())

    def t_double(self, c: list[Any]) -> _Type:
        return _Type("double precision")

    def t_param(self, c: list[Any]) -> _Type:
        args = tuple(int(x.value) for x in c[1:] if isinstance(x, Token) and x.type == "INTEGER")
        return _Type(str(c[0].type).removesuffix("_KW").lower(), args)

    def t_character(self, c: list[Any]) -> _Type:
        args = tuple(int(x.value) for x in c if isinstance(x, Token) and x.type == "INTEGER")
        return _Type("character varying" if c[1] is not None else "character", args)

    def t_interval(self, c: list[Any]) -> _Type:
        q: ast.IntervalLit = c[1]
        name = f"interval {q.start}" + (f" to {q.end}" if q.end else "")
        return _Type(name, (q.lead or 0, -1 if q.frac is None else q.frac))

    def t_time(self, c: list[Any]) -> _Type:
        args = tuple(int(x.value) for x in c if isinstance(x, Token) and x.type == "INTEGER")
        name = str(c[0].type).lower()
        if _tok(c, "ZONE") is not None:
            name += " with time zone"
        return _Type(name, args)


def _index_step(expr: Any) -> ast.PathStep:
    if isinstance(expr, ast.Lit) and type(expr.value) is str:
        return ast.Field(expr.value, True, bracket=True)
    return ast.Index(expr)

"""The abstract syntax of the PartiQL Strand accepts: what the parser produces and the
evaluator and the ledger's statement executor consume.

Every node is an immutable, hashable dataclass, so a parsed statement can be cached and
shared between threads. Names keep their spelling and say whether they were quoted: a
quoted identifier ("Vehicle") is case-sensitive, an unquoted one (Vehicle) matches
case-insensitively (an exact match wins). Function names are stored lower-case.

Invariants: the tree holds only the node types below, tuples (never lists) and Ion values
inside `Lit`; `Param.index` numbers the `?` of a statement from 0 in textual order; every
`Expr` can appear wherever an expression is allowed (a `Select` used as an expression is a
subquery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ============================================================================ expressions


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: an Ion value (from `'text'`, 1, 1.5, 1e0, TRUE, NULL, `backtick Ion`), or
    data.MISSING for the keyword MISSING. Not hashed by value (Ion values may be unhashable)."""

    value: Any

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True, slots=True)
class Param:
    """A positional parameter `?`; `index` counts from 0 in textual order."""

    index: int


@dataclass(frozen=True, slots=True)
class Var:
    """A variable reference: `x`, `"x"` (case_sensitive), `@x` (local_first: look the name
    up among the query's own variables before the global environment)."""

    name: str
    case_sensitive: bool = False
    local_first: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """Path step `.name` or `."name"`, or `['name']` with a literal string (case_sensitive,
    bracket)."""

    name: str
    case_sensitive: bool = False
    bracket: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """Path step `[expr]`: a list index when the value is an int, a field name when a string."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Path step `[*]`: every element of a list or bag."""


@dataclass(frozen=True, slots=True)
class UnpivotStep:
    """Path step `.*`: every field value of a struct."""


PathStep = Field | Index | Wildcard | UnpivotStep


@dataclass(frozen=True, slots=True)
class Path:
    """`root.step.step...`, e.g. `r.Owners.SecondaryOwners[0].PersonId`."""

    root: Expr
    steps: tuple[PathStep, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    """op: "not", "-", "+"."""

    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    """op: "or", "and", "=", "<>" (also written !=), "<", "<=", ">", ">=", "+", "-", "*",
    "/", "%", "||"."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class BinaryChain:
    """A long run of arithmetic operators of one precedence level (`+ -` or `* / %`), kept
    flat: operands[0] ops[0] operands[1] ops[1] operands[2] ... means the left-deep Binary
    ((operands[0] ops[0] operands[1]) ops[1] operands[2]) ..., evaluated left to right.
    The parser makes one for a run longer than a few operands, so that no walker recurses
    once per operand (runs of OR, AND and ||, which associate, become balanced Binary
    trees instead). len(ops) == len(operands) - 1."""

    ops: tuple[str, ...]
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Like:
    value: Expr
    pattern: Expr
    escape: Expr | None = None
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between:
    value: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True, slots=True)
class In:
    """`value IN collection`; `(1, 2)` after IN is a ListLit."""

    value: Expr
    collection: Expr
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Is:
    """`value IS [NOT] type`; type: "null", "missing", or a type name lower-case
    ("boolean", "int", "integer", "decimal", "float", "string", "symbol", "timestamp",
    "blob", "clob", "list", "sexp", "struct", "tuple", "bag", ...)."""

    value: Expr
    type_name: str
    negated: bool = False
    type_args: tuple[int, ...] = ()  # DECIMAL(p, s), VARCHAR(n)


@dataclass(frozen=True, slots=True)
class StructLit:
    """`{k: v, ...}`; keys are expressions (usually string Lits)."""

    fields: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True, slots=True)
class ListLit:
    """`[a, b]` and also `(a, b)` (a parenthesised list of two or more, or after IN)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class SexpLit:
    """`SEXP(a, b)` or `sexp(a, b)`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class BagLit:
    """`<< a, b >>`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Case:
    """`CASE [operand] WHEN c THEN r ... [ELSE d] END`."""

    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


@dataclass(frozen=True, slots=True)
class Call:
    """A scalar function call: `name(args)`, name lower-case. Special syntaxes map here:
    `SUBSTRING(s FROM a FOR b)` -> substring(s, a, b); `POSITION(a IN b)` -> position(a, b);
    `OVERLAY(s PLACING r FROM a [FOR b])` -> overlay(s, r, a[, b]);
    `TRIM([BOTH|LEADING|TRAILING] [chars] FROM s)` -> trim(Lit("both"|...), chars or
    Lit(MISSING)... see `Trim`; `EXTRACT(part FROM t)` -> `Extract`; `DATE_ADD(part, n, t)` and
    `DATE_DIFF(part, a, b)` -> Call with a `DatePart` first argument."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class DatePart:
    """A date/time field keyword used as a function argument: "year", "month", "day", "hour",
    "minute", "second", "timezone_hour", "timezone_minute"."""

    part: str


@dataclass(frozen=True, slots=True)
class Extract:
    part: str
    value: Expr


@dataclass(frozen=True, slots=True)
class Trim:
    """`TRIM([spec] [chars FROM] value)`; spec "both" | "leading" | "trailing"."""

    value: Expr
    spec: str = "both"
    chars: Expr | None = None


@dataclass(frozen=True, slots=True)
class Cast:
    """`CAST(value AS type)`; kind "cast" | "can_cast" | "can_lossless_cast". `type_name`
    lower-case ("int", "decimal", "string", ...) with its parameters (DECIMAL(5, 2))."""

    value: Expr
    type_name: str
    type_args: tuple[int, ...] = ()
    kind: str = "cast"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A SQL aggregate in a SELECT: COUNT/SUM/AVG/MIN/MAX/ANY/SOME/EVERY, name lower-case.
    `arg is None` means COUNT(*)."""

    name: str
    arg: Expr | None
    distinct: bool = False


@dataclass(frozen=True, slots=True)
class DateLit:
    """`DATE 'YYYY-MM-DD'` (text kept as written)."""

    text: str


@dataclass(frozen=True, slots=True)
class TimeLit:
    """`TIME [(p)] [WITH | WITHOUT TIME ZONE] 'HH:MM:SS[.fff][+hh:mm]'` (`with_time_zone`
    None when neither is written)."""

    text: str
    precision: int | None = None
    with_time_zone: bool | None = None


@dataclass(frozen=True, slots=True)
class TimestampLit:
    """`TIMESTAMP [(p)] [WITH | WITHOUT TIME ZONE] 'YYYY-MM-DD HH:MM:SS[.f][+hh:mm]'`;
    `with_time_zone` None when neither is written."""

    text: str
    precision: int | None = None
    with_time_zone: bool | None = None


@dataclass(frozen=True, slots=True)
class IntervalLit:
    """`INTERVAL 'text' start[(lead[, frac])] [TO end[(frac)]]` (fields lower-case)."""

    text: str
    start: str
    end: str | None = None
    lead: int | None = None
    frac: int | None = None


# ============================================================================ queries


@dataclass(frozen=True, slots=True)
class Scan:
    """A FROM source: `expr [AS] alias [AT pos] [BY id]`. alias None: the evaluator derives
    it (a variable's own name, a path's last field) or makes one up."""

    expr: Expr
    alias: str | None = None
    at: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class UnpivotScan:
    """`UNPIVOT expr AS v AT k`: one binding per field of a struct."""

    expr: Expr
    alias: str | None = None
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """kind: "inner" (comma, JOIN, INNER JOIN, CROSS JOIN), "left", "right", "full".
    `on is None` for a comma or CROSS join. The right side is lateral (may refer to the left)."""

    kind: str
    left: FromItem
    right: FromItem
    on: Expr | None = None


FromItem = Scan | UnpivotScan | Join


@dataclass(frozen=True, slots=True)
class ProjectItem:
    """`expr [AS alias]` in a select list."""

    expr: Expr
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class ProjectAll:
    """`expr.*` in a select list: every field of the struct."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class ProjectStar:
    """`SELECT *`."""


@dataclass(frozen=True, slots=True)
class ProjectList:
    items: tuple[ProjectItem | ProjectAll, ...]


@dataclass(frozen=True, slots=True)
class ProjectValue:
    """`SELECT VALUE expr`."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class Pivot:
    """`PIVOT value AT key FROM ...`."""

    value: Expr
    key: Expr


Projection = ProjectStar | ProjectList | ProjectValue | Pivot


@dataclass(frozen=True, slots=True)
class GroupBy:
    keys: tuple[ProjectItem, ...]
    group_as: str | None = None
    partial: bool = False


@dataclass(frozen=True, slots=True)
class OrderItem:
    """`expr [ASC|DESC] [NULLS FIRST|LAST]`; nulls_first None = the default for the direction."""

    expr: Expr
    descending: bool = False
    nulls_first: bool | None = None


@dataclass(frozen=True, slots=True)
class Select:
    project: Projection
    from_: FromItem | None = None
    distinct: bool = False
    let: tuple[tuple[Expr, str], ...] = ()
    where: Expr | None = None
    group_by: GroupBy | None = None
    having: Expr | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: Expr | None = None
    offset: Expr | None = None


@dataclass(frozen=True, slots=True)
class SetOp:
    """`left UNION|INTERSECT|EXCEPT [ALL|DISTINCT] right`; outer for OUTER UNION etc."""

    op: str
    left: Expr
    right: Expr
    all: bool = False
    outer: bool = False
    order_by: tuple[OrderItem, ...] = ()
    limit: Expr | None = None
    offset: Expr | None = None


Expr = (
    Lit
    | Param
    | Var
    | Path
    | Unary
    | Binary
    | BinaryChain
    | Like
    | Between
    | In
    | Is
    | StructLit
    | ListLit
    | SexpLit
    | BagLit
    | Case
    | Call
    | DatePart
    | Extract
    | Trim
    | Cast
    | Aggregate
    | DateLit
    | TimeLit
    | TimestampLit
    | IntervalLit
    | Select
    | SetOp
)

# ============================================================================ statements


@dataclass(frozen=True, slots=True)
class Query:
    """A query statement: any expression (usually a Select)."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class TableName:
    """A table named in DDL or DML: `Vehicle` or `"Vehicle"`."""

    name: str
    case_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class CreateTable:
    table: TableName


@dataclass(frozen=True, slots=True)
class DropTable:
    table: TableName


@dataclass(frozen=True, slots=True)
class UndropTable:
    """`UNDROP TABLE "tableId"` (the id, quoted)."""

    table_id: str


@dataclass(frozen=True, slots=True)
class CreateIndex:
    """`CREATE INDEX ON t (path)`: each path is a tuple of field names (QLDB: one, top level)."""

    table: TableName
    fields: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class DropIndex:
    """`DROP INDEX "indexId" ON t [WITH (purge = true)]`; options keep their values."""

    index_id: str
    table: TableName
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Insert:
    """`INSERT INTO t ?`, `INSERT INTO t << ?, ? >>` (value evaluates to a struct, or a bag or
    list of structs), and `INSERT INTO t VALUE {...}` (single=True: exactly one struct)."""

    table: TableName
    value: Expr
    single: bool = False


@dataclass(frozen=True, slots=True)
class Assign:
    """`SET target = value` (target is a Path rooted at a FROM variable)."""

    target: Path | Var
    value: Expr


@dataclass(frozen=True, slots=True)
class Remove:
    """`REMOVE target`."""

    target: Path | Var


@dataclass(frozen=True, slots=True)
class InsertAt:
    """`INSERT INTO target VALUE value [AT position]` inside a FROM ... statement: append to
    the list at `target` (or insert at the position), or add to a bag/struct."""

    target: Path | Var
    value: Expr
    position: Expr | None = None


DmlOp = Assign | Remove | InsertAt


@dataclass(frozen=True, slots=True)
class Update:
    """`UPDATE t [AS a] [BY id] SET ... | REMOVE ... [WHERE ...]`, and the
    `FROM t [AS a] [BY id] [WHERE ...] INSERT INTO ... | SET ... | REMOVE ...` form (same
    meaning: change every matching document). `source.expr` is a Var naming the table."""

    source: Scan
    ops: tuple[DmlOp, ...]
    where: Expr | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """`DELETE FROM t [AS a] [BY id] [WHERE ...]`."""

    source: Scan
    where: Expr | None = None


@dataclass(frozen=True, slots=True)
class Exec:
    """`EXEC name arg, arg, ...` (a stored procedure, e.g. redact_revision)."""

    procedure: str
    args: tuple[Expr, ...]


Statement = (
    Query
    | CreateTable
    | DropTable
    | UndropTable
    | CreateIndex
    | DropIndex
    | Insert
    | Update
    | Delete
    | Exec
)

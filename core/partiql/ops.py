"""The evaluator's single doorway to value semantics: every operator, cast, function and
aggregate the compiled closures use goes through here to `values` and `functions`, so that
the evaluator depends on their API in one place. Also the evaluator's own collection
helpers: grouping keys (GROUP BY, DISTINCT, set operations) and ORDER BY comparison.

Invariants: work proportional to a collection's size (LIKE's character steps, IN, COLL_
functions, aggregates, set operations) is charged to the runtime's deadline before it is
done; in error mode failures raise PartiQLEvaluationError, in coerce mode they give
MISSING (the `values` functions take the mode); `group_key` maps values PartiQL considers
equal for grouping (1 and 1.0, NULL and MISSING, a string and the same symbol? no: a
symbol and a string differ) to equal hashable keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyList

from core.errors import PartiQLEvaluationError
from core.partiql import ast, datetimes, functions, intervals, sqltime, values
from core.partiql.data import MISSING
from core.partiql.runtime import Runtime, charge_size, is_null

NO_ESCAPE = values.NO_ESCAPE


def _mode(rt: Runtime) -> str:
    return rt.context.mode


def unary(rt: Runtime, op: str, value: Any) -> Any:
    mode = _mode(rt)
    if op == "not":
        return values.logical_not(value, mode)
    if op == "-":
        return values.negate(value, mode)
    return values.unary_plus(value, mode)


def binary(rt: Runtime, op: str, left: Any, right: Any) -> Any:
    mode = _mode(rt)
    if op == "and":
        return values.logical_and(left, right, mode)
    if op == "or":
        return values.logical_or(left, right, mode)
    if op == "=":
        return values.equals(left, right, mode)
    if op in ("<>", "!="):
        return values.not_equals(left, right, mode)
    if op in ("<", "<=", ">", ">="):
        return values.compare(op, left, right, mode)
    if op == "||":
        return values.concat(left, right, mode)
    if op == "overlaps":
        return sqltime.overlaps(left, right, mode)
    return values.arithmetic(op, left, right, mode)


def like(rt: Runtime, value: Any, pattern: Any, escape: Any) -> Any:
    """LIKE, its character steps charged to the statement's deadline."""
    return values.like(value, pattern, escape, _mode(rt), rt.deadline.charge)


def between(rt: Runtime, value: Any, low: Any, high: Any) -> Any:
    return values.between(value, low, high, _mode(rt))


def in_(rt: Runtime, value: Any, collection: Any, negated: bool) -> Any:
    if isinstance(collection, list):
        charge_size(rt, len(collection))
    return values.in_collection(value, collection, _mode(rt), negated)


def is_type(rt: Runtime, value: Any, type_name: str, type_args: tuple[int, ...] = ()) -> Any:
    return values.is_type(value, type_name, type_args)


def make_sexp(items: list[Any]) -> Any:
    return IonPyList.from_value(IonType.SEXP, items)


def call(rt: Runtime, name: str, args: Sequence[Any]) -> Any:
    for arg in args:  # the COLL_ functions walk a collection
        if isinstance(arg, list):
            charge_size(rt, len(arg))
    return functions.call(name, list(args), rt.context)


def date_part(part: str) -> Any:
    return functions.DatePartValue(part) if hasattr(functions, "DatePartValue") else part


def extract(rt: Runtime, part: str, value: Any) -> Any:
    return functions.call("extract", [date_part(part), value], rt.context)


def trim(rt: Runtime, value: Any, spec: str, *chars: Any) -> Any:
    """TRIM(spec [chars] FROM value); `chars` given (even null) or not."""
    return functions.call("trim", [value, spec, *chars], rt.context)


def cast(rt: Runtime, value: Any, type_name: str, type_args: tuple[int, ...], kind: str) -> Any:
    mode = _mode(rt)
    if kind == "can_cast":
        return values.can_cast(value, type_name, type_args, mode)
    if kind == "can_lossless_cast":
        return values.can_lossless_cast(value, type_name, type_args, mode)
    return values.cast(value, type_name, type_args, mode)


def date_literal(text: str) -> Any:
    try:
        return datetimes.parse_date(text)
    except datetimes.DateTimeError as exc:
        raise PartiQLEvaluationError(f"bad DATE literal {text!r}: {exc}") from exc


def time_literal(text: str, precision: int | None, with_time_zone: bool | None) -> Any:
    try:
        return datetimes.parse_time(text, precision, with_time_zone)
    except datetimes.DateTimeError as exc:
        raise PartiQLEvaluationError(f"bad TIME literal {text!r}: {exc}") from exc


def timestamp_literal(text: str, precision: int | None, with_time_zone: bool | None) -> Any:
    try:
        return datetimes.parse_timestamp(text, with_time_zone, precision)
    except datetimes.DateTimeError as exc:
        raise PartiQLEvaluationError(f"bad TIMESTAMP literal {text!r}: {exc}") from exc


def interval_literal(node: ast.IntervalLit) -> Any:
    try:
        return intervals.parse_interval(node.text, node.start, node.end, node.lead, node.frac)
    except intervals.IntervalError as exc:
        raise PartiQLEvaluationError(f"bad INTERVAL literal {node.text!r}: {exc}") from exc


def aggregate(rt: Runtime, name: str, items: list[Any], distinct: bool, star: bool = False) -> Any:
    charge_size(rt, len(items))
    if star:
        return len(items)
    if distinct:
        items = distinct_values([v for v in items if not (v is MISSING or is_null(v))])
    return functions.aggregate(name, items, rt.context)


def order_compare(x: Any, y: Any, descending: bool, nulls_first: bool) -> int:
    """ORDER BY's comparison of two keys, honouring direction and NULLS FIRST/LAST."""
    xn = x is MISSING or is_null(x)
    yn = y is MISSING or is_null(y)
    if xn or yn:
        if xn and yn:
            return 0
        return (-1 if xn else 1) * (1 if nulls_first else -1)
    c: int = values.order_compare(x, y, nulls_first)
    return -c if descending else c


# ============================================================================ grouping keys


def group_key(value: Any) -> Any:
    """A hashable key equal for values that group together (values.equivalent)."""
    return values.group_key(value)


def distinct_values(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out: list[Any] = []
    for item in items:
        key = group_key(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def distinct(items: list[Any]) -> list[Any]:
    return distinct_values(items)


def set_op(rt: Runtime, op: str, all_: bool, outer: bool, left: Any, right: Any) -> list[Any]:
    """UNION / INTERSECT / EXCEPT with bag semantics (ALL keeps multiplicities)."""
    lv = _as_bag(rt, left, outer)
    rv = _as_bag(rt, right, outer)
    charge_size(rt, len(lv) + len(rv))
    if op == "union":
        out = lv + rv
        if all_:
            return out
        return distinct_values(out)
    counts: dict[Any, int] = {}
    for v in rv:
        k = group_key(v)
        counts[k] = counts.get(k, 0) + 1
    result: list[Any] = []
    if op == "intersect":
        for v in lv if all_ else distinct_values(lv):
            k = group_key(v)
            if counts.get(k, 0) > 0:
                counts[k] -= 1
                result.append(v)
        return result
    if not all_:  # EXCEPT DISTINCT: the distinct left values the right does not hold
        return [v for v in distinct_values(lv) if group_key(v) not in counts]
    for v in lv:
        k = group_key(v)
        if counts.get(k, 0) > 0:
            counts[k] -= 1
            continue
        result.append(v)
    return result


def _as_bag(rt: Runtime, value: Any, outer: bool) -> list[Any]:
    """An operand as a bag: a collection as itself; anything else is a type error in error
    mode and in coerce mode a bag of one (MISSING becoming null, as a bag holds no MISSING)."""
    if isinstance(value, list) and not is_null(value):
        return list(value)
    if rt.strict:
        raise PartiQLEvaluationError("a set operation needs collections")
    return [None if value is MISSING else value]

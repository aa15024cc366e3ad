"""PartiQL's arithmetic, string and predicate operators: + - * / %, unary - and +, ||,
LIKE (from `like`), BETWEEN and IN (re-exported by `values`, which holds the typing rules
they follow).

Invariants (see values.py's docstring for the full rules): a known operand of the wrong type
fails(mode) before unknowns are considered; then MISSING in an operand gives MISSING and null
gives null. Numbers promote int < float < decimal; decimals round to 34 digits (38 for
division); int division and % truncate toward zero. Division by zero and int64 overflow of
int64 operands are data errors, not type errors: they raise PartiQLEvaluationError in both
modes (partiql-lang-kotlin's permissive mode, which QLDB ran, throws them too). A result
beyond core/limits.py's bounds on numbers raises ValueOutOfRangeError in every mode, and a
product is refused before it is computed, so no operation works on numbers of more than
about twice MAX_INT_DIGITS digits. Pure functions, no state.
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from typing import Any

from core.errors import PartiQLEvaluationError, ValueOutOfRangeError
from core.limits import check_number, check_product
from core.partiql import sqltime
from core.partiql.data import MISSING
from core.partiql.intervals import is_interval

# LIKE has a module of its own (a linear matcher whose work a deadline can bound)
from core.partiql.like import NO_ESCAPE as NO_ESCAPE
from core.partiql.like import like as like
from core.partiql.values import (
    DECIMAL_CONTEXT,
    DIVISION_CONTEXT,
    INT64_MAX,
    INT64_MIN,
    NUMERIC,
    TEXT,
    compare,
    equals,
    fail,
    is_null,
    is_unknown,
    logical_and,
    text_of,
    type_name,
)

# ============================================================================ arithmetic


def to_decimal(v: Any) -> Decimal:
    """An int, float or decimal as an exact Decimal (a float's exact binary value)."""
    if isinstance(v, Decimal):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(float(v))
    return Decimal(int(v))


def _check_operands(op: str, operands: tuple[Any, ...], mode: str) -> Any:
    """None when all operands are numbers; else the result to return (fail/unknown)."""
    for v in operands:
        if not is_unknown(v) and type_name(v) not in NUMERIC:
            return fail(mode, f"{op} needs numbers, not {type_name(v)}")
    if any(v is MISSING for v in operands):
        return MISSING
    if any(is_null(v) for v in operands):
        return _NULL
    return None


_NULL: Any = object()  # internal marker: "the result is null"


def _int_result(r: int, a: int, b: int, mode: str) -> Any:
    if (
        not INT64_MIN <= r <= INT64_MAX
        and INT64_MIN <= a <= INT64_MAX
        and INT64_MIN <= b <= INT64_MAX
    ):
        raise PartiQLEvaluationError("integer overflow")
    return r


def _int_arith(op: str, a: int, b: int, mode: str) -> Any:
    if op == "+":
        return _int_result(a + b, a, b, mode)
    if op == "-":
        return _int_result(a - b, a, b, mode)
    if op == "*":
        return _int_result(a * b, a, b, mode)
    if b == 0:
        raise PartiQLEvaluationError("division by zero")
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    if op == "/":
        return _int_result(q, a, b, mode)
    return a - b * q


def _float_arith(op: str, a: float, b: float, mode: str) -> Any:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise PartiQLEvaluationError("division by zero")
    if op == "/":
        return a / b
    return math.nan if math.isinf(a) else math.fmod(a, b)  # IEEE: inf % b is NaN


def _decimal_arith(op: str, a: Decimal, b: Decimal, mode: str) -> Any:
    try:
        if op == "+":
            return DECIMAL_CONTEXT.add(a, b)
        if op == "-":
            return DECIMAL_CONTEXT.subtract(a, b)
        if op == "*":
            return DECIMAL_CONTEXT.multiply(a, b)
        if b.is_zero():
            raise PartiQLEvaluationError("division by zero")
        if op == "/":
            return DIVISION_CONTEXT.divide(a, b)
        return DECIMAL_CONTEXT.remainder(a, b)
    except decimal.Overflow:  # beyond any decimal the bounds allow (core/limits.py)
        raise ValueOutOfRangeError(f"the result of decimal {op} is out of range") from None
    except decimal.InvalidOperation:
        raise PartiQLEvaluationError(f"decimal {op} out of range") from None


def arithmetic(op: str, a: Any, b: Any, mode: str) -> Any:
    """`+ - * / %` on numbers (see the module docstring for the typing rules), and on
    datetimes and intervals (sqltime.arithmetic)."""
    if op not in ("+", "-", "*", "/", "%"):
        raise ValueError(f"unknown arithmetic operator {op!r}")
    if op != "%" and (sqltime.is_temporal(a) or sqltime.is_temporal(b)):
        return sqltime.arithmetic(op, a, b, mode)
    bad = _check_operands(op, (a, b), mode)
    if bad is not None:
        return None if bad is _NULL else bad
    ta, tb = type_name(a), type_name(b)
    if ta == "int" and tb == "int":
        if op == "*":  # refused before the multiplication, not after
            check_product(int(a), int(b), "the result of *")
        return _bounded(op, _int_arith(op, int(a), int(b), mode))
    if "decimal" in (ta, tb):
        nonfinite = [v for v in (a, b) if isinstance(v, float) and not math.isfinite(v)]
        if not nonfinite:
            return _bounded(op, _decimal_arith(op, to_decimal(a), to_decimal(b), mode))
    return _float_arith(op, _as_float(a), _as_float(b), mode)


def _bounded(op: str, result: Any) -> Any:
    """`result`, or ValueOutOfRangeError (in every mode: a bound of Strand's, not a PartiQL
    type error) for a number beyond core/limits.py's bounds."""
    check_number(result, f"the result of {op}")
    return result


def _as_float(v: Any) -> float:
    """float(v); an integer beyond the float range is an infinity (as Java's
    BigInteger.doubleValue, which QLDB's PartiQL used, makes it)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def negate(a: Any, mode: str) -> Any:
    interval = sqltime.lift(a)
    if is_interval(interval):
        return -interval
    bad = _check_operands("-", (a,), mode)
    if bad is not None:
        return None if bad is _NULL else bad
    t = type_name(a)
    if t == "int":
        return -int(a)
    if t == "decimal":
        return Decimal(a).copy_negate()
    return -float(a)


def unary_plus(a: Any, mode: str) -> Any:
    interval = sqltime.lift(a)
    if is_interval(interval):
        return interval
    bad = _check_operands("+", (a,), mode)
    if bad is not None:
        return None if bad is _NULL else bad
    return a


def concat(a: Any, b: Any, mode: str) -> Any:
    """`||` on strings and symbols, giving a string."""
    for v in (a, b):
        if not is_unknown(v) and type_name(v) not in TEXT:
            return fail(mode, f"|| needs strings, not {type_name(v)}")
    if a is MISSING or b is MISSING:
        return MISSING
    if is_null(a) or is_null(b):
        return None
    return text_of(a) + text_of(b)


# ============================================================================ predicates


def between(value: Any, low: Any, high: Any, mode: str) -> Any:
    """`value BETWEEN low AND high` = value >= low AND value <= high."""
    return logical_and(compare(">=", value, low, mode), compare("<=", value, high, mode), mode)


def in_collection(value: Any, collection: Any, mode: str, negated: bool = False) -> Any:
    """`value IN collection`: True when an element equals it, None when none does but a
    comparison was unknown, else False. The caller negates for NOT IN and passes
    negated=True: a right side that is not a collection gives MISSING for IN, and fails
    (mode) for NOT IN, as the conformance suite expects."""
    if collection is MISSING:
        return MISSING
    if is_null(collection):
        return None
    if type_name(collection) not in ("list", "sexp", "bag"):
        if negated:
            return fail(mode, f"NOT IN needs a collection, not {type_name(collection)}")
        return MISSING
    items = list(collection)
    if not items:
        return False
    if value is MISSING:
        return MISSING
    saw_unknown = False
    for item in items:
        r = equals(value, item, mode)
        if r is True:
            return True
        if r is not False:
            saw_unknown = True
    return None if saw_unknown else False

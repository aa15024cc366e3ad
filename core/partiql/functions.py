"""PartiQL's built-in scalar functions, collection aggregates and SQL aggregates.

`SCALAR_FUNCTIONS` maps a lower-case name to a `Function` (name, arity bounds, impl); the
evaluator checks calls statically with `check_call` (unknown name or wrong arity:
PartiQLSemanticError) and runs them with `call(name, args, context)`. `AGGREGATES` maps
COUNT/SUM/AVG/MIN/MAX/ANY/SOME/EVERY to accumulator factories; `aggregate(name, items,
context)` folds a list at once.

Rules (from the PartiQL conformance suite, eval/primitives/functions and
coll-aggregate-function.ion):
- Argument types are checked first: a known argument of the wrong type fails(mode) even when
  another argument is null (`MOD(NULL, 'a')` is an error). Then MISSING in any argument
  gives MISSING, else null in any gives null. COALESCE and NULLIF are the exceptions.
- Strings are sequences of Unicode code points (SUBSTRING, CHAR_LENGTH, TRIM, POSITION and
  OVERLAY count code points); SUBSTRING follows SQL (start may be zero or negative, the
  window is clipped; a negative length is an error).
- Aggregates skip null and MISSING; over nothing they give null (COUNT gives 0). SUM keeps
  the widest operand type (int < float < decimal), AVG is a decimal (a float if any input
  is), MIN/MAX use the ORDER BY order across types, ANY/SOME/EVERY need bools.
- Date functions (DATE_ADD, DATE_DIFF, EXTRACT, TO_STRING, TO_TIMESTAMP) follow QLDB's
  documentation; UTCNOW and TXID read only the Context.
Pure: no clock reads, no global mutable state (the tables below are read-only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import Any, Protocol

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict

from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql import datetimes as dt
from core.partiql import intervals, sqltime
from core.partiql import values as pv
from core.partiql.data import MISSING, Context
from core.partiql.intervals import is_interval


class DatePartValue(str):
    """A date/time field keyword (YEAR, MONTH, ...) passed as a function argument, kept
    apart from an ordinary string value."""

    __slots__ = ()


class Quantifier(str):
    """The ALL / DISTINCT of `COLL_SUM(DISTINCT x)`, passed as the call's first argument."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Function:
    """A built-in scalar function: `impl(args, context)`; max_args None: any number."""

    name: str
    min_args: int
    max_args: int | None
    impl: Callable[[list[Any], Context], Any]


_OK: Any = object()
_TEXT = pv.TEXT
_NUM = pv.NUMERIC
_INT = frozenset({"int"})
_TS = frozenset({"timestamp"})
_COLL = frozenset({"list", "sexp", "bag"})
_SIZED = frozenset({"list", "sexp", "bag", "struct"})


def _guard(fname: str, args: list[Any], allowed: Sequence[frozenset[str] | None], mode: str) -> Any:
    """_OK when every argument is known and of an allowed type; otherwise the result the
    function returns (a type failure first, then MISSING, then null)."""
    for i, (a, ok) in enumerate(zip(args, allowed, strict=False)):
        if ok is not None and not pv.is_unknown(a) and pv.type_name(a) not in ok:
            return pv.fail(mode, f"{fname}: argument {i + 1} cannot be {pv.type_name(a)}")
    if any(a is MISSING for a in args):
        return MISSING
    if any(pv.is_null(a) for a in args):
        return None
    return _OK


# ============================================================================ strings


# The argument types of the functions whose arguments the static checks can judge (a
# constant argument of another type is refused before the statement runs).
ARGUMENT_TYPES: Mapping[str, tuple[frozenset[str] | None, ...]] = MappingProxyType(
    {
        "char_length": (_TEXT,),
        "character_length": (_TEXT,),
        "lower": (_TEXT,),
        "upper": (_TEXT,),
        "substring": (_TEXT, _INT, _INT),
        "position": (_TEXT, _TEXT),
        "text_replace": (_TEXT, _TEXT, _TEXT),
        "size": (_SIZED,),
        "cardinality": (_SIZED,),
        "to_string": (_TS, _TEXT),
        "to_timestamp": (_TEXT, _TEXT),
        "date_add": (None, _INT, _TS | {"date"}),
        "date_diff": (None, _TS | {"date", "time"}, _TS | {"date", "time"}),
    }
)

# The date parts DATE_ADD and DATE_DIFF take (EXTRACT also takes the two timezone ones);
# another part is refused before the statement runs.
ARITHMETIC_DATE_PARTS = frozenset({"year", "month", "day", "hour", "minute", "second"})


def _char_length(args: list[Any], ctx: Context) -> Any:
    r = _guard("char_length", args, ARGUMENT_TYPES["char_length"], ctx.mode)
    return r if r is not _OK else len(pv.text_of(args[0]))


def _octet_length(args: list[Any], ctx: Context) -> Any:
    r = _guard("octet_length", args, [_TEXT | {"blob", "clob"}], ctx.mode)
    if r is not _OK:
        return r
    v = args[0]
    return len(bytes(v)) if pv.type_name(v) in ("blob", "clob") else len(pv.text_of(v).encode())


def _bit_length(args: list[Any], ctx: Context) -> Any:
    r = _octet_length(args, ctx)
    return r * 8 if isinstance(r, int) else r


def _text_replace(args: list[Any], ctx: Context) -> Any:
    """TEXT_REPLACE(s, from, to): every non-overlapping occurrence of `from`, left to
    right, replaced by `to` (an empty `from` matches between every two code points and at
    both ends, as Java's String.replace does: 'ab' gives 'XaXbX')."""
    r = _guard("text_replace", args, ARGUMENT_TYPES["text_replace"], ctx.mode)
    if r is not _OK:
        return r
    text, old, new = (pv.text_of(a) for a in args)
    return text.replace(old, new)


def _lower(args: list[Any], ctx: Context) -> Any:
    r = _guard("lower", args, ARGUMENT_TYPES["lower"], ctx.mode)
    return r if r is not _OK else pv.text_of(args[0]).lower()


def _upper(args: list[Any], ctx: Context) -> Any:
    r = _guard("upper", args, ARGUMENT_TYPES["upper"], ctx.mode)
    return r if r is not _OK else pv.text_of(args[0]).upper()


def _substring(args: list[Any], ctx: Context) -> Any:
    r = _guard("substring", args, ARGUMENT_TYPES["substring"], ctx.mode)
    if r is not _OK:
        return r
    s = pv.text_of(args[0])
    start = int(args[1])
    end = len(s) + 1
    if len(args) > 2:
        length = int(args[2])
        if length < 0:
            return pv.fail(ctx.mode, "substring: negative length")
        end = min(end, start + length)
    first = max(start, 1)
    return s[first - 1 : end - 1] if end > first else ""


def _position(args: list[Any], ctx: Context) -> Any:
    r = _guard("position", args, ARGUMENT_TYPES["position"], ctx.mode)
    return r if r is not _OK else pv.text_of(args[1]).find(pv.text_of(args[0])) + 1


def _overlay(args: list[Any], ctx: Context) -> Any:
    r = _guard("overlay", args, [_TEXT, _TEXT, _INT, _INT], ctx.mode)
    if r is not _OK:
        return r
    s, repl = pv.text_of(args[0]), pv.text_of(args[1])
    start = int(args[2])
    length = int(args[3]) if len(args) > 3 else len(repl)
    if length < 0:
        return pv.fail(ctx.mode, "overlay: negative length")
    head = s[: max(start - 1, 0)]
    tail = s[max(start - 1 + length, 0) :]
    return head + repl + tail


SPACES: Any = object()  # the `chars` of a TRIM that names none


def trim(spec: str, chars: Any, value: Any, mode: str) -> Any:
    """TRIM([BOTH|LEADING|TRAILING] [chars] FROM value); chars SPACES: none given (a null
    `chars` gives null). The characters of `chars` form a set (TRIM('12' FROM '1212x21')
    is 'x')."""
    args = [value] if chars is SPACES else [value, chars]
    r = _guard("trim", args, [_TEXT, _TEXT], mode)
    if r is not _OK:
        return r
    s = pv.text_of(value)
    strip = " " if chars is SPACES else pv.text_of(chars)
    spec = spec.lower()
    if spec == "leading":
        return s.lstrip(strip)
    if spec == "trailing":
        return s.rstrip(strip)
    return s.strip(strip)


def _trim(args: list[Any], ctx: Context) -> Any:
    spec = str(args[1]) if len(args) > 1 else "both"
    return trim(spec, args[2] if len(args) > 2 else SPACES, args[0], ctx.mode)


# ============================================================================ numbers


def _abs(args: list[Any], ctx: Context) -> Any:
    if is_interval(args[0]):
        return sqltime.interval_abs(args[0])
    r = _guard("abs", args, [_NUM], ctx.mode)
    if r is not _OK:
        return r
    v = args[0]
    t = pv.type_name(v)
    if t == "int":
        return abs(int(v))
    if t == "decimal":
        return Decimal(v).copy_abs()
    return abs(float(v))


def _mod(args: list[Any], ctx: Context) -> Any:
    r = _guard("mod", args, [_NUM, _NUM], ctx.mode)
    return r if r is not _OK else pv.arithmetic("%", args[0], args[1], ctx.mode)


def _rounder(name: str, rounding: str, fn: Callable[[float], int]) -> Callable[..., Any]:
    def impl(args: list[Any], ctx: Context) -> Any:
        r = _guard(name, args, [_NUM], ctx.mode)
        if r is not _OK:
            return r
        v = args[0]
        t = pv.type_name(v)
        if t == "int":
            return int(v)
        if t == "decimal":
            return Decimal(v).to_integral_value(rounding=rounding)
        f = float(v)
        return float(fn(f)) if math.isfinite(f) else f

    return impl


# ============================================================ unknowns, collections


def _coalesce(args: list[Any], ctx: Context) -> Any:
    for a in args:
        if not pv.is_unknown(a):
            return a
    return None


def _nullif(args: list[Any], ctx: Context) -> Any:
    a, b = args
    if a is MISSING:
        return MISSING
    return None if pv.equals(a, b, ctx.mode) is True else a


def _exists(args: list[Any], ctx: Context) -> Any:
    r = _guard("exists", args, [_SIZED], ctx.mode)
    return r if r is not _OK else len(pv.elements(args[0])) > 0


def _tupleunion(args: list[Any], ctx: Context) -> Any:
    """TUPLEUNION(s1, s2, ...): one struct with the fields of every argument, in order
    (repeated names kept, as in a struct constructor)."""
    r = _guard("tupleunion", args, [frozenset({"struct"})] * len(args), ctx.mode)
    if r is not _OK:
        return r
    out = IonPyDict.from_value(IonType.STRUCT, {})
    for struct in args:
        for key, value in struct.items():
            out.add_item(str(key), value)
    return out


def _cardinality(args: list[Any], ctx: Context) -> Any:
    r = _guard("cardinality", args, ARGUMENT_TYPES["size"], ctx.mode)
    return r if r is not _OK else len(pv.elements(args[0]))


# ============================================================================ dates


def _utcnow(args: list[Any], ctx: Context) -> Any:
    if ctx.now is None:
        raise PartiQLEvaluationError("UTCNOW() has no current time in this context")
    return ctx.now


def _txid(args: list[Any], ctx: Context) -> Any:
    if ctx.transaction_id is None:
        raise PartiQLEvaluationError("TXID() is only available inside a transaction")
    return ctx.transaction_id


def _date_arg(v: Any) -> Any:
    return dt.date_to_timestamp(v) if isinstance(v, dt.Date) else v


def _dated(fname: str, fn: Callable[[], Any]) -> Any:
    """Run a date function on arguments of the right types. What it refuses then (a format
    pattern or text it cannot read, a date part it does not take, a result beyond Ion's
    years 1 to 9999) is a data error, raised in both modes: partiql-lang-kotlin's
    permissive mode, which QLDB ran, throws these too (the extended suite's *_invalid)."""
    try:
        return fn()
    except (dt.DateTimeError, ValueError, OverflowError) as e:
        # ValueError/OverflowError: what Python's datetime refuses (a year out of range)
        raise PartiQLEvaluationError(f"{fname}: {e}") from None


def _date_add(args: list[Any], ctx: Context) -> Any:
    part = str(args[0])
    r = _guard("date_add", args[1:], ARGUMENT_TYPES["date_add"][1:], ctx.mode)
    if r is not _OK:
        return r
    n, t = int(args[1]), _date_arg(args[2])
    return _dated("date_add", lambda: dt.date_add(part, n, t))


def _date_diff(args: list[Any], ctx: Context) -> Any:
    part = str(args[0])
    r = _guard("date_diff", args[1:], ARGUMENT_TYPES["date_diff"][1:], ctx.mode)
    if r is not _OK:
        return r
    a, b = args[1], args[2]
    if isinstance(a, dt.Time) or isinstance(b, dt.Time):
        if not (isinstance(a, dt.Time) and isinstance(b, dt.Time)):
            return pv.fail(ctx.mode, "date_diff: a TIME is compared only with a TIME")
        return _dated("date_diff", lambda: dt.time_diff(part, a, b))
    a, b = _date_arg(a), _date_arg(b)
    return _dated("date_diff", lambda: dt.date_diff(part, a, b))


def extract(part: str, value: Any, mode: str) -> Any:
    """EXTRACT(part FROM value) for a timestamp, date, time or interval."""
    value = sqltime.lift(value)
    r = _guard("extract", [value], [_TS | {"date", "time", "interval"}], mode)
    if r is not _OK:
        return r
    try:
        if is_interval(value):
            return intervals.extract(part.lower(), value)
        return dt.extract(part, value)
    except (dt.DateTimeError, intervals.IntervalError) as e:  # a field the type lacks
        return pv.fail(mode, f"extract: {e}")


def _extract(args: list[Any], ctx: Context) -> Any:
    return extract(str(args[0]), args[1], ctx.mode)


def _to_string(args: list[Any], ctx: Context) -> Any:
    r = _guard("to_string", args, ARGUMENT_TYPES["to_string"], ctx.mode)
    if r is not _OK:
        return r
    return _dated("to_string", lambda: dt.to_string(args[0], pv.text_of(args[1])))


def _to_timestamp(args: list[Any], ctx: Context) -> Any:
    r = _guard("to_timestamp", args, ARGUMENT_TYPES["to_timestamp"], ctx.mode)
    if r is not _OK:
        return r
    fmt = pv.text_of(args[1]) if len(args) > 1 else None
    return _dated("to_timestamp", lambda: dt.to_timestamp(pv.text_of(args[0]), fmt))


# ============================================================================ aggregates


class Accumulator(Protocol):
    """Folds the values of a group: `add` each (unknowns are skipped), then `result`."""

    def add(self, value: Any) -> None: ...

    def result(self) -> Any: ...


class _Base:
    __slots__ = ("failed", "mode", "seen")

    def __init__(self, mode: str = "coerce") -> None:
        self.mode = mode
        self.seen = False
        self.failed = False

    def _take(self, value: Any, allowed: frozenset[str] | None, name: str) -> bool:
        """Whether to fold `value` in (known, right type); a wrong type fails(mode)."""
        if self.failed or pv.is_unknown(value):
            return False
        if allowed is not None and pv.type_name(value) not in allowed:
            pv.fail(self.mode, f"{name} cannot take a {pv.type_name(value)}")
            self.failed = True
            return False
        self.seen = True
        return True


class _Count(_Base):
    __slots__ = ("n",)

    def __init__(self, mode: str = "coerce") -> None:
        super().__init__(mode)
        self.n = 0

    def add(self, value: Any) -> None:
        if not pv.is_unknown(value):
            self.n += 1

    def result(self) -> Any:
        return self.n


class _CountStar(_Count):
    __slots__ = ()

    def add(self, value: Any) -> None:
        self.n += 1


class _Sum(_Base):
    __slots__ = ("n", "total")

    def __init__(self, mode: str = "coerce") -> None:
        super().__init__(mode)
        self.total: Any = 0
        self.n = 0

    def add(self, value: Any) -> None:
        if self._take(value, _NUM, "sum"):
            self.n += 1
            self.total = self.total if self.n > 1 else _zero_like(value)
            self.total = pv.arithmetic("+", self.total, value, self.mode)
            if self.total is MISSING:
                self.failed = True

    def result(self) -> Any:
        if self.failed:
            return MISSING
        return self.total if self.seen else None


def _zero_like(v: Any) -> Any:
    t = pv.type_name(v)
    return 0 if t == "int" else (0.0 if t == "float" else Decimal(0))


class _Avg(_Sum):
    __slots__ = ()

    def result(self) -> Any:
        total = super().result()
        if total is None or total is MISSING:
            return total
        if isinstance(total, float):
            return total / self.n
        return pv.DIVISION_CONTEXT.divide(Decimal(total), Decimal(self.n))


class _Extreme(_Base):
    __slots__ = ("best", "sign")

    def __init__(self, mode: str = "coerce", sign: int = 1) -> None:
        super().__init__(mode)
        self.best: Any = None
        self.sign = sign

    def add(self, value: Any) -> None:
        if self._take(value, None, "min/max") and (
            self.best is None or pv.order_compare(value, self.best, True) * self.sign > 0
        ):
            self.best = value

    def result(self) -> Any:
        return self.best


class _Max(_Extreme):
    __slots__ = ()

    def __init__(self, mode: str = "coerce") -> None:
        super().__init__(mode, 1)


class _Min(_Extreme):
    __slots__ = ()

    def __init__(self, mode: str = "coerce") -> None:
        super().__init__(mode, -1)


class _Any(_Base):
    __slots__ = ("value",)
    _every = False

    def __init__(self, mode: str = "coerce") -> None:
        super().__init__(mode)
        self.value = self._every

    def add(self, value: Any) -> None:
        if self._take(value, frozenset({"bool"}), "any/some/every"):
            if self._every:
                self.value = self.value and bool(value)
            else:
                self.value = self.value or bool(value)

    def result(self) -> Any:
        if self.failed:
            return MISSING
        return self.value if self.seen else None


class _Every(_Any):
    __slots__ = ()
    _every = True


AGGREGATES: Mapping[str, Callable[..., Accumulator]] = MappingProxyType(
    {
        "count": _Count,
        "sum": _Sum,
        "avg": _Avg,
        "min": _Min,
        "max": _Max,
        "any": _Any,
        "some": _Any,
        "every": _Every,
    }
)


def count_star(mode: str = "coerce") -> Accumulator:
    """COUNT(*): counts every row, unknowns included."""
    return _CountStar(mode)


def aggregate(name: str, items: list[Any], context: Context) -> Any:
    """Fold `items` with the aggregate `name` (lower-case) in the context's mode."""
    acc = AGGREGATES[name](context.mode)
    for item in items:
        acc.add(item)
    return acc.result()


def _coll(name: str) -> Callable[[list[Any], Context], Any]:
    def impl(args: list[Any], ctx: Context) -> Any:
        quantifier = "all"
        if len(args) == 2:
            if not isinstance(args[0], Quantifier):
                raise PartiQLSemanticError(f"coll_{name} takes 1 argument, not 2")
            quantifier = str(args[0])
        coll = args[-1]
        r = _guard(f"coll_{name}", [coll], [_COLL], ctx.mode)
        if r is not _OK:
            return r
        items = [v for v in coll if not pv.is_unknown(v)]
        if quantifier == "distinct":
            seen: set[Any] = set()
            unique = []
            for v in items:
                k = pv.group_key(v)
                if k not in seen:
                    seen.add(k)
                    unique.append(v)
            items = unique
        return aggregate(name, items, ctx)

    return impl


# ============================================================================ the table


def _f(name: str, lo: int, hi: int | None, impl: Callable[[list[Any], Context], Any]) -> Function:
    return Function(name, lo, hi, impl)


_TABLE = [
    _f("char_length", 1, 1, _char_length),
    _f("character_length", 1, 1, _char_length),
    _f("octet_length", 1, 1, _octet_length),
    _f("bit_length", 1, 1, _bit_length),
    _f("lower", 1, 1, _lower),
    _f("upper", 1, 1, _upper),
    _f("substring", 2, 3, _substring),
    _f("position", 2, 2, _position),
    _f("text_replace", 3, 3, _text_replace),
    _f("overlay", 3, 4, _overlay),
    _f("trim", 1, 3, _trim),
    _f("abs", 1, 1, _abs),
    _f("mod", 2, 2, _mod),
    _f("ceil", 1, 1, _rounder("ceil", ROUND_CEILING, math.ceil)),
    _f("ceiling", 1, 1, _rounder("ceiling", ROUND_CEILING, math.ceil)),
    _f("floor", 1, 1, _rounder("floor", ROUND_FLOOR, math.floor)),
    _f("coalesce", 1, None, _coalesce),
    _f("nullif", 2, 2, _nullif),
    _f("exists", 1, 1, _exists),
    _f("size", 1, 1, _cardinality),
    _f("cardinality", 1, 1, _cardinality),
    _f("tupleunion", 0, None, _tupleunion),
    _f("utcnow", 0, 0, _utcnow),
    _f("txid", 0, 0, _txid),
    _f("to_string", 2, 2, _to_string),
    _f("to_timestamp", 1, 2, _to_timestamp),
    _f("date_add", 3, 3, _date_add),
    _f("date_diff", 3, 3, _date_diff),
    _f("extract", 2, 2, _extract),
] + [_f(f"coll_{n}", 1, 2, _coll(n)) for n in AGGREGATES]

SCALAR_FUNCTIONS: Mapping[str, Function] = MappingProxyType({f.name: f for f in _TABLE})


def check_call(name: str, arg_count: int, quantified: bool = False) -> None:
    """Raise PartiQLSemanticError for an unknown function or a wrong number of arguments
    (`quantified`: the call is `f(ALL|DISTINCT e)`, whose quantifier is not counted; only
    the COLL_ aggregates take one)."""
    f = SCALAR_FUNCTIONS.get(name.lower())
    if f is not None and f.name.startswith("coll_"):
        if quantified:
            arg_count -= 1
        if arg_count != 1:
            raise PartiQLSemanticError(f"{name} takes 1 argument, not {arg_count}")
        return
    if quantified:
        raise PartiQLSemanticError(f"{name} takes no ALL or DISTINCT")
    if f is None:
        raise PartiQLSemanticError(f"unknown function {name}")
    if arg_count < f.min_args or (f.max_args is not None and arg_count > f.max_args):
        expected = (
            f"{f.min_args}"
            if f.min_args == f.max_args
            else f"{f.min_args} to {f.max_args if f.max_args is not None else 'any'}"
        )
        raise PartiQLSemanticError(f"{name} takes {expected} arguments, not {arg_count}")


def call(name: str, args: list[Any], context: Context) -> Any:
    """Run the built-in `name` (checked with check_call) on evaluated arguments."""
    check_call(name, len(args), bool(args) and isinstance(args[0], Quantifier))
    return SCALAR_FUNCTIONS[name.lower()].impl([sqltime.lift(a) for a in args], context)

"""PartiQL 1.0's SQL datetime types in a ledger of Ion documents: how DATE, TIME and
INTERVAL values are stored as Ion, and the datetime arithmetic and predicates that mix them.

In memory a DATE is `datetimes.Date`, a TIME `datetimes.Time` (WITH TIME ZONE when its
offset is known), an INTERVAL `intervals.IntervalYM` / `IntervalDT`, and a TIMESTAMP an Ion
timestamp (WITH TIME ZONE when its offset is known; WITHOUT TIME ZONE is Ion's unknown offset
`-00:00`), so every timestamp a document holds already is a SQL TIMESTAMP.

Stored (`to_ion`, applied to every value an INSERT or UPDATE writes), in the spelling of the
PartiQL conformance suite's expected outputs, so a stored value round-trips exactly and is
hashed (Ion Hash) as the annotated Ion value it is:
- DATE '2021-02-28'          -> `$date::2021-02-28T` (an Ion timestamp at day precision)
- TIME '12:00:00.5+01:00'    -> `$time::{hour: 12, minute: 0, second: 0.5, offset: 60}`
  (`second` a decimal keeping the written digits, `offset` minutes east of UTC or null)
- INTERVAL '1-2' YEAR TO MONTH -> `$interval_ym::{sign: "+", years: 1, months: 2}`
- INTERVAL '-1 2' DAY TO HOUR  -> `$interval_dt::{sign: "-", days: 1, hours: 2, minutes: 0,
  seconds: 0, nanos: 0}`
`lift` reads these back (and the suite's other spellings: `$date::{year, month, day}`,
`$time::"04:05:06"`, `$time::{..., timezone_hour, timezone_minute}`, `$timestamp::{year, ...,
offset}`) into the in-memory values, so a stored DATE compares, sorts, groups and computes
as the DATE it was. A value with one of these annotations that does not have the expected
shape stays the Ion value it is.

Arithmetic (`arithmetic`): datetime ± interval (months clamp the day: Jan 31 + 1 month is
Feb 28; a TIME takes day-time intervals only and wraps around midnight), datetime −
datetime (a day-time interval between the two instants; no offset counts as UTC, as in
comparisons), interval ± interval of one kind, interval × number, interval / number
(truncated to whole months or nanoseconds). `overlaps` is SQL's OVERLAPS over two
two-element periods (start, end) or (start, interval). Type errors fail(mode); unknowns give
MISSING / NULL as every operator does. Pure functions, no clock reads.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyDict, IonPyTimestamp

from core.errors import PartiQLEvaluationError
from core.partiql import datetimes as dt
from core.partiql import intervals as iv
from core.partiql.data import MISSING
from core.partiql.datetimes import Date, Time
from core.partiql.intervals import IntervalDT, IntervalYM

SQL_ANNOTATIONS = frozenset({"$date", "$time", "$timestamp", "$interval_ym", "$interval_dt"})
_NANOS_PER_DAY = 86_400 * iv.NANOS_PER_SECOND
_PLAIN = (dict, list, str, int, float, bool, Decimal, type(None), bytes)


# ============================================================================ Ion


def to_ion(v: Any) -> Any:
    """The Ion value that stores a SQL datetime value (see the module docstring); any other
    value is returned as it is."""
    if isinstance(v, Date):
        ts = dt.date_to_timestamp(v)
        return IonPyTimestamp.from_value(IonType.TIMESTAMP, ts, ("$date",))
    if isinstance(v, Time):
        fields = {
            "hour": v.hour,
            "minute": v.minute,
            "second": Decimal(v.second),
            "offset": v.offset,
        }
        return IonPyDict.from_value(IonType.STRUCT, fields, ("$time",))
    if isinstance(v, (IntervalYM, IntervalDT)):
        note, fields = iv.to_ion_fields(v)
        return IonPyDict.from_value(IonType.STRUCT, fields, (note,))
    return v


def _annotation(v: Any) -> str | None:
    notes = getattr(v, "ion_annotations", None)
    if not notes:
        return None
    first = notes[0]
    text = getattr(first, "text", first)
    return text if text in SQL_ANNOTATIONS else None


def lift(v: Any) -> Any:
    """A stored (annotated Ion) DATE, TIME, TIMESTAMP or INTERVAL as its in-memory value;
    anything else unchanged."""
    if type(v) in _PLAIN:
        return v
    note = _annotation(v)
    if note is None:
        return v
    try:
        return _lift(note, v)
    except (ValueError, TypeError, KeyError, ArithmeticError):
        return v


def _fields(v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise TypeError("not a struct")
    return {str(getattr(k, "text", k)): x for k, x in v.items()}


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("not an int")
    return int(v)


def _offset(f: dict[str, Any]) -> int | None:
    if "offset" in f:
        off = f["offset"]
        return None if _null(off) else _int(off)
    th, tm = f.get("timezone_hour"), f.get("timezone_minute")
    if th is None or _null(th):
        return None
    return _int(th) * 60 + _int(tm if tm is not None and not _null(tm) else 0)


def _null(v: Any) -> bool:
    return v is None or getattr(v, "is_null", False) is True or type(v).__name__ == "IonPyNull"


def _lift(note: str, v: Any) -> Any:
    if note == "$date":
        if isinstance(v, datetime.datetime):
            return Date(v.year, v.month, v.day)
        f = _fields(v)
        return Date(_int(f["year"]), _int(f["month"]), _int(f["day"]))
    if note == "$time":
        if isinstance(v, str):
            return dt.parse_time(str(v))
        f = _fields(v)
        second = Decimal(f["second"]) if not isinstance(f["second"], float) else None
        if second is None:
            second = Decimal(repr(float(f["second"])))
        return Time(_int(f["hour"]), _int(f["minute"]), second, _offset(f))
    if note == "$timestamp":
        f = _fields(v)
        second = Decimal(str(f.get("second", 0)))
        whole = int(second)
        frac = second - whole
        return dt.make_timestamp(
            _int(f["year"]),
            _int(f["month"]),
            _int(f["day"]),
            _int(f.get("hour", 0)),
            _int(f.get("minute", 0)),
            whole,
            frac if frac or _exponent(frac) < 0 else None,
            _offset(f),
        )
    return iv.from_ion_fields(note, _fields(v))


# ============================================================================ helpers


def kind(v: Any) -> str | None:
    """ "date", "time", "timestamp", "interval_ym", "interval_dt" or None."""
    if isinstance(v, Date):
        return "date"
    if isinstance(v, Time):
        return "time"
    if isinstance(v, IntervalYM):
        return "interval_ym"
    if isinstance(v, IntervalDT):
        return "interval_dt"
    if isinstance(v, datetime.datetime):
        return "timestamp"
    return None


def is_temporal(v: Any) -> bool:
    """Whether `v` is (or stores) a datetime or interval value."""
    if type(v) in _PLAIN:
        return False
    return kind(lift(v)) is not None


def _exponent(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return exp if isinstance(exp, int) else 0


def _floor(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_FLOOR))


def _nanos_decimal(nanos: int) -> Decimal:
    """nanos as seconds, without trailing zero digits."""
    if nanos % iv.NANOS_PER_SECOND == 0:
        return Decimal(nanos // iv.NANOS_PER_SECOND)
    return Decimal(nanos).scaleb(-9).normalize()


def _shift_timestamp(t: datetime.datetime, months: int, nanos: int) -> Timestamp:
    """An Ion timestamp plus months and nanoseconds, its offset kept."""
    local = t.replace(tzinfo=None, microsecond=0)
    prec = dt.precision(t)
    try:
        if months:
            local = dt._add_months(local, months)
        frac = dt.fraction(t)
        if nanos:
            total = frac + _nanos_decimal(nanos)
            whole = _floor(total)
            frac = total - whole
            local = local + datetime.timedelta(seconds=whole)
            prec = TimestampPrecision.SECOND
        if not 1 <= local.year <= 9999:
            raise dt.DateTimeError("timestamp out of range")
    except OverflowError:
        raise dt.DateTimeError("timestamp out of range") from None
    if months and prec.value < TimestampPrecision.MONTH.value:
        prec = TimestampPrecision.MONTH
    return dt.make_timestamp(
        local.year,
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.second,
        frac if prec == TimestampPrecision.SECOND and _exponent(frac) < 0 else None,
        dt.offset_minutes(t),
        prec,
    )


def _shift(v: Any, interval: Any, sign: int, mode: str) -> Any:
    """A datetime plus (sign 1) or minus (-1) an interval."""
    months = sign * interval.months if isinstance(interval, IntervalYM) else 0
    nanos = sign * interval.nanos if isinstance(interval, IntervalDT) else 0
    if isinstance(v, Date):
        if nanos % _NANOS_PER_DAY == 0:
            base = datetime.datetime(v.year, v.month, v.day)
            if months:
                base = dt._add_months(base, months)
            day = base.date() + datetime.timedelta(days=nanos // _NANOS_PER_DAY)
            if not 1 <= day.year <= 9999:
                raise dt.DateTimeError("date out of range")
            return Date(day.year, day.month, day.day)
        return _shift_timestamp(dt.date_to_timestamp(v), months, nanos)
    if isinstance(v, Time):
        if months:
            return _type_error(mode, "a TIME takes day-time intervals only")
        total = v.hour * 3600 + v.minute * 60 + Decimal(v.second) + _nanos_decimal(nanos)
        total = total - 86400 * _floor(total / 86400)
        whole = _floor(total)
        second = Decimal(whole % 60) + (total - whole)
        return Time(whole // 3600, whole // 60 % 60, second, v.offset)
    return _shift_timestamp(v, months, nanos)


def _instant(v: Any) -> Fraction:
    return dt.instant(v)


def _difference(a: Any, b: Any, mode: str) -> Any:
    """a − b of two datetimes: a day-time interval."""
    ka, kb = kind(a), kind(b)
    if (ka == "time") != (kb == "time"):
        return _type_error(mode, f"cannot subtract {kb} from {ka}")
    key = dt.time_instant if ka == "time" else _instant
    diff = key(a) - key(b)
    return IntervalDT(int(diff * iv.NANOS_PER_SECOND))


def _type_error(mode: str, message: str) -> Any:
    if mode == "error":
        raise PartiQLEvaluationError(message)
    return MISSING


_DATETIME = frozenset({"date", "time", "timestamp"})
_INTERVAL = frozenset({"interval_ym", "interval_dt"})


def _number(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(int(v))
    if isinstance(v, Decimal):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(v) if v == v and v not in (float("inf"), float("-inf")) else None
    return None


def _is_unknown(v: Any) -> bool:
    return v is None or v is MISSING or _null(v)


def arithmetic(op: str, a: Any, b: Any, mode: str) -> Any:
    """`+ - * /` where an operand is a datetime or an interval (see the module docstring)."""
    a, b = lift(a), lift(b)
    ka, kb = kind(a), kind(b)
    shape = _shape(op, a, b, ka, kb)
    known = not (_is_unknown(a) or _is_unknown(b))
    if shape is None and (known or _known_bad(a, ka, op) or _known_bad(b, kb, op)):
        return _type_error(mode, f"{op} cannot combine these operands")
    if a is MISSING or b is MISSING:
        return MISSING
    if _is_unknown(a) or _is_unknown(b):
        return None
    try:
        return _apply(op, a, b, ka, kb, mode)
    except (dt.DateTimeError, iv.IntervalError) as exc:
        raise PartiQLEvaluationError(str(exc)) from None
    except ZeroDivisionError:
        raise PartiQLEvaluationError("division by zero") from None


def _known_bad(v: Any, k: str | None, op: str) -> bool:
    """A known operand that can never take part in `op` with a datetime or interval."""
    if _is_unknown(v) or k is not None:
        return False
    return not (op in ("*", "/") and _number(v) is not None)


def _shape(op: str, a: Any, b: Any, ka: str | None, kb: str | None) -> str | None:
    """Which operation `a op b` is, or None when the operand types do not combine."""
    if op == "+":
        if ka in _DATETIME and kb in _INTERVAL or ka in _INTERVAL and kb in _DATETIME:
            return "shift"
        if ka in _INTERVAL and ka == kb:
            return "sum"
    elif op == "-":
        if ka in _DATETIME and kb in _INTERVAL:
            return "shift"
        if ka in _DATETIME and kb in _DATETIME:
            return "diff"
        if ka in _INTERVAL and ka == kb:
            return "sum"
    elif op == "*":
        if ka in _INTERVAL and _number(b) is not None or kb in _INTERVAL and _number(a) is not None:
            return "scale"
    elif op == "/" and ka in _INTERVAL and _number(b) is not None:
        return "scale"
    return None


def _apply(op: str, a: Any, b: Any, ka: str | None, kb: str | None, mode: str) -> Any:
    shape = _shape(op, a, b, ka, kb)
    if shape == "shift":
        if ka in _INTERVAL:
            a, b = b, a
        return _shift(a, b, -1 if op == "-" else 1, mode)
    if shape == "diff":
        return _difference(a, b, mode)
    if shape == "sum":
        return iv.add(a, -b if op == "-" else b)
    if shape == "scale":
        interval, factor = (a, _number(b)) if ka in _INTERVAL else (b, _number(a))
        assert factor is not None
        return iv.scale(interval, factor, divide=op == "/")
    return _type_error(mode, f"{op} cannot combine {ka or 'a value'} and {kb or 'a value'}")


def negate(v: Any) -> Any:
    """-interval."""
    return -v


def interval_abs(v: Any) -> Any:
    return -v if (v.months if isinstance(v, IntervalYM) else v.nanos) < 0 else v


# ============================================================================ OVERLAPS


def _period(v: Any) -> list[Any] | None:
    if isinstance(v, (list, tuple)) and not _null(v):  # a list, a row or a bag of two
        items = list(v)
        return items if len(items) == 2 else None
    return None


def overlaps(a: Any, b: Any, mode: str) -> Any:
    """(S1, E1) OVERLAPS (S2, E2): SQL's rule; E may be an interval (the period is then
    S to S + E); a period whose end is earlier than its start is swapped."""
    pa, pb = _period(a), _period(b)
    shaped = (pa is not None or _is_unknown(a)) and (pb is not None or _is_unknown(b))
    if shaped and (a is MISSING or b is MISSING):
        return MISSING
    if pa is None or pb is None:
        if shaped:  # an unknown in place of a period
            return None
        return _type_error(mode, "OVERLAPS takes two periods of two values each")
    periods: list[tuple[Any, Any]] = []
    for start, end in (pa, pb):
        start, end = lift(start), lift(end)
        ks, ke = kind(start), kind(end)
        if (not _is_unknown(start) and ks not in _DATETIME) or (
            not _is_unknown(end) and ke not in _DATETIME | _INTERVAL
        ):
            return _type_error(mode, "OVERLAPS needs datetime periods")
        if ke in _INTERVAL:
            end = None if _is_unknown(start) else _shift(start, end, 1, mode)
        periods.append((None if _is_unknown(start) else start, None if _is_unknown(end) else end))
    known = [x for period in periods for x in period if x is not None]
    kinds = {"time" if kind(x) == "time" else "instant" for x in known}
    if len(kinds) > 1:
        return _type_error(mode, "OVERLAPS cannot compare a TIME with a date or timestamp")
    key = dt.time_instant if kinds == {"time"} else _instant
    ends: list[tuple[Fraction | None, Fraction | None]] = []
    for start, end in periods:
        s, e = (None if x is None else key(x) for x in (start, end))
        # SQL: swap when the end is earlier, or when only the end is known
        if (s is None and e is not None) or (s is not None and e is not None and s > e):
            s, e = e, s
        ends.append((s, e))
    (s1, e1), (s2, e2) = ends
    return _or3(
        _and3(_gt(s1, s2), _not3(_and3(_ge(s1, e2), _ge(e1, e2)))),
        _and3(_gt(s2, s1), _not3(_and3(_ge(s2, e1), _ge(e2, e1)))),
        _and3(_eq(s1, s2), _or3(_not3(_eq(e1, e2)), _eq(e1, e2))),
    )


# SQL's three-valued logic over possibly unknown (None) instants.
def _gt(a: Fraction | None, b: Fraction | None) -> bool | None:
    return None if a is None or b is None else a > b


def _ge(a: Fraction | None, b: Fraction | None) -> bool | None:
    return None if a is None or b is None else a >= b


def _eq(a: Fraction | None, b: Fraction | None) -> bool | None:
    return None if a is None or b is None else a == b


def _not3(a: bool | None) -> bool | None:
    return None if a is None else not a


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or3(*xs: bool | None) -> bool | None:
    if any(x is True for x in xs):
        return True
    return None if any(x is None for x in xs) else False

"""CAST, CAN_CAST and CAN_LOSSLESS_CAST between PartiQL types.

`cast(value, type_name, type_args, mode)` converts a value to a target type named in lower
case (the aliases of `_TARGETS`), with optional parameters (DECIMAL(p, s), VARCHAR(n),
CHAR(n)). The rules follow the PartiQL conformance suite's cast tests and the legacy
partiql-lang-kotlin behaviour QLDB ran:
- NULL casts to NULL and MISSING to MISSING for every target; a cast *to* MISSING or NULL
  is an error in every mode.
- bool -> number: 1/0; number -> bool: non-zero; text -> bool: 'true'/'false' (any case).
- number -> int rounds half to even (CAST(1.5 AS INT) is 2, CAST(0.5 AS INT) is 0, as
  partiql-lang-kotlin does) and must fit the target's range (SMALLINT 16 bits, INT4 32,
  INT/INTEGER/BIGINT/INT8 64): a number out of range is a data error, raised in both modes
  (the extended suite's int.ion); text -> int accepts an optional sign, leading
  zeros, and 0x/0b prefixes ('-0x0A' is -10), nothing else.
- DECIMAL(p, s) rounds half-up to scale s and needs the integer digits to fit p - s.
- anything scalar -> string/symbol uses its PartiQL text; timestamps their Ion text.
- text -> timestamp/date/time parses Ion or SQL literal syntax; collections convert among
  list, sexp and bag; a struct only casts to struct.
Any other combination is a type error: fail(mode, ...) (MISSING in coerce mode). A result
beyond core/limits.py's bounds on numbers ('1e99999' AS DECIMAL) raises ValueOutOfRangeError
in every mode, and no cast builds a number from the magnitude of its operand.
Invariant: `can_cast(v, t, a)` is True iff `cast(v, t, a, "error")` would not raise.
"""

from __future__ import annotations

import datetime
import math
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyBytes, IonPyList, IonPySymbol

from core.errors import PartiQLEvaluationError, ValueOutOfRangeError
from core.limits import check_number
from core.partiql import datetimes as dt
from core.partiql import intervals
from core.partiql import values as pv
from core.partiql.data import MISSING, Bag

_TARGETS = {
    "bool": "bool",
    "boolean": "bool",
    "smallint": "int16",
    "int2": "int16",
    "integer2": "int16",
    "int4": "int32",
    "integer4": "int32",
    "int": "int64",
    "integer": "int64",
    "bigint": "int64",
    "int8": "int64",
    "integer8": "int64",
    "decimal": "decimal",
    "numeric": "decimal",
    "dec": "decimal",
    "float": "float",
    "real": "float",
    "double": "float",
    "double precision": "float",
    "float4": "float",
    "float8": "float",
    "string": "string",
    "varchar": "varchar",
    "character varying": "varchar",
    "char": "char",
    "character": "char",
    "symbol": "symbol",
    "timestamp": "timestamp",
    "date": "date",
    "time": "time",
    "blob": "blob",
    "clob": "clob",
    "list": "list",
    "array": "list",
    "sexp": "sexp",
    "bag": "bag",
    "struct": "struct",
    "tuple": "struct",
}

_INT_TEXT = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|(\d+))")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?")


class _CastError(Exception):
    pass


class _RangeError(_CastError):
    """A number that does not fit the target integer: a data error, raised in both modes."""


def _int_range(bits: int, n: int) -> int:
    if not -(2 ** (bits - 1)) <= n < 2 ** (bits - 1):
        shown = str(n) if n.bit_length() <= 256 else f"an integer of {n.bit_length()} bits"
        raise _RangeError(f"{shown} does not fit a {bits}-bit integer")
    return n


def _round_int(d: Decimal) -> int:
    """A finite number rounded half to even to an integer (CAST(2.5 AS INT) is 2)."""
    return int(d.to_integral_value(rounding=ROUND_HALF_EVEN))


def _to_int(v: Any, t: str, bits: int) -> int:
    if t == "bool":
        return int(bool(v))
    if t == "int":
        return _int_range(bits, int(v))
    if t == "float":
        if not math.isfinite(v):
            raise _CastError(f"cannot cast {v} to an integer")
        if abs(v) >= 2.0**bits:  # never build the int of 1e308
            raise _RangeError(f"{v} does not fit a {bits}-bit integer")
        return _int_range(bits, _round_int(Decimal(v)))
    if t == "decimal":
        d = Decimal(v)
        if not d.is_finite():
            raise _CastError(f"cannot cast {d} to an integer")
        if d.adjusted() > bits:  # never build the int of 1E+999999999
            raise _RangeError(f"{d} does not fit a {bits}-bit integer")
        return _int_range(bits, _round_int(d))
    if t in pv.TEXT:
        m = _INT_TEXT.fullmatch(pv.text_of(v))
        if not m:
            raise _CastError(f"{pv.text_of(v)!r} is not an integer")
        sign = -1 if m[1] == "-" else 1
        digits = (m[2] or m[3] or m[4]).lstrip("0")
        if len(digits) > (bits if m[3] else bits // 2):  # never parse 5,000 digits
            raise _RangeError(f"{pv.text_of(v)[:40]!r} does not fit a {bits}-bit integer")
        if m[2]:
            n = int(m[2], 16)
        elif m[3]:
            n = int(m[3], 2)
        else:
            n = int(m[4])
        return _int_range(bits, sign * n)
    raise _CastError(f"cannot cast {t} to an integer")


def _to_float(v: Any, t: str) -> float:
    if t == "bool":
        return 1.0 if v else 0.0
    if t in pv.NUMERIC:
        return float(v)
    if t in pv.TEXT:
        text = pv.text_of(v).strip()
        if "_" in text:
            raise _CastError(f"{text!r} is not a number")
        try:
            return float(text)
        except ValueError:
            raise _CastError(f"{text!r} is not a number") from None
    raise _CastError(f"cannot cast {t} to float")


def _to_decimal(v: Any, t: str, args: tuple[int, ...]) -> Decimal:
    if t == "bool":
        d = Decimal(1 if v else 0)
    elif t == "int":
        d = Decimal(int(v))
    elif t == "float":
        if not math.isfinite(v):
            raise _CastError(f"cannot cast {v} to decimal")
        d = Decimal(repr(float(v)))
    elif t == "decimal":
        d = Decimal(v)
    elif t in pv.TEXT:
        text = pv.text_of(v).strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise _CastError(f"{text!r} is not a decimal")
        d = Decimal(text.replace("d", "e").replace("D", "e"))
    else:
        raise _CastError(f"cannot cast {t} to decimal")
    if args:
        precision = args[0]
        scale = args[1] if len(args) > 1 else 0
        try:
            d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise _CastError(f"{d} does not fit DECIMAL({precision}, {scale})") from None
        digits = d.as_tuple().digits
        int_digits = max(len(digits) - scale, 0) if d != 0 else 0
        if int_digits > precision - scale:
            raise _CastError(f"{d} does not fit DECIMAL({precision}, {scale})")
    return d


def _float_text(f: float) -> str:
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "+inf" if f > 0 else "-inf"
    return repr(f)


def _to_text(v: Any, t: str) -> str:
    if t == "bool":
        return "true" if v else "false"
    if t == "int":
        return str(int(v))
    if t == "float":
        return _float_text(float(v))
    if t == "decimal":
        return str(Decimal(v))
    if t in pv.TEXT:
        return pv.text_of(v)
    if t == "timestamp":
        return dt.timestamp_text(v)
    if t in ("date", "time"):
        return str(v)
    if t == "interval":
        return str(v.text())
    raise _CastError(f"cannot cast {t} to string")


def _to_timestamp(v: Any, t: str) -> Any:
    if t == "timestamp":
        return v
    if t == "date":
        return dt.date_to_timestamp(v)
    if t in pv.TEXT:
        text = pv.text_of(v).strip()
        try:
            return dt.to_timestamp(text)
        except dt.DateTimeError:
            pass
        try:
            return dt.parse_timestamp(text)
        except dt.DateTimeError:
            raise _CastError(f"{text!r} is not a timestamp") from None
    raise _CastError(f"cannot cast {t} to timestamp")


def _to_date(v: Any, t: str) -> dt.Date:
    if t == "date":
        return v  # type: ignore[no-any-return]
    if t == "timestamp":
        return dt.Date(v.year, v.month, v.day)
    if t in pv.TEXT:
        try:
            return dt.parse_date(pv.text_of(v))
        except dt.DateTimeError as e:
            raise _CastError(str(e)) from None
    raise _CastError(f"cannot cast {t} to date")


def _to_time(v: Any, t: str) -> dt.Time:
    if t == "time":
        return v  # type: ignore[no-any-return]
    if t == "timestamp":
        assert isinstance(v, datetime.datetime)
        return dt.Time(v.hour, v.minute, dt.seconds(v), dt.offset_minutes(v))
    if t in pv.TEXT:
        try:
            return dt.parse_time(pv.text_of(v))
        except dt.DateTimeError as e:
            raise _CastError(str(e)) from None
    raise _CastError(f"cannot cast {t} to time")


def _convert(v: Any, target: str, args: tuple[int, ...]) -> Any:
    """`v` converted to `target`, or _CastError (also for a number too large to convert:
    Python refuses int <-> text beyond 4,300 digits and float beyond about 1e308), or
    ValueOutOfRangeError for a number beyond core/limits.py's bounds ('1e99999' AS DECIMAL)."""
    try:
        result = _convert_unchecked(v, target, args)
    except (ValueError, OverflowError, ArithmeticError) as exc:
        raise _CastError(f"cannot cast {pv.type_name(v)} to {target}: {exc}") from exc
    check_number(result, "the result of CAST")
    return result


def _convert_unchecked(v: Any, target: str, args: tuple[int, ...]) -> Any:
    v = pv.lift(v)
    t = pv.type_name(v)
    if target.startswith("interval "):
        return _to_interval(v, t, target, args)
    if target == "bool":
        if t == "bool":
            return bool(v)
        if t in pv.NUMERIC:
            return v != 0
        if t in pv.TEXT:
            low = pv.text_of(v).strip().lower()
            if low in ("true", "false"):
                return low == "true"
        raise _CastError(f"cannot cast {t} to bool")
    if target.startswith("int"):
        return _to_int(v, t, int(target[3:]))
    if target == "float":
        return _to_float(v, t)
    if target == "decimal":
        return _to_decimal(v, t, args)
    if target in ("string", "varchar", "char"):
        text = _to_text(v, t)
        if args and target != "string":
            text = text[: args[0]]
            if target == "char":
                text = text.ljust(args[0])
        return text
    if target == "symbol":
        return IonPySymbol.from_value(IonType.SYMBOL, _to_text(v, t))
    if target == "timestamp":
        return _to_timestamp(v, t)
    if target == "date":
        return _to_date(v, t)
    if target == "time":
        return _to_time(v, t)
    if target in ("blob", "clob"):
        if t not in ("blob", "clob"):
            raise _CastError(f"cannot cast {t} to {target}")
        raw = bytes(v)
        return raw if target == "blob" else IonPyBytes.from_value(IonType.CLOB, raw)
    if target in ("list", "sexp", "bag"):
        if t not in ("list", "sexp", "bag"):
            raise _CastError(f"cannot cast {t} to {target}")
        items = list(v)
        if target == "list":
            return items
        if target == "bag":
            return Bag(items)
        return IonPyList.from_value(IonType.SEXP, items)
    if target == "struct":
        if t != "struct":
            raise _CastError(f"cannot cast {t} to struct")
        return v
    if target.startswith("interval "):
        return _to_interval(v, t, target, args)
    raise _CastError(f"unknown type {target}")


def _to_interval(v: Any, t: str, target: str, args: tuple[int, ...]) -> Any:
    """CAST(v AS INTERVAL start[(lead[, frac])] [TO end]): args are (lead or 0, frac or -1)."""
    words = target.split()
    start, end = words[1], (words[3] if len(words) > 3 else None)
    lead = args[0] if args and args[0] > 0 else None
    frac = args[1] if len(args) > 1 and args[1] >= 0 else None
    try:
        if t == "interval":
            return intervals.cast_interval(v, start, end, lead, frac)
        if t in pv.TEXT:
            return intervals.parse_interval(pv.text_of(v), start, end, lead, frac)
    except intervals.IntervalError as e:
        raise _CastError(str(e)) from None
    raise _CastError(f"cannot cast {t} to an interval")


def _target(type_name: str) -> str:
    name = " ".join(type_name.lower().split())
    if name in ("missing", "null"):
        raise PartiQLEvaluationError(f"cannot cast to {name.upper()}")
    if name.startswith("interval "):
        return name
    target = _TARGETS.get(name)
    if target is None:
        raise PartiQLEvaluationError(f"unknown type {type_name!r} in CAST")
    return target


def cast(
    value: Any,
    type_name: str,
    type_args: tuple[int, ...],
    kind_or_mode: str,
    mode: str | None = None,
) -> Any:
    """CAST(value AS type_name(type_args)); see the module docstring. Called as
    `cast(v, t, args, mode)` or `cast(v, t, args, kind, mode)` where kind is "cast",
    "can_cast" or "can_lossless_cast" (the last two give a bool)."""
    if mode is None:
        kind, mode = "cast", kind_or_mode
    else:
        kind = kind_or_mode
    if kind == "can_cast":
        return can_cast(value, type_name, type_args)
    if kind == "can_lossless_cast":
        return can_lossless_cast(value, type_name, type_args)
    target = _target(type_name)
    if value is MISSING:
        return MISSING
    if pv.is_null(value):
        return None
    try:
        return _convert(value, target, tuple(type_args))
    except _RangeError as e:
        raise PartiQLEvaluationError(str(e)) from None
    except _CastError as e:
        return pv.fail(mode, str(e))


def can_cast(value: Any, type_name: str, type_args: tuple[int, ...] = (), mode: str = "") -> bool:
    """CAN_CAST(value AS type): whether the cast succeeds (unknowns: True)."""
    try:
        target = _target(type_name)
    except PartiQLEvaluationError:
        return False
    if pv.is_unknown(value):
        return True
    try:
        _convert(value, target, tuple(type_args))
    except (_CastError, ValueOutOfRangeError):
        return False
    return True


_BACK = {
    "bool": "bool",
    "int": "bigint",
    "decimal": "decimal",
    "float": "float",
    "string": "string",
    "symbol": "symbol",
    "timestamp": "timestamp",
    "date": "date",
    "time": "time",
    "blob": "blob",
    "clob": "clob",
    "list": "list",
    "sexp": "sexp",
    "bag": "bag",
    "struct": "struct",
}


def can_lossless_cast(
    value: Any, type_name: str, type_args: tuple[int, ...] = (), mode: str = ""
) -> bool:
    """CAN_LOSSLESS_CAST(value AS type): the cast succeeds and casting back to the value's
    own type gives an equivalent value."""
    if pv.is_unknown(value):
        return True
    try:
        target = _target(type_name)
        converted = _convert(value, target, tuple(type_args))
        back = _convert(converted, _TARGETS[_BACK[pv.type_name(value)]], ())
    except (_CastError, PartiQLEvaluationError, ValueOutOfRangeError, KeyError):
        return False
    if pv.type_name(value) == "float" and pv.type_name(converted) == "decimal":
        return bool(Decimal(float(value)) == converted)
    return pv.equivalent(value, back)

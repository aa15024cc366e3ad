"""PartiQL 1.0's SQL INTERVAL values: year-month and day-time intervals.

Two immutable value classes, each one signed integer:
- `IntervalYM(months)`: `INTERVAL '1-2' YEAR TO MONTH` is 14 months;
- `IntervalDT(nanos)`: `INTERVAL '3 4:05:06.5' DAY TO SECOND` in nanoseconds (SQL's day-time
  intervals have at most 9 fraction digits, so nanoseconds are exact).
A value does not remember the qualifier it was written with (`INTERVAL '25' HOUR` equals
`INTERVAL '1 1' DAY TO HOUR`): as in SQL, the qualifier is the literal's type and bounds its
text, not the value. Intervals of one kind compare and add by their one number; the two
kinds never mix.

Literals (`parse_interval`) follow SQL-92 / PartiQL 1.0: an optional sign, then the fields
from the start field to the end field (`Y-M`, `D H:M:S.f`); the leading field has at most
`lead` digits (default 2), the others are bounded (hours < 24, minutes and seconds < 60),
seconds keep `frac` fraction digits (default 6; more are truncated, beyond 9 refused).

In Ion (how a stored document holds one, see sqltime.py) an interval is the annotated struct
the PartiQL conformance suite spells: `$interval_ym::{sign: "+", years: 1, months: 2}` and
`$interval_dt::{sign: "-", days: 0, hours: 4, minutes: 5, seconds: 6, nanos: 500000000}`;
`to_ion` writes every field normalised (months < 12, hours < 24, ...), `from_ion` reads any
subset of them (a missing field is 0, a missing sign "+"). Pure functions, no clock reads;
problems raise `IntervalError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

NANOS_PER_SECOND = 1_000_000_000
_UNIT_NANOS = {
    "day": 86_400 * NANOS_PER_SECOND,
    "hour": 3_600 * NANOS_PER_SECOND,
    "minute": 60 * NANOS_PER_SECOND,
    "second": NANOS_PER_SECOND,
}
YM_FIELDS = ("year", "month")
DT_FIELDS = ("day", "hour", "minute", "second")
FIELDS = YM_FIELDS + DT_FIELDS
# Bounds for a field that is not the leading one.
_FIELD_LIMIT = {"month": 12, "hour": 24, "minute": 60, "second": 60}


class IntervalError(ValueError):
    """An interval literal, cast or operation that has no valid result."""


@dataclass(frozen=True, slots=True)
class IntervalYM:
    """A year-month interval: a signed number of months."""

    months: int

    def fields(self) -> dict[str, int]:
        years, months = divmod(abs(self.months), 12)
        return {"year": years, "month": months}

    def __neg__(self) -> IntervalYM:
        return IntervalYM(-self.months)

    def text(self) -> str:
        """The literal's text: `-1-2` (CAST(... AS STRING); CAST back parses it)."""
        f = self.fields()
        return f"{'-' if self.months < 0 else ''}{f['year']}-{f['month']}"

    def __str__(self) -> str:
        return f"INTERVAL '{self.text()}' YEAR TO MONTH"


@dataclass(frozen=True, slots=True)
class IntervalDT:
    """A day-time interval: a signed number of nanoseconds."""

    nanos: int

    def fields(self) -> dict[str, int]:
        rest = abs(self.nanos)
        days, rest = divmod(rest, _UNIT_NANOS["day"])
        hours, rest = divmod(rest, _UNIT_NANOS["hour"])
        minutes, rest = divmod(rest, _UNIT_NANOS["minute"])
        seconds, nanos = divmod(rest, NANOS_PER_SECOND)
        return {"day": days, "hour": hours, "minute": minutes, "second": seconds, "nano": nanos}

    def seconds(self) -> Decimal:
        """The seconds field with its fraction (6.789 for ...:06.789), unsigned."""
        f = self.fields()
        return Decimal(f["second"]) + Decimal(f["nano"]).scaleb(-9).normalize()

    def __neg__(self) -> IntervalDT:
        return IntervalDT(-self.nanos)

    def text(self) -> str:
        """The literal's text: `-1 2:03:04.5` (CAST(... AS STRING); CAST back parses it)."""
        f = self.fields()
        sec = f"{f['second']:02d}" + (f".{f['nano']:09d}".rstrip("0") if f["nano"] else "")
        sign = "-" if self.nanos < 0 else ""
        return f"{sign}{f['day']} {f['hour']:02d}:{f['minute']:02d}:{sec}"

    def __str__(self) -> str:
        return f"INTERVAL '{self.text()}' DAY TO SECOND"


Interval = IntervalYM | IntervalDT


def is_interval(v: Any) -> bool:
    return isinstance(v, (IntervalYM, IntervalDT))


# ============================================================================ literals

_SEPARATORS = {("year", "month"): "-", ("day", "hour"): " "}
_NUM = r"(\d+)"
_SEC = r"(\d+)(?:\.(\d*))?"


def _pattern(fields: list[str]) -> re.Pattern[str]:
    parts = []
    for i, name in enumerate(fields):
        if i:
            parts.append(re.escape(_SEPARATORS.get((fields[i - 1], name), ":")))
        parts.append(_SEC if name == "second" else _NUM)
    return re.compile(r"\s*([+-])?" + "".join(parts) + r"\s*")


def qualifier_fields(start: str, end: str | None) -> list[str]:
    """The fields from `start` to `end` (`YEAR TO MONTH`: year, month); raises for an
    impossible qualifier (MONTH TO YEAR, YEAR TO DAY)."""
    start = start.lower()
    last = (end or start).lower()
    for group in (YM_FIELDS, DT_FIELDS):
        if start in group and last in group:
            i, j = group.index(start), group.index(last)
            if i <= j and not (end is not None and i == j):
                return list(group[i : j + 1])
    raise IntervalError(f"invalid interval qualifier {start.upper()} TO {last.upper()}")


def parse_interval(
    text: str,
    start: str,
    end: str | None = None,
    lead: int | None = None,
    frac: int | None = None,
) -> Interval:
    """`INTERVAL 'text' start[(lead[, frac])] [TO end[(frac)]]` as a value."""
    fields = qualifier_fields(start, end)
    m = _pattern(fields).fullmatch(text)
    if m is None:
        raise IntervalError(f"invalid interval literal {text!r} for {' TO '.join(fields)}")
    sign = -1 if m[1] == "-" else 1
    groups = list(m.groups()[1:])
    lead_digits = 2 if lead is None else lead
    frac_digits = 6 if frac is None else frac
    if not 1 <= lead_digits <= 9 or not 0 <= frac_digits <= 9:
        raise IntervalError("interval precision out of range")
    total = 0
    for i, name in enumerate(fields):
        digits = groups.pop(0)
        value = int(digits)
        if i == 0:
            if len(digits.lstrip("0")) > lead_digits:
                raise IntervalError(f"leading field {digits} has more than {lead_digits} digits")
        elif value >= _FIELD_LIMIT[name]:
            raise IntervalError(f"interval field {name} out of range: {digits}")
        if name == "second":
            fraction = groups.pop(0) or ""
            if len(fraction) > 9:
                raise IntervalError("interval seconds have at most 9 fraction digits")
            kept = fraction[:frac_digits].ljust(9, "0")
            total += value * NANOS_PER_SECOND + int(kept)
        elif name in YM_FIELDS:
            total += value * (12 if name == "year" else 1)
        else:
            total += value * _UNIT_NANOS[name]
    if fields[0] in YM_FIELDS:
        return IntervalYM(sign * total)
    return IntervalDT(sign * total)


def cast_interval(
    v: Interval, start: str, end: str | None, lead: int | None, frac: int | None
) -> Interval:
    """CAST(v AS INTERVAL start[(lead[, frac])] [TO end[(frac)]]): same kind only; seconds
    truncated to `frac` digits; the leading field must fit `lead` digits."""
    fields = qualifier_fields(start, end)
    lead_digits = 2 if lead is None else lead
    if isinstance(v, IntervalYM):
        if fields[0] not in YM_FIELDS:
            raise IntervalError("cannot cast a year-month interval to a day-time one")
        leading = abs(v.months) // (12 if fields[0] == "year" else 1)
        if len(str(leading)) > lead_digits:
            raise IntervalError("interval does not fit the leading field's precision")
        return v if fields[-1] == "month" else IntervalYM(int(v.months / 12) * 12)
    if fields[0] not in DT_FIELDS:
        raise IntervalError("cannot cast a day-time interval to a year-month one")
    leading = abs(v.nanos) // _UNIT_NANOS[fields[0]]
    if len(str(leading)) > lead_digits:
        raise IntervalError("interval does not fit the leading field's precision")
    unit = _UNIT_NANOS[fields[-1]]
    if fields[-1] == "second":
        unit = 10 ** (9 - (6 if frac is None else frac))
    magnitude = abs(v.nanos) // unit * unit
    return IntervalDT(magnitude if v.nanos >= 0 else -magnitude)


# ============================================================================ arithmetic


def add(a: Interval, b: Interval) -> Interval:
    if isinstance(a, IntervalYM) and isinstance(b, IntervalYM):
        return IntervalYM(a.months + b.months)
    if isinstance(a, IntervalDT) and isinstance(b, IntervalDT):
        return IntervalDT(a.nanos + b.nanos)
    raise IntervalError("cannot mix year-month and day-time intervals")


MAX_SCALED_YEARS = 99  # INTERVAL YEAR(2): the type of a product or quotient
MAX_SCALED_DAYS = 99  # INTERVAL DAY(2) TO SECOND(6)


def scale(a: Interval, factor: Decimal, divide: bool) -> Interval:
    """a * factor or a / factor: an interval of the default type (YEAR(2) TO MONTH, DAY(2)
    TO SECOND(6)), so truncated toward zero to whole months, or to microseconds (to
    nanoseconds when `a` has digits past the microsecond), and at most 99 years or 99 days
    long (IntervalError beyond)."""
    unit = a.months if isinstance(a, IntervalYM) else a.nanos
    if divide:
        if factor == 0:
            raise ZeroDivisionError("interval division by zero")
        exact = Decimal(unit) / factor
    else:
        exact = Decimal(unit) * factor
    if not exact.is_finite():
        raise IntervalError("interval arithmetic out of range")
    result = int(exact)  # truncates toward zero
    if isinstance(a, IntervalYM):
        if abs(result) // 12 > MAX_SCALED_YEARS:
            raise IntervalError("interval result beyond 99 years")
        return IntervalYM(result)
    step = 1 if a.nanos % 1000 else 1000
    result = abs(result) // step * step * (1 if result >= 0 else -1)
    if abs(result) // _UNIT_NANOS["day"] > MAX_SCALED_DAYS:
        raise IntervalError("interval result beyond 99 days")
    return IntervalDT(result)


def extract(part: str, v: Interval) -> Any:
    """EXTRACT(part FROM interval): the signed field (seconds with their fraction)."""
    sign = -1 if (v.months if isinstance(v, IntervalYM) else v.nanos) < 0 else 1
    if isinstance(v, IntervalYM):
        if part not in YM_FIELDS:
            raise IntervalError(f"cannot extract {part} from a year-month interval")
        return sign * v.fields()[part]
    if part == "second":
        return v.seconds() * sign
    if part not in DT_FIELDS:
        raise IntervalError(f"cannot extract {part} from a day-time interval")
    return sign * v.fields()[part]


# ============================================================================ Ion


def to_ion_fields(v: Interval) -> tuple[str, dict[str, Any]]:
    """(annotation, fields) of the Ion struct that stores `v` (normalised, every field)."""
    negative = (v.months if isinstance(v, IntervalYM) else v.nanos) < 0
    f = v.fields()
    if isinstance(v, IntervalYM):
        return "$interval_ym", {
            "sign": "-" if negative else "+",
            "years": f["year"],
            "months": f["month"],
        }
    return "$interval_dt", {
        "sign": "-" if negative else "+",
        "days": f["day"],
        "hours": f["hour"],
        "minutes": f["minute"],
        "seconds": f["second"],
        "nanos": f["nano"],
    }


_YM_KEYS = {"years": 12, "months": 1}
_DT_KEYS = {
    "days": _UNIT_NANOS["day"],
    "hours": _UNIT_NANOS["hour"],
    "minutes": _UNIT_NANOS["minute"],
    "seconds": NANOS_PER_SECOND,
    "nanos": 1,
}


def from_ion_fields(annotation: str, fields: dict[str, Any]) -> Interval:
    """The interval an `$interval_ym` / `$interval_dt` struct's fields denote."""
    keys = _YM_KEYS if annotation == "$interval_ym" else _DT_KEYS
    sign = fields.get("sign", "+")
    if sign not in ("+", "-") or set(fields) - set(keys) - {"sign"}:
        raise IntervalError(f"not an {annotation} struct: {fields!r}")
    total = 0
    for key, unit in keys.items():
        value = fields.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise IntervalError(f"{annotation} field {key} must be a non-negative int")
        total += int(value) * unit
    total = -total if sign == "-" else total
    return IntervalYM(total) if annotation == "$interval_ym" else IntervalDT(total)

"""PartiQL's date and time values and the QLDB date/time functions over Ion timestamps.

Ion has one temporal type, the timestamp (amazon-ion `Timestamp`, a `datetime` subclass that
also carries its precision and its fractional seconds as a Decimal). SQL's `DATE '...'` and
`TIME '...'` literals have no Ion counterpart, so they are the two small immutable classes
`Date` and `Time` below. This module knows how to read the fields of all three, how to order
them (an instant on the UTC time line: a timestamp or time without an offset counts as UTC,
a date as its midnight), and implements EXTRACT, DATE_ADD, DATE_DIFF, TO_STRING and
TO_TIMESTAMP as QLDB documented them (Java-style format symbols such as `yyyy-MM-dd'T'HH:mm`).

Invariants: every function here is pure (no clock reads) and returns Ion timestamps with a
sensible precision: DATE_ADD never lowers the precision and raises it to the unit it adds;
TO_TIMESTAMP's precision is that of the most precise field of its format. Problems are
reported by raising `DateTimeError`; callers turn that into their error/coerce behaviour.
"""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from amazon.ion.core import Timestamp, TimestampPrecision

from core.iontext import IonTextError, load_text

_EPOCH = datetime.datetime(1970, 1, 1)


class DateTimeError(ValueError):
    """A date/time operation cannot be carried out (bad text, format, part or range)."""


@dataclass(frozen=True, slots=True)
class Date:
    """A SQL DATE (`DATE '2023-05-15'`): a calendar day with no time and no offset."""

    year: int
    month: int
    day: int

    def __post_init__(self) -> None:
        datetime.date(self.year, self.month, self.day)  # validates

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True, slots=True)
class Time:
    """A SQL TIME (`TIME '10:30:00.5+05:00'`): `second` is a Decimal that keeps the written
    fraction digits; `offset` is minutes east of UTC, None for a time without a zone."""

    hour: int
    minute: int
    second: Decimal
    offset: int | None = None

    def __str__(self) -> str:
        whole = int(self.second)
        frac = format(self.second - whole, "f")[1:] if self.second != whole else ""
        text = f"{self.hour:02d}:{self.minute:02d}:{whole:02d}{frac}"
        return text + ("" if self.offset is None else _offset_text(self.offset, ":", True))


# ============================================================================ timestamps


def is_timestamp(v: Any) -> bool:
    return isinstance(v, datetime.datetime)


def precision(t: datetime.datetime) -> TimestampPrecision:
    p = getattr(t, "precision", None)
    return p if p is not None else TimestampPrecision.SECOND


def offset_minutes(t: datetime.datetime) -> int | None:
    """Minutes east of UTC, or None for an unknown offset (Ion's -00:00)."""
    off = t.utcoffset()
    return None if off is None else int(off.total_seconds()) // 60


def fraction(t: datetime.datetime) -> Decimal:
    """The fractional seconds of `t` as an exact Decimal (0 when it has none)."""
    if precision(t) != TimestampPrecision.SECOND:
        return Decimal(0)
    fs = getattr(t, "fractional_seconds", None)
    if fs is not None:
        return Decimal(fs)
    if t.microsecond == 0:
        return Decimal(0)
    fp = getattr(t, "fractional_precision", None)
    d = Decimal(t.microsecond).scaleb(-6)
    return d.quantize(Decimal(1).scaleb(-fp)) if fp is not None and fp < 6 else d


def seconds(t: datetime.datetime) -> Decimal:
    """The seconds field with its fraction (5.67 for ...:05.67)."""
    return Decimal(t.second) + fraction(t)


def make_timestamp(
    year: int,
    month: int = 1,
    day: int = 1,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    frac: Decimal | None = None,
    offset: int | None = None,
    prec: TimestampPrecision = TimestampPrecision.SECOND,
) -> Timestamp:
    """An Ion timestamp from local fields; `frac` (0 <= frac < 1) keeps its digits."""
    tz = None if offset is None else datetime.timezone(datetime.timedelta(minutes=offset))
    if prec != TimestampPrecision.SECOND:
        return Timestamp(year, month, day, hour, minute, second, 0, tz, precision=prec)
    if frac is None or frac.as_tuple().exponent == 0:
        return Timestamp(
            year, month, day, hour, minute, second, 0, tz, precision=prec, fractional_precision=0
        )
    # amazon-ion derives microsecond and fractional_precision from fractional_seconds
    # (giving either as well is refused unless they agree digit for digit)
    return Timestamp(
        year, month, day, hour, minute, second, None, tz, precision=prec, fractional_seconds=frac
    )


def _with(t: datetime.datetime, local: datetime.datetime, prec: TimestampPrecision) -> Timestamp:
    frac = fraction(t) if prec == TimestampPrecision.SECOND else None
    return make_timestamp(
        local.year,
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.second,
        frac,
        offset_minutes(t),
        prec,
    )


def instant(v: Any) -> Fraction:
    """Seconds since 1970-01-01T00:00Z of a timestamp or date (no offset: UTC)."""
    if isinstance(v, Date):
        return Fraction((datetime.datetime(v.year, v.month, v.day) - _EPOCH).days * 86400)
    assert isinstance(v, datetime.datetime)
    base = v.replace(microsecond=0, tzinfo=None) - datetime.timedelta(
        minutes=offset_minutes(v) or 0
    )
    delta = base - _EPOCH
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(fraction(v))


def time_instant(v: Time) -> Fraction:
    """Seconds since midnight UTC of a time (no offset: UTC)."""
    secs = Fraction(v.hour * 3600 + v.minute * 60) + Fraction(v.second)
    return secs - (v.offset or 0) * 60


# ============================================================================ SQL literals

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})?", re.IGNORECASE)


def _parse_offset(text: str | None) -> int | None:
    if text is None:
        return None
    if text.upper() == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    hh, mm = int(text[1:3]), int(text[4:6])
    if hh > 23 or mm > 59:
        raise DateTimeError(f"invalid time zone offset {text!r}")
    return sign * (hh * 60 + mm)


def parse_date(text: str) -> Date:
    """`DATE 'YYYY-MM-DD'`."""
    m = _DATE_RE.fullmatch(text.strip())
    if not m:
        raise DateTimeError(f"invalid DATE literal {text!r}")
    try:
        return Date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as e:
        raise DateTimeError(f"invalid DATE literal {text!r}: {e}") from None


def parse_time(text: str, precision: int | None = None, with_time_zone: bool | None = None) -> Time:
    """`TIME [(p)] [WITH | WITHOUT TIME ZONE] 'HH:MM:SS[.fff][+hh:mm]'`: p rounds the
    seconds (half up), without p digits past the ninth (nanoseconds) are dropped; WITH TIME
    ZONE needs an offset and WITHOUT TIME ZONE refuses one."""
    m = _TIME_RE.fullmatch(text.strip())
    if not m:
        raise DateTimeError(f"invalid TIME literal {text!r}")
    hour, minute, second = int(m[1]), int(m[2]), Decimal(m[3])
    if hour > 23 or minute > 59 or second >= 60:
        raise DateTimeError(f"invalid TIME literal {text!r}")
    if precision is not None:
        second = second.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    elif -second.as_tuple().exponent > 9:  # type: ignore[operator]
        second = second.quantize(Decimal(1).scaleb(-9), rounding=ROUND_DOWN)
    offset = _parse_offset(m[4])
    if with_time_zone is True and offset is None:
        raise DateTimeError("TIME WITH TIME ZONE needs an offset")
    if with_time_zone is False and offset is not None:
        raise DateTimeError("TIME WITHOUT TIME ZONE cannot have an offset")
    return Time(hour, minute, second, offset)


def parse_timestamp(
    text: str, with_time_zone: bool | None = None, precision: int | None = None
) -> Timestamp:
    """`TIMESTAMP [(p)] [WITH|WITHOUT TIME ZONE] 'YYYY-MM-DD HH:MM:SS[.fff][+hh:mm]'`. WITH
    TIME ZONE requires an offset, WITHOUT TIME ZONE forbids one; no offset gives an Ion
    timestamp with an unknown offset. Seconds as parse_time."""
    parts = text.strip().split(None, 1)
    if len(parts) == 1 and "T" in parts[0].upper():
        parts = re.split("[Tt]", parts[0], maxsplit=1)
    if len(parts) != 2:
        raise DateTimeError(f"invalid TIMESTAMP literal {text!r}")
    d = parse_date(parts[0])
    t = parse_time(parts[1], precision)
    if with_time_zone is True and t.offset is None:
        raise DateTimeError("TIMESTAMP WITH TIME ZONE needs an offset")
    if with_time_zone is False and t.offset is not None:
        raise DateTimeError("TIMESTAMP WITHOUT TIME ZONE cannot have an offset")
    whole = int(t.second)
    frac = t.second - whole
    return make_timestamp(
        d.year, d.month, d.day, t.hour, t.minute, whole, frac if frac else None, t.offset
    )


def date_to_timestamp(d: Date) -> Timestamp:
    return make_timestamp(d.year, d.month, d.day, prec=TimestampPrecision.DAY)


# ============================================================================ EXTRACT


def _split_offset(off: int) -> tuple[int, int]:
    sign = -1 if off < 0 else 1
    return sign * (abs(off) // 60), sign * (abs(off) % 60)


def extract(part: str, v: Any) -> Any:
    """EXTRACT(part FROM v) for a timestamp, Date or Time (ints, a Decimal for second)."""
    part = part.lower()
    if isinstance(v, Date):
        fields: dict[str, Any] = {"year": v.year, "month": v.month, "day": v.day}
    elif isinstance(v, Time):
        fields = {"hour": v.hour, "minute": v.minute, "second": v.second}
        if v.offset is not None:
            fields["timezone_hour"], fields["timezone_minute"] = _split_offset(v.offset)
    elif isinstance(v, datetime.datetime):
        th, tm = _split_offset(offset_minutes(v) or 0)
        fields = {
            "year": v.year,
            "month": v.month,
            "day": v.day,
            "hour": v.hour,
            "minute": v.minute,
            "second": seconds(v),
            "timezone_hour": th,
            "timezone_minute": tm,
        }
    else:
        raise DateTimeError("EXTRACT needs a timestamp, date or time")
    if part not in fields:
        raise DateTimeError(f"cannot extract {part} from this value")
    return fields[part]


# ============================================================================ DATE_ADD / DATE_DIFF

_PART_PRECISION = {
    "year": TimestampPrecision.YEAR,
    "month": TimestampPrecision.MONTH,
    "day": TimestampPrecision.DAY,
    "hour": TimestampPrecision.MINUTE,
    "minute": TimestampPrecision.MINUTE,
    "second": TimestampPrecision.SECOND,
}
_PART_SECONDS = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}


def _add_months(local: datetime.datetime, months: int) -> datetime.datetime:
    total = local.year * 12 + (local.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise DateTimeError("timestamp out of range")
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day)


def date_add(part: str, n: int, t: datetime.datetime) -> Timestamp:
    """DATE_ADD(part, n, t): t plus n units (months clamp the day: Jan 31 + 1 month = Feb 28)."""
    part = part.lower()
    if part not in _PART_PRECISION:
        raise DateTimeError(f"DATE_ADD does not support {part}")
    prec = max(precision(t), _PART_PRECISION[part], key=lambda p: p.value)
    local = t.replace(tzinfo=None, microsecond=0)
    try:
        if part == "year":
            local = _add_months(local, 12 * n)
        elif part == "month":
            local = _add_months(local, n)
        else:
            local = local + datetime.timedelta(seconds=n * _PART_SECONDS[part])
    except OverflowError:
        raise DateTimeError("timestamp out of range") from None
    return _with(t, local, prec)


def _utc_fields(t: datetime.datetime) -> tuple[datetime.datetime, Decimal]:
    local = t.replace(tzinfo=None, microsecond=0)
    return local - datetime.timedelta(minutes=offset_minutes(t) or 0), fraction(t)


def date_diff(part: str, a: datetime.datetime, b: datetime.datetime) -> int:
    """DATE_DIFF(part, a, b): whole units from a to b (negative when b is earlier)."""
    part = part.lower()
    if part in _PART_SECONDS:
        diff = instant(b) - instant(a)
        units = diff / _PART_SECONDS[part]
        return int(units)  # truncates toward zero
    if part not in ("year", "month"):
        raise DateTimeError(f"DATE_DIFF does not support {part}")
    ua, fa = _utc_fields(a)
    ub, fb = _utc_fields(b)
    months = (ub.year - ua.year) * 12 + (ub.month - ua.month)
    rest_a = (ua.day, ua.hour, ua.minute, ua.second, fa)
    rest_b = (ub.day, ub.hour, ub.minute, ub.second, fb)
    if months > 0 and rest_b < rest_a:
        months -= 1
    elif months < 0 and rest_b > rest_a:
        months += 1
    return int(months / 12) if part == "year" else months


def time_diff(part: str, a: Time, b: Time) -> int:
    """DATE_DIFF(part, a, b) of two SQL TIMEs: whole hours, minutes or seconds from a to b
    on the UTC time line (a time without an offset counts as UTC)."""
    part = part.lower()
    if part not in ("hour", "minute", "second"):
        raise DateTimeError(f"DATE_DIFF of two TIMEs does not support {part}")
    return int((time_instant(b) - time_instant(a)) / _PART_SECONDS[part])


# ============================================================================ formats

_MONTHS = [calendar.month_name[i] for i in range(1, 13)]
_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|([a-zA-Z])\1*|.", re.DOTALL)


def _tokens(fmt: str) -> list[tuple[bool, str]]:
    """(is_symbol, text) pieces of a format: symbols are runs of one letter."""
    out: list[tuple[bool, str]] = []
    for m in _TOKEN_RE.finditer(fmt):
        tok = m.group(0)
        if tok.startswith("'"):
            out.append((False, "'" if tok == "''" else tok[1:-1].replace("''", "'")))
        elif tok[0].isalpha():
            out.append((True, tok))
        else:
            out.append((False, tok))
    return out


def _offset_text(off: int, sep: str, with_minutes: bool | None) -> str:
    sign = "-" if off < 0 else "+"
    hh, mm = divmod(abs(off), 60)
    if with_minutes is None:  # minutes only when not zero
        return f"{sign}{hh:02d}" + (f"{sep}{mm:02d}" if mm else "")
    return f"{sign}{hh:02d}" + (f"{sep}{mm:02d}" if with_minutes else "")


def _format_offset(sym: str, off: int) -> str:
    n = len(sym)
    if sym[0] == "X" and off == 0:
        return "Z"
    if n == 1:
        return _offset_text(off, "", None)
    if n in (2, 4):
        return _offset_text(off, "", True)
    if n in (3, 5):
        return _offset_text(off, ":", True)
    raise DateTimeError(f"invalid format symbol {sym!r}")


def _fraction_digits(frac: Decimal, n: int) -> str:
    """The first n digits of a fraction (0 <= frac < 1), padded with zeros, never rounded."""
    digits = format(frac, "f").partition(".")[2]
    return (digits + "0" * n)[:n]


def to_string(t: datetime.datetime, fmt: str) -> str:
    """TO_STRING(t, fmt) with QLDB's timestamp format symbols."""
    out: list[str] = []
    off = offset_minutes(t) or 0
    for is_sym, tok in _tokens(fmt):
        if not is_sym:
            out.append(tok)
            continue
        c, n = tok[0], len(tok)
        if c == "y":
            out.append(f"{t.year % 100:02d}" if n == 2 else f"{t.year:0{n}d}")
        elif c == "M":
            if n <= 2:
                out.append(f"{t.month:0{n}d}")
            elif n == 3:
                out.append(_MONTHS[t.month - 1][:3])
            elif n == 4:
                out.append(_MONTHS[t.month - 1])
            else:
                out.append(_MONTHS[t.month - 1][0])
        elif c == "d":
            out.append(f"{t.day:0{n}d}")
        elif c == "a":
            out.append("AM" if t.hour < 12 else "PM")
        elif c == "h":
            out.append(f"{(t.hour % 12) or 12:0{n}d}")
        elif c == "H":
            out.append(f"{t.hour:0{n}d}")
        elif c == "m":
            out.append(f"{t.minute:0{n}d}")
        elif c == "s":
            out.append(f"{t.second:0{n}d}")
        elif c == "S":
            out.append(_fraction_digits(fraction(t), n))
        elif c == "n":
            out.append(str(int(fraction(t).scaleb(9))))
        elif c in "Xx":
            out.append(_format_offset(tok, off))
        else:
            raise DateTimeError(f"invalid format symbol {tok!r}")
    return "".join(out)


def _symbol_regex(tok: str) -> str:
    c, n = tok[0], len(tok)
    if c == "y":
        return r"(\d{2})" if n == 2 else (r"(\d{1,4})" if n == 1 else rf"(\d{{{n}}})")
    if c == "M" and n >= 3:
        return r"([A-Za-z]+)"
    if c in "MdhHms":
        return r"(\d{1,2})" if n == 1 else rf"(\d{{{n}}})"
    if c == "a":
        return r"([AaPp][Mm])"
    if c == "S":
        return rf"(\d{{{n}}})"
    if c == "n":
        return r"(\d+)"
    if c == "X":  # X writes a zero offset as Z; x always as digits
        return r"(Z|z|[+-]\d{2}(?::?\d{2})?)"
    if c == "x":
        return r"([+-]\d{2}(?::?\d{2})?)"
    raise DateTimeError(f"invalid format symbol {tok!r}")


def to_timestamp(text: str, fmt: str | None = None) -> Timestamp:
    """TO_TIMESTAMP(text [, fmt]): an Ion timestamp text, or text in the given format."""
    if fmt is None:
        try:  # user text: read without amazon-ion's C extension (core/iontext.py)
            v = load_text(text.strip())
        except IonTextError:
            raise DateTimeError(f"not an Ion timestamp: {text!r}") from None
        if not isinstance(v, datetime.datetime):
            raise DateTimeError(f"not an Ion timestamp: {text!r}")
        return _with(v, v.replace(tzinfo=None, microsecond=0), precision(v))
    toks = _tokens(fmt)
    pattern = "".join(_symbol_regex(tok) if sym else re.escape(tok) for sym, tok in toks)
    m = re.fullmatch(pattern, text, re.IGNORECASE)
    if not m:
        raise DateTimeError(f"{text!r} does not match the format {fmt!r}")
    syms = [tok for sym, tok in toks if sym]
    f: dict[str, Any] = {}
    for tok, val in zip(syms, m.groups(), strict=True):
        c = tok[0]
        if c == "y":
            year = int(val)
            f["year"] = (year + (1900 if year >= 70 else 2000)) if len(tok) == 2 else year
        elif c == "M":
            if len(tok) >= 3:
                names = [x.lower() for x in _MONTHS]
                short = [x[:3] for x in names]
                low = val.lower()
                if low in names:
                    f["month"] = names.index(low) + 1
                elif low in short:
                    f["month"] = short.index(low) + 1
                else:
                    raise DateTimeError(f"unknown month {val!r}")
            else:
                f["month"] = int(val)
        elif c == "d":
            f["day"] = int(val)
        elif c in "hH":
            f["hour"], f["h12"] = int(val), c == "h"
        elif c == "m":
            f["minute"] = int(val)
        elif c == "s":
            f["second"] = int(val)
        elif c == "S":
            f["frac"] = Decimal("0." + val)
        elif c == "n":
            nanos = int(val)
            if nanos >= 10**9:
                raise DateTimeError(f"nano-of-second {val} out of range")
            f["frac"] = Decimal(nanos).scaleb(-9)
        elif c == "a":
            f["pm"] = val.lower() == "pm"
        else:
            f["offset"] = 0 if val.upper() == "Z" else _parse_offset_loose(val)
    if "year" not in f:
        raise DateTimeError("a format must include the year")
    hour = f.get("hour", 0)
    if f.get("h12"):
        if not 1 <= hour <= 12:
            raise DateTimeError(f"clock-hour-of-am-pm {hour} out of range 1 to 12")
        hour = hour % 12 + (12 if f.get("pm") else 0)
    if "frac" in f or "second" in f:
        prec = TimestampPrecision.SECOND
    elif "minute" in f or "hour" in f:
        prec = TimestampPrecision.MINUTE
    elif "day" in f:
        prec = TimestampPrecision.DAY
    elif "month" in f:
        prec = TimestampPrecision.MONTH
    else:
        prec = TimestampPrecision.YEAR
    try:
        datetime.datetime(f["year"], f.get("month", 1), f.get("day", 1), hour, f.get("minute", 0))
        return make_timestamp(
            f["year"],
            f.get("month", 1),
            f.get("day", 1),
            hour,
            f.get("minute", 0),
            f.get("second", 0),
            f.get("frac"),
            f.get("offset"),
            prec,
        )
    except (ValueError, InvalidOperation) as e:
        raise DateTimeError(f"invalid timestamp {text!r}: {e}") from None


def _parse_offset_loose(text: str) -> int:
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hh = int(digits[:2])
    mm = int(digits[2:4]) if len(digits) > 2 else 0
    return sign * (hh * 60 + mm)


def timestamp_text(t: datetime.datetime) -> str:
    """The Ion text of a timestamp (for CAST(t AS STRING)), every fraction digit kept
    (amazon-ion's text writer cuts fractions after 9 digits): `2017T`, `2017-02T`,
    `2017-02-03`, `2017-02-03T04:05Z`, `...T04:05:06.1230-00:00` (unknown offset)."""
    prec = precision(t)
    text = f"{t.year:04d}"
    if prec == TimestampPrecision.YEAR:
        return text + "T"
    text += f"-{t.month:02d}"
    if prec == TimestampPrecision.MONTH:
        return text + "T"
    text += f"-{t.day:02d}"
    if prec == TimestampPrecision.DAY:
        return text
    text += f"T{t.hour:02d}:{t.minute:02d}"
    if prec == TimestampPrecision.SECOND:
        text += f":{t.second:02d}"
        frac = fraction(t)
        exponent = frac.as_tuple().exponent
        if isinstance(exponent, int) and exponent < 0:
            text += "." + format(frac, "f").partition(".")[2]
    off = offset_minutes(t)
    if off is None:
        return text + "-00:00"
    return text + ("Z" if off == 0 else _offset_text(off, ":", True))

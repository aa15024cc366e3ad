"""Hypothesis strategies for Ion values, as plain Python values and as amazon-ion values.

Public names other tests import:

- `ion_values()`: any Ion value: plain Python values (dict, list, tuple, str, int, float,
  bool, None, bytes, Decimal, datetime; not bytearray, which `simpleion.dumps` refuses)
  mixed with amazon-ion values (IonPy* with annotations, typed nulls, clobs, sexps, symbols,
  `Timestamp` of every precision with and without offsets and fractions of 0 to 9 digits,
  decimals with -0 and exponents).
- `documents()`: a dict of field name -> Ion value, the shape of a ledger document.

Helpers also exported: `plain_values()` (plain Python values only, no amazon-ion types),
`field_names()`, `decimals()`, `datetimes()`, `timestamps()`, `symbols()`.

Every value drawn survives `simpleion.dumps` then `simpleion.loads` (binary and text) as the
same Ion value: the ranges below stay inside what amazon-ion 0.15 round-trips exactly
(years 2-9998, offsets in whole minutes, fractions of at most 9 digits, decimals of at most
34 digits). Field names within one struct are distinct.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Literal, cast

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import (
    IonPyBool,
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyFloat,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.symbols import SymbolToken
from hypothesis import strategies as st

__all__ = [
    "datetimes",
    "decimals",
    "documents",
    "field_names",
    "ion_values",
    "plain_values",
    "symbols",
    "timestamps",
]

# Text: any Unicode scalar value (no lone surrogates), with Ion Hash's escape bytes likely.
_NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_CHARS = st.characters(exclude_categories=_NO_SURROGATES) | st.sampled_from(
    "\x0b\x0c\x0e\x00$'\"\\"
)
_TEXT = st.text(_CHARS, max_size=16)
# A top-level symbol `$ion_1_0` or annotation `$ion_symbol_table` is a directive to Ion readers,
# not a value: amazon-ion writes such symbols unquoted and they vanish on reading.
_SYMBOL_TEXT = _TEXT.filter(lambda text: not text.startswith("$ion"))

_MIN_DT = datetime(2, 1, 1)
_MAX_DT = datetime(9998, 12, 31, 23, 59, 59, 999999)


def field_names() -> st.SearchStrategy[str]:
    """Field names: short text, including "", escape bytes and text that looks like $sid."""
    return st.one_of(
        st.sampled_from(["id", "data", "metadata", "", "$0", "$10", "a b", "\x0b", "é"]),
        _TEXT,
    )


def _offsets() -> st.SearchStrategy[tzinfo | None]:
    whole_minutes = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
        lambda m: timezone(timedelta(minutes=m))
    )
    return st.one_of(st.none(), st.just(UTC), whole_minutes)


def datetimes() -> st.SearchStrategy[datetime]:
    """Plain datetimes, naive (unknown offset) or with a whole-minute offset."""
    offsets = cast(Any, _offsets())  # hypothesis types `timezones` too narrowly
    return st.datetimes(min_value=_MIN_DT, max_value=_MAX_DT, timezones=offsets)


def decimals() -> st.SearchStrategy[Decimal]:
    """Finite decimals of 1-34 digits, exponents -40..40, both signs (so -0 and 0E+3 too)."""
    digits = st.lists(st.integers(0, 9), min_size=1, max_size=34).map(tuple)
    return st.builds(
        lambda sign, ds, exp: Decimal((sign, ds, exp)),
        st.integers(0, 1),
        digits,
        st.integers(-40, 40),
    ) | st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("0.00"), Decimal("-0E-3")])


@st.composite
def timestamps(draw: st.DrawFn) -> Timestamp:
    """amazon-ion Timestamps of every precision; fractions of 0-9 digits (0.0 != 0)."""
    dt = draw(datetimes())
    precision = draw(st.sampled_from(list(TimestampPrecision) + [None]))
    if precision is None:  # stored by amazon-ion as a datetime with microseconds
        return Timestamp(
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, dt.tzinfo
        )
    fraction = None
    if precision == TimestampPrecision.SECOND:
        places = draw(st.integers(0, 9))
        coefficient = draw(st.integers(0, 10**places - 1))
        fraction = Decimal(coefficient).scaleb(-places)
    return Timestamp(
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        None,
        dt.tzinfo,
        precision=precision,
        fractional_seconds=fraction,
    )


def symbols() -> st.SearchStrategy[SymbolToken]:
    """Symbol tokens with text, and the symbol of unknown text $0."""
    return st.one_of(
        _SYMBOL_TEXT.map(lambda text: SymbolToken(text, None)),
        st.just(SymbolToken(None, 0)),
    )


_ANNOTATIONS = st.lists(
    st.one_of(_SYMBOL_TEXT, _SYMBOL_TEXT.map(lambda text: SymbolToken(text, None))), max_size=3
).map(tuple)

_INTS = st.one_of(st.integers(-300, 300), st.integers(), st.integers(-(2**130), 2**130))


def _same(value: Any) -> Any:
    return value


def _plain_scalars() -> st.SearchStrategy[Any]:
    # builds() makes this branch non-invertible (an identity .map() is optimized away).
    # Without it Hypothesis 6.170's shrinker lets text()/integers()/binary() claim
    # IonPyText/IonPyInt/IonPyBytes values (str/int/bytes subclasses) and crashes with a
    # KeyError instead of reporting the falsifying example.
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        _INTS,
        st.floats(),
        _TEXT,
        st.binary(max_size=16),
        decimals(),
        datetimes(),
    )
    return st.builds(_same, scalars)


def _typed_scalars() -> st.SearchStrategy[Any]:
    def typed(cls: Any, ion_type: IonType, values: st.SearchStrategy[Any]) -> Any:
        return st.builds(lambda v, a: cls.from_value(ion_type, v, a), values, _ANNOTATIONS)

    return st.one_of(
        typed(IonPyNull, IonType.NULL, st.none()),
        st.builds(
            lambda t, a: IonPyNull.from_value(t, None, a), st.sampled_from(IonType), _ANNOTATIONS
        ),
        typed(IonPyBool, IonType.BOOL, st.booleans()),
        typed(IonPyInt, IonType.INT, _INTS),
        typed(IonPyFloat, IonType.FLOAT, st.floats()),
        typed(IonPyDecimal, IonType.DECIMAL, decimals()),
        typed(IonPyTimestamp, IonType.TIMESTAMP, timestamps() | datetimes()),
        typed(IonPyText, IonType.STRING, _TEXT),
        typed(IonPyText, IonType.SYMBOL, _SYMBOL_TEXT),
        typed(IonPySymbol, IonType.SYMBOL, symbols()),
        typed(IonPyBytes, IonType.BLOB, st.binary(max_size=16)),
        typed(IonPyBytes, IonType.CLOB, st.binary(max_size=16)),
        timestamps(),
        symbols(),
    )


def _plain_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(field_names(), children, max_size=5),
    )


def _typed_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda t, v, a: IonPyList.from_value(t, v, a),
            st.sampled_from([IonType.LIST, IonType.SEXP]),
            st.lists(children, max_size=5),
            _ANNOTATIONS,
        ),
        st.builds(
            lambda v, a: IonPyDict.from_value(IonType.STRUCT, v, a),
            st.dictionaries(field_names(), children, max_size=5),
            _ANNOTATIONS,
        ),
    )


def plain_values() -> st.SearchStrategy[Any]:
    """Ion values built only from plain Python types (what an application passes in)."""
    return st.recursive(_plain_scalars(), _plain_containers, max_leaves=12)


def ion_values() -> st.SearchStrategy[Any]:
    """Any Ion value: plain Python values mixed with amazon-ion typed values, nested."""
    return st.recursive(
        st.one_of(_plain_scalars(), _typed_scalars()),
        lambda children: _plain_containers(children) | _typed_containers(children),
        max_leaves=12,
    )


def documents() -> st.SearchStrategy[dict[str, Any]]:
    """A ledger document: a dict of distinct field names to Ion values."""
    return st.dictionaries(field_names(), ion_values(), max_size=10)

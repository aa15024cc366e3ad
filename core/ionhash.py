"""Ion Hash (the amazon-ion/ion-hash specification) and QLDB's `dot` operator.

Every hash QLDB published is ``H(v)``: the Ion Hash of an Ion value with SHA-256
(shared/reference/qldb.md section 1). This module computes it for plain Python values and for
the values amazon-ion 0.15's `simpleion.loads` returns, without any Ion reader or writer:
it builds the Ion Hash serialization ``s(v)`` as bytes and hands it to the hash function once.

The serialization (B = 0x0B, E = 0x0E, escape = prefix each 0x0B, 0x0C, 0x0E with 0x0C):

- scalar:      ``B || TQ || escape(representation) || E`` where TQ is the Ion binary type
  descriptor (type nibble, low nibble zeroed except for bools, typed nulls (0x?F) and symbol
  SID 0 (0x71)) and the representation is the Ion binary encoding of the value without type
  descriptor and length. Floats always use 8 bytes (0e0 uses none; NaN is 0x7FF8000000000000);
  timestamps are in UTC with their offset (0xC0 = unknown, always for precision coarser
  than a minute); decimals and timestamp fractions keep their exponent (``1.0`` != ``1.00``,
  ``-0d0`` != ``0d0``); a fraction of zero with a non-negative exponent is dropped.
- list/sexp:   ``B || TQ || s(child_1) || ... || s(child_n) || E``
- struct:      ``B || 0xD0 || escape(concat(sort(H(s(name) || s(value))))) || E``: one hash per
  field (duplicate names included), sorted bytewise before escaping, so field order never
  changes the hash; field names serialize as symbols.
- annotated:   ``B || 0xE0 || s(annotation_1) || ... || s(annotation_n) || s(value) || E``

``ion_hash(v) = hash_fn(s(v))``. With the identity as `hash_fn`, the result is the exact byte
string of the conformance suite's ``digest::`` / ``final_digest::`` expectations.

Python values map to Ion as `simpleion.dumps` maps them: dict -> struct, list/tuple -> list,
str -> string, bool -> bool, int -> int, float -> float, None -> null, bytes/bytearray -> blob,
Decimal -> decimal, SymbolToken -> symbol, datetime -> timestamp. A plain `datetime` (or an
amazon-ion `Timestamp` whose precision is None) hashes as amazon-ion's C writer stores it:
second precision with a 6-digit fraction, offset from `utcoffset()` (None = unknown, -00:00).
amazon-ion's IonPy* values are hashed by their `ion_type` (IonPyText as SYMBOL is a symbol,
IonPyBytes as CLOB is a clob, IonPyList as SEXP is a sexp, IonPyNull is a typed null) with
their `ion_annotations`; an IonPyDict contributes every value of a repeated field name.

Invariants: the result depends only on the Ion value (never on dict order or on which Python
type carries it); anything that is not an Ion value (another type, a Decimal NaN/Infinity, a
str with lone surrogates, a symbol with unknown text other than $0, a timestamp whose UTC
form leaves years 1-9999) raises `IonHashTypeError` and nothing is hashed.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

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
    IonPyStdDict,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.symbols import SymbolToken

__all__ = ["IonHashTypeError", "dot", "ion_hash", "sha256"]

HashFn = Callable[[bytes], bytes]
_Ser = Callable[[Any, HashFn], bytes]

# Flipping the top bit of each byte turns a signed-byte comparison into an unsigned one.
_SIGN_FLIP = bytes(i ^ 0x80 for i in range(256))


def dot(a: bytes, b: bytes) -> bytes:
    """QLDB's hash join: SHA-256 of the two hashes, smaller first.

    Hashes are compared as signed bytes from the last byte to the first; an empty side
    returns the other. Commutative: dot(a, b) == dot(b, a).
    """
    if not a:
        return b
    if not b:
        return a
    ka = a[::-1].translate(_SIGN_FLIP)
    kb = b[::-1].translate(_SIGN_FLIP)
    if ka <= kb:
        return hashlib.sha256(a + b).digest()
    return hashlib.sha256(b + a).digest()


class IonHashTypeError(TypeError):
    """The value is not an Ion value this module can hash (unsupported type or value)."""


def sha256(data: bytes) -> bytes:
    """The default hash function: SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def ion_hash(value: object, hash_fn: HashFn = sha256) -> bytes:
    """The Ion Hash of `value` under `hash_fn` (SHA-256 digest by default).

    `hash_fn` is applied to the whole serialization and to each struct field's; pass the
    identity function to get the serialization itself. Raises `IonHashTypeError` for a value
    that is not an Ion value.
    """
    ser = _PLAIN.get(type(value))
    return hash_fn(ser(value, hash_fn) if ser is not None else _ser_slow(value, hash_fn))


# --- byte-level helpers ---------------------------------------------------------------------


def _escape(data: bytes) -> bytes:
    """Prefix every 0x0B, 0x0C and 0x0E with 0x0C (returns `data` itself when none occurs)."""
    if 0x0B in data or 0x0C in data or 0x0E in data:  # int membership is a fast memchr
        return (
            data.replace(b"\x0c", b"\x0c\x0c")
            .replace(b"\x0b", b"\x0c\x0b")
            .replace(b"\x0e", b"\x0c\x0e")
        )
    return data


def _varint(n: int) -> bytes:
    """Ion VarInt: like VarUInt, with a sign bit 0x40 in the first byte."""
    sign = 0x40 if n < 0 else 0
    m = -n if n < 0 else n
    if m < 0x40:
        return bytes((0x80 | sign | m,))
    out = [0x80 | (m & 0x7F)]
    m >>= 7
    while m >= 0x40:
        out.append(m & 0x7F)
        m >>= 7
    out.append(sign | m)
    return bytes(reversed(out))


def _int_field(magnitude: int, negative: bool) -> bytes:
    """Ion Int (sign and magnitude, minimal length): b"" for +0, 0x80 for -0."""
    if not magnitude:
        return b"\x80" if negative else b""
    data = magnitude.to_bytes(magnitude.bit_length() // 8 + 1, "big")
    if negative:
        return bytes((data[0] | 0x80,)) + data[1:]
    return data


# Exact arithmetic: scaleb under this context never rounds.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _coefficient(value: Decimal, exponent: int) -> int:
    """|coefficient| of a finite Decimal with the given exponent."""
    return abs(int(value.scaleb(-exponent, _EXACT)))


# --- scalars ----------------------------------------------------------------------------------

_NULL = b"\x0b\x0f\x0e"
_FALSE = b"\x0b\x10\x0e"
_TRUE = b"\x0b\x11\x0e"
_SYMBOL_ZERO = b"\x0b\x71\x0e"
_UNKNOWN_OFFSET = b"\xc0"
_NAN = struct.pack(">d", math.nan)
_PACK_DOUBLE = struct.Struct(">d").pack
_SMALL_INTS = tuple(
    b"\x0b\x20" + _escape(i.to_bytes((i.bit_length() + 7) // 8, "big")) + b"\x0e"
    for i in range(1024)
)


def _ser_none(value: None, h: HashFn) -> bytes:
    return _NULL


def _ser_bool(value: object, h: HashFn) -> bytes:
    return _TRUE if value else _FALSE


def _ser_int(value: int, h: HashFn) -> bytes:
    if 0 <= value < 1024:
        return _SMALL_INTS[value]
    if value < 0:
        mag = -value
        rep = mag.to_bytes((mag.bit_length() + 7) // 8, "big")
        return b"\x0b\x30" + _escape(rep) + b"\x0e"
    rep = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return b"\x0b\x20" + _escape(rep) + b"\x0e"


def _ser_float(value: float, h: HashFn) -> bytes:
    if value == 0.0 and math.copysign(1.0, value) > 0:
        return b"\x0b\x40\x0e"
    rep = _NAN if value != value else _PACK_DOUBLE(value)
    return b"\x0b\x40" + _escape(rep) + b"\x0e"


# Python parses at most 4,300 digits of text as an int; longer coefficients take as_tuple.
_PLAIN_DIGITS = 4000


def _decompose(value: Decimal) -> tuple[bool, int, int]:
    """(negative, |coefficient|, exponent) of a finite Decimal.

    `str` is plain notation (no "E") exactly when the exponent is <= 0 and the value is not
    tiny; the exponent is then minus the number of digits after the point. That parse is
    about twice as fast as `as_tuple`, which handles every other form (and coefficients too
    long for Python's int-from-text conversion).
    """
    text = str(value)
    if "E" not in text and value.is_finite() and len(text) <= _PLAIN_DIGITS:
        point = text.find(".")
        if point < 0:
            return text[0] == "-", abs(int(text)), 0
        return text[0] == "-", abs(int(text.replace(".", "", 1))), point + 1 - len(text)
    sign, _, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise IonHashTypeError(f"Ion decimals and timestamps cannot hold {value!r}")
    return bool(sign), _coefficient(value, exponent), exponent


def _ser_decimal(value: Decimal, h: HashFn) -> bytes:
    negative, coefficient, exponent = _decompose(value)
    if not negative and not exponent and not coefficient:
        return b"\x0b\x50\x0e"  # 0d0; every other zero keeps its sign and exponent
    rep = _varint(exponent) + _int_field(coefficient, negative)
    return b"\x0b\x50" + _escape(rep) + b"\x0e"


def _text_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IonHashTypeError(f"Ion text must be valid Unicode: {exc}") from None


def _ser_str(value: str, h: HashFn) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IonHashTypeError(f"Ion text must be valid Unicode: {exc}") from None
    if 0x0B in data or 0x0C in data or 0x0E in data:
        data = _escape(data)
    return b"".join((b"\x0b\x80", data, b"\x0e"))


def _ser_blob(value: bytes | bytearray, h: HashFn) -> bytes:
    return b"\x0b\xa0" + _escape(bytes(value)) + b"\x0e"


def _ser_symbol_text(text: str) -> bytes:
    return b"\x0b\x70" + _escape(_text_bytes(text)) + b"\x0e"


def _ser_symbol(value: object, h: HashFn = sha256) -> bytes:
    """A symbol value, annotation or field name: str, SymbolToken or None ($0)."""
    if isinstance(value, str):
        return _ser_symbol_text(value)
    if value is None:
        return _SYMBOL_ZERO
    if isinstance(value, SymbolToken):
        if value.text is not None:
            return _ser_symbol_text(value.text)
        if value.sid == 0:
            return _SYMBOL_ZERO
        raise IonHashTypeError(f"symbol with unknown text cannot be hashed: {value!r}")
    raise IonHashTypeError(f"a symbol must be a str or SymbolToken, not {type(value).__qualname__}")


# Field names of documents and journal records repeat: cache their serialization (bounded).
_NAMES: dict[object, bytes] = {None: _SYMBOL_ZERO}
_NAMES_MAX = 4096


def _field_name(name: object) -> bytes:
    ser = _ser_symbol(name)
    if type(name) is str and len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = ser
    return ser


# --- timestamps -------------------------------------------------------------------------------


_MINUTE = int(TimestampPrecision.MINUTE)
_SECOND = int(TimestampPrecision.SECOND)


def _offset_minutes(offset: timedelta) -> int:
    """Whole minutes of a UTC offset, truncated toward zero as amazon-ion's writer does."""
    seconds = offset.days * 86400 + offset.seconds
    return seconds // 60 if seconds >= 0 else -(-seconds // 60)


def _utc(value: datetime) -> tuple[bytes, datetime]:
    """(offset field, the wall-clock fields in UTC) of a timestamp of minute precision or finer."""
    offset = value.utcoffset()
    if offset is None:
        return _UNKNOWN_OFFSET, value
    if not offset:
        return b"\x80", value
    minutes = _offset_minutes(offset)
    if not minutes:
        return b"\x80", value
    try:
        utc = value.replace(tzinfo=None) - timedelta(minutes=minutes)
    except OverflowError:
        raise IonHashTypeError(f"timestamp outside years 1-9999 in UTC: {value!r}") from None
    return _varint(minutes), utc


def _year(year: int) -> bytes:
    return bytes((0x80 | year,)) if year < 0x80 else bytes((year >> 7, 0x80 | (year & 0x7F)))


def _minute_fields(u: datetime) -> bytes:
    """VarUInt year, month, day, hour and minute (the year takes 1 or 2 bytes below 16384)."""
    year = u.year
    if year < 0x80:
        return bytes((0x80 | year, 0x80 | u.month, 0x80 | u.day, 0x80 | u.hour, 0x80 | u.minute))
    return bytes(
        (
            year >> 7,
            0x80 | (year & 0x7F),
            0x80 | u.month,
            0x80 | u.day,
            0x80 | u.hour,
            0x80 | u.minute,
        )
    )


def _ser_datetime(value: datetime, h: HashFn) -> bytes:
    """A datetime as amazon-ion stores it: second precision and a 6-digit fraction."""
    off, u = _utc(value)
    rep = b"".join(
        (
            off,
            _minute_fields(u),
            bytes((0x80 | u.second, 0xC6)),  # seconds, fraction exponent -6
            _int_field(u.microsecond, False),
        )
    )
    return b"\x0b\x60" + _escape(rep) + b"\x0e"


# Fractions repeat (there are only 1000 millisecond ones): cache their encoding (bounded).
_FRACTIONS: dict[str, bytes] = {}
_FRACTIONS_MAX = 4096


def _fraction(value: Any) -> bytes:
    """Exponent and coefficient of a Timestamp's fractional seconds (b"" when there is none)."""
    fraction = getattr(value, "fractional_seconds", None)
    if fraction is None:  # only a Timestamp built by __new__ alone; use its other fields
        digits = getattr(value, "fractional_precision", None)
        digits = 6 if digits is None else digits
        if not digits:
            return b""
        return _varint(-digits) + _int_field(value.microsecond // 10 ** (6 - digits), False)
    if not isinstance(fraction, Decimal):
        raise IonHashTypeError(f"fractional_seconds must be a Decimal: {fraction!r}")
    key = str(fraction)  # str is injective on Decimals: "0.226" != "0.2260"
    rep = _FRACTIONS.get(key)
    if rep is None:
        _, coefficient, exponent = _decompose(fraction)  # a sign on zero means nothing here
        if coefficient and fraction.adjusted() >= 0:  # >= 1, found without 10**-exponent
            raise IonHashTypeError(f"fractional_seconds must be below 1: {fraction!r}")
        rep = b"" if exponent >= 0 else _varint(exponent) + _int_field(coefficient, False)
        if len(_FRACTIONS) < _FRACTIONS_MAX:
            _FRACTIONS[key] = rep
    return rep


def _ser_timestamp(value: Any, h: HashFn) -> bytes:
    """An amazon-ion Timestamp: its precision, offset and fraction are part of the hash."""
    precision = value.precision
    if precision is None:  # amazon-ion's writer stores it as it stores a datetime
        return _ser_datetime(value, h)
    if precision >= _MINUTE:
        off, u = _utc(value)
        if precision >= _SECOND:
            rep = b"".join((off, _minute_fields(u), bytes((0x80 | u.second,)), _fraction(value)))
        else:
            rep = off + _minute_fields(u)
    else:  # no offset below minute precision: the local fields, offset unknown
        rep = _UNKNOWN_OFFSET + _year(value.year)
        if precision >= TimestampPrecision.MONTH:
            rep += bytes((0x80 | value.month,))
            if precision >= TimestampPrecision.DAY:
                rep += bytes((0x80 | value.day,))
    return b"\x0b\x60" + _escape(rep) + b"\x0e"


# --- containers -------------------------------------------------------------------------------


def _ser_fields(items: Iterable[tuple[object, object]], h: HashFn) -> bytes:
    """A struct from its (name, value) pairs; the hot loop of document hashing."""
    names = _NAMES
    plain = _PLAIN
    new_sha256 = hashlib.sha256 if h is sha256 else None  # skip a Python call per field
    hashes: list[bytes] = []
    append = hashes.append
    for name, field_value in items:
        ser_name = names.get(name)
        if ser_name is None:
            ser_name = _field_name(name)
        kind = type(field_value)
        if kind is str:  # inlined _ser_str: strings are most of a document
            try:
                data = field_value.encode("utf-8")  # type: ignore[attr-defined]
            except UnicodeEncodeError as exc:
                raise IonHashTypeError(f"Ion text must be valid Unicode: {exc}") from None
            if 0x0B in data or 0x0C in data or 0x0E in data:
                data = _escape(data)
            field = b"".join((ser_name, b"\x0b\x80", data, b"\x0e"))
        else:
            ser = plain.get(kind)
            field = ser_name + (
                ser(field_value, h) if ser is not None else _ser_slow(field_value, h)
            )
        append(new_sha256(field).digest() if new_sha256 is not None else h(field))
    hashes.sort()
    body = b"".join(hashes)
    if 0x0B in body or 0x0C in body or 0x0E in body:
        body = _escape(body)
    return b"".join((b"\x0b\xd0", body, b"\x0e"))


def _ser_dict(value: dict[object, object], h: HashFn) -> bytes:
    return _ser_fields(value.items(), h)


def _ser_sequence(value: Iterable[object], h: HashFn, tq: bytes = b"\x0b\xb0") -> bytes:
    plain = _PLAIN
    parts = [tq]
    for child in value:
        ser = plain.get(type(child))
        parts.append(ser(child, h) if ser is not None else _ser_slow(child, h))
    parts.append(b"\x0e")
    return b"".join(parts)


# --- amazon-ion values ------------------------------------------------------------------------


def _ion_struct(value: Any, h: HashFn) -> bytes:
    if isinstance(value, IonPyDict):
        return _ser_fields(value.iteritems(), h)
    if isinstance(value, dict):
        return _ser_fields(value.items(), h)
    raise IonHashTypeError(f"a STRUCT must be a dict or IonPyDict, not {type(value).__qualname__}")


def _checked(ser: _Ser, *kinds: type) -> _Ser:
    """`ser` for an IonPy value whose Python base type is one of `kinds`."""

    def check(value: Any, h: HashFn) -> bytes:
        if not isinstance(value, kinds):
            raise IonHashTypeError(
                f"{type(value).__qualname__} cannot carry Ion type {value.ion_type.name}"
            )
        return ser(value, h)

    return check


_BY_ION_TYPE: dict[IonType, _Ser] = {
    IonType.NULL: _ser_none,
    IonType.BOOL: _checked(_ser_bool, int),
    IonType.INT: _checked(lambda v, h: _ser_int(int(v), h), int),
    IonType.FLOAT: _checked(lambda v, h: _ser_float(float(v), h), float),
    IonType.DECIMAL: _checked(_ser_decimal, Decimal),
    IonType.TIMESTAMP: _checked(
        lambda v, h: _ser_timestamp(v, h) if isinstance(v, Timestamp) else _ser_datetime(v, h),
        datetime,
    ),
    IonType.SYMBOL: _checked(_ser_symbol, str, SymbolToken),
    IonType.STRING: _checked(_ser_str, str),
    IonType.CLOB: _checked(lambda v, h: b"\x0b\x90" + _escape(bytes(v)) + b"\x0e", bytes),
    IonType.BLOB: _checked(_ser_blob, bytes, bytearray),
    IonType.LIST: _checked(_ser_sequence, list, tuple),
    IonType.SEXP: _checked(lambda v, h: _ser_sequence(v, h, b"\x0b\xc0"), list, tuple),
    IonType.STRUCT: _ion_struct,
}

_TQ: dict[IonType, int] = {
    IonType.NULL: 0x00,
    IonType.BOOL: 0x10,
    IonType.INT: 0x20,
    IonType.FLOAT: 0x40,
    IonType.DECIMAL: 0x50,
    IonType.TIMESTAMP: 0x60,
    IonType.SYMBOL: 0x70,
    IonType.STRING: 0x80,
    IonType.CLOB: 0x90,
    IonType.BLOB: 0xA0,
    IonType.LIST: 0xB0,
    IonType.SEXP: 0xC0,
    IonType.STRUCT: 0xD0,
}
_TYPED_NULLS: dict[IonType, bytes] = {t: bytes((0x0B, tq | 0x0F, 0x0E)) for t, tq in _TQ.items()}


def _ser_ionpy(value: Any, h: HashFn) -> bytes:
    """A value carrying `ion_type` and `ion_annotations` (amazon-ion's IonPy* classes)."""
    ion_type = value.ion_type
    table: dict[IonType, Any] = _TYPED_NULLS if isinstance(value, IonPyNull) else _BY_ION_TYPE
    found = table.get(ion_type) if isinstance(ion_type, IonType) else None
    if found is None:
        raise IonHashTypeError(f"unknown Ion type {ion_type!r} on {type(value).__qualname__}")
    core: bytes = found if type(found) is bytes else found(value, h)
    annotations = value.ion_annotations
    if not annotations:
        return core
    if isinstance(annotations, str | SymbolToken):
        raise IonHashTypeError(f"ion_annotations must be a sequence, not {annotations!r}")
    return b"".join((b"\x0b\xe0", *(_ser_symbol(a) for a in annotations), core, b"\x0e"))


def _ser_slow(value: object, h: HashFn) -> bytes:
    """Values whose exact type is not in `_PLAIN`: IonPy values and subclasses of plain types."""
    if hasattr(value, "ion_type") and hasattr(value, "ion_annotations"):
        return _ser_ionpy(value, h)
    if isinstance(value, Timestamp):
        return _ser_timestamp(value, h)
    if isinstance(value, datetime):
        return _ser_datetime(value, h)
    if isinstance(value, SymbolToken):  # before tuple: SymbolToken is a namedtuple
        return _ser_symbol(value)
    if isinstance(value, dict):
        return _ser_dict(value, h)
    if isinstance(value, list | tuple):
        return _ser_sequence(value, h)
    if isinstance(value, str):
        return _ser_str(value, h)
    if isinstance(value, int):  # bool itself is dispatched exactly; IntEnum etc. are ints
        return _ser_int(int(value), h)
    if isinstance(value, float):
        return _ser_float(float(value), h)
    if isinstance(value, Decimal):
        return _ser_decimal(value, h)
    if isinstance(value, bytes | bytearray):
        return _ser_blob(value, h)
    raise IonHashTypeError(f"cannot Ion-hash a value of type {type(value).__qualname__}")


# Dispatch on the exact type; everything else goes through `_ser_slow`.
_PLAIN: dict[type, _Ser] = {
    dict: _ser_dict,
    str: _ser_str,
    int: _ser_int,
    bool: _ser_bool,
    type(None): _ser_none,
    list: _ser_sequence,
    tuple: _ser_sequence,
    float: _ser_float,
    Decimal: _ser_decimal,
    bytes: _ser_blob,
    bytearray: _ser_blob,
    datetime: _ser_datetime,
    Timestamp: _ser_timestamp,
    SymbolToken: _ser_symbol,
}
for _ionpy in (
    IonPyBool,
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyFloat,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPyStdDict,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
):
    _PLAIN[_ionpy] = _ser_ionpy

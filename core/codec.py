"""Lossless msgpack encoding of Ion values, and the checksummed framing of storage records.

Theory of operation
-------------------
Every document, revision and block the ledger stores goes through `pack`, so the common case
(plain Python dicts, lists, str, int, float, bool, None, bytes) takes msgpack's native C path.
Everything msgpack cannot express natively (Ion decimals, timestamps with their precision,
symbols, typed nulls, clobs, s-expressions, structs with repeated field names, annotations,
integers beyond 64 bits) is handed to a `default=` hook and written as a msgpack ext value.

`pack` first walks the containers of the value (a cheap Python loop) to check that every
plain struct's field names are `str`: msgpack would otherwise happily store int or bytes
keys that are not Ion. Values of an unsupported type raise `CodecTypeError`; values of a
supported type that Ion or this format cannot hold (a NaN decimal, a time zone offset with
seconds, nesting deeper than msgpack's limit of about 500 levels) raise `CodecValueError`.

Decoding returns plain Python values wherever that loses nothing in the Ion data model
(dict, list, str, int, float, bool, None, bytes, decimal.Decimal), and amazon-ion 0.15
`simple_types` objects where it would: `Timestamp` (always, so the precision survives),
`IonPySymbol`, `IonPyNull` with its `ion_type`, `IonPyBytes` CLOB, `IonPyList` SEXP,
`IonPyDict` for structs with repeated field names (or the `$0` field name), and annotated
`IonPy*` values whose `ion_annotations` are `SymbolToken`s.

Invariants (tested in tests/test_codec.py):
- `simpleion.dumps(unpack(pack(v))) == simpleion.dumps(v)` for every Ion value `v`, and
  struct field order is preserved.
- `pack(unpack(pack(v))) == pack(v)`: the encoding is canonical after one round trip.
  (A plain `datetime` packs as the equivalent Ion timestamp, a `tuple` as a list, an
  un-annotated `IonPyInt` as an int, and so on, so `pack(v)` itself already is canonical.)
- `decode(encode(v))` round-trips, and any single-byte change of an encoded record, or any
  truncation of it, raises `CorruptRecordError` instead of returning a value.

Ext types (part of the on-disk format: never renumber, only add)
-----------------------------------------------------------------
==== ============ ==========================================================================
code name         payload
==== ============ ==========================================================================
1    BIGINT       int outside msgpack's [-2**63, 2**64): big-endian two's complement, minimal
                  length
2    DECIMAL      ASCII `str(decimal.Decimal)` (exact: sign, digits, exponent, -0); finite only
3    TIMESTAMP    struct ">B" precision (0 year, 1 month, 2 day, 3 minute, 4 second), then
                  year ">H"; month ">B"; day ">B"; hour, minute ">BB"; second ">B"; offset
                  ">h" in minutes (-32768 = unknown offset, -00:00); each field present only
                  from the precision that has it (the offset from minute on), then for
                  second precision the fractional-second digits in ASCII (empty = none;
                  "000" is three significant zero digits). Fields are local time.
4    SYMBOL       UTF-8 symbol text; the single byte 0xFF (never valid UTF-8) means `$0`
5    TYPED_NULL   one byte: the Ion 1.0 binary type code (high nibble of the type
                  descriptor): 1 bool, 2 int, 4 float, 5 decimal, 6 timestamp, 7 symbol,
                  8 string, 9 clob, 10 blob, 11 list, 12 sexp, 13 struct. (null.null is nil.)
6    CLOB         the raw bytes
7    SEXP         msgpack array of the elements
8    STRUCT       msgpack array [name1, value1, name2, value2, ...], names str or nil (`$0`);
                  only for structs with a repeated or `$0` field name (others are maps)
9    ANNOTATED    msgpack array [[annotation, ...], value]: one or more annotations (str,
                  or nil for `$0`), the value encoded as if it had none (never ANNOTATED)
==== ============ ==========================================================================

Framing: `frame(payload)` = version byte 0x01 || CRC32 (zlib, big-endian, 4 bytes) of the
version byte followed by the payload || payload. CRC32 detects every error confined to 32
consecutive bits, hence every single-byte change anywhere in the record; a truncated record
fails the CRC (with probability 1 - 2**-32) and, in `decode`, also msgpack's self-delimiting
check (deterministically).
"""

from __future__ import annotations

import copyreg
import datetime
import decimal
import functools
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any, Final

import msgpack
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

from core.errors import StrandError

__all__ = [
    "EXT_ANNOTATED",
    "EXT_BIGINT",
    "EXT_CLOB",
    "EXT_DECIMAL",
    "EXT_SEXP",
    "EXT_STRUCT",
    "EXT_SYMBOL",
    "EXT_TIMESTAMP",
    "EXT_TYPED_NULL",
    "FRAME_HEADER_SIZE",
    "FRAME_VERSION",
    "CodecError",
    "CodecTypeError",
    "CodecValueError",
    "CorruptRecordError",
    "decode",
    "encode",
    "frame",
    "pack",
    "unframe",
    "unframe_view",
    "unpack",
]

EXT_BIGINT: Final = 1
EXT_DECIMAL: Final = 2
EXT_TIMESTAMP: Final = 3
EXT_SYMBOL: Final = 4
EXT_TYPED_NULL: Final = 5
EXT_CLOB: Final = 6
EXT_SEXP: Final = 7
EXT_STRUCT: Final = 8
EXT_ANNOTATED: Final = 9

FRAME_VERSION: Final = 1
FRAME_HEADER_SIZE: Final = 5


class CodecError(StrandError):
    """Base class of the codec's errors."""


class CodecTypeError(CodecError, TypeError):
    """The value (or a part of it) has a type the codec cannot store as Ion."""


class CodecValueError(CodecError, ValueError):
    """The value has a supported type but cannot be stored (a NaN decimal, ...)."""


class CorruptRecordError(CodecError, ValueError):
    """Stored bytes fail their checksum, are truncated, or are not a valid encoding."""


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_MSGPACK_INT_MIN: Final = -(2**63)
_MSGPACK_INT_MAX: Final = 2**64 - 1
# Values of these exact types are packed natively by msgpack.
_NATIVE_TYPES: Final = frozenset({str, int, float, bool, type(None), bytes})
# Values of these exact types hold no struct: the pre-pack walk does not look inside them.
_LEAF_TYPES: Final = _NATIVE_TYPES | frozenset(
    {
        decimal.Decimal,
        datetime.datetime,
        Timestamp,
        SymbolToken,
        IonPyNull,
        IonPyBool,
        IonPyInt,
        IonPyFloat,
        IonPyDecimal,
        IonPyText,
        IonPyBytes,
        IonPyTimestamp,
        IonPySymbol,
    }
)
_STR_TYPE: Final = frozenset({str})
_SYMBOL_ZERO_PAYLOAD: Final = b"\xff"
_UNKNOWN_OFFSET: Final = -32768
_ONE_MINUTE: Final = datetime.timedelta(minutes=1)

_ION_TYPE_CODES: Final[dict[IonType, int]] = {
    IonType.NULL: 0,
    IonType.BOOL: 1,
    IonType.INT: 2,
    IonType.FLOAT: 4,
    IonType.DECIMAL: 5,
    IonType.TIMESTAMP: 6,
    IonType.SYMBOL: 7,
    IonType.STRING: 8,
    IonType.CLOB: 9,
    IonType.BLOB: 10,
    IonType.LIST: 11,
    IonType.SEXP: 12,
    IonType.STRUCT: 13,
}
_ION_TYPES_BY_CODE: Final[dict[int, IonType]] = {c: t for t, c in _ION_TYPE_CODES.items()}

_PRECISION_CODES: Final[dict[TimestampPrecision, int]] = {
    TimestampPrecision.YEAR: 0,
    TimestampPrecision.MONTH: 1,
    TimestampPrecision.DAY: 2,
    TimestampPrecision.MINUTE: 3,
    TimestampPrecision.SECOND: 4,
}
_PRECISIONS_BY_CODE: Final[dict[int, TimestampPrecision]] = {
    c: p for p, c in _PRECISION_CODES.items()
}
_TS_LAYOUTS: Final[tuple[struct.Struct, ...]] = (
    struct.Struct(">BH"),
    struct.Struct(">BHB"),
    struct.Struct(">BHBB"),
    struct.Struct(">BHBBBBh"),
    struct.Struct(">BHBBBBBh"),
)
_TS_SECOND: Final = _TS_LAYOUTS[4]
_TS_MINUTE: Final = _TS_LAYOUTS[3]


def _type_error(value: object, where: str = "") -> CodecTypeError:
    name = type(value).__qualname__
    return CodecTypeError(f"cannot encode a value of type {name!r} as Ion{where}")


def _check_tree(value: Any) -> None:
    """Check that every struct under `value` has `str` field names (msgpack would not)."""
    t = type(value)
    if t is dict:
        for name in value:
            if type(name) is not str:
                raise _type_error(name, " field name (struct field names must be str)")
        for item in value.values():
            if type(item) not in _LEAF_TYPES:
                _check_tree(item)
    elif t is list or t is tuple:
        for item in value:
            if type(item) not in _LEAF_TYPES:
                _check_tree(item)
    elif t is IonPyDict:
        for _, item in value.iteritems():
            if type(item) not in _LEAF_TYPES:
                _check_tree(item)
    elif isinstance(value, dict):
        _check_tree(dict(value))
    elif isinstance(value, list | tuple) and not isinstance(value, SymbolToken):
        _check_tree(list(value))
    # Anything else is a scalar or unsupported: the default hook decides.


def _int(value: int) -> object:
    if _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX:
        return value
    size = (value.bit_length() + 8) // 8  # room for the sign bit
    return msgpack.ExtType(EXT_BIGINT, value.to_bytes(size, "big", signed=True))


def _decimal(value: decimal.Decimal) -> object:
    if not value.is_finite():
        raise CodecValueError(f"Ion decimals are finite, got Decimal({str(value)!r})")
    return msgpack.ExtType(EXT_DECIMAL, str(value).encode("ascii"))


def _symbol_payload(text: str | None, sid: int | None) -> bytes:
    if text is not None:
        return text.encode("utf-8")
    if sid == 0:
        return _SYMBOL_ZERO_PAYLOAD
    raise CodecValueError(f"symbol ${sid} has unknown text; only $0 can be stored")


def _token_text(token: object) -> str | None:
    """The text of an annotation or field name (None stands for `$0`)."""
    if type(token) is str:
        return token
    if isinstance(token, SymbolToken):
        if token.text is None and token.sid != 0:
            raise CodecValueError(f"symbol ${token.sid} has unknown text; only $0 can be stored")
        return None if token.text is None else str(token.text)
    if token is None:
        return None
    if isinstance(token, str):
        return str(token)
    raise _type_error(token, " symbol token")


def _fraction_digits(value: datetime.datetime) -> bytes:
    """The significant fractional-second digits of a second-precision timestamp, as ASCII."""
    if not isinstance(value, Timestamp) or value.precision is None:
        return b"%06d" % value.microsecond  # a plain datetime means microsecond precision
    fraction = value.fractional_seconds
    if fraction is None:  # a Timestamp made with __new__ only: fall back on microseconds
        return (b"%06d" % value.microsecond)[: value.fractional_precision or 0]
    text = str(fraction)
    if text.startswith("0.") and text[2:].isdigit():  # the common case, e.g. "0.226"
        return text[2:].encode("ascii")
    _, digits, exponent = fraction.as_tuple()
    if not isinstance(exponent, int) or fraction.is_signed() and fraction:
        raise CodecValueError(f"fractional seconds must lie in [0, 1), got {fraction}")
    if exponent >= 0:
        if any(digits):
            raise CodecValueError(f"fractional seconds must lie in [0, 1), got {fraction}")
        return b""
    if len(digits) > -exponent:  # a coefficient of more digits than places is >= 1
        raise CodecValueError(f"fractional seconds must lie in [0, 1), got {fraction}")
    return "".join(map(str, digits)).rjust(-exponent, "0").encode("ascii")


_OFFSET_MINUTES: dict[datetime.timedelta, int] = {}  # filled lazily; at most 2,879 entries


def _offset_minutes(value: datetime.datetime) -> int:
    offset = value.utcoffset()
    if offset is None:
        return _UNKNOWN_OFFSET
    minutes = _OFFSET_MINUTES.get(offset)
    if minutes is None:
        whole, rest = divmod(offset, _ONE_MINUTE)
        if rest or not -1440 < whole < 1440:
            raise CodecValueError(
                f"Ion offsets are whole minutes within a day, got {offset} in {value!r}"
            )
        minutes = _OFFSET_MINUTES[offset] = int(whole)
    return minutes


def _timestamp(value: datetime.datetime) -> object:
    precision = getattr(value, "precision", None)
    code = 4 if precision is None else _PRECISION_CODES.get(precision)
    if code is None:
        raise CodecValueError(f"unknown timestamp precision {precision!r}")
    if code == 4:
        head = _TS_SECOND.pack(
            4,
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            _offset_minutes(value),
        )
        return msgpack.ExtType(EXT_TIMESTAMP, head + _fraction_digits(value))
    if code == 3:
        fields: tuple[int, ...] = (value.year, value.month, value.day, value.hour, value.minute)
        payload = _TS_MINUTE.pack(3, *fields, _offset_minutes(value))
    else:  # below minute precision Ion timestamps have no offset and no time of day
        payload = _TS_LAYOUTS[code].pack(code, *(value.year, value.month, value.day)[: code + 1])
    return msgpack.ExtType(EXT_TIMESTAMP, payload)


def _struct(value: Any) -> object:
    """An IonPyDict: a plain map unless it repeats a field name or uses `$0`."""
    items = value.items()
    names = [_token_text(name) for name, _ in items]
    if None not in names and len(set(names)) == len(names):
        return dict(zip(names, (v for _, v in items), strict=True))
    flat: list[object] = []
    for name, (_, item) in zip(names, items, strict=True):
        flat.append(name)
        flat.append(item)
    return msgpack.ExtType(EXT_STRUCT, _pack_nested(flat))


def _std_dict(value: Any) -> object:
    return dict(value)


def _null(value: Any) -> object:
    ion_type = getattr(value, "ion_type", None)
    if ion_type is None or ion_type is IonType.NULL:
        return None
    code = _ION_TYPE_CODES.get(ion_type)
    if code is None:
        raise CodecValueError(f"unknown Ion type {ion_type!r} of a typed null")
    return msgpack.ExtType(EXT_TYPED_NULL, bytes((code,)))


def _int_like(value: Any) -> object:
    if getattr(value, "ion_type", None) is IonType.BOOL:
        return bool(value)
    return _int(int(value))


def _float(value: Any) -> object:
    return float(value)


def _text(value: Any) -> object:
    if getattr(value, "ion_type", None) is IonType.SYMBOL:
        return msgpack.ExtType(EXT_SYMBOL, _symbol_payload(str(value), None))
    return str(value)


def _bytes(value: Any) -> object:
    if getattr(value, "ion_type", None) is IonType.CLOB:
        return msgpack.ExtType(EXT_CLOB, bytes(value))
    return bytes(value)


def _symbol(value: Any) -> object:
    return msgpack.ExtType(EXT_SYMBOL, _symbol_payload(value.text, value.sid))


def _list(value: Any) -> object:
    if getattr(value, "ion_type", None) is IonType.SEXP:
        return msgpack.ExtType(EXT_SEXP, _pack_nested(list(value)))
    return list(value)


# The bare encoding of each supported type, ignoring annotations. Looked up along the MRO, so
# order matters only between a class and its bases (SymbolToken before tuple, etc.).
_BARE_ENCODERS: Final[dict[type, Callable[[Any], object]]] = {
    IonPyNull: _null,
    bool: _int_like,
    int: _int_like,
    float: _float,
    decimal.Decimal: _decimal,
    str: _text,
    bytes: _bytes,
    datetime.datetime: _timestamp,
    SymbolToken: _symbol,
    list: _list,
    tuple: _list,
    dict: _std_dict,
    IonPyDict: _struct,
}
_HANDLERS: dict[type, Callable[[Any], object]] = {}


def _with_annotations(bare: Callable[[Any], object]) -> Callable[[Any], object]:
    def handler(value: Any) -> object:
        annotations = getattr(value, "ion_annotations", None)
        if annotations:
            texts = [_token_text(a) for a in annotations]
            return msgpack.ExtType(EXT_ANNOTATED, _pack_nested([texts, bare(value)]))
        return bare(value)

    return handler


def _handler_for(cls: type) -> Callable[[Any], object]:
    for base in cls.__mro__:
        bare = _BARE_ENCODERS.get(base)
        if bare is not None:
            handler = _with_annotations(bare)
            _HANDLERS[cls] = handler
            return handler
    raise KeyError(cls)


def _default(value: object) -> object:
    """msgpack's hook for everything that is not a plain msgpack type (or an int > 64 bits)."""
    handler = _HANDLERS.get(type(value))
    if handler is None:
        try:
            handler = _handler_for(type(value))
        except KeyError:
            raise _type_error(value) from None
    return handler(value)


for _cls in (
    IonPyNull,
    IonPyBool,
    IonPyInt,
    IonPyFloat,
    IonPyDecimal,
    IonPyText,
    IonPyBytes,
    IonPyTimestamp,
    IonPySymbol,
    IonPyList,
    IonPyDict,
    IonPyStdDict,
    int,
    decimal.Decimal,
    datetime.datetime,
    Timestamp,
    SymbolToken,
    tuple,
):
    _handler_for(_cls)
del _cls

_pack_nested: Final = functools.partial(
    msgpack.packb,
    default=_default,
    use_bin_type=True,
    use_single_float=False,
    strict_types=True,
    datetime=False,
)
_local = threading.local()  # one reusable Packer per thread (a Packer is not reentrant)


def _new_packer() -> Any:
    return msgpack.Packer(
        default=_default,
        use_bin_type=True,
        use_single_float=False,
        strict_types=True,
        datetime=False,
        autoreset=True,
    )


def pack(value: object, *, check_names: bool = True) -> bytes:
    """Encode an Ion value as msgpack. Raises CodecTypeError / CodecValueError.

    `check_names=False` skips the walk that checks struct field names are `str` (about a
    third of the cost for a small document): for values the engine built itself.
    Everything else is checked either way.
    """
    try:
        if check_names and type(value) not in _NATIVE_TYPES:
            _check_tree(value)
        try:
            packer = _local.packer
        except AttributeError:
            packer = _local.packer = _new_packer()
        return packer.pack(value)  # type: ignore[no-any-return]
    except CodecError:
        raise
    except RecursionError as exc:
        raise CodecValueError("value is nested too deeply to encode") from exc
    except (ValueError, OverflowError, struct.error) as exc:  # nesting limit, lone surrogates
        raise CodecValueError(f"cannot encode value: {exc}") from exc
    except TypeError as exc:
        raise CodecTypeError(f"cannot encode value: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

_TZ_CACHE: dict[int, datetime.tzinfo] = {0: datetime.UTC}
_DECIMAL_ZERO: Final = decimal.Decimal(0)


def _corrupt(what: str) -> CorruptRecordError:
    return CorruptRecordError(f"invalid {what} in stored record")


def _tz(minutes: int) -> datetime.tzinfo | None:
    if minutes == _UNKNOWN_OFFSET:
        return None
    tz = _TZ_CACHE.get(minutes)
    if tz is None:
        if not -1440 < minutes < 1440:
            raise _corrupt("timestamp offset")
        tz = _TZ_CACHE[minutes] = datetime.timezone(datetime.timedelta(minutes=minutes))
    return tz


def _new_timestamp(
    cls: Any,
    fields: tuple[int, int, int, int, int, int],
    tz: datetime.tzinfo | None,
    precision: TimestampPrecision,
    digits: str,
) -> Any:
    """A Timestamp (or IonPyTimestamp) with the Ion fields set, built by `Timestamp.__new__`.

    `__new__` alone sets precision and fraction without `__init__`'s slow re-validation (and
    without its 28-digit Decimal context, which would round very long fractions); the values
    passed here satisfy `__init__`'s invariants by construction.
    """
    if digits:
        fraction = decimal.Decimal("0." + digits)
        micro = int(digits[:6].ljust(6, "0"))
        return cls.__new__(cls, *fields, micro, tz, precision, min(len(digits), 6), fraction)
    return cls.__new__(cls, *fields, 0, tz, precision, 0, _DECIMAL_ZERO)


@functools.lru_cache(maxsize=4096)
def _decode_timestamp(data: bytes) -> Timestamp:
    """Decoded once per distinct encoding (a block repeats its timestamp in every revision,
    and blocks of one group commit share it): Timestamps are immutable values, so the same
    object may stand in every place it occurs."""
    if not data or data[0] > 4:
        raise _corrupt("timestamp precision")
    code = data[0]
    layout = _TS_LAYOUTS[code]
    if code == 4:
        _, year, month, day, hour, minute, second, offset = layout.unpack_from(data)
        digits = data[layout.size :]
        if digits and not digits.isdigit():
            raise _corrupt("timestamp fraction")
        return _new_timestamp(  # type: ignore[no-any-return]
            Timestamp,
            (year, month, day, hour, minute, second),
            _tz(offset),
            TimestampPrecision.SECOND,
            digits.decode("ascii"),
        )
    if len(data) != layout.size:
        raise _corrupt("timestamp length")
    fields = layout.unpack(data)
    if code == 3:
        _, year, month, day, hour, minute, offset = fields
        tz = _tz(offset)
    else:
        year = fields[1]
        month = fields[2] if code >= 1 else 1
        day = fields[3] if code >= 2 else 1
        hour, minute, tz = 0, 0, None
    return _new_timestamp(  # type: ignore[no-any-return]
        Timestamp, (year, month, day, hour, minute, 0), tz, _PRECISIONS_BY_CODE[code], ""
    )


def _annotated_timestamp(value: Timestamp, annotations: tuple[SymbolToken, ...]) -> object:
    fields = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    second_precision = value.precision is TimestampPrecision.SECOND
    digits = _fraction_digits(value).decode("ascii") if second_precision else ""
    copy = _new_timestamp(IonPyTimestamp, fields, value.tzinfo, value.precision, digits)
    copy.ion_annotations = annotations
    return copy


def _decode_bigint(data: bytes) -> int:
    value = int.from_bytes(data, "big", signed=True)
    if _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX or len(data) != (value.bit_length() + 8) // 8:
        raise _corrupt("big integer")
    return value


def _decode_decimal(data: bytes) -> decimal.Decimal:
    text = data.decode("ascii")
    value = decimal.Decimal(text)
    if not value.is_finite() or str(value) != text:
        raise _corrupt("decimal")
    return value


def _decode_symbol(data: bytes) -> IonPySymbol:
    if data == _SYMBOL_ZERO_PAYLOAD:
        return IonPySymbol(None, 0, None)
    return IonPySymbol(data.decode("utf-8"), None, None)


def _decode_typed_null(data: bytes) -> IonPyNull:
    ion_type = _ION_TYPES_BY_CODE.get(data[0]) if len(data) == 1 else None
    if ion_type is None or ion_type is IonType.NULL:
        raise _corrupt("typed null")
    return IonPyNull(ion_type)


def _decode_clob(data: bytes) -> IonPyBytes:
    return IonPyBytes.from_value(IonType.CLOB, data)


def _decode_sexp(data: bytes) -> IonPyList:
    items = _unpack_nested(data)
    if type(items) is not list:
        raise _corrupt("s-expression")
    return IonPyList.from_value(IonType.SEXP, items)


def _decode_struct(data: bytes) -> IonPyDict:
    flat = _unpack_nested(data)
    if type(flat) is not list or len(flat) % 2:
        raise _corrupt("struct")
    result = IonPyDict()
    for i in range(0, len(flat), 2):
        name = flat[i]
        if name is not None and type(name) is not str:
            raise _corrupt("struct field name")
        result.add_item(name, flat[i + 1])
    return result


def _ion_py(inner: object, annotations: tuple[SymbolToken, ...]) -> object:
    t = type(inner)
    if inner is None:
        return IonPyNull(IonType.NULL, None, annotations)
    if t is Timestamp:
        return _annotated_timestamp(inner, annotations)  # type: ignore[arg-type]
    wrap = _ANNOTATABLE.get(t)
    if wrap is not None:
        return wrap[0].from_value(wrap[1], inner, annotations)
    if hasattr(inner, "ion_annotations") and not inner.ion_annotations:  # type: ignore[attr-defined]
        inner.ion_annotations = annotations  # type: ignore[attr-defined]
        return inner
    raise _corrupt("annotated value")


_ANNOTATABLE: Final[dict[type, tuple[Any, IonType]]] = {
    bool: (IonPyBool, IonType.BOOL),
    int: (IonPyInt, IonType.INT),
    float: (IonPyFloat, IonType.FLOAT),
    decimal.Decimal: (IonPyDecimal, IonType.DECIMAL),
    str: (IonPyText, IonType.STRING),
    bytes: (IonPyBytes, IonType.BLOB),
    list: (IonPyList, IonType.LIST),
    dict: (IonPyDict, IonType.STRUCT),
}


def _decode_annotated(data: bytes) -> object:
    pair = _unpack_nested(data)
    if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not list or not pair[0]:
        raise _corrupt("annotation list")
    tokens = []
    for text in pair[0]:
        if text is None:
            tokens.append(SymbolToken(None, 0))
        elif type(text) is str:
            tokens.append(SymbolToken(text, None))
        else:
            raise _corrupt("annotation")
    return _ion_py(pair[1], tuple(tokens))


_EXT_DECODERS: Final[dict[int, Callable[[bytes], object]]] = {
    EXT_BIGINT: _decode_bigint,
    EXT_DECIMAL: _decode_decimal,
    EXT_TIMESTAMP: _decode_timestamp,
    EXT_SYMBOL: _decode_symbol,
    EXT_TYPED_NULL: _decode_typed_null,
    EXT_CLOB: _decode_clob,
    EXT_SEXP: _decode_sexp,
    EXT_STRUCT: _decode_struct,
    EXT_ANNOTATED: _decode_annotated,
}


def _ext_hook(code: int, data: bytes) -> object:
    decoder = _EXT_DECODERS.get(code)
    if decoder is None:
        raise _corrupt(f"ext type {code}")
    return decoder(data)


_unpack_nested: Final = functools.partial(
    msgpack.unpackb, ext_hook=_ext_hook, raw=False, strict_map_key=True, use_list=True
)


# What malformed input can make msgpack, struct, decimal, datetime or the ext decoders raise
# (decimal.InvalidOperation is an ArithmeticError).
_DECODE_ERRORS: Final = (
    ValueError,
    TypeError,
    ArithmeticError,
    IndexError,
    RecursionError,
    struct.error,
)


def unpack(data: bytes | memoryview) -> Any:
    """Decode bytes made by `pack`. Raises CorruptRecordError on anything else."""
    try:
        return _unpack_nested(data)
    except CorruptRecordError:
        raise
    except _DECODE_ERRORS as exc:
        raise CorruptRecordError(f"stored record is not a valid encoding: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------

_HEADER: Final = struct.Struct(">BI")
_VERSION_CRC: Final = zlib.crc32(bytes((FRAME_VERSION,)))


def frame(payload: bytes) -> bytes:
    """Prefix `payload` with the format version and the CRC32 of version byte + payload."""
    return _HEADER.pack(FRAME_VERSION, zlib.crc32(payload, _VERSION_CRC)) + payload


def unframe(data: bytes) -> bytes:
    """Check a framed record and return its payload. Raises CorruptRecordError."""
    return bytes(unframe_view(data))


def unframe_view(data: bytes) -> memoryview:
    """`unframe` without copying: the checked payload as a view into `data` (for a record
    decoded at once, such as each document of a table scan)."""
    view = memoryview(data)
    if len(view) < FRAME_HEADER_SIZE:
        raise CorruptRecordError(
            f"record of {len(view)} bytes is shorter than its {FRAME_HEADER_SIZE}-byte header"
        )
    version, crc = _HEADER.unpack_from(view)
    if version != FRAME_VERSION:
        raise CorruptRecordError(f"unknown record format version {version}")
    payload = view[FRAME_HEADER_SIZE:]
    if zlib.crc32(payload, _VERSION_CRC) != crc:
        raise CorruptRecordError(f"CRC32 mismatch in a record of {len(view)} bytes")
    return payload


def encode(value: object, *, check_names: bool = True) -> bytes:
    """`frame(pack(value))`: the bytes the ledger stores for a value."""
    return frame(pack(value, check_names=check_names))


def decode(data: bytes) -> Any:
    """`unpack(unframe(data))`. Raises CorruptRecordError."""
    return unpack(unframe(data))


def _reduce_timestamp(value: datetime.datetime) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
    return unpack, (pack(value),)


# amazon-ion's Timestamp does not survive pickling (datetime's reduce hands __new__ bytes it
# cannot take), so an Ion timestamp captured by a transaction function sent to the cluster
# (cloudpickled to a worker) would break it. Pickle it (and IonPyTimestamp) through this codec.
copyreg.pickle(Timestamp, _reduce_timestamp)
copyreg.pickle(IonPyTimestamp, _reduce_timestamp)

"""core.codec: lossless msgpack round trips of Ion values, canonical bytes, checksummed frames.

The oracle for "the same Ion value" is amazon-ion's own binary writer: two values are equal
when `simpleion.dumps(..., binary=True)` gives the same bytes (which also pins struct field
order). Decoding must never raise anything but CorruptRecordError, whatever the bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import math
import struct
import threading
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import (
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.symbols import SymbolToken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import codec
from core.codec import CodecTypeError, CodecValueError, CorruptRecordError
from tests.ion_strategies import documents, ion_values, plain_values, timestamps

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FEWER = settings(_SETTINGS, max_examples=60)  # for strategies that draw many values each


def ion_bytes(value: object) -> bytes:
    return bytes(simpleion.dumps(value, binary=True))


def assert_round_trip(value: object) -> Any:
    packed = codec.pack(value)
    decoded = codec.unpack(packed)
    assert ion_bytes(decoded) == ion_bytes(value)
    assert codec.pack(decoded) == packed, "re-encoding a decoded value must give the same bytes"
    assert ion_bytes(codec.decode(codec.encode(value))) == ion_bytes(value)
    return decoded


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@_SETTINGS
@given(ion_values())
def test_every_ion_value_round_trips(value: object) -> None:
    assert_round_trip(value)


@_FEWER
@given(documents())
def test_documents_round_trip_as_dicts_in_field_order(document: dict[str, Any]) -> None:
    decoded = assert_round_trip(document)
    assert type(decoded) is dict
    assert list(decoded) == list(document)


def _assert_plain(value: object) -> None:
    """Decoded plain values are plain Python (timestamps excepted: they gain a precision)."""
    if isinstance(value, dict):
        assert type(value) is dict
        for name, item in value.items():
            assert type(name) is str
            _assert_plain(item)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            _assert_plain(item)
    else:
        plain = (type(None), bool, int, float, str, bytes, Decimal, Timestamp)
        assert type(value) in plain, type(value)


@_SETTINGS
@given(plain_values())
def test_plain_values_decode_to_plain_types(value: object) -> None:
    _assert_plain(assert_round_trip(value))


_NAMES = st.sampled_from(["a", "b", "", "$0", None])


@st.composite
def multi_structs(draw: st.DrawFn) -> IonPyDict:
    """Structs with repeated field names and the $0 field name (None), maybe annotated."""
    result = IonPyDict()
    for name, value in draw(st.lists(st.tuples(_NAMES, ion_values()), max_size=6)):
        result.add_item(name, value)
    result.ion_annotations = tuple(draw(st.lists(st.sampled_from(["x", "y"]), max_size=2)))
    return result


@_FEWER
@given(multi_structs())
def test_structs_with_repeated_field_names_keep_every_field_in_order(value: IonPyDict) -> None:
    decoded = assert_round_trip(value)
    assert [name for name, _ in decoded.items()] == [name for name, _ in value.items()]


def test_struct_field_names_given_as_symbol_tokens_become_text() -> None:
    value = IonPyDict()
    value.add_item(SymbolToken("a", None), 1)
    value.add_item(SymbolToken(None, 0), 2)
    decoded = codec.unpack(codec.pack(value))
    assert decoded.items() == [("a", 1), (None, 2)]


@_SETTINGS
@given(
    st.integers(0, 40).flatmap(
        lambda places: st.tuples(st.just(places), st.integers(0, 10**places - 1))
    ),
    st.sampled_from([None, datetime.UTC, datetime.timezone(datetime.timedelta(minutes=-450))]),
)
def test_timestamp_fractions_of_any_length_survive(place_coeff: tuple[int, int], tz: Any) -> None:
    places, coefficient = place_coeff
    fraction = Decimal(f"0.{coefficient:0{places}d}") if places else Decimal(0)
    with decimal.localcontext(prec=100):
        value = Timestamp(
            2021, 6, 2, 7, 3, 5, None, tz,
            precision=TimestampPrecision.SECOND, fractional_seconds=fraction,
        )  # fmt: skip
    decoded = codec.unpack(codec.pack(value))
    assert decoded.fractional_seconds.as_tuple() == value.fractional_seconds.as_tuple()
    assert decoded.precision is TimestampPrecision.SECOND
    assert decoded.fractional_precision == value.fractional_precision
    assert decoded.microsecond == value.microsecond
    assert decoded.utcoffset() == value.utcoffset()
    assert codec.pack(decoded) == codec.pack(value)


RICH_ION = """
{
  id: "5vHoYG5m0OZCsqdYCs8XLH", version: 13, big: 123456789012345678901234567890,
  neg: -18446744073709551617, f: -0e0, notnum: nan, inf: -inf, d: -0.000, e: 1.50d-40,
  when: 2021-06-02T07:03:05.226Z, local: 2021-06-02T07:03:05.226000-00:00,
  year: 2021T, month: 2021-06T, day: 2021-06-02, minute: 2021-06-02T07:03+05:30,
  sym: hello, str: "hello", zero: $0, nulls: [null, null.int, null.struct, a::null.sexp],
  blob: {{aGVsbG8=}}, clob: {{"hello"}}, sexp: (+ 1 (a b)), empty: {}, list: [],
  a: 1, a: 2, $0: "zero field",
  ann: x::y::{inner: z::[1, 2.5, 3e0]}, ann0: $0::"text", annts: t::2021-06-02T07:03Z
}
"""


def test_a_rich_ion_document_round_trips_exactly() -> None:
    value = simpleion.loads(RICH_ION)
    decoded = assert_round_trip(value)
    assert simpleion.dumps(decoded, binary=False) == simpleion.dumps(value, binary=False)
    assert [name for name, _ in decoded.items()] == [name for name, _ in value.items()]


def test_decoded_values_keep_their_ion_types() -> None:
    value = simpleion.loads(RICH_ION)
    d = {name: item for name, item in codec.unpack(codec.pack(value)).items()}
    assert type(d["id"]) is str
    assert type(d["version"]) is int
    assert type(d["big"]) is int
    assert d["big"] == 123456789012345678901234567890
    assert d["neg"] == -18446744073709551617
    assert math.copysign(1.0, d["f"]) == -1.0
    assert math.isnan(d["notnum"])
    assert d["inf"] == -math.inf
    assert type(d["d"]) is Decimal
    assert d["d"].as_tuple() == (1, (0,), -3)
    assert d["e"].as_tuple() == (0, (1, 5, 0), -42)
    assert d["when"].precision is TimestampPrecision.SECOND
    assert d["when"].fractional_precision == 3
    assert d["when"].utcoffset() == datetime.timedelta(0)
    assert d["local"].tzinfo is None
    assert d["local"].fractional_precision == 6
    assert d["year"].precision is TimestampPrecision.YEAR
    assert d["month"].precision is TimestampPrecision.MONTH
    assert d["month"].month == 6
    assert d["day"].precision is TimestampPrecision.DAY
    assert d["day"].day == 2
    assert d["minute"].precision is TimestampPrecision.MINUTE
    assert d["minute"].utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert type(d["sym"]) is IonPySymbol
    assert d["sym"].text == "hello"
    assert type(d["str"]) is str
    assert d["zero"].text is None
    assert d["zero"].sid == 0
    assert d["nulls"][0] is None
    assert [n.ion_type for n in d["nulls"][1:]] == [IonType.INT, IonType.STRUCT, IonType.SEXP]
    assert d["nulls"][3].ion_annotations == (SymbolToken("a", None),)
    assert type(d["blob"]) is bytes
    assert type(d["clob"]) is IonPyBytes
    assert d["clob"].ion_type is IonType.CLOB
    assert type(d["sexp"]) is IonPyList
    assert d["sexp"].ion_type is IonType.SEXP
    assert d["sexp"][2].ion_type is IonType.SEXP
    assert d["ann"].ion_annotations == (SymbolToken("x", None), SymbolToken("y", None))
    assert d["ann"]["inner"].ion_annotations == (SymbolToken("z", None),)
    assert type(d["ann0"]) is IonPyText
    assert d["ann0"].ion_annotations == (SymbolToken(None, 0),)
    assert type(d["annts"]) is IonPyTimestamp
    assert d["annts"].precision is TimestampPrecision.MINUTE


def test_plain_datetimes_pack_as_microsecond_timestamps() -> None:
    naive = datetime.datetime(2021, 6, 2, 7, 3, 5)
    aware = datetime.datetime(2021, 6, 2, 7, 3, 5, 120, tzinfo=datetime.UTC)
    for value in (naive, aware):
        decoded = assert_round_trip(value)
        assert type(decoded) is Timestamp
        assert decoded == value
        assert decoded.fractional_precision == 6
        assert decoded.tzinfo == value.tzinfo


def test_equivalent_inputs_share_one_encoding() -> None:
    assert codec.pack((1, "a")) == codec.pack([1, "a"])
    assert codec.pack(IonPyInt(5)) == codec.pack(5)
    assert codec.pack(IonPyNull()) == codec.pack(None)
    assert codec.pack(IonPyDecimal("1.0")) == codec.pack(Decimal("1.0"))
    assert codec.pack(IonPyText.from_value(IonType.SYMBOL, "s")) == codec.pack(SymbolToken("s", 9))
    multi = IonPyDict()
    multi.add_item("a", 1)
    multi.add_item("b", 2)
    assert codec.pack(multi) == codec.pack({"a": 1, "b": 2})
    # Below minute precision an Ion timestamp has no offset and no time of day.
    coarse = Timestamp(2021, 6, 2, 7, 3, 5, tzinfo=datetime.UTC, precision=TimestampPrecision.DAY)
    assert codec.pack(coarse) == codec.pack(Timestamp(2021, 6, 2, precision=TimestampPrecision.DAY))


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**1000, -(2**1000), -(2**64)],
)
def test_integers_of_any_size(value: int) -> None:
    packed = codec.pack(value)
    assert codec.unpack(packed) == value
    native = -(2**63) <= value < 2**64
    assert isinstance(msgpack.unpackb(packed), msgpack.ExtType) != native


def test_on_disk_format_is_pinned() -> None:
    """Golden bytes: these encodings are stored forever and must never change."""
    golden = {
        "d602312e3530": Decimal("1.50"),
        "c70d030407e506020703050000323236": simpleion.loads("2021-06-02T07:03:05.226Z"),
        "c707099291a161d40462": simpleion.loads("a::b"),
        "c70901010000000000000000": 2**64,
        "d40502": simpleion.loads("null.int"),
        "d40663": simpleion.loads('{{"c"}}'),
        "d60791d40461": simpleion.loads("(a)"),
        "c7070894a16101a16102": simpleion.loads("{a:1,a:2}"),
        "c703030007e4": simpleion.loads("2020T"),
        "c709030307e4010203048000": simpleion.loads("2020-01-02T03:04-00:00"),
        "d404ff": simpleion.loads("$0"),
    }
    for hex_bytes, value in golden.items():
        assert codec.pack(value).hex() == hex_bytes, value
        assert ion_bytes(codec.unpack(bytes.fromhex(hex_bytes))) == ion_bytes(value)


def test_concurrent_packing_from_threads_is_consistent() -> None:
    value = simpleion.loads(RICH_ION)
    expected = codec.pack(value)
    results: list[bool] = []

    def worker() -> None:
        results.append(all(codec.pack(value) == expected for _ in range(300)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


def test_check_names_false_skips_only_the_field_name_walk() -> None:
    document = {"a": [{"b": Decimal("1")}]}
    assert codec.pack(document, check_names=False) == codec.pack(document)
    assert codec.decode(codec.encode(document, check_names=False)) == document


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        1j,
        datetime.date(2021, 6, 2),
        datetime.timedelta(1),
        {"a": [frozenset()]},
        len,
        IonPyList.from_value(IonType.LIST, [{"a": {1}}]),
    ],
)
def test_unsupported_types_raise_a_typed_error_naming_the_type(value: object) -> None:
    with pytest.raises(CodecTypeError, match="type '") as info:
        codec.pack(value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"a": {b"b": 1}}, [{"ok": 1}, {None: 2}], ({(1,): 1},), {"a": {IonPyText("x"): 1}}],
)
def test_struct_field_names_must_be_str(value: object) -> None:
    with pytest.raises(CodecTypeError, match="field name"):
        codec.pack(value)


def _timestamp_with_precision(precision: object) -> Timestamp:
    value = Timestamp(2021, 6, 2, precision=TimestampPrecision.DAY)
    value.precision = precision
    return value


@pytest.mark.parametrize(
    "value",
    [
        Decimal("NaN"),
        Decimal("-Infinity"),
        Decimal("sNaN"),
        {"a": [Decimal("Infinity")]},
        IonPyDecimal.from_value(IonType.DECIMAL, Decimal("NaN"), ("a",)),
        datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(seconds=30))),
        IonPySymbol(None, 5, None),
        "lone surrogate \ud800",
        IonPyNull("not an IonType"),
        _timestamp_with_precision("not a precision"),
    ],
)
def test_values_ion_cannot_hold_raise_a_typed_error(value: object) -> None:
    with pytest.raises(CodecValueError) as info:
        codec.pack(value)
    assert isinstance(info.value, ValueError)


def test_too_deep_nesting_raises_a_typed_error() -> None:
    value: list[object] = []
    for _ in range(2000):
        value = [value]
    with pytest.raises(CodecValueError):
        codec.pack(value)


# ---------------------------------------------------------------------------------------------
# Framing and corruption
# ---------------------------------------------------------------------------------------------

RECORDS = [
    b"",
    codec.pack(None),
    codec.pack({"id": "5vHoYG5m0OZCsqdYCs8XLH", "version": 13, "hash": bytes(range(32))}),
    codec.pack(simpleion.loads(RICH_ION)),
]


@pytest.mark.parametrize("payload", RECORDS, ids=lambda p: f"{len(p)}B")
def test_frame_round_trips_with_a_five_byte_header(payload: bytes) -> None:
    framed = codec.frame(payload)
    assert len(framed) == len(payload) + codec.FRAME_HEADER_SIZE
    assert framed[0] == codec.FRAME_VERSION
    assert codec.unframe(framed) == payload


@pytest.mark.parametrize("payload", RECORDS, ids=lambda p: f"{len(p)}B")
def test_every_single_byte_change_is_detected(payload: bytes) -> None:
    framed = codec.frame(payload)
    for position in range(len(framed)):
        for flip in range(1, 256):
            corrupt = bytearray(framed)
            corrupt[position] ^= flip
            with pytest.raises(CorruptRecordError):
                codec.unframe(bytes(corrupt))
    if payload:
        with pytest.raises(CorruptRecordError):
            codec.decode(bytes([framed[0]]) + framed[1:-1] + bytes([framed[-1] ^ 1]))


@pytest.mark.parametrize("payload", RECORDS, ids=lambda p: f"{len(p)}B")
def test_truncated_or_extended_records_are_detected(payload: bytes) -> None:
    framed = codec.frame(payload)
    for length in range(len(framed)):
        with pytest.raises(CorruptRecordError):
            codec.unframe(framed[:length])
        with pytest.raises(CorruptRecordError):
            codec.decode(framed[:length])
    with pytest.raises(CorruptRecordError):
        codec.unframe(framed + b"\x00")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never used by msgpack
        b"\x92\x01",  # truncated array
        codec.pack([1, 2]) + b"\x00",  # trailing bytes
        b"\x81\x01\x01",  # int field name
        b"\xa2\xff\xfe",  # invalid UTF-8
        msgpack.packb(msgpack.ExtType(99, b"")),  # unknown ext type
        msgpack.packb(msgpack.ExtType(codec.EXT_DECIMAL, b"NaN")),
        msgpack.packb(msgpack.ExtType(codec.EXT_DECIMAL, b"1.0\x00")),
        msgpack.packb(msgpack.ExtType(codec.EXT_DECIMAL, b"01.5")),  # not canonical
        msgpack.packb(msgpack.ExtType(codec.EXT_BIGINT, b"\x01")),  # fits in msgpack
        msgpack.packb(msgpack.ExtType(codec.EXT_BIGINT, b"")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TIMESTAMP, b"")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TIMESTAMP, b"\x09\x07\xe5")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TIMESTAMP, b"\x02\x07\xe5\x02\x1e")),  # Feb 30
        msgpack.packb(msgpack.ExtType(codec.EXT_TIMESTAMP, b"\x00\x07\xe5\x00")),  # too long
        msgpack.packb(
            msgpack.ExtType(
                codec.EXT_TIMESTAMP, struct.pack(">BHBBBBBh", 4, 2021, 1, 1, 0, 0, 0, 0) + b"1x"
            )
        ),
        msgpack.packb(
            msgpack.ExtType(codec.EXT_TIMESTAMP, struct.pack(">BHBBBBh", 3, 2021, 1, 1, 0, 0, 1440))
        ),
        msgpack.packb(msgpack.ExtType(codec.EXT_SYMBOL, b"\xfe")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TYPED_NULL, b"\x00")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TYPED_NULL, b"\x03")),
        msgpack.packb(msgpack.ExtType(codec.EXT_TYPED_NULL, b"")),
        msgpack.packb(msgpack.ExtType(codec.EXT_SEXP, msgpack.packb({"a": 1}))),
        msgpack.packb(msgpack.ExtType(codec.EXT_STRUCT, msgpack.packb(["a"]))),
        msgpack.packb(msgpack.ExtType(codec.EXT_STRUCT, msgpack.packb([1, 1]))),
        msgpack.packb(msgpack.ExtType(codec.EXT_ANNOTATED, msgpack.packb([[], 1]))),
        msgpack.packb(msgpack.ExtType(codec.EXT_ANNOTATED, msgpack.packb([[1], 1]))),
        msgpack.packb(msgpack.ExtType(codec.EXT_ANNOTATED, msgpack.packb([["a"]]))),
        msgpack.packb(
            msgpack.ExtType(
                codec.EXT_ANNOTATED,
                b"\x92\x91\xa1a" + codec.pack(IonPyInt.from_value(IonType.INT, 1, ("b",))),
            )
        ),  # fmt: skip
    ],
)
def test_well_framed_garbage_raises_corrupt_record(payload: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        codec.decode(codec.frame(payload))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_unpack_of_any_bytes_returns_or_raises_corrupt_record(data: bytes) -> None:
    with contextlib.suppress(CorruptRecordError):
        codec.unpack(data)


@settings(max_examples=300, deadline=None)
@given(ion_values(), st.data())
def test_unpack_of_damaged_encodings_returns_or_raises_corrupt_record(
    value: object, data: st.DataObject
) -> None:
    packed = bytearray(codec.pack(value))
    position = data.draw(st.integers(0, len(packed) - 1))
    packed[position] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(CorruptRecordError):
        codec.unpack(bytes(packed))


@settings(max_examples=100, deadline=None)
@given(value=timestamps())
def test_ion_timestamps_survive_pickling(value: Any) -> None:
    """A transaction function sent to the cluster may capture Ion timestamps (Ray pickles it)."""
    import pickle

    from ray import cloudpickle

    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        back = loads(dumps({"t": [value]}))
        assert simpleion.dumps(back) == simpleion.dumps({"t": [value]})

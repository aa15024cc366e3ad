"""Properties of core.ionhash: what the hash depends on, and what it must not depend on."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.exceptions import IonException
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
from amazon.ion.simpleion import IonPyValueModel
from amazon.ion.symbols import SymbolToken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import ionhash
from core.ionhash import IonHashTypeError, dot, ion_hash
from tests.ion_strategies import documents, ion_values, plain_values

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def identity(data: bytes) -> bytes:
    return data


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- the two check values of qldb.md section 1 ------------------------------------------------


def test_dot_check_value() -> None:
    assert (
        dot(sha256(b"1"), sha256(b"2")).hex()
        == "940ed9abddfb5ef28004408546bc5043cda391232b6afe07267f9f8ed2b500c9"
    )


def test_hello_world_check_value() -> None:
    expected = "82c4010bfc9cace7f645c0a951243b9b122cb5ba21b60b3f71ea79c513c39342"
    assert ion_hash("hello world").hex() == expected
    assert ion_hash(simpleion.loads('"hello world"')).hex() == expected
    assert ion_hash("hello world", sha256).hex() == expected  # default is SHA-256


# --- invariances ------------------------------------------------------------------------------


@SETTINGS
@given(document=documents(), seed=st.integers())
def test_field_order_does_not_matter(document: dict[str, Any], seed: int) -> None:
    items = list(document.items())
    random.Random(seed).shuffle(items)
    assert ion_hash(dict(items)) == ion_hash(document)
    assert ion_hash(IonPyDict.from_value(IonType.STRUCT, dict(items))) == ion_hash(document)


@SETTINGS
@given(
    fields=st.lists(st.tuples(st.sampled_from("abc"), ion_values()), max_size=6),
    seed=st.integers(),
)
def test_repeated_field_names_in_any_order(fields: list[tuple[str, Any]], seed: int) -> None:
    def struct(pairs: list[tuple[str, Any]]) -> Any:
        value = IonPyDict()
        value.ion_type = IonType.STRUCT
        for name, field_value in pairs:
            value.add_item(name, field_value)
        return value

    shuffled = list(fields)
    random.Random(seed).shuffle(shuffled)
    assert ion_hash(struct(shuffled)) == ion_hash(struct(fields))
    # Every value of a repeated name counts: dropping one changes the hash.
    if fields:
        assert ion_hash(struct(fields[1:])) != ion_hash(struct(fields))


@SETTINGS
@given(value=ion_values())
def test_stable_under_binary_round_trip(value: Any) -> None:
    assert ion_hash(simpleion.loads(simpleion.dumps(value, binary=True))) == ion_hash(value)


@SETTINGS
@given(value=ion_values())
def test_stable_under_text_round_trip(value: Any) -> None:
    assert ion_hash(simpleion.loads(simpleion.dumps(value, binary=False))) == ion_hash(value)


# MAY_BE_BARE | SYMBOL_AS_TEXT is left out on purpose: it loads an unannotated symbol as a bare
# str, which is a string; amazon-ion documents that loss of fidelity.
VALUE_MODELS = (
    IonPyValueModel.MAY_BE_BARE,
    IonPyValueModel.SYMBOL_AS_TEXT,
    IonPyValueModel.STRUCT_AS_STD_DICT,
    IonPyValueModel.MAY_BE_BARE | IonPyValueModel.STRUCT_AS_STD_DICT,
    IonPyValueModel.SYMBOL_AS_TEXT | IonPyValueModel.STRUCT_AS_STD_DICT,
)


@SETTINGS
@given(value=ion_values())
def test_stable_under_every_value_model(value: Any) -> None:
    """Bare Python values, symbols as IonPyText and std dicts hash as IonPy values do."""
    data = simpleion.dumps(value, binary=True)
    for model in VALUE_MODELS:
        try:
            loaded = simpleion.loads(data, value_model=model)
        except IonException:  # SYMBOL_AS_TEXT refuses $0, which has no text
            continue
        assert ion_hash(loaded) == ion_hash(value), model


_IONPY = {
    bool: (IonPyBool, IonType.BOOL),
    int: (IonPyInt, IonType.INT),
    float: (IonPyFloat, IonType.FLOAT),
    Decimal: (IonPyDecimal, IonType.DECIMAL),
    str: (IonPyText, IonType.STRING),
    bytes: (IonPyBytes, IonType.BLOB),
    datetime: (IonPyTimestamp, IonType.TIMESTAMP),
}


def to_ionpy(value: Any) -> Any:
    """The amazon-ion value equivalent to a plain Python value, built without serializing."""
    if value is None:
        return IonPyNull.from_value(IonType.NULL, None)
    if isinstance(value, dict):
        return IonPyDict.from_value(IonType.STRUCT, {k: to_ionpy(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return IonPyList.from_value(IonType.LIST, [to_ionpy(v) for v in value])
    cls, ion_type = _IONPY[type(value)]
    return cls.from_value(ion_type, value)


@SETTINGS
@given(value=plain_values())
def test_plain_and_amazon_ion_values_hash_the_same(value: Any) -> None:
    assert ion_hash(to_ionpy(value)) == ion_hash(value)
    assert ion_hash(to_ionpy(value), identity) == ion_hash(value, identity)


def test_struct_is_hashed_per_field_with_hash_fn() -> None:
    """With the identity, a struct's body is its escaped, sorted field serializations."""
    field = b"\x0b\x70a\x0e" + b"\x0b\x20\x01\x0e"
    assert ion_hash({"a": 1}, identity) == b"\x0b\xd0" + ionhash._escape(field) + b"\x0e"
    md5 = hashlib.md5(field).digest()
    assert (
        ion_hash({"a": 1}, lambda d: hashlib.md5(d).digest())
        == hashlib.md5(b"\x0b\xd0" + ionhash._escape(md5) + b"\x0e").digest()
    )


# --- what the hash depends on ---------------------------------------------------------------


def _ts(text: str) -> Any:
    return simpleion.loads(text)


def _std_dict(**fields: Any) -> Any:
    value = IonPyStdDict()  # what simpleion.loads returns with IonPyValueModel.STRUCT_AS_STD_DICT
    value.update(fields)
    return value


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(
            _ts("2021-06-02T07:03:05.344Z"), _ts("2021-06-02T07:03:05.344000Z"), id="ms-us"
        ),
        pytest.param(_ts("2021-06-02T07:03:05Z"), _ts("2021-06-02T07:03:05.0Z"), id="s-ds"),
        pytest.param(_ts("2021-06-02T07:03Z"), _ts("2021-06-02T07:03:00Z"), id="min-s"),
        pytest.param(_ts("2021-06-02T07:03Z"), _ts("2021-06-02T07:03-00:00"), id="utc-unknown"),
        pytest.param(_ts("2021-06-02T07:03Z"), _ts("2021-06-02T08:03+01:00"), id="same-instant"),
        pytest.param(_ts("2021-06-02"), _ts("2021-06-02T00:00Z"), id="day-min"),
        pytest.param(Decimal("1.0"), Decimal("1.00"), id="decimal-exponent"),
        pytest.param(Decimal("0"), Decimal("-0"), id="decimal-negative-zero"),
        pytest.param(0.0, -0.0, id="float-negative-zero"),
        pytest.param(1, 1.0, id="int-float"),
        pytest.param(1, Decimal(1), id="int-decimal"),
        pytest.param(1, True, id="int-bool"),
        pytest.param("a", SymbolToken("a", None), id="string-symbol"),
        pytest.param(b"a", IonPyBytes.from_value(IonType.CLOB, b"a"), id="blob-clob"),
        pytest.param([1], IonPyList.from_value(IonType.SEXP, [1]), id="list-sexp"),
        pytest.param(None, IonPyNull.from_value(IonType.STRING, None), id="null-typed-null"),
        pytest.param(1, IonPyInt.from_value(IonType.INT, 1, ("a",)), id="annotation"),
        pytest.param(
            IonPyInt.from_value(IonType.INT, 1, ("a", "b")),
            IonPyInt.from_value(IonType.INT, 1, ("b", "a")),
            id="annotation-order",
        ),
        pytest.param({"a": 1}, {"a": 1, "b": None}, id="null-field"),
        pytest.param([1, 2], [2, 1], id="list-order"),
        pytest.param(SymbolToken(None, 0), SymbolToken("", None), id="sid0-empty-symbol"),
    ],
)
def test_distinct_ion_values_hash_differently(left: Any, right: Any) -> None:
    assert ion_hash(left) != ion_hash(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(b"\x00\x0b", bytearray(b"\x00\x0b"), id="bytes-bytearray"),
        pytest.param([1, "a"], (1, "a"), id="list-tuple"),
        pytest.param("a", IonPyText.from_value(IonType.STRING, "a"), id="ionpy-text"),
        pytest.param(
            SymbolToken("a", None), IonPyText.from_value(IonType.SYMBOL, "a"), id="symbol-as-text"
        ),
        pytest.param(SymbolToken("a", 10), IonPySymbol("a", None), id="symbol-sid-ignored"),
        pytest.param(
            datetime(2021, 6, 2, 7, 3, 5, 226000, UTC),
            _ts("2021-06-02T07:03:05.226000Z"),
            id="datetime-microseconds",
        ),
        pytest.param(
            datetime(2021, 6, 2, 7, 3, 5),
            _ts("2021-06-02T07:03:05.000000-00:00"),
            id="naive-datetime-unknown-offset",
        ),
        pytest.param(
            Timestamp(2021, 6, 2, 7, 3, 5, 226000, UTC),
            datetime(2021, 6, 2, 7, 3, 5, 226000, UTC),
            id="timestamp-without-precision",
        ),
        pytest.param(
            Timestamp(
                2021,
                6,
                2,
                9,
                3,
                tzinfo=timezone(timedelta(hours=5)),
                precision=TimestampPrecision.DAY,
            ),
            _ts("2021-06-02"),
            id="day-precision-ignores-offset",
        ),
        pytest.param({"a": 1}, _std_dict(a=1), id="std-dict"),
        pytest.param(float("nan"), -float("nan"), id="nan-canonical"),
    ],
)
def test_equal_ion_values_hash_the_same(left: Any, right: Any) -> None:
    assert ion_hash(left) == ion_hash(right)
    assert ion_hash(left, identity) == ion_hash(right, identity)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param({1, 2}, id="set"),
        pytest.param(1j, id="complex"),
        pytest.param(memoryview(b"a"), id="memoryview"),
        pytest.param(Decimal("NaN"), id="decimal-nan"),
        pytest.param(Decimal("-Infinity"), id="decimal-infinity"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param(SymbolToken(None, 12), id="unknown-symbol-text"),
        pytest.param({1: "a"}, id="int-field-name"),
        pytest.param(IonPyInt.from_value("INT", 5), id="unknown-ion-type"),
        pytest.param(IonPyText.from_value(IonType.INT, "5"), id="text-as-int"),
        pytest.param([{"a": {"b": object()}}], id="nested"),
        pytest.param(datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))), id="year-0"),
    ],
)
def test_non_ion_values_raise_a_typed_error(value: Any) -> None:
    with pytest.raises(IonHashTypeError) as info:
        ion_hash(value)
    assert isinstance(info.value, TypeError)
    assert str(info.value)


def test_field_name_cache_is_bounded() -> None:
    ion_hash({f"field-{i}": i for i in range(ionhash._NAMES_MAX + 10)})
    assert len(ionhash._NAMES) <= ionhash._NAMES_MAX
    # Names past the bound still hash correctly.
    name = "never-cached-" * 3
    assert ion_hash({name: 1}, identity) == ion_hash(
        IonPyDict.from_value(IonType.STRUCT, {name: 1}), identity
    )

"""Ids: 22-character base62 strings, the same digits a naive conversion gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.ids import BASE62_ALPHABET, base62_id, is_id, ms_from_timestamp, timestamp_from_ms


def _naive_base62(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = BASE62_ALPHABET[r] + digits
    return digits.rjust(22, "0")


@given(st.binary(min_size=16, max_size=16))
def test_base62_matches_naive_conversion(raw: bytes) -> None:
    assert base62_id(raw) == _naive_base62(raw)
    assert is_id(base62_id(raw))


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_timestamps_keep_milliseconds(epoch_ms: int) -> None:
    stamp = timestamp_from_ms(epoch_ms)
    assert stamp.fractional_precision == 3
    assert ms_from_timestamp(stamp) == epoch_ms


def test_is_id_rejects_malformed() -> None:
    assert not is_id("short")
    assert not is_id("!" * 22)
    assert not is_id(None)

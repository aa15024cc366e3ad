"""Identifiers and timestamps, made from inputs the caller passes in.

QLDB's document, transaction and table ids are 22-character base62 strings (128 random bits).
This module never reads a clock or a global random source: `IdSource` wraps whatever bytes
source the caller gives it (the `Ledger` facade gives it `os.urandom`, the simulator a seeded
generator), and timestamps are built from milliseconds since the epoch that the caller read.

Invariants: every id is exactly 22 characters of [0-9A-Za-z]; `timestamp_from_ms` returns an
Ion timestamp with millisecond precision in UTC (QLDB's txTime precision, part of the hash).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from amazon.ion.core import Timestamp, TimestampPrecision

BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 22
_ID_CHARS = frozenset(BASE62_ALPHABET)
_PAIRS = [a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET]  # 62**2 two-digit groups
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def base62_id(raw: bytes) -> str:
    """Encode 16 bytes as a 22-character base62 id (left-padded with '0')."""
    if len(raw) != 16:
        raise ValueError(f"an id is made of 16 bytes, got {len(raw)}")
    n = int.from_bytes(raw, "big")
    pairs = []
    for _ in range(ID_LENGTH // 2):
        n, r = divmod(n, 3844)
        pairs.append(_PAIRS[r])
    return "".join(reversed(pairs))


def is_id(value: object) -> bool:
    """True when `value` is a well-formed 22-character base62 id."""
    return isinstance(value, str) and len(value) == ID_LENGTH and _ID_CHARS.issuperset(value)


class IdSource:
    """Makes ids from a caller-supplied source of random bytes."""

    __slots__ = ("_random_bytes",)

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes

    def new_id(self) -> str:
        return base62_id(self._random_bytes(16))


def timestamp_from_ms(epoch_ms: int) -> Timestamp:
    """An Ion timestamp with millisecond precision, UTC, for `epoch_ms` since 1970."""
    dt = _EPOCH + datetime.timedelta(milliseconds=epoch_ms)
    return Timestamp(
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.microsecond,
        tzinfo=datetime.UTC,
        precision=TimestampPrecision.SECOND,
        fractional_precision=3,
    )


def ms_from_timestamp(value: datetime.datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

"""Fractional-second timestamps through PartiQL: every real revision's `metadata.txTime` has
milliseconds, and documents may hold Ion timestamps with any number of fraction digits.

- Through a ledger (a fixed clock, so txTime is known to the millisecond): DATE_ADD, CAST,
  TO_TIMESTAMP, DATE_DIFF, EXTRACT, TO_STRING and comparisons over `history(T)` and
  `_ql_committed_T`, on txTime (milliseconds) and on a document field with nanoseconds;
  results stored back keep their digits.
- Properties (Hypothesis) of the date functions on second-precision timestamps with 1 to 12
  fraction digits and every offset: DATE_ADD keeps the fraction, offset and precision and
  undoes itself, DATE_DIFF measures what DATE_ADD added, TO_TIMESTAMP reads back the Ion text
  exactly, TO_STRING / TO_TIMESTAMP round-trip through a nanosecond format, EXTRACT(SECOND)
  is the seconds with their fraction, and the evaluator in coerce mode never turns them into
  MISSING.

"Exact" below means the same local fields, the same fraction digits (Decimal exponent
included), the same offset (or both unknown) and the same precision: Ion's data model, which
datetime's `==` (instants to the microsecond) does not check.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion.core import Timestamp, TimestampPrecision
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Ledger
from core.iontext import load_text
from core.partiql import datetimes as dt
from core.partiql.data import MISSING, Context
from core.partiql.evaluator import evaluate
from core.storage import MemoryStorage

# 2024-02-29T23:59:59.123Z: a leap day one second before midnight, with milliseconds
TX_MS = 1_709_251_199_123
NANOS = "2024-02-29T23:59:59.123456789+05:30"


def exact(t: Any) -> tuple[Any, ...]:
    """What Ion says a timestamp is (see the module docstring)."""
    assert isinstance(t, datetime.datetime), t
    frac = dt.fraction(t)
    return (
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        str(frac) if dt.precision(t) == TimestampPrecision.SECOND else None,
        dt.offset_minutes(t),
        dt.precision(t),
    )


def ion(text: str) -> Any:
    return load_text(text)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(MemoryStorage(), clock_ms=lambda: TX_MS)

    def setup(tx: Any) -> None:
        tx.execute_statement("CREATE TABLE T")
        tx.execute_statement(f"INSERT INTO T {{'id': 1, 'ts': `{NANOS}`}}")

    ledger.execute_lambda(setup)
    return ledger


def rows(ledger: Ledger, text: str, *params: Any) -> list[Any]:
    return ledger.execute_lambda(lambda tx: list(tx.execute_statement(text, *params)))


def test_txtime_has_milliseconds(ledger: Ledger) -> None:
    [row] = rows(ledger, "SELECT h.metadata.txTime AS t FROM history(T) AS h")
    assert exact(row["t"]) == exact(ion("2024-02-29T23:59:59.123Z"))


@pytest.mark.parametrize("source", ["history(T) AS h", "_ql_committed_T AS h"])
def test_date_functions_on_txtime(ledger: Ledger, source: str) -> None:
    tx = "h.metadata.txTime"
    query = (
        f"SELECT DATE_ADD(day, 1, {tx}) AS d, CAST({tx} AS TIMESTAMP) AS c,"
        f" TO_TIMESTAMP(CAST({tx} AS STRING)) AS r, DATE_DIFF(second, {tx},"
        f" DATE_ADD(minute, 90, {tx})) AS diff, EXTRACT(SECOND FROM {tx}) AS s,"
        f" TO_STRING({tx}, 'yyyy-MM-dd HH:mm:ss.SSS') AS text FROM {source}"
        f" WHERE DATE_ADD(day, 1, {tx}) > ?"
    )
    [row] = rows(ledger, query, ion("2024-03-01T23:59:59.122Z"))
    assert exact(row["d"]) == exact(ion("2024-03-01T23:59:59.123Z"))  # over the leap day
    assert exact(row["c"]) == exact(ion("2024-02-29T23:59:59.123Z"))
    assert exact(row["r"]) == exact(ion("2024-02-29T23:59:59.123Z"))
    assert row["diff"] == 5400
    assert row["s"] == Decimal("59.123")
    assert row["text"] == "2024-02-29 23:59:59.123"
    # the millisecond decides: one later and the row is gone
    assert rows(ledger, query, ion("2024-03-01T23:59:59.123Z")) == []
    later = f"SELECT VALUE h.data.id FROM {source} WHERE {tx} < `2024-02-29T23:59:59.1231Z`"
    assert rows(ledger, later) == [1]
    equal = f"SELECT VALUE h.data.id FROM {source} WHERE {tx} = `2024-02-29T18:59:59.12300-05:00`"
    assert rows(ledger, equal) == [1]


@pytest.mark.parametrize("source", ["history(T) AS h", "_ql_committed_T AS h", "T AS h"])
def test_nanosecond_field_keeps_its_digits_and_offset(ledger: Ledger, source: str) -> None:
    at = "h.data.ts" if source != "T AS h" else "h.ts"
    query = (
        f"SELECT DATE_ADD(day, 1, {at}) AS d, DATE_ADD(second, -1, {at}) AS back,"
        f" TO_TIMESTAMP(CAST({at} AS STRING)) AS r, EXTRACT(SECOND FROM {at}) AS s,"
        f" TO_STRING({at}, 'SSSSSSSSS n XXX') AS text,"
        f" DATE_DIFF(day, {at}, DATE_ADD(month, 1, {at})) AS days FROM {source}"
    )
    [row] = rows(ledger, query)
    assert exact(row["d"]) == exact(ion("2024-03-01T23:59:59.123456789+05:30"))
    assert row["d"].fractional_seconds == Decimal("0.123456789")
    assert exact(row["back"]) == exact(ion("2024-02-29T23:59:58.123456789+05:30"))
    assert exact(row["r"]) == exact(ion(NANOS))
    assert row["s"] == Decimal("59.123456789")
    assert row["text"] == "123456789 123456789 +05:30"
    assert row["days"] == 29  # Feb 29 + 1 month is Mar 29


def test_results_stored_back_keep_their_digits(ledger: Ledger) -> None:
    def copy(tx: Any) -> None:
        tx.execute_statement("CREATE TABLE U")
        [moved] = tx.execute_statement(
            "SELECT DATE_ADD(hour, 1, t.ts) AS ts, DATE_ADD(hour, 1, h.metadata.txTime) AS tx"
            " FROM T AS t, history(T) AS h"
        )
        tx.execute_statement("INSERT INTO U ?", moved)

    ledger.execute_lambda(copy)
    [doc] = rows(ledger, "SELECT VALUE c.data FROM _ql_committed_U AS c")
    assert exact(doc["ts"]) == exact(ion("2024-03-01T00:59:59.123456789+05:30"))
    assert exact(doc["tx"]) == exact(ion("2024-03-01T00:59:59.123Z"))
    [text] = rows(ledger, "SELECT VALUE CAST(u.ts AS STRING) FROM U AS u")
    assert text == "2024-03-01T00:59:59.123456789+05:30"


# ============================================================================ properties

_OFFSETS = st.one_of(
    st.none(), st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: datetime.timedelta(minutes=m))
)


@st.composite
def fractional_timestamps(draw: st.DrawFn) -> Timestamp:
    """Second-precision Ion timestamps with 1 to 12 fraction digits (trailing zeros kept),
    years 2 to 9998 (so a day or a month either way stays in Ion's range), any offset."""
    local = draw(
        st.datetimes(
            min_value=datetime.datetime(2, 1, 1), max_value=datetime.datetime(9998, 12, 31)
        )
    )
    places = draw(st.integers(1, 12))
    frac = Decimal(draw(st.integers(0, 10**places - 1))).scaleb(-places)
    offset = draw(_OFFSETS)
    tz = None if offset is None else datetime.timezone(offset)
    return Timestamp(
        local.year,
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.second,
        None,
        tz,
        precision=TimestampPrecision.SECOND,
        fractional_seconds=frac,
    )


_PARTS = st.sampled_from(["day", "hour", "minute", "second"])


@settings(max_examples=150, deadline=None)
@given(fractional_timestamps(), _PARTS, st.integers(-10_000, 10_000))
def test_date_add_keeps_the_fraction_and_undoes_itself(t: Timestamp, part: str, n: int) -> None:
    moved = dt.date_add(part, n, t)
    assert dt.fraction(moved).as_tuple() == dt.fraction(t).as_tuple()  # digits, exponent
    assert dt.offset_minutes(moved) == dt.offset_minutes(t)
    assert dt.precision(moved) == TimestampPrecision.SECOND
    assert exact(dt.date_add(part, -n, moved)) == exact(t)
    assert dt.date_diff(part, t, moved) == n
    assert dt.instant(moved) - dt.instant(t) == n * {"day": 86400, "hour": 3600}.get(
        part, 60 if part == "minute" else 1
    )


@settings(max_examples=150, deadline=None)
@given(fractional_timestamps())
def test_ion_text_round_trips_exactly(t: Timestamp) -> None:
    text = dt.timestamp_text(t)
    assert exact(dt.to_timestamp(text)) == exact(t)
    assert exact(load_text(text)) == exact(t)


@settings(max_examples=150, deadline=None)
@given(fractional_timestamps())
def test_to_string_and_to_timestamp_round_trip_to_the_nanosecond(t: Timestamp) -> None:
    fmt = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSSSSxxx"
    if dt.offset_minutes(t) is None:
        fmt = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSSSS"
    back = dt.to_timestamp(dt.to_string(t, fmt), fmt)
    truncated = Decimal(int(dt.fraction(t).scaleb(9))).scaleb(-9)  # S digits: never rounded
    assert exact(back)[:6] == exact(t)[:6]
    assert dt.fraction(back) == truncated
    assert dt.offset_minutes(back) == dt.offset_minutes(t)
    assert dt.extract("second", t) == t.second + dt.fraction(t)


@settings(max_examples=100, deadline=None)
@given(fractional_timestamps(), fractional_timestamps())
def test_evaluator_never_drops_fractional_timestamps(a: Timestamp, b: Timestamp) -> None:
    ctx = Context(mode="coerce")
    got = evaluate(
        "[DATE_ADD(second, 1, ?), CAST(? AS TIMESTAMP), DATE_DIFF(second, ?, ?), ? < ?,"
        " TO_STRING(?, 'n')]",
        {},
        "coerce",
        parameters=[a, a, a, b, a, b, a],
        context=ctx,
    )
    assert MISSING not in got
    assert exact(got[0]) == exact(dt.date_add("second", 1, a))
    assert exact(got[1]) == exact(a)
    assert got[2] == int(dt.instant(b) - dt.instant(a))
    assert got[3] is (dt.instant(a) < dt.instant(b))
    assert got[4] == str(int(dt.fraction(a).scaleb(9)))

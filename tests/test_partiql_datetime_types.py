"""PartiQL 1.0's SQL datetime types (DATE, TIME, TIMESTAMP, INTERVAL) on both paths.

- Properties (Hypothesis) of the arithmetic: (d + i) - i == d for dates and day intervals
  and for timestamps and any interval that does not clamp a day; (t + i) - t == i for
  timestamps and day-time intervals; comparison agrees with the order of instants and
  with ORDER BY; interval sums and scalings are exact; TIME arithmetic wraps around midnight.
- Casts round trip: interval -> string -> interval, date/time -> string -> date/time.
- Storage: every DATE, TIME and INTERVAL value is stored as the annotated Ion sqltime.py
  documents, round-trips through codec and Ion text exactly, and reads back (`lift`) as the
  value it was; through a ledger an INSERT then SELECT gives equal values, WHERE compares a
  stored value with a literal, and the revision hash is the Ion hash of the annotated Ion
  spelled independently here.
- IS DECIMAL(p, s) checks the written digits.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion import simpleion
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Ledger, codec
from core.ionhash import dot, ion_hash
from core.partiql import datetimes as dt
from core.partiql import sqltime, values
from core.partiql.datetimes import Date, Time
from core.partiql.evaluator import evaluate
from core.partiql.intervals import NANOS_PER_SECOND, IntervalDT, IntervalYM
from core.storage import MemoryStorage

DAY_NANOS = 86_400 * NANOS_PER_SECOND

dates = st.dates(datetime.date(1000, 1, 1), datetime.date(8999, 12, 31)).map(
    lambda d: Date(d.year, d.month, d.day)
)
fractions = st.integers(0, 10**9 - 1).map(lambda n: Decimal(n).scaleb(-9))
offsets = st.one_of(st.none(), st.integers(-23 * 60 - 59, 23 * 60 + 59))
times = st.builds(
    lambda h, m, s, f, o: Time(h, m, Decimal(s) + f, o),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    fractions,
    offsets,
)
timestamps = st.builds(
    lambda d, t: dt.make_timestamp(
        d.year, d.month, d.day, t.hour, t.minute, int(t.second), t.second % 1, t.offset
    ),
    dates,
    times,
)
ym_intervals = st.integers(-99 * 12, 99 * 12).map(IntervalYM)
dt_intervals = st.integers(-99 * DAY_NANOS, 99 * DAY_NANOS).map(IntervalDT)
day_intervals = st.integers(-9999, 9999).map(lambda n: IntervalDT(n * DAY_NANOS))


def run(text: str, **env: Any) -> Any:
    return evaluate(text, env, "error")


@settings(max_examples=200, deadline=None)
@given(dates, day_intervals)
def test_date_plus_days_minus_days_is_the_date(d: Date, i: IntervalDT) -> None:
    shifted = run("d + i", d=d, i=i)
    assert isinstance(shifted, Date)
    assert run("(d + i) - i", d=d, i=i) == d
    assert run("(d + i) - d", d=d, i=i) == i  # date - date: the days between


@settings(max_examples=200, deadline=None)
@given(timestamps, dt_intervals)
def test_timestamp_plus_day_time_interval_undoes_itself(t: Any, i: IntervalDT) -> None:
    assert values.equivalent(run("(t + i) - i", t=t, i=i), t)
    assert run("(t + i) - t", t=t, i=i) == i
    assert run("t + i = i + t", t=t, i=i) is True
    later = run("t + i", t=t, i=i)
    assert dt.offset_minutes(later) == dt.offset_minutes(t)  # the offset is kept
    assert run("t + i > t", t=t, i=i) is (i.nanos > 0)


@settings(max_examples=200, deadline=None)
@given(timestamps.filter(lambda t: t.day <= 28), ym_intervals)
def test_timestamp_plus_months_undoes_itself_when_no_day_is_clamped(t: Any, i: IntervalYM) -> None:
    assert values.equivalent(run("(t + i) - i", t=t, i=i), t)
    moved = run("t + i", t=t, i=i)
    months = (moved.year - t.year) * 12 + moved.month - t.month
    assert months == i.months
    assert moved.day == t.day


@settings(max_examples=200, deadline=None)
@given(times, dt_intervals)
def test_time_arithmetic_wraps_around_midnight(t: Time, i: IntervalDT) -> None:
    moved = run("t + i", t=t, i=i)
    assert isinstance(moved, Time)
    assert moved.offset == t.offset
    assert 0 <= moved.hour < 24
    assert 0 <= moved.second < 60
    back = run("(t + i) - i", t=t, i=i)
    assert back == t or (back.hour, back.minute, back.second) == (t.hour, t.minute, t.second)
    gap = run("(t + i) - t", t=t, i=i)  # the instant difference, within one day
    assert (gap.nanos - i.nanos) % DAY_NANOS == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(timestamps, dates.map(dt.date_to_timestamp)), min_size=2, max_size=6))
def test_comparison_and_order_by_agree_with_instants(ts: list[Any]) -> None:
    a, b = ts[0], ts[1]
    assert run("a < b", a=a, b=b) is (dt.instant(a) < dt.instant(b))
    assert run("a = b", a=a, b=b) is (dt.instant(a) == dt.instant(b))
    ordered = run("SELECT VALUE x FROM xs AS x ORDER BY x", xs=ts)
    assert [dt.instant(x) for x in ordered] == sorted(dt.instant(x) for x in ts)


@settings(max_examples=200, deadline=None)
@given(dt_intervals, dt_intervals, st.integers(-9, 9))
def test_interval_sums_and_products_are_exact(a: IntervalDT, b: IntervalDT, k: int) -> None:
    assert run("a + b - b", a=a, b=b) == a
    assert run("a < b", a=a, b=b) is (a.nanos < b.nanos)
    if abs(a.nanos * k) <= 99 * DAY_NANOS and a.nanos % 1000 == 0:
        assert run("a * k", a=a, k=k) == IntervalDT(a.nanos * k)
        if k:
            assert run("(a * k) / k", a=a, k=k) == a
    assert run("-a", a=a) == IntervalDT(-a.nanos)
    assert run("ABS(a)", a=a) == IntervalDT(abs(a.nanos))


@settings(max_examples=200, deadline=None)
@given(st.one_of(ym_intervals, dt_intervals))
def test_interval_cast_to_string_and_back(i: Any) -> None:
    text = run("CAST(i AS STRING)", i=i)
    qualifier = "YEAR(3) TO MONTH" if isinstance(i, IntervalYM) else "DAY(3) TO SECOND(9)"
    assert run(f"CAST(s AS INTERVAL {qualifier})", s=text) == i
    assert run(f"INTERVAL '{text}' {qualifier}") == i


@settings(max_examples=200, deadline=None)
@given(dates, times)
def test_date_and_time_cast_to_string_and_back(d: Date, t: Time) -> None:
    assert run("CAST(CAST(d AS STRING) AS DATE)", d=d) == d
    assert run("CAST(CAST(t AS STRING) AS TIME)", t=t) == t


@settings(max_examples=300, deadline=None)
@given(st.one_of(dates, times, ym_intervals, dt_intervals))
def test_stored_ion_round_trips_exactly(v: Any) -> None:
    stored = sqltime.to_ion(v)
    assert stored is not v
    assert stored.ion_annotations
    assert sqltime.lift(stored) == v
    text = simpleion.dumps(stored, binary=False)
    assert sqltime.lift(simpleion.loads(text)) == v
    unpacked = codec.unpack(codec.pack(stored))
    assert simpleion.dumps(unpacked, binary=False) == text
    assert sqltime.lift(unpacked) == v
    assert ion_hash(unpacked) == ion_hash(simpleion.loads(text))


def test_malformed_annotated_values_stay_what_they_are() -> None:
    for text in ['$date::"x"', "$interval_ym::{years: -1}", "$time::{hour: 1}", "$date::{a: 1}"]:
        value = simpleion.loads(text)
        assert sqltime.lift(value) is value


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(MemoryStorage(), clock_ms=lambda: 1_700_000_000_000)
    ledger.execute_lambda(lambda tx: tx.execute_statement("CREATE TABLE T"))
    return ledger


def rows(ledger: Ledger, text: str) -> list[Any]:
    return ledger.execute_lambda(lambda tx: list(tx.execute_statement(text)))


_INSERTED = (
    "INSERT INTO T VALUE {'d': DATE '2021-02-28', 't': TIME '12:00:00.50+01:00', "
    "'u': TIME '23:59:59', 'i': INTERVAL '1-2' YEAR TO MONTH, "
    "'j': INTERVAL '-1 2:03:04.5' DAY TO SECOND, 'ts': TIMESTAMP '2021-02-28 10:00:00.123'}"
)
# The same document spelled as Ion here, independently of sqltime.to_ion.
_AS_ION = (
    "{d: $date::2021-02-28, t: $time::{hour: 12, minute: 0, second: 0.50, offset: 60}, "
    "u: $time::{hour: 23, minute: 59, second: 59., offset: null}, "
    'i: $interval_ym::{sign: "+", years: 1, months: 2}, '
    'j: $interval_dt::{sign: "-", days: 1, hours: 2, minutes: 3, seconds: 4, '
    "nanos: 500000000}, ts: 2021-02-28T10:00:00.123-00:00}"
)


def test_insert_select_round_trip_and_revision_hash(ledger: Ledger) -> None:
    rows(ledger, _INSERTED)
    [doc] = rows(ledger, "SELECT * FROM T")
    expected = simpleion.loads(_AS_ION)
    assert simpleion.dumps(doc, binary=False) == simpleion.dumps(expected, binary=False)
    assert sqltime.lift(doc["d"]) == Date(2021, 2, 28)
    assert sqltime.lift(doc["j"]) == IntervalDT(-(DAY_NANOS + 7384 * NANOS_PER_SECOND + 5 * 10**8))
    [revision] = rows(ledger, "SELECT * FROM _ql_committed_T")
    metadata_hash = ion_hash(revision["metadata"])
    assert bytes(revision["hash"]) == dot(metadata_hash, ion_hash(expected))
    plain = simpleion.loads(_AS_ION.replace("$date::", "").replace("$time::", ""))
    assert bytes(revision["hash"]) != dot(metadata_hash, ion_hash(plain))  # annotations count


def test_stored_values_compute_as_the_values_they_are(ledger: Ledger) -> None:
    rows(ledger, _INSERTED)
    query = (
        "SELECT t.d + INTERVAL '1' DAY AS nextday, t.i * 2 AS twice, t.ts - t.d AS since, "
        "EXTRACT(TIMEZONE_HOUR FROM t.t) AS tzh, t.u + INTERVAL '1' SECOND AS wrapped "
        "FROM T AS t WHERE t.d = DATE '2021-02-28' AND t.i > INTERVAL '1' YEAR "
        "AND t.t < TIME '12:00:01+01:00' AND t.j < INTERVAL '0' SECOND"
    )
    [row] = rows(ledger, query)
    assert sqltime.lift(row["nextday"]) == Date(2021, 3, 1)
    assert sqltime.lift(row["twice"]) == IntervalYM(28)
    assert sqltime.lift(row["since"]) == IntervalDT(36_000_123_000_000)
    assert row["tzh"] == 1
    assert sqltime.lift(row["wrapped"]) == Time(0, 0, Decimal(0), None)
    # stored values group and sort with the literals they equal
    rows(ledger, "INSERT INTO T VALUE {'d': DATE '2020-01-01'}")
    ordered = rows(ledger, "SELECT VALUE t.d FROM T AS t ORDER BY t.d")
    assert [sqltime.lift(v) for v in ordered] == [Date(2020, 1, 1), Date(2021, 2, 28)]
    [count] = rows(ledger, "SELECT VALUE COUNT(*) FROM T AS t WHERE t.d IN [DATE '2020-01-01']")
    assert count == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0000 IS DECIMAL(5, 3)", False),  # four fraction digits as written
        ("1.000 IS DECIMAL(4, 3)", True),
        ("1.000 IS DECIMAL(3, 3)", False),  # DECIMAL(3, 3) holds at most 0.999
        ("123.456 IS DECIMAL(7, 3)", True),
        ("123.456 IS DECIMAL(5, 3)", False),
        ("12 IS DECIMAL(2)", False),  # an int is not a decimal
        ("12. IS DECIMAL(2)", True),
        ("120. IS DECIMAL(2)", False),
        ("`1.2d3` IS DECIMAL(4)", True),  # 1200, no fraction digits
        ("0.00 IS DECIMAL(4, 3)", True),
        ("1.5 IS NOT DECIMAL(2, 0)", True),
    ],
)
def test_is_decimal_checks_precision_and_scale(text: str, expected: bool) -> None:
    assert run(text) is expected

"""Hostile values at the ledger's boundary: the bounds of core/limits.py and typed errors.

Every case runs against an in-memory ledger and one on LevelDB. A value beyond the bounds
(a decimal exponent in the millions, an integer of more than 4,300 digits, containers nested
too deeply, a lone surrogate) is refused with a typed error before anything is stored or
computed with it, and the journal is unchanged; values at the bounds round-trip exactly and
compare correctly; arithmetic and casts never build a number beyond the bounds; statements
of thousands of OR / AND / + / || terms run, and nesting beyond MAX_EXPRESSION_DEPTH is a
syntax error that names the limit.

Cases that could hang (Python computing 10**999999999 while holding the GIL) run under
`hang_guard`, which kills the test process with every thread's traceback if a case takes
minutes: nothing else can interrupt such a computation. It is a guard, not a timing check.
"""

from __future__ import annotations

import contextlib
import datetime
import faulthandler
import functools
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyDecimal, IonPyDict, IonPyInt, IonPyList
from amazon.ion.symbols import SymbolToken
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core import limits
from core.errors import (
    InvalidArgumentError,
    InvalidDocumentError,
    LimitExceededError,
    PartiQLEvaluationError,
    PartiQLSyntaxError,
    StrandError,
    ValueOutOfRangeError,
)
from core.ledger import Ledger
from core.partiql.parser import parse
from core.partiql.values import arithmetic
from core.transaction import Transaction

BIG = 10**limits.MAX_INT_DIGITS - 1  # the largest integer Strand stores
E = limits.MAX_DECIMAL_EXPONENT
D = limits.MAX_DECIMAL_DIGITS


@contextlib.contextmanager
def hang_guard(seconds: float = 120) -> Iterator[None]:
    """Kill the process, printing every thread's stack, if the block runs `seconds`."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=["memory", "leveldb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger with table t (indexed on k) holding {k: 1, v: 5}."""
    opened = Ledger.in_memory() if request.param == "memory" else Ledger.open(tmp_path / "l")
    with opened:
        opened.execute_statement("CREATE TABLE t")
        opened.execute_statement("CREATE INDEX ON t (k)")
        opened.execute_statement("INSERT INTO t ?", {"k": 1, "v": 5})
        yield opened


def refused(
    ledger: Ledger, error: type[Exception], statement: str, *params: Any, match: str = ""
) -> None:
    """The statement raises `error` (in bounded time) and the journal does not change."""
    before = ledger.get_digest()
    with hang_guard(), pytest.raises(error, match=match or None):
        ledger.execute_statement(statement, *params)
    assert ledger.get_digest() == before


def refused_natively(
    ledger: Ledger, error: type[Exception], fn: Callable[[Transaction], Any], match: str = ""
) -> None:
    before = ledger.get_digest()
    with hang_guard(), pytest.raises(error, match=match or None):
        ledger.execute_lambda(fn)
    assert ledger.get_digest() == before


def nested(depth: int) -> dict[str, Any]:
    """A struct of `depth` nested structs ({} is depth 1)."""
    return functools.reduce(lambda inner, _: {"a": inner}, range(depth - 1), {})


def timestamp(fraction: Decimal) -> Timestamp:
    return Timestamp(
        2024, 5, 6, 7, 8, 9, None, datetime.UTC,
        precision=TimestampPrecision.SECOND, fractional_seconds=fraction,
    )  # fmt: skip


# ============================================================================ refused values

OUT_OF_RANGE = {
    "huge exponent": (Decimal("1E+999999999"), "MAX_DECIMAL_EXPONENT"),
    "tiny exponent": (Decimal("-1E-999999999"), "MAX_DECIMAL_EXPONENT"),
    "zero, huge exponent": (Decimal("0E+999999999"), "MAX_DECIMAL_EXPONENT"),
    "just past the exponent": (Decimal(f"1E+{E + 1}"), "MAX_DECIMAL_EXPONENT"),
    "too many digits": (Decimal("9" * (D + 1)), "MAX_DECIMAL_DIGITS"),
    "integer of 4301 digits": (BIG + 1, "MAX_INT_DIGITS"),
    "integer of 100001 digits": (-(10**100_000), "MAX_INT_DIGITS"),
    "2**15000 (amazon-ion C crashes)": (2**15000, "MAX_INT_DIGITS"),
    "fraction of 1E-999999999 s": (timestamp(Decimal("1E-999999999")), "MAX_DECIMAL_EXPONENT"),
    "fraction of 0E-999999999 s": (timestamp(Decimal("0E-999999999")), "MAX_DECIMAL_EXPONENT"),
    "nested 101 deep": (nested(101), "MAX_NESTING_DEPTH"),
    "nested 5000 deep": (nested(5000), "MAX_NESTING_DEPTH"),
    "inside a list": ([1, [2, Decimal("1E+20000")]], "MAX_DECIMAL_EXPONENT"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_out_of_range_values_are_refused_everywhere(ledger: Ledger, case: str) -> None:
    value, limit = OUT_OF_RANGE[case]
    pad = "x" * 40_000  # past 32 KB of msgpack the size is measured as Ion binary
    for doc in ({"k": 2, "v": value, "pad": pad}, {"k": value}, {"k": 2, "v": value}):
        refused(ledger, ValueOutOfRangeError, "INSERT INTO t ?", doc, match=limit)
        refused_natively(ledger, ValueOutOfRangeError, lambda tx, d=doc: tx.insert("t", d))
    refused(ledger, ValueOutOfRangeError, "SELECT * FROM t WHERE v > ?", value, match=limit)
    refused(ledger, ValueOutOfRangeError, "SELECT * FROM t WHERE k = ?", value, match=limit)
    refused(ledger, ValueOutOfRangeError, "UPDATE t SET v = ? WHERE k = 1", value)
    refused_natively(ledger, ValueOutOfRangeError, lambda tx: tx.find("t", k=value))


def test_the_check_sees_into_every_kind_of_ion_value() -> None:
    huge = Decimal("1E+20000")
    repeated = IonPyDict.from_value(IonType.STRUCT, {})
    repeated.add_item("a", 1)
    repeated.add_item("a", huge)  # the second value of a repeated name
    for value in (
        repeated,
        IonPyList.from_value(IonType.SEXP, [1, [huge]]),
        (1, (2, huge)),
        IonPyInt.from_value(IonType.INT, 10**5000, ("note",)),
        IonPyDecimal.from_value(IonType.DECIMAL, huge),
        timestamp(Decimal("1E-20000")),
        huge,
    ):
        with pytest.raises(ValueOutOfRangeError):
            limits.check_value(value)
    for value in (SymbolToken("x" * 10, None), "x", b"x", 1.5, True, None, [nested(99)]):
        limits.check_value(value)
    with pytest.raises(ValueOutOfRangeError, match="MAX_NESTING_DEPTH"):
        limits.check_value([nested(100)])


def test_the_probe_cases_of_the_issue(ledger: Ledger) -> None:
    """The values that froze the process or escaped as untyped errors."""
    refused(ledger, ValueOutOfRangeError, "INSERT INTO t ?", {"k": Decimal("1E+999999999")})
    refused(ledger, ValueOutOfRangeError, "SELECT ? * ? FROM t", 10**100_000, 10**100_000)
    refused(ledger, PartiQLSyntaxError, "SELECT * FROM t WHERE x = '\ud800'")
    with hang_guard():  # `v > 5` compared a stored 1E+999999999 by building 10**999999999
        assert ledger.execute_statement("SELECT VALUE k FROM t WHERE v > 4") == [1]


# ============================================================================ literals

LITERALS = {
    "decimal exponent": ("SELECT * FROM t WHERE v > 1e999999999", "MAX_DECIMAL_EXPONENT"),
    "decimal digits": ("SELECT * FROM t WHERE v > " + "9" * 5000 + ".5", "MAX_DECIMAL_DIGITS"),
    "integer digits": ("SELECT * FROM t WHERE v > " + "9" * 4301, "MAX_INT_DIGITS"),
    "Ion decimal": ("SELECT `1d999999999` AS x FROM t", "MAX_DECIMAL_EXPONENT"),
    "Ion nesting": ("SELECT `" + "[" * 101 + "]" * 101 + "` AS x FROM t", "MAX_NESTING_DEPTH"),
    "Ion nesting 3000": ("SELECT `" + "[" * 3000 + "]" * 3000 + "` AS x FROM t", "Ion"),
    "Ion integer": ("SELECT `" + "9" * 5000 + "` AS x FROM t", "Ion literal"),
    "Ion fraction": ("SELECT `2024-01-01T00:00:00." + "0" * 20_000 + "1Z` AS x", "literal"),
    "inserted": ("INSERT INTO t VALUE {'k': 2, 'v': 1e20000}", "MAX_DECIMAL_EXPONENT"),
}


@pytest.mark.parametrize("case", list(LITERALS))
def test_literals_beyond_the_bounds_are_syntax_errors(ledger: Ledger, case: str) -> None:
    statement, match = LITERALS[case]
    refused(ledger, PartiQLSyntaxError, statement, match=match)


def test_literals_at_the_bounds_are_exact(ledger: Ledger) -> None:
    for text in (f"1e{E}", f"-1e-{E}", "9" * D + f"e{E - D + 1}", str(BIG), f"`1d{E}`"):
        [row] = ledger.execute_statement(f"SELECT VALUE {text} FROM t")
        assert row == (int(text) if text.isdigit() else Decimal(text.strip("`").replace("d", "e")))


# ============================================================================ lone surrogates


def test_lone_surrogates_are_typed_errors(ledger: Ledger) -> None:
    with pytest.raises(PartiQLSyntaxError) as info:
        ledger.execute_statement("SELECT * FROM t\nWHERE x = 'a\ud800'")
    assert (info.value.line, info.value.column) == (2, 13)
    refused(ledger, PartiQLSyntaxError, "INSERT INTO t VALUE {'k': '\udfff'}")
    refused(ledger, InvalidArgumentError, "INSERT INTO t ?", {"k": "\ud800"})
    refused(ledger, InvalidArgumentError, "SELECT * FROM t WHERE k = ?", "\ud800")
    refused(ledger, InvalidArgumentError, "INSERT INTO t ?", {"\ud800": 1})
    for doc in ({"k": "\ud800"}, {"k": ["\udbff"]}, {"k": {"\ud800": 1}}):
        refused_natively(ledger, InvalidDocumentError, lambda tx, d=doc: tx.insert("t", d))
    refused_natively(ledger, InvalidArgumentError, lambda tx: tx.find("t", k="\ud800"))


# ============================================================================ values at the bounds

AT_THE_BOUNDS = {
    "largest integer": BIG,
    "smallest integer": -BIG,
    "most digits, largest exponent": Decimal((0, (9,) * D, E)),
    "most digits, smallest exponent": Decimal((1, (1,) * D, -E)),
    "1E+10000": Decimal(f"1E+{E}"),
    "1E+5000: an index key of 5001 digits": Decimal("1E+5000"),
    "-0E-10000": Decimal(f"-0E-{E}"),
    "fraction of 1E-10000 s": timestamp(Decimal(f"1E-{E}")),
    "nested 100 deep": nested(100)["a"],  # a field of the document: 99 deep, 100 with it
}


@pytest.mark.parametrize("case", list(AT_THE_BOUNDS))
def test_values_at_the_bounds_round_trip_exactly(ledger: Ledger, case: str) -> None:
    value = AT_THE_BOUNDS[case]
    pad = "x" * 40_000  # Ion binary size measured by amazon-ion's C extension
    with hang_guard():
        for doc in ({"k": value, "n": 1}, {"k": value, "n": 2, "pad": pad}):
            [out] = ledger.execute_statement("INSERT INTO t ?", doc)
            [back] = ledger.execute_statement(
                "SELECT * FROM t AS d BY id WHERE id = ?", out["documentId"]
            )
            assert back == doc
            if isinstance(value, Decimal):  # the exponent too: 1E+10000 is not 10.0E+9999
                assert back["k"].as_tuple() == value.as_tuple()
            if isinstance(value, Timestamp):
                fraction = value.fractional_seconds
                assert back["k"].fractional_seconds.as_tuple() == fraction.as_tuple()
        # found through the index, and by a scan (NOT ... <> is no index lookup)
        for where in ("d.k = ?", "NOT (d.k <> ?)"):
            found = ledger.execute_statement(f"SELECT VALUE d.n FROM t AS d WHERE {where}", value)
            assert sorted(found) == [1, 2], where
    assert ledger.verify_journal().ok


def test_numbers_at_the_bounds_compare_exactly(ledger: Ledger) -> None:
    numbers = [Decimal(f"-1E+{E}"), -BIG, -1, Decimal(f"1E-{E}"), 5, BIG, Decimal(f"1E+{E}")]
    for n, value in enumerate(numbers):
        ledger.execute_statement("INSERT INTO t ?", {"k": value, "rank": n})
    with hang_guard():
        for n, value in enumerate(numbers):
            above = ledger.execute_statement(
                "SELECT VALUE d.rank FROM t AS d WHERE d.k > ? AND d.rank IS NOT NULL", value
            )
            assert sorted(above) == list(range(n + 1, len(numbers)))
        ordered = ledger.execute_statement(
            "SELECT VALUE d.rank FROM t AS d WHERE d.rank IS NOT NULL ORDER BY d.k DESC"
        )
        assert ordered == list(reversed(range(len(numbers))))


# ============================================================================ arithmetic, casts

COMPUTED = {
    "product of two 4000-digit integers": ("SELECT ? * ? AS x FROM t", (10**4000, -(10**4000))),
    "sum past the largest integer": ("SELECT ? + 1 AS x FROM t", (BIG,)),
    "difference past the smallest": ("SELECT ? - 1 AS x FROM t", (-BIG,)),
    "run of products": ("SELECT ? * ? * ? * ? * ? * ? * ? * ? * ? AS x FROM t", (10**500,) * 9),
    "decimal product": ("SELECT ? * ? AS x FROM t", (Decimal("1E+6000"), Decimal("1E+6000"))),
    "decimal quotient": ("SELECT ? / ? AS x FROM t", (Decimal("1E+6000"), Decimal("1E-6000"))),
    "decimal and integer": ("SELECT ? * ? AS x FROM t", (Decimal(f"1E+{E}"), BIG)),
    "CAST to decimal": ("SELECT CAST(? AS DECIMAL) AS x FROM t", ("1e999999999",)),
    "CAST of many digits": ("SELECT CAST(? AS DECIMAL) AS x FROM t", ("9" * 5000,)),
    "CAST(DECIMAL(p, s))": ("SELECT CAST(0 AS DECIMAL(30000, 20000)) AS x FROM t", ()),
    "inserted product": ("INSERT INTO t VALUE {'k': 2, 'v': ? * ?}", (10**3000, 10**3000)),
    "inserted CAST": ("INSERT INTO t VALUE {'k': 2, 'v': CAST('1e20000' AS DECIMAL)}", ()),
}


@pytest.mark.parametrize("case", list(COMPUTED))
def test_results_beyond_the_bounds_are_errors_in_every_mode(ledger: Ledger, case: str) -> None:
    statement, params = COMPUTED[case]
    refused(ledger, ValueOutOfRangeError, statement, *params)


def test_can_cast_says_no_to_results_beyond_the_bounds(ledger: Ledger) -> None:
    rows = ledger.execute_statement(
        "SELECT CAN_CAST('1e999999999' AS DECIMAL) AS a, CAN_CAST('1e10000' AS DECIMAL) AS b, "
        "CAN_LOSSLESS_CAST('9e99999' AS DECIMAL) AS c, CAN_CAST(? AS INT) AS d FROM t",
        Decimal(f"1E+{E}"),
    )
    assert rows == [{"a": False, "b": True, "c": False, "d": False}]
    # out of the target's range: a data error in coerce mode too (the extended suite's int.ion)
    with pytest.raises(PartiQLEvaluationError, match="does not fit a 64-bit integer"):
        ledger.execute_statement("SELECT CAST(? AS INT) AS d FROM t", Decimal(f"1E+{E}"))


def test_products_are_refused_before_they_are_computed() -> None:
    """Operands beyond the bounds (stored before them) are never multiplied: squaring a
    number of 2**28 bits would hold the GIL for minutes."""
    huge = 1 << 2**28
    with hang_guard(), pytest.raises(ValueOutOfRangeError, match="product"):
        arithmetic("*", huge, -huge, "coerce")


def test_a_sum_past_the_bound_is_refused(ledger: Ledger) -> None:
    for n in (2, 3):
        ledger.execute_statement("INSERT INTO t ?", {"k": n, "big": BIG})
    refused(ledger, ValueOutOfRangeError, "SELECT SUM(d.big) AS s FROM t AS d")
    assert ledger.execute_statement("SELECT MAX(d.big) AS s FROM t AS d") == [{"s": BIG}]


def test_arithmetic_within_the_bounds_is_exact(ledger: Ledger) -> None:
    x = 10**2150
    [row] = ledger.execute_statement("SELECT ? * ? AS p, ? + ? AS s FROM t", x, x - 1, BIG - 1, 1)
    assert row == {"p": x * (x - 1), "s": BIG}
    assert ledger.execute_statement("SELECT VALUE ? % 7 FROM t", BIG) == [BIG % 7]
    assert ledger.execute_statement("SELECT VALUE ? + `1.5e0` FROM t", BIG) == [math.inf]
    [remainder] = ledger.execute_statement("SELECT VALUE `+inf` % `2e0` FROM t")
    assert math.isnan(remainder)  # IEEE, where Python's math.fmod raises


# ============================================================================ long statements


def test_a_flat_run_of_thousands_of_ors_runs(ledger: Ledger) -> None:
    where = " OR ".join(f"k = {i}" for i in range(2, 3002)) + " OR v = 5"
    with hang_guard():
        assert ledger.execute_statement("SELECT VALUE k FROM t WHERE " + where) == [1]
        where = " AND ".join(f"k <> {i}" for i in range(2, 3002))
        assert ledger.execute_statement("SELECT VALUE k FROM t WHERE " + where) == [1]


def test_flat_runs_of_arithmetic_and_concatenation_are_exact(ledger: Ledger) -> None:
    terms = [(i * 7919) % 1000 - 500 for i in range(3000)]
    text = str(terms[0]) + "".join(f" {'-' if i % 3 else '+'} ({t})" for i, t in enumerate(terms))
    expected = terms[0]
    for i, t in enumerate(terms):
        expected = expected - t if i % 3 else expected + t
    with hang_guard():
        assert ledger.execute_statement(f"SELECT VALUE {text} FROM t") == [expected]
        product = " * ".join(["1"] * 2999 + ["2"]) + " / 2 % 5"
        assert ledger.execute_statement(f"SELECT VALUE {product} FROM t") == [1]
        concat = " || ".join(f"'{i % 10}'" for i in range(3000))
        expect = "".join(str(i % 10) for i in range(3000))
        assert ledger.execute_statement(f"SELECT VALUE {concat} FROM t") == [expect]
        deep = "(" * 3000 + "v" + ")" * 3000  # parentheses alone nest nothing
        assert ledger.execute_statement(f"SELECT VALUE {deep} FROM t") == [5]


NESTED_STATEMENTS: dict[str, Callable[[int], str]] = {
    "NOT": lambda n: "SELECT VALUE k FROM t WHERE " + "NOT " * n + "false",
    "unary minus": lambda n: "SELECT VALUE " + "- " * n + "1 FROM t",
    "structs": lambda n: "SELECT VALUE " + "{'a': " * n + "k" + "}" * n + " FROM t",
    "lists": lambda n: "SELECT VALUE " + "[" * n + "k" + "]" * n + " FROM t",
    "CASE": lambda n: "SELECT VALUE " + "CASE WHEN true THEN " * n + "k" + " END" * n + " FROM t",
    "functions": lambda n: "SELECT VALUE " + "abs(" * n + "k" + ")" * n + " FROM t",
    "subqueries": lambda n: (
        "SELECT VALUE " + "(SELECT VALUE " * n + "k" + " FROM t)" * n + " FROM t"
    ),
    "UNION": lambda n: " UNION ".join(["SELECT k FROM t"] * n),
    "comparisons": lambda n: "SELECT VALUE k FROM t WHERE " + " = ".join(["true"] * n),
}


def _deepest_accepted(make: Callable[[int], str]) -> int:
    n = 1
    while True:
        try:
            parse(make(n + 1))
        except PartiQLSyntaxError:
            return n
        n += 1


def _with_stack(frames: int, fn: Callable[[], Any]) -> Any:
    """fn() called `frames` frames deep, as from a deep caller (a server's handler)."""
    return fn() if frames <= 0 else _with_stack(frames - 1, fn)


@pytest.mark.parametrize("case", list(NESTED_STATEMENTS))
def test_nesting_is_bounded_by_a_documented_limit(ledger: Ledger, case: str) -> None:
    make = NESTED_STATEMENTS[case]
    n = _deepest_accepted(make)
    assert 20 <= n < 100
    # at the limit the statement runs, even from 300 frames down
    with hang_guard():
        _with_stack(300, lambda: ledger.execute_statement(make(n)))
    for deeper in (n + 1, 5000):
        statement = make(deeper)
        if len(statement) <= limits.MAX_STATEMENT_CHARS:
            refused(ledger, PartiQLSyntaxError, statement, match="MAX_EXPRESSION_DEPTH")


def test_a_statement_too_deep_for_the_stack_is_a_limit_error(ledger: Ledger) -> None:
    """The safety net under the bounds: a RecursionError becomes a LimitExceededError.
    Called from ever deeper down, the statement's evaluation (the deepest part of the
    call) is the first thing to run out of stack."""
    make = NESTED_STATEMENTS["subqueries"]
    statement = make(_deepest_accepted(make))
    before = ledger.get_digest()
    error: Exception | None = None
    for frames in range(300, 1000, 10):
        try:
            _with_stack(frames, lambda: ledger.execute_statement(statement))
        except LimitExceededError as exc:
            error = exc
            break
    assert error is not None, "the statement ran even from 1,000 frames down"
    assert "nested too deeply" in str(error)
    assert ledger.get_digest() == before


# ============================================================================ legacy values


def test_values_stored_before_the_bounds_existed_compare_in_bounded_time(ledger: Ledger) -> None:
    """A journal written before the bounds can hold 1E+999999999: reading, comparing,
    indexing and sorting it never builds the integer it denotes."""
    legacy = [Decimal("1E+999999999"), Decimal("-1E+999999999"), Decimal("1E-999999999")]
    with mock.patch("core.transaction.check_value"):
        for n, value in enumerate(legacy):
            doc = {"k": value, "v": value, "n": n}
            ledger.execute_lambda(lambda tx, d=doc: tx.insert("t", d))
    with hang_guard():
        rows = ledger.execute_statement("SELECT VALUE d.n FROM t AS d WHERE d.v > 5")
        assert rows == [0]
        rows = ledger.execute_statement("SELECT VALUE d.n FROM t AS d WHERE d.k = ?", 0)
        assert rows == []
        ordered = ledger.execute_statement("SELECT VALUE d.v FROM t AS d ORDER BY d.v")
        assert ordered == [legacy[1], legacy[2], 5, legacy[0]]
        assert len(ledger.execute_statement("SELECT DISTINCT d.v FROM t AS d")) == 4
        ledger.execute_statement("CREATE INDEX ON t (v)")
        rows = ledger.execute_statement("SELECT VALUE d.k FROM t AS d WHERE d.v IN [5, 6]")
        assert rows == [1]
        with pytest.raises(ValueOutOfRangeError):
            ledger.execute_statement("SELECT d.v * 2 AS x FROM t AS d")


# ============================================================================ properties


@functools.cache
def _shared() -> Ledger:
    shared = Ledger.in_memory()
    shared.execute_statement("CREATE TABLE n")
    shared.execute_statement("CREATE INDEX ON n (k)")
    return shared


def _in_bounds(value: int | float | Decimal) -> bool:
    try:
        limits.check_number(value)
    except ValueOutOfRangeError:
        return False
    return True


def _exact(value: int | float | Decimal) -> Decimal:
    return Decimal(value)  # ints and floats convert exactly


_DIGITS = st.lists(st.integers(0, 9), min_size=1, max_size=40).map(tuple)
_DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
    st.integers(0, 1),
    _DIGITS | st.integers(D - 2, D + 2).map(lambda n: (7,) * n),
    st.integers(-12_000, 12_000) | st.integers(-(10**9), 10**9) | st.integers(-E - 2, -E + 2),
)
_INTS = st.integers(-(10**20), 10**20) | st.builds(
    lambda sign, size, rest: sign * (10**size - rest),
    st.sampled_from([1, -1]),
    st.integers(4000, 4310),
    st.integers(0, 10),
)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = st.one_of(_INTS, _DECIMALS, _FLOATS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NUMBERS, NUMBERS)
def test_numbers_are_refused_or_compared_exactly(a: Any, b: Any) -> None:
    shared = _shared()
    statement = "SELECT VALUE [? < ?, ? = ?, ? > ?] FROM <<0>>"
    with hang_guard():
        if not (_in_bounds(a) and _in_bounds(b)):
            with pytest.raises(ValueOutOfRangeError):
                shared.execute_statement(statement, a, b, a, b, a, b)
            return
        [row] = shared.execute_statement(statement, a, b, a, b, a, b)
    x, y = _exact(a), _exact(b)
    assert row == [x < y, x == y, x > y]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NUMBERS, NUMBERS)
def test_stored_numbers_are_found_by_value(a: Any, b: Any) -> None:
    shared = _shared()
    with hang_guard():
        if not _in_bounds(a):
            with pytest.raises(ValueOutOfRangeError):
                shared.execute_statement("INSERT INTO n ?", {"k": a})
            return
        [out] = shared.execute_statement("INSERT INTO n ?", {"k": a})
        try:
            [back] = shared.execute_statement(
                "SELECT VALUE k FROM n BY id WHERE id = ?", out["documentId"]
            )
            assert repr(back) == repr(a)
            if not _in_bounds(b):
                return
            for op, holds in (("=", _exact(a) == _exact(b)), ("<", _exact(a) < _exact(b))):
                found = shared.execute_statement(f"SELECT VALUE k FROM n WHERE k {op} ?", b)
                assert len(found) == int(holds), op
        finally:
            shared.execute_statement("DELETE FROM n WHERE k IS NOT MISSING")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(_DECIMALS, st.integers(0, 30))
def test_equal_numbers_of_other_spellings_find_each_other_in_an_index(
    value: Decimal, zeros: int
) -> None:
    """1.5 = 1.50 = 15E-1: one index key per value, whatever the exponent."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    other = Decimal((sign, (*digits, *(0,) * zeros), exponent - zeros))
    assume(_in_bounds(value) and _in_bounds(other))
    shared = _shared()
    with hang_guard():
        shared.execute_statement("INSERT INTO n ?", {"k": value})
        try:
            assert len(shared.execute_statement("SELECT * FROM n WHERE k = ?", other)) == 1
            if value == value.to_integral_value() and value.adjusted() < 30:
                found = shared.execute_statement("SELECT * FROM n WHERE k = ?", int(value))
                assert len(found) == 1
        finally:
            shared.execute_statement("DELETE FROM n WHERE k IS NOT MISSING")


_OPERANDS = st.builds(
    lambda sign, size, rest: sign * (10**size + rest),
    st.sampled_from([1, -1]),
    st.integers(0, 4299),
    st.integers(0, 10**6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPERANDS, _OPERANDS, st.sampled_from(["*", "+", "-"]))
def test_integer_arithmetic_is_exact_or_refused_exactly_past_the_bound(
    a: int, b: int, op: str
) -> None:
    assume(_in_bounds(a) and _in_bounds(b))
    exact = {"*": a * b, "+": a + b, "-": a - b}[op]
    int64 = all(-(2**63) <= v < 2**63 for v in (a, b))
    overflow = int64 and not -(2**63) <= exact < 2**63
    statement = f"SELECT VALUE ? {op} ? FROM <<0>>"
    with hang_guard():
        if overflow:  # int64 overflow: a data error in every mode (as partiql-lang-kotlin)
            with pytest.raises(PartiQLEvaluationError, match="overflow"):
                _shared().execute_statement(statement, a, b)
            return
        try:
            rows = _shared().execute_statement(statement, a, b)
        except ValueOutOfRangeError:
            assert not _in_bounds(exact)
            return
    assert _in_bounds(exact)
    assert rows == [exact]


def test_every_error_here_is_a_strand_error() -> None:
    assert issubclass(ValueOutOfRangeError, LimitExceededError)
    assert issubclass(LimitExceededError, StrandError)

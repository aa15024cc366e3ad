"""Every bound Strand puts on what its users send it, and the checks that enforce the bounds
on values.

QLDB's documented limits (shared/reference/qldb.md section 4):

=============================== =========== =================================================
MAX_DOCUMENTS_PER_TRANSACTION   40          documents a transaction writes
MAX_DOCUMENT_BYTES              128 KiB     one document revision, as Ion binary
MAX_TRANSACTION_BYTES           4 MiB       the documents a transaction writes, as Ion binary
MAX_STATEMENT_CHARS             100,000     characters of one PartiQL statement
MAX_ACTIVE_TABLES               20          active tables in a ledger
MAX_INDEXES_PER_TABLE           5           indexes on one table
(core/deadline.py)              30 s        a transaction's lifetime
=============================== =========== =================================================

Strand's bounds on values, so that no value can make the engine work in proportion to its
magnitude (Python builds the 10**999999999 behind `1E+999999999` when it compares it with an
int), crash amazon-ion's C extension (it crashes writing an int of more than 4,300 digits),
or fail later with an error that is not a `StrandError`:

=============================== =========== =================================================
MAX_INT_DIGITS                  4,300       decimal digits of an integer (Python's limit on
                                            int <-> text conversion: every stored integer
                                            can be written as Ion text)
MAX_DECIMAL_DIGITS              4,300       digits of a decimal's coefficient
MAX_DECIMAL_EXPONENT            10,000      |exponent| of a decimal (coefficient x 10**exponent)
                                            and of a timestamp's fractional seconds; holds
                                            every IEEE decimal128 (-6176..6111) and every float
MAX_NESTING_DEPTH               100         lists, sexps and structs nested in one value
MAX_EXPRESSION_DEPTH            64          nested expressions and clauses in one statement;
                                            a run of one binary operator (`a OR b OR ...`,
                                            `a + b + ...`) counts as one level, however long
=============================== =========== =================================================

The value bounds hold for documents written, statement parameters and literals, and the
results of arithmetic and casts; a value beyond them raises `ValueOutOfRangeError` (a
`LimitExceededError`) before it is stored or computed with. The bounds are far beyond what
ledgers hold (money, counters, ids, timestamps): any value a QLDB user stored fits.

Invariants: the checks take time linear in the size of the value (its number of elements and
digits), never in a number's magnitude, and never raise anything but ValueOutOfRangeError.
Nothing here keeps state, reads a clock or does I/O.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final

from amazon.ion.simple_types import IonPyDict
from amazon.ion.symbols import SymbolToken

from core.errors import ValueOutOfRangeError

__all__ = [
    "MAX_ACTIVE_TABLES",
    "MAX_DECIMAL_DIGITS",
    "MAX_DECIMAL_EXPONENT",
    "MAX_DOCUMENTS_PER_TRANSACTION",
    "MAX_DOCUMENT_BYTES",
    "MAX_EXPRESSION_DEPTH",
    "MAX_INDEXES_PER_TABLE",
    "MAX_INT_DIGITS",
    "MAX_NESTING_DEPTH",
    "MAX_STATEMENT_CHARS",
    "MAX_TRANSACTION_BYTES",
    "check_decimal",
    "check_int",
    "check_number",
    "check_product",
    "check_value",
    "expression_depth_message",
]

# QLDB's limits
MAX_DOCUMENTS_PER_TRANSACTION: Final = 40
MAX_DOCUMENT_BYTES: Final = 128 * 1024
MAX_TRANSACTION_BYTES: Final = 4 * 1024 * 1024
MAX_STATEMENT_CHARS: Final = 100_000
MAX_ACTIVE_TABLES: Final = 20
MAX_INDEXES_PER_TABLE: Final = 5

# Strand's bounds on values
MAX_INT_DIGITS: Final = 4300
MAX_DECIMAL_DIGITS: Final = 4300
MAX_DECIMAL_EXPONENT: Final = 10_000
MAX_NESTING_DEPTH: Final = 100
MAX_EXPRESSION_DEPTH: Final = 64

_INT_BOUND: Final = 10**MAX_INT_DIGITS  # |n| < this: at most MAX_INT_DIGITS digits
_INT_BOUND_BITS: Final = _INT_BOUND.bit_length()
_LOG10_2: Final = math.log10(2)
_SCALARS: Final = frozenset({str, float, bool, type(None), bytes, bytearray})

_INT_ADVICE = "store a larger number as a decimal with an exponent, or as a string"
_DECIMAL_ADVICE = "round it, or store it as a string"


def _where(where: str) -> str:
    return f" in {where}" if where else ""


def check_int(value: int, where: str = "") -> None:
    """Raise ValueOutOfRangeError if `value` has more than MAX_INT_DIGITS digits; `where`
    names the value for the message ("parameter 1", "the result of *")."""
    if -_INT_BOUND < value < _INT_BOUND:
        return
    digits = int(value.bit_length() * _LOG10_2) + 1
    raise ValueOutOfRangeError(
        f"an integer of about {digits} digits{_where(where)}: Strand's integers have at most "
        f"{MAX_INT_DIGITS} digits (MAX_INT_DIGITS); {_INT_ADVICE}"
    )


def check_decimal(value: Decimal, where: str = "", what: str = "a decimal") -> None:
    """Raise ValueOutOfRangeError if a finite decimal has more than MAX_DECIMAL_DIGITS
    digits or an exponent beyond +-MAX_DECIMAL_EXPONENT (NaN and infinities are left to the
    callers: Ion decimals cannot hold them)."""
    if not value.is_finite():
        return
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if not -MAX_DECIMAL_EXPONENT <= exponent <= MAX_DECIMAL_EXPONENT:
        raise ValueOutOfRangeError(
            f"{what} with exponent {exponent}{_where(where)}: Strand's decimals have an "
            f"exponent from -{MAX_DECIMAL_EXPONENT} to {MAX_DECIMAL_EXPONENT} "
            f"(MAX_DECIMAL_EXPONENT); {_DECIMAL_ADVICE}"
        )
    digits = value.adjusted() - exponent + 1
    if digits > MAX_DECIMAL_DIGITS:
        raise ValueOutOfRangeError(
            f"{what} of {digits} digits{_where(where)}: Strand's decimals have at most "
            f"{MAX_DECIMAL_DIGITS} digits (MAX_DECIMAL_DIGITS); {_DECIMAL_ADVICE}"
        )


def check_number(value: object, where: str = "") -> None:
    """check_int or check_decimal, as the value's type asks (floats are always in range)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        check_int(value, where)
    elif isinstance(value, Decimal):
        check_decimal(value, where)


def check_product(a: int, b: int, where: str = "") -> None:
    """Raise ValueOutOfRangeError, before multiplying, if a * b certainly has more than
    MAX_INT_DIGITS digits (the caller checks the product itself when this passes, which
    bounds the multiplication to numbers of about twice MAX_INT_DIGITS digits)."""
    if a and b and a.bit_length() + b.bit_length() - 2 >= _INT_BOUND_BITS:
        digits = int((a.bit_length() + b.bit_length() - 1) * _LOG10_2)
        raise ValueOutOfRangeError(
            f"a product of about {digits} digits{_where(where)}: Strand's integers have at "
            f"most {MAX_INT_DIGITS} digits (MAX_INT_DIGITS); multiply decimals instead "
            "(they round to 34 digits)"
        )


def _check_fraction(value: datetime.datetime, where: str) -> None:
    fraction = getattr(value, "fractional_seconds", None)
    if isinstance(fraction, Decimal):
        check_decimal(fraction, where, "a timestamp whose fractional seconds are a decimal")


def _too_deep(where: str) -> ValueOutOfRangeError:
    return ValueOutOfRangeError(
        f"containers nested more than {MAX_NESTING_DEPTH} deep{_where(where)}: Strand's "
        f"values nest lists, sexps and structs at most {MAX_NESTING_DEPTH} deep "
        "(MAX_NESTING_DEPTH); flatten the value"
    )


def _children(container: object) -> Iterable[object]:
    if type(container) is dict or type(container) is list:
        return container.values() if type(container) is dict else container  # type: ignore[union-attr, return-value]
    if isinstance(container, IonPyDict):
        return [v for _, v in container.iteritems()]  # every value of a repeated name
    if isinstance(container, Mapping):
        return container.values()
    return container  # type: ignore[return-value]


def _is_container(value: object) -> bool:
    return isinstance(value, Mapping | list | tuple) and not isinstance(value, SymbolToken)


def _check_scalar(value: object, where: str) -> None:
    """The checks of one non-container value of any type (the slow path)."""
    if isinstance(value, datetime.datetime):
        _check_fraction(value, where)
    else:
        check_number(value, where)


def check_value(value: object, where: str = "") -> None:
    """Raise ValueOutOfRangeError if `value` (any value the codec encodes, before it is
    encoded) holds an integer, decimal or timestamp fraction beyond the bounds, or nests
    lists, sexps and structs more than MAX_NESTING_DEPTH deep. Other types and malformed
    values are left to the codec. Iterative (any depth is refused without recursing), and
    plain str / float / small int / dict / list values take a fast path."""
    if not _is_container(value):
        _check_scalar(value, where)
        return
    stack: list[tuple[object, int]] = [(value, 1)]  # (container, its depth)
    push = stack.append
    while stack:
        container, depth = stack.pop()
        for child in _children(container):
            kind = type(child)
            if kind in _SCALARS:
                continue
            if kind is int:
                if not -_INT_BOUND < child < _INT_BOUND:  # type: ignore[operator]
                    check_int(child, where)  # type: ignore[arg-type]
            elif kind is dict or kind is list or _is_container(child):
                if depth >= MAX_NESTING_DEPTH:
                    raise _too_deep(where)
                push((child, depth + 1))
            else:
                _check_scalar(child, where)


def expression_depth_message(depth: int) -> str:
    """The message of the PartiQLSyntaxError for a statement nested `depth` levels deep."""
    return (
        f"the statement nests expressions and clauses more than {MAX_EXPRESSION_DEPTH} levels "
        f"deep (at least {depth}): Strand allows at most {MAX_EXPRESSION_DEPTH} "
        "(MAX_EXPRESSION_DEPTH); flatten it, or split it into several statements"
    )

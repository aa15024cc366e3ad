"""PartiQL's values beyond Ion's: MISSING and the bag.

PartiQL evaluates over Ion values as the rest of Strand represents them: plain Python values
(dict, list, str, int, float, bool, None, bytes, decimal.Decimal) and amazon-ion
`simple_types` objects (IonPyDict, IonPyList, IonPySymbol, IonPyNull, IonPyTimestamp, ...).
Two values exist only inside the query language:

- `MISSING`, the absent value (a path to a field that does not exist). It is a singleton;
  test it with `is MISSING`. It never reaches storage: a struct field whose value is MISSING
  is left out of the struct.
- `Bag`, an unordered collection (a list subclass so it iterates and indexes like one). The
  order of its elements carries no meaning; two bags are equal when they hold the same
  elements the same number of times.

`Context` carries what evaluation needs from outside (the mode, the time for UTCNOW, the
transaction id for TXID, extra functions such as the ledger's `history`, the deadline its
loops charge); `Source` is a table the ledger lends the evaluator, scanned lazily with an
optional `Lookup` hint so that an equality on an indexed field or the document id reads
narrowly; a Source streams its rows (the evaluator keeps no more of a table than it needs)
and may count them without producing them (`count`, for `COUNT(*)`).

Invariants: MISSING is falsy and unique (pickling returns the same object); a Bag is never an
Ion list to the rest of Strand (code that stores values converts bags to lists first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyNull

from core.deadline import Deadline


class _Missing:
    __slots__ = ()
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# The value an outer join gives the variables of the side with no matching row: a null
# that is a struct's null (`null.struct`), so `b IS NULL` holds and `b.title` is null (not
# MISSING, as a path into any other null is).
NULL_TUPLE: Any = IonPyNull.from_value(IonType.STRUCT, None)


class Bag(list[Any]):
    """An unordered collection of values (PartiQL's bag, `<< ... >>`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<<" + ", ".join(repr(v) for v in self) + ">>"


@dataclass(frozen=True, slots=True)
class Context:
    """What evaluation takes from outside. mode "coerce" (permissive: a type error gives
    MISSING) or "error" (a type error raises PartiQLEvaluationError). `now` is the Ion
    timestamp UTCNOW() returns (None: UTCNOW() is an error); `functions` are extra functions
    by lower-case name (args -> value), consulted before the built-in ones; `deadline` is the
    statement's (core.deadline), which evaluation charges as it works."""

    mode: str = "coerce"
    now: Any = None
    transaction_id: str | None = None
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    deadline: Deadline | None = None  # charged by evaluation's loops; None: unlimited


@dataclass(frozen=True, slots=True)
class Lookup:
    """A narrowing hint for a table scan: the rows whose top-level `field` (None: the
    document id) equals one of `values`. A Source may ignore it and return more rows; the
    evaluator filters by the full WHERE clause anyway."""

    field: str | None
    values: tuple[Any, ...]


class Source:
    """A table the ledger lends the evaluator (a variable bound to one in the environment).
    A base class, not a Protocol, so that telling a table from a value is a cheap
    isinstance check on the evaluator's hot path."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def scan(self, lookup: Lookup | None) -> Iterable[tuple[str | None, Any]]:
        """(document id or None, value) for every row (or at least every row the hint
        selects)."""
        raise NotImplementedError

    def narrow(self, field: str | None) -> bool:
        """Whether a Lookup on `field` (None: the document id) reads only the rows it
        selects; if not, the evaluator reads the table once and does the matching itself."""
        raise NotImplementedError

    def count(self, charge: Callable[[int], None]) -> int | None:
        """How many rows `scan(None)` gives, if the source can tell without producing them
        (None: it cannot, the evaluator counts the rows); `charge(n)` as work is done."""
        return None

"""The evaluator's runtime pieces: the per-evaluation state, compile-time scopes, struct and
path helpers, and the one place that calls into `values` and `functions`.

A statement is compiled once into Python closures (see `exprs` and `query`); each closure
takes a `Runtime` (the global environment, parameters, context and mode of one evaluation)
and a flat dict of local variable bindings (every name visible at that point, inner ones
shadowing outer ones, keys resolved at compile time). Nothing here keeps mutable global state.

Every loop whose trip count the data or the query controls charges `Runtime.deadline` (one
unit per row, pair, element or comparison; LIKE per character step), which raises
TransactionExpiredError once the transaction's time is up. Loops over rows charge a block of
BLOCK_ROWS rows at a time (`blocks`) and work over a collection is charged only when it is
bigger than SMALL_WORK (`charge_size`): the unit of the row it is done for covers the rest,
so the deadline costs about one percent of evaluation.

Invariants: closures never mutate the bindings dict they receive (they copy to extend);
MISSING never becomes a struct field; in error mode every type error is raised as
PartiQLEvaluationError, in coerce mode it yields MISSING.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict, IonPyNull

from core.deadline import Deadline
from core.errors import PartiQLEvaluationError, PartiQLSemanticError
from core.partiql.data import MISSING, Bag, Context, Source

Bindings = dict[str, Any]
Fn = Callable[["Runtime", Bindings], Any]
_UNBOUND: Any = object()
UNBOUND: Any = _UNBOUND


class Runtime:
    """The state of one evaluation: environment, parameters, context, strictness."""

    __slots__ = ("_fold", "cache", "context", "deadline", "env", "params", "strict")

    def __init__(self, env: Mapping[str, Any], params: Sequence[Any], context: Context) -> None:
        self.env = env
        self.params = params
        self.context = context
        self.strict = context.mode == "error"
        # charged one unit per row, pair, element or comparison (see core.deadline)
        self.deadline = context.deadline if context.deadline is not None else Deadline.unlimited()
        self._fold: dict[str, list[str]] | None = None
        # derived data of this evaluation only (the FROM clause's hash-join indexes)
        self.cache: dict[Any, Any] = {}

    def global_raw(self, name: str, case_sensitive: bool) -> Any:
        """The environment's value for `name` (a Source stays a Source), or UNBOUND."""
        env = self.env
        if name in env:
            return env[name]
        if case_sensitive:
            return _UNBOUND
        if self._fold is None:
            fold: dict[str, list[str]] = {}
            for key in env:
                fold.setdefault(key.lower(), []).append(key)
            self._fold = fold
        keys = self._fold.get(name.lower())
        if not keys:
            return _UNBOUND
        if len(keys) > 1:
            raise PartiQLEvaluationError(f"variable {name} is ambiguous")
        return env[keys[0]]

    def fail(self, message: str) -> Any:
        """A type error: raised in error mode, MISSING in coerce mode."""
        if self.strict:
            raise PartiQLEvaluationError(message)
        return MISSING


@dataclass(frozen=True, slots=True)
class Scope:
    """The local names visible at a point of a query, innermost last. `from_vars` lists the
    FROM variables per query level (innermost first) for SQL's implicit attribute lookup."""

    names: tuple[str, ...] = ()
    from_vars: tuple[tuple[str, ...], ...] = ()

    def extend(self, names: Iterable[str]) -> Scope:
        return Scope(self.names + tuple(names), self.from_vars)

    def query(self, from_vars: Iterable[str]) -> Scope:
        return Scope(self.names, (tuple(from_vars), *self.from_vars))

    def resolve(self, name: str, case_sensitive: bool) -> str | None:
        """The binding key a variable reference denotes, None if not local. Raises when an
        unquoted name matches several locals that differ only in case."""
        for key in reversed(self.names):
            if key == name:
                return key
        if case_sensitive:
            return None
        low = name.lower()
        found = {key for key in self.names if key.lower() == low}
        if len(found) > 1:
            return _AMBIGUOUS
        return found.pop() if found else None

    def folds_onto(self, key: str) -> bool:
        """Whether another local name equals `key` up to case."""
        low = key.lower()
        return any(n != key and n.lower() == low for n in self.names)


_AMBIGUOUS = "\x00ambiguous"
AMBIGUOUS = _AMBIGUOUS


# ============================================================================ value helpers


def is_null(value: Any) -> bool:
    return value is None or isinstance(value, IonPyNull)


def is_absent(value: Any) -> bool:
    """NULL or MISSING."""
    return value is None or value is MISSING or isinstance(value, IonPyNull)


def is_true(value: Any) -> bool:
    return value is True or (
        value is not False
        and getattr(value, "ion_type", None) is IonType.BOOL
        and not isinstance(value, IonPyNull)
        and bool(value)
    )


def is_struct(value: Any) -> bool:
    return isinstance(value, (dict, IonPyDict))


def is_text(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, IonPyNull)


def is_int(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and _ion(value) in (None, IonType.INT)
    )


def _ion(value: Any) -> Any:
    return getattr(value, "ion_type", None)


def is_sequence(value: Any) -> bool:
    """A list, sexp or bag (anything FROM iterates element by element)."""
    return isinstance(value, list) and not isinstance(value, IonPyNull)


def is_bag(value: Any) -> bool:
    return isinstance(value, Bag)


def struct_items(value: Any) -> list[tuple[str, Any]]:
    items = value.items()
    return [(str(k), v) for k, v in items]


def struct_get(value: Any, name: str, case_sensitive: bool, rt: Runtime) -> Any:
    """Field `name` of a struct: exact match first, then (unquoted) case-insensitively.
    Absent: MISSING in coerce mode, an error in error mode."""
    if type(value) is dict:  # a plain dict (a stored document): its names are unique
        found = value.get(name, _UNBOUND)
        if found is not _UNBOUND:
            return found
        if case_sensitive:
            return rt.fail(f"no field {name}")
    items = struct_items(value)
    exact = [v for k, v in items if k == name]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        return rt.fail(f"field {name} is ambiguous") if rt.strict else exact[0]
    if not case_sensitive:
        low = name.lower()
        loose = [v for k, v in items if k.lower() == low]
        if len(loose) == 1:
            return loose[0]
        if len(loose) > 1:
            return rt.fail(f"field {name} is ambiguous") if rt.strict else loose[0]
    return rt.fail(f"no field {name}")


def make_struct(pairs: Iterable[tuple[str, Any]]) -> Any:
    """A struct from (name, value) pairs: MISSING values left out; a dict unless a name
    repeats (then an IonPyDict, which keeps repeated fields)."""
    out: dict[str, Any] = {}
    dup: list[tuple[str, Any]] | None = None
    for key, value in pairs:
        if value is MISSING:
            continue
        if dup is not None:
            dup.append((key, value))
        elif key in out:
            dup = [*out.items(), (key, value)]
        else:
            out[key] = value
    if dup is None:
        return out
    result = IonPyDict.from_value(IonType.STRUCT, {})
    for key, value in dup:
        result.add_item(key, value)
    return result


# ============================================================================ deadline helpers

BLOCK_ROWS = 16  # a loop over rows charges (and may check the clock) once per block of rows
SMALL_WORK = 64  # work this small rides on the unit of the row it is done for


def blocks(rt: Runtime, items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """`items` in slices of BLOCK_ROWS, each charged to the deadline before it is handed
    out: the loop over a slice pays nothing per item (and a scan of one block, as the inner
    side of a join often is, pays one call)."""
    if len(items) <= BLOCK_ROWS:
        rt.deadline.charge(len(items))
        return (items,)
    return _blocks(rt.deadline.charge, items)


def _blocks(charge: Callable[[int], None], items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for lo in range(0, len(items), BLOCK_ROWS):
        block = items[lo : lo + BLOCK_ROWS]
        charge(len(block))
        yield block


def stream_blocks(rt: Runtime, items: Iterable[Any]) -> Iterator[list[Any]]:
    """`blocks` over an iterable consumed as it goes (a streamed table scan): at most
    BLOCK_ROWS items are taken from it at a time, each block charged before it is handed
    out."""
    it = iter(items)
    charge = rt.deadline.charge
    while block := list(islice(it, BLOCK_ROWS)):
        charge(len(block))
        yield block


def charge_size(rt: Runtime, size: int) -> None:
    """Charge work proportional to a collection's size, unless it is small."""
    if size > SMALL_WORK:
        rt.deadline.charge(size)


def materialise(value: Any, rt: Runtime | None = None) -> Any:
    """A Source used as a value becomes the Bag of its rows (charged to `rt`'s deadline)."""
    if isinstance(value, Source) and not isinstance(value, (list, dict)):
        rows = Bag(v for _, v in value.scan(None))
        if rt is not None:
            charge_size(rt, len(rows))
        return rows
    return value


def collection_items(value: Any) -> list[Any] | None:
    if isinstance(value, list) and not isinstance(value, IonPyNull):
        return list(value)
    return None


def as_int(value: Any) -> int | None:
    """An integral number's int value, else None."""
    if isinstance(value, bool) or is_null(value) or value is MISSING:
        return None
    if isinstance(value, int):
        return int(value)
    return None


def number_like(value: Any) -> bool:
    return (
        isinstance(value, (int, float, Decimal))
        and not isinstance(value, bool)
        and not is_null(value)
    )


# ============================================================================ iteration helpers


def iter_once(value: Any) -> Iterator[Any]:
    yield value


def uncaught(message: str) -> PartiQLSemanticError:
    return PartiQLSemanticError(message)

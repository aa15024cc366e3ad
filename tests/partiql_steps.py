"""Runs statement/expected-result data files (tests/data/*.ion) against any ledger handle.

The same runner drives the embedded `Ledger` and the cluster's `LedgerCluster`: it needs
only `execute_lambda(fn)` and `get_digest()`. The file format is described at the top of
tests/data/vehicle_registration.ion. Steps with the same `tx` label run in one transaction;
a step that expects an error must raise exactly that typed error and leave the journal's
tip where it was.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amazon.ion import simpleion
from amazon.ion.core import IonType

from core import codec
from core.transaction import Transaction

DATA = Path(__file__).parent / "data"


def load_steps(name: str) -> list[dict[str, Any]]:
    with open(DATA / name, "rb") as f:
        return [dict(step) for step in simpleion.load(f, single_value=False)]


def _text(value: Any) -> str:
    """The text of a string or symbol."""
    return str(getattr(value, "text", value))


def _annotations(value: Any) -> list[str]:
    return [str(getattr(a, "text", a)) for a in getattr(value, "ion_annotations", ())]


def _resolve(value: Any, saved: dict[str, Any]) -> Any:
    """Replace var::"name" by saved values; return plain storable values."""
    if "var" in _annotations(value):
        return saved[str(value)]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _resolve(v, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, saved) for v in value]
    return codec.unpack(codec.pack(value))


def _matches(expected: Any, actual: Any, saved: dict[str, Any]) -> bool:
    marks = _annotations(expected)
    if "any" in marks:
        return isinstance(actual, str)
    if "var" in marks:
        return bool(actual == saved[str(expected)])
    if isinstance(expected, dict) or hasattr(expected, "items"):
        if not isinstance(actual, dict) or set(actual) != {str(k) for k in expected}:
            return False
        return all(_matches(v, actual[str(k)], saved) for k, v in expected.items())
    if isinstance(expected, list):
        return _same_rows(list(expected), actual, saved, ordered=True)
    if getattr(expected, "ion_type", None) is IonType.BOOL:  # IonPyBool is an int subclass
        return actual is bool(expected)
    if isinstance(expected, int | float | decimal.Decimal) and not isinstance(expected, bool):
        if isinstance(actual, bool) or not isinstance(actual, int | float | decimal.Decimal):
            return False
        return decimal.Decimal(expected) == decimal.Decimal(actual)
    return bool(simpleion.dumps(codec.unpack(codec.pack(expected))) == simpleion.dumps(actual))


def _same_rows(expected: list[Any], actual: Any, saved: dict[str, Any], ordered: bool) -> bool:
    if not isinstance(actual, list) or len(actual) != len(expected):
        return False
    if ordered:
        return all(_matches(e, a, saved) for e, a in zip(expected, actual, strict=True))
    left = list(actual)
    for e in expected:
        hit = next((i for i, a in enumerate(left) if _matches(e, a, saved)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _groups(steps: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    label = None
    for step in steps:
        tx = None if step.get("tx") is None else _text(step["tx"])
        if tx is not None and tx == label and groups:
            groups[-1].append(step)
        else:
            groups.append([step])
        label = tx
    return groups


def run_steps(
    execute_lambda: Callable[[Callable[[Transaction], Any]], Any],
    tip: Callable[[], int],
    steps: list[dict[str, Any]],
) -> int:
    """Run every step; raise AssertionError naming the first that fails. Returns the count."""
    saved: dict[str, Any] = {}
    done = 0
    for group in _groups(steps):
        calls = [
            (str(s["statement"]), [_resolve(p, saved) for p in s.get("parameters", [])])
            for s in group
        ]
        expected_error = group[-1].get("error")
        before = tip()

        def fn(tx: Transaction, calls: list[tuple[str, list[Any]]] = calls) -> list[Any]:
            return [list(tx.execute_statement(text, *params)) for text, params in calls]

        try:
            results = execute_lambda(fn)
        except Exception as exc:
            if expected_error is None:
                raise AssertionError(f"{calls[-1][0]!r} raised {exc!r}") from exc
            if type(exc).__name__ != str(expected_error):
                raise AssertionError(f"{calls[-1][0]!r}: {exc!r}, not {expected_error}") from exc
            assert tip() == before, f"{calls[-1][0]!r} failed but changed the journal"
            done += len(group)
            continue
        assert expected_error is None, f"{calls[-1][0]!r} should raise {expected_error}"
        for step, rows in zip(group, results, strict=True):
            text = step["statement"]
            if "rows" in step:
                ordered = bool(step.get("ordered", False))
                assert _same_rows(list(step["rows"]), rows, saved, ordered), f"{text!r}: {rows!r}"
            if "count" in step:
                assert len(rows) == step["count"], f"{text!r}: {len(rows)} rows: {rows!r}"
            for name, field in (step.get("save") or {}).items():
                assert len(rows) == 1, f"{text!r}: save needs one row, got {rows!r}"
                saved[_text(name)] = rows[0] if _text(field) == "*" else rows[0][_text(field)]
            done += 1
    return done

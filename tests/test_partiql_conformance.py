"""The PartiQL conformance suites (main and extended) as pytest: every in-scope case must
pass, and every exclusion pattern in tests/vectors/partiql_scope.toml must still match at
least one case (no stale entries). The suites are split by folder (and the large eval
folders by their subfolders) so failures point at an area and the parts can run in
parallel."""

from __future__ import annotations

import fnmatch
import functools

import pytest

from tests import partiql_conformance as conformance

_GROUPS = (
    "eval/primitives/functions",
    "eval/primitives/operators",
    "eval/primitives/",
    "eval/query",
    "eval/",
    "eval-equiv",
    "success/syntax",
    "fail/syntax",
    "fail/static-analysis",
    "extended/eval/primitives/functions",
    "extended/eval/",
    "extended/fail/static-analysis",
)


@functools.cache
def _cases() -> tuple[conformance.Case, ...]:
    return tuple(conformance.load_cases())


def _group_of(case_id: str) -> str:
    return next(g for g in _GROUPS if case_id.startswith(g))


@pytest.mark.parametrize("group", _GROUPS)
def test_conformance(group: str) -> None:
    scope = conformance.load_scope()
    cases = [c for c in _cases() if _group_of(c.id) == group]
    outcomes = conformance.run(cases, scope)
    failing = [f"{o.case.id}: {o.detail}" for o in outcomes if not o.passed and o.excluded is None]
    assert not failing, f"{len(failing)} in-scope cases fail:\n" + "\n".join(failing)


def test_scope_has_no_stale_entries() -> None:
    scope = conformance.load_scope()
    ids = [c.id for c in _cases()]
    stale = [
        f"{e.name}: {p}"
        for e in scope
        for p in e.patterns
        if not any(fnmatch.fnmatchcase(i, p) for i in ids)
    ]
    assert not stale, f"exclusion patterns matching no case: {stale}"

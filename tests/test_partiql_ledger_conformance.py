"""One semantics, two paths (tests/partiql_ledger_conformance.py): the suites' eligible eval
cases through a ledger transaction must match the stand-alone evaluator in coerce mode, but
for the cases `[[ledger_exclude]]` lists with a reason, which must still differ. By default a
fixed sample (every 7th eligible case, a few seconds); all of them under `-m slow`."""

from __future__ import annotations

import fnmatch

import pytest

from tests import partiql_conformance as conformance
from tests import partiql_ledger_conformance as ledger_conformance

_SAMPLE = 7


def _check(sample: int, minimum: int) -> list[ledger_conformance.LedgerOutcome]:
    cases = ledger_conformance.eligible_cases(sample)
    assert len(cases) >= minimum, f"only {len(cases)} eligible cases"
    outcomes = ledger_conformance.run(cases, ledger_conformance.load_ledger_scope())
    wrong = [
        f"{o.verdict}: {o.case.id}: {o.case.statements[0]!r}: {o.detail}"
        for o in outcomes
        if o.verdict not in ("same", "listed")
    ]
    assert not wrong, f"{len(wrong)} cases:\n" + "\n".join(wrong)
    assert sum(o.verdict == "same" for o in outcomes) >= minimum * 0.9
    return outcomes


def test_ledger_path_matches_the_evaluator_on_a_sample() -> None:
    _check(_SAMPLE, 70)


@pytest.mark.slow
def test_ledger_path_matches_the_evaluator_on_every_eligible_case() -> None:
    outcomes = _check(1, 550)
    ids = [o.case.id for o in outcomes]
    stale = [
        f"{e.name}: {p}"
        for e in ledger_conformance.load_ledger_scope()
        for p in e.patterns
        if not any(fnmatch.fnmatchcase(i, p) for i in ids)
    ]
    assert not stale, f"ledger_exclude patterns matching no eligible case: {stale}"
    assert {conformance.suite_of(i) for i in ids} == {"main", "extended"}

"""One semantics, two paths: the conformance suites' `eval` cases run through a ledger
transaction and compared with the stand-alone evaluator in coerce mode.

Eligible cases: in-scope coerce-mode cases of `eval/` and `extended/eval/` whose statement is
a query (SELECT, or a set operation of SELECTs) and whose environment's names that the
statement mentions are collections of structs (a `$bag` or an Ion list: a table is a bag
either way) that load as ledger tables: names QLDB accepts, at most 20 tables, each document
Ion a ledger stores. Each such set of tables is loaded once into an in-memory `Ledger`
(seeded ids, so a table's scan order is the same on every run; documents inserted 40 per
transaction, QLDB's limit); every case over it runs `tx.execute_statement` in a transaction
of its own and `evaluate(..., "coerce")` over the same collections as bags.

Outcomes: "same" (both raise a PartiQLError, or the results match: `values.equivalent`,
except that a bag nested in a result comes out of the ledger as an Ion list in any order,
the rows of a result without ORDER BY are a bag, and PIVOT's struct is the cursor's one
row), "differ", or "listed": the case matches a
`[[ledger_exclude]]` pattern of tests/vectors/partiql_scope.toml, whose reason says why the
ledger, behaving as QLDB did (coerce mode plus QLDB's static checks), differs from the suite's
coerce-mode expectation. A listed case that no longer differs is reported too ("stale").
Usage: `python -m tests.partiql_ledger_conformance [-v] [--sample N]`.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amazon.ion.simple_types import IonPyDict, IonPyList

from core.errors import PartiQLError, StrandError
from core.partiql import ast
from core.partiql.data import Bag
from tests import partiql_conformance as conformance

MAX_TABLES = 20
_DOCS_PER_TX = 40
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")


@dataclass
class LedgerOutcome:
    case: conformance.Case
    verdict: str  # same | differ | listed | stale
    detail: str = ""


def load_ledger_scope(path: Path = conformance.SCOPE_FILE) -> list[conformance.Exclusion]:
    with path.open("rb") as fp:
        data = tomllib.load(fp)
    return [
        conformance.Exclusion(
            str(e["name"]),
            str(e["reason"]),
            tuple(str(p) for p in e["patterns"]),
            str(e.get("summary", "")),
        )
        for e in data.get("ledger_exclude", [])
    ]


def _tables(env: Any, statement: str) -> dict[str, list[Any]] | None:
    """The environment's names the statement mentions, as {table: documents}, or None when
    they are not collections of structs a ledger can hold (names it does not mention are
    left out: they cannot change the result)."""
    if not isinstance(env, IonPyDict):
        return None
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", statement)}
    used = [(str(name), value) for name, value in env.items() if str(name).lower() in words]
    if not 0 < len(used) <= MAX_TABLES:
        return None
    tables: dict[str, list[Any]] = {}
    for name, value in used:
        if not _TABLE_NAME.fullmatch(name) or name.lower() in {t.lower() for t in tables}:
            return None
        if not isinstance(value, IonPyList) or value.ion_type.name != "LIST":
            return None
        if not all(isinstance(v, IonPyDict) for v in value):
            return None
        tables[name] = list(value)
    return tables


def eligible(case: conformance.Case, scope: Sequence[conformance.Exclusion]) -> bool:
    if case.mode != "coerce" or case.folder not in ("eval", f"{conformance.EXTENDED}eval"):
        return False
    if len(case.statements) != 1 or _tables(case.env, case.statements[0]) is None:
        return False
    if conformance.excluded_by(case.id, scope) is not None:
        return False
    parsed = conformance._parse(case.statements[0])
    return isinstance(parsed, ast.Query) and isinstance(parsed.expr, ast.Select | ast.SetOp)


def _create(name: str, tx: Any) -> None:
    tx.create_table(name)


def _insert(name: str, docs: list[Any], tx: Any) -> None:
    for doc in docs:
        tx.insert(name, doc)


class _Loaded:
    """An environment loaded into an in-memory ledger (None: it did not load)."""

    def __init__(self, env: Any, statement: str) -> None:
        from core import Ledger  # noqa: PLC0415
        from core.storage import MemoryStorage  # noqa: PLC0415

        tables = _tables(env, statement)
        assert tables is not None
        self.env = {name: Bag(conformance.convert(docs)) for name, docs in tables.items()}
        # seeded ids: a table's scan order (by document id) is the same on every run
        self.ledger: Any = Ledger(MemoryStorage(), random_bytes=random.Random(15).randbytes)
        self.error = ""
        try:
            for name, docs in tables.items():
                self.ledger.execute_lambda(functools.partial(_create, name))
                for i in range(0, len(docs), _DOCS_PER_TX):
                    chunk = docs[i : i + _DOCS_PER_TX]
                    self.ledger.execute_lambda(functools.partial(_insert, name, chunk))
        except StrandError as exc:
            self.error = f"does not load: {type(exc).__name__}: {exc}"


_LOADED: dict[tuple[int, frozenset[str]], tuple[Any, _Loaded]] = {}


def _loaded(case: conformance.Case) -> _Loaded:
    """The case's tables in a ledger, loaded once per environment and set of tables."""
    tables = _tables(case.env, case.statements[0])
    assert tables is not None
    key = (id(case.env), frozenset(tables))
    hit = _LOADED.get(key)
    if hit is None or hit[0] is not case.env:
        hit = (case.env, _Loaded(case.env, case.statements[0]))
        _LOADED[key] = hit
    return hit[1]


def matches(alone: Any, got: Any) -> bool:
    """Whether the ledger's value `got` is the stand-alone value `alone` as Ion hands it
    out: a bag nested in a result comes out as a list in whatever order (Ion has no bag),
    so it matches any ordering of its items; everything else must be `values.equivalent`."""
    from core.partiql import values  # noqa: PLC0415

    if isinstance(alone, Bag):
        if not isinstance(got, list | Bag) or len(got) != len(alone):
            return False
        left = list(got)
        for item in alone:  # greedy matching (fine for the suite's small collections)
            hit = next((i for i, g in enumerate(left) if matches(item, g)), None)
            if hit is None:
                return False
            left.pop(hit)
        return True
    if isinstance(alone, list) and isinstance(got, list) and not isinstance(got, Bag):
        return len(alone) == len(got) and all(map(matches, alone, got))
    if isinstance(alone, dict) and isinstance(got, dict):
        a_items, g_items = list(alone.items()), list(got.items())
        if sorted(str(k) for k, _ in a_items) != sorted(str(k) for k, _ in g_items):
            return False
        for name in {str(k) for k, _ in a_items}:
            here = Bag([v for k, v in a_items if str(k) == name])
            if not matches(here, [v for k, v in g_items if str(k) == name]):
                return False
        return True
    return bool(values.equivalent(alone, got))


def compare(case: conformance.Case) -> tuple[bool, str]:
    """(same, detail): the ledger's rows against the stand-alone evaluator in coerce mode."""
    from core.partiql.evaluator import evaluate  # noqa: PLC0415

    loaded = _loaded(case)
    if loaded.error:
        return False, loaded.error
    text = case.statements[0]
    try:
        alone: Any = evaluate(text, loaded.env, "coerce")
    except PartiQLError as exc:
        alone = exc
    try:
        rows: Any = loaded.ledger.execute_lambda(lambda tx: list(tx.execute_statement(text)))
    except PartiQLError as exc:
        rows = exc
    except StrandError as exc:  # a limit or another refusal of the ledger's own
        return False, f"ledger refused: {type(exc).__name__}: {exc}"
    if isinstance(alone, Exception) or isinstance(rows, Exception):
        same = isinstance(alone, Exception) and isinstance(rows, Exception)
        return same, f"stand-alone: {alone!r:.150}; ledger: {rows!r:.150}"
    if not isinstance(alone, list | Bag):  # PIVOT's one struct: the cursor's one row
        alone = Bag([alone])
    same = matches(alone, rows)
    return same, "" if same else f"stand-alone: {alone!r:.200}; ledger: {rows!r:.200}"


def run(
    cases: Iterable[conformance.Case], ledger_scope: Sequence[conformance.Exclusion]
) -> list[LedgerOutcome]:
    outcomes = []
    for case in cases:
        listed = conformance.excluded_by(case.id, ledger_scope)
        same, detail = compare(case)
        if listed is not None:
            listed.hits += 1
            verdict = "stale" if same else "listed"
            outcomes.append(LedgerOutcome(case, verdict, listed.name if not same else detail))
        else:
            outcomes.append(LedgerOutcome(case, "same" if same else "differ", detail))
    return outcomes


def eligible_cases(sample: int = 1) -> list[conformance.Case]:
    """The eligible cases, every `sample`-th one (by position, so always the same ones)."""
    scope = conformance.load_scope()
    cases = conformance.load_cases(("eval", f"{conformance.EXTENDED}eval"))
    chosen = [c for c in cases if eligible(c, scope)]
    return chosen[::sample]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list differing cases")
    parser.add_argument("--sample", type=int, default=1, help="every N-th eligible case")
    args = parser.parse_args(argv)
    outcomes = run(eligible_cases(args.sample), load_ledger_scope())
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        key = (conformance.suite_of(o.case.id), o.verdict)
        counts[key] = counts.get(key, 0) + 1
    for (suite, verdict), n in sorted(counts.items()):
        print(f"{suite:9} {verdict:7} {n}")
    if args.verbose:
        for o in outcomes:
            if o.verdict in ("differ", "stale"):
                print(f"{o.verdict}: {o.case.id}\n    {o.case.statements[0]!r}\n    {o.detail}")
    return 0 if all(o.verdict in ("same", "listed") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

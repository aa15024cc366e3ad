"""The PartiQL conformance runner: runs partiql-tests (tests/vectors/partiql-tests) against
Strand's parser and evaluator and reports pass / fail / out-of-scope counts.

Loading: every `.ion` file of the five folders (eval, eval-equiv, success/syntax,
fail/syntax, fail/static-analysis) is read as a stream of top-level values; an annotated
list is a namespace (nested), `envs::{...}` sets the environment for the rest of its
namespace, `equiv_class::{id, statements}` names statements a test case may refer to by
symbol. Each assertion becomes one `Case` per evaluation mode, with a stable id
`<folder>/<file>::<namespace path>::<name>::<mode>` (mode: coerce, error, syntax or static;
a repeated id gets `#2`, `#3`...).

Checking: SyntaxSuccess (parse succeeds), SyntaxFail (parse raises PartiQLSyntaxError),
StaticAnalysisFail (parse or the static checks raise PartiQLSyntaxError or
PartiQLSemanticError), EvaluationSuccess (the result is `values.equivalent` to the expected
output, `$bag::[...]` read as a Bag, `$missing::null` as MISSING and the suite's SQL datetime
values, `$date::`, `$time::`, `$timestamp::`, `$interval_ym::`, `$interval_dt::`, as Strand's
by `sqltime.lift`), EvaluationFail (a
PartiQLError). Any other exception is a failure (a bug, not a refusal).

The scope file (tests/vectors/partiql_scope.toml) lists what Strand leaves out, as glob
patterns over case ids with a reason. Usage: `python -m tests.partiql_conformance [-v]
[--folder F] [--all]`.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict, IonPyList, IonPyNull, IonPySymbol
from amazon.ion.symbols import SymbolToken

from core.errors import PartiQLError, PartiQLSemanticError, PartiQLSyntaxError
from core.partiql import ast, sqltime
from core.partiql.data import MISSING, Bag, Context

ROOT = Path(__file__).resolve().parent / "vectors"
DATA = ROOT / "partiql-tests" / "partiql-tests-data"
EXTENDED_DATA = ROOT / "partiql-tests" / "partiql-tests-data-extended"
EXTENDED = "extended/"  # folder prefix (and case id prefix) of the extended suite
SCOPE_FILE = ROOT / "partiql_scope.toml"
MAIN_FOLDERS = ("eval", "eval-equiv", "success/syntax", "fail/syntax", "fail/static-analysis")
EXTENDED_FOLDERS = (f"{EXTENDED}eval", f"{EXTENDED}fail/static-analysis")
FOLDERS = MAIN_FOLDERS + EXTENDED_FOLDERS
_MODES = {"EvalModeCoerce": "coerce", "EvalModeError": "error"}


@dataclass(frozen=True)
class Case:
    """One assertion of one test case in one mode."""

    id: str
    folder: str
    file: str
    name: str
    statements: tuple[str, ...]
    env: Any
    kind: (
        str  # SyntaxSuccess | SyntaxFail | StaticAnalysisFail | EvaluationSuccess | EvaluationFail
    )
    mode: str  # coerce | error | syntax | static
    output: Any = None


@dataclass
class Exclusion:
    name: str
    reason: str
    patterns: tuple[str, ...]
    summary: str = ""
    hits: int = 0


@dataclass
class Outcome:
    case: Case
    passed: bool
    excluded: str | None = None
    detail: str = ""


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    excluded: int = 0
    failures: list[str] = field(default_factory=list)


# ============================================================================ loading


def _text(value: Any) -> str:
    if isinstance(value, SymbolToken):
        return str(value.text)
    return str(value)


def _annotations(value: Any) -> list[str]:
    return [_text(a) for a in getattr(value, "ion_annotations", ())]


def convert(value: Any) -> Any:
    """An expected output or environment value from the suite's Ion to Strand's values."""
    notes = _annotations(value)
    if isinstance(value, IonPyNull) and "$missing" in notes:
        return MISSING
    if notes and notes[0] in sqltime.SQL_ANNOTATIONS:  # $date::, $time::, $interval_ym:: ...
        lifted = sqltime.lift(value)
        if lifted is not value:
            return lifted
    if "$ion" in notes and not isinstance(value, (list, IonPyDict)):
        if isinstance(value, IonPyNull):
            return IonPyNull.from_value(value.ion_type, None)
        return type(value).from_value(value.ion_type, value)
    if isinstance(value, list):
        items = [convert(v) for v in value]
        if "$bag" in notes:
            return Bag(items)
        out = IonPyList.from_value(getattr(value, "ion_type", IonType.LIST), items)
        return out
    if isinstance(value, IonPyDict):
        result = IonPyDict.from_value(value.ion_type, {})
        for key, item in value.items():
            result.add_item(key, convert(item))
        return result
    return value


def _modes(assertion: Any) -> list[str]:
    raw = assertion.get("evalMode")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [_MODES[_text(m)] for m in items]


def load_cases(folders: Sequence[str] = FOLDERS) -> list[Case]:
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for folder in folders:
        base = suite_dir(folder)
        for path in sorted(base.rglob("*.ion")):
            rel = path.relative_to(base).as_posix()
            with path.open("rb") as fp:
                top = simpleion.load(fp, single_value=False)
            for case in _walk(top, folder, rel, [], {}, {}):
                n = seen.get(case.id, 0) + 1
                seen[case.id] = n
                if n > 1:
                    case = Case(**{**case.__dict__, "id": f"{case.id}#{n}"})
                cases.append(case)
    return cases


def suite_dir(folder: str) -> Path:
    """Where a folder's files are: `extended/...` in the extended suite, else the main one."""
    if folder.startswith(EXTENDED):
        return EXTENDED_DATA / folder.removeprefix(EXTENDED)
    return DATA / folder


def suite_of(case_id: str) -> str:
    return "extended" if case_id.startswith(EXTENDED) else "main"


def _walk(
    items: list[Any],
    folder: str,
    rel: str,
    ns: list[str],
    env: Any,
    equiv: dict[str, tuple[str, ...]],
) -> Iterator[Case]:
    env_here = env
    equiv_here = dict(equiv)
    for item in items:
        notes = _annotations(item)
        if isinstance(item, IonPyList) and not isinstance(item, IonPyNull):
            yield from _walk(
                list(item), folder, rel, [*ns, *(notes or ["_"])], env_here, equiv_here
            )
        elif "envs" in notes:
            env_here = item
        elif "equiv_class" in notes:
            equiv_here[_text(item["id"])] = tuple(str(s) for s in item["statements"])
        elif isinstance(item, IonPyDict):
            yield from _cases(item, folder, rel, ns, env_here, equiv_here)


def _cases(
    item: Any, folder: str, rel: str, ns: list[str], env: Any, equiv: dict[str, tuple[str, ...]]
) -> Iterator[Case]:
    name = str(item["name"])
    stmt = item["statement"]
    if isinstance(stmt, (IonPySymbol, SymbolToken)):
        statements = equiv[_text(stmt)]
    else:
        statements = (str(stmt),)
    case_env = item.get("env", env)
    asserts = item["assert"]
    asserts = list(asserts) if isinstance(asserts, list) else [asserts]
    prefix = f"{folder}/{rel}::{'/'.join(ns)}::{name}"
    for assertion in asserts:
        kind = _text(assertion["result"])
        if kind in ("EvaluationSuccess", "EvaluationFail"):
            output = assertion.get("output", None)
            for mode in _modes(assertion):
                yield Case(
                    f"{prefix}::{mode}", folder, rel, name, statements, case_env, kind, mode, output
                )
        else:
            mode = "static" if kind == "StaticAnalysisFail" else "syntax"
            yield Case(f"{prefix}::{mode}", folder, rel, name, statements, None, kind, mode)


# ============================================================================ scope


def load_scope(path: Path = SCOPE_FILE) -> list[Exclusion]:
    with path.open("rb") as fp:
        data = tomllib.load(fp)
    return [
        Exclusion(
            str(e["name"]),
            str(e["reason"]),
            tuple(str(p) for p in e["patterns"]),
            str(e.get("summary", "")),
        )
        for e in data.get("exclude", [])
    ]


def excluded_by_one(case_id: str, exclusion: Exclusion) -> bool:
    return any(fnmatch.fnmatchcase(case_id, p) for p in exclusion.patterns)


def excluded_by(case_id: str, scope: Sequence[Exclusion]) -> Exclusion | None:
    for exclusion in scope:
        if excluded_by_one(case_id, exclusion):
            return exclusion
    return None


# ============================================================================ running


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> ast.Statement | Exception:
    """The parsed statement, or the exception parsing raised (any other than PartiQLError
    is a parser bug and fails the case)."""
    from core.partiql.parser import parse  # noqa: PLC0415

    try:
        return parse(text)
    except Exception as exc:  # noqa: BLE001
        return exc


_ENVS: dict[int, tuple[Any, Any]] = {}


def _env_for(case: Case) -> Any:
    """The case's environment converted once (cached by the identity of the loaded Ion)."""
    if case.env is None:
        return {}
    hit = _ENVS.get(id(case.env))
    if hit is None or hit[0] is not case.env:
        hit = (case.env, convert(case.env))
        _ENVS[id(case.env)] = hit
    return hit[1]


def run_case(case: Case) -> tuple[bool, str]:
    """(passed, detail) for one case; every statement of an equivalence class must pass."""
    for text in case.statements:
        ok, detail = _run_statement(case, text)
        if not ok:
            return False, f"{text!r}: {detail}"
    return True, ""


def _run_statement(case: Case, text: str) -> tuple[bool, str]:
    from core.partiql import values  # noqa: PLC0415
    from core.partiql.checks import check_statement  # noqa: PLC0415
    from core.partiql.evaluator import evaluate  # noqa: PLC0415

    parsed = _parse(text)
    if isinstance(parsed, Exception) and not isinstance(parsed, PartiQLError):
        return False, f"BUG in parser: {type(parsed).__name__}: {parsed}"
    if case.kind == "SyntaxSuccess":
        return (not isinstance(parsed, PartiQLError)), str(parsed)[:200]
    if case.kind == "SyntaxFail":
        if isinstance(parsed, PartiQLSyntaxError):
            return True, ""
        return False, "parsed" if not isinstance(parsed, PartiQLError) else repr(parsed)
    if case.kind == "StaticAnalysisFail":
        if isinstance(parsed, (PartiQLSyntaxError, PartiQLSemanticError)):
            return True, ""
        if isinstance(parsed, PartiQLError):
            return False, repr(parsed)
        try:
            # the suite's static cases have no environment: no global names
            check_statement(parsed, _param_count(parsed), globals_=())
        except (PartiQLSyntaxError, PartiQLSemanticError):
            return True, ""
        except Exception as exc:  # noqa: BLE001
            return False, f"{type(exc).__name__}: {exc}"
        return False, "no error"
    if isinstance(parsed, PartiQLError):
        return (case.kind == "EvaluationFail" and False), f"parse: {parsed}"
    try:
        result = evaluate(parsed, _env_for(case), case.mode, context=Context(mode=case.mode))
    except PartiQLError as exc:
        if case.kind == "EvaluationFail":
            return True, ""
        return False, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001  (a bug: report, do not crash the run)
        return False, f"BUG {type(exc).__name__}: {exc}"
    if case.kind == "EvaluationFail":
        return False, f"no error, got {result!r}"[:300]
    expected = convert(case.output)
    try:
        same = bool(values.equivalent(result, expected))
    except Exception as exc:  # noqa: BLE001
        return False, f"BUG in equivalent: {type(exc).__name__}: {exc}"
    return same, "" if same else f"got {result!r}, expected {expected!r}"[:400]


def _param_count(statement: ast.Statement) -> int:
    count = 0
    stack: list[Any] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Param):
            count = max(count, node.index + 1)
        elif isinstance(node, tuple):
            stack.extend(node)
        elif hasattr(node, "__dataclass_fields__") and not isinstance(node, ast.Lit):
            stack.extend(getattr(node, f) for f in node.__dataclass_fields__)
    return count


def run(
    cases: Sequence[Case], scope: Sequence[Exclusion], include_excluded: bool = False
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for case in cases:
        exclusion = excluded_by(case.id, scope)
        if exclusion is not None:
            exclusion.hits += 1
            if not include_excluded:
                outcomes.append(Outcome(case, False, exclusion.name))
                continue
        ok, detail = run_case(case)
        outcomes.append(Outcome(case, ok, exclusion.name if exclusion else None, detail))
    return outcomes


# ============================================================================ report


def report(outcomes: Sequence[Outcome], verbose: bool) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    per_file: dict[tuple[str, str], Tally] = {}
    per_folder: dict[str, Tally] = {}
    for o in outcomes:
        for tally in (
            per_file.setdefault((o.case.folder, o.case.file), Tally()),
            per_folder.setdefault(o.case.folder, Tally()),
        ):
            if o.excluded is not None:
                tally.excluded += 1
            elif o.passed:
                tally.passed += 1
            else:
                tally.failed += 1
                tally.failures.append(f"{o.case.id}  {o.detail}")
    console = Console(width=160)
    files = Table(title="PartiQL conformance per file")
    for col in ("folder", "file", "pass", "fail", "out of scope"):
        files.add_column(col)
    for (folder, file), t in sorted(per_file.items()):
        files.add_row(folder, file, str(t.passed), str(t.failed), str(t.excluded))
    console.print(files)
    folders = Table(title="PartiQL conformance per folder")
    for col in ("folder", "in scope", "pass", "fail", "out of scope"):
        folders.add_column(col)
    for folder, t in per_folder.items():
        folders.add_row(
            folder, str(t.passed + t.failed), str(t.passed), str(t.failed), str(t.excluded)
        )
    console.print(folders)
    left_out: dict[str, int] = {}
    for o in outcomes:
        if o.excluded is not None:
            left_out[o.excluded] = left_out.get(o.excluded, 0) + 1
    if left_out:
        reasons = {e.name: e.summary for e in load_scope()}
        scope = Table(title=f"Left out of scope ({SCOPE_FILE.name} gives the reasons)")
        for col in ("category", "cases", "what"):
            scope.add_column(col)
        for name, count in sorted(left_out.items(), key=lambda kv: -kv[1]):
            scope.add_row(name, str(count), reasons.get(name, ""))
        console.print(scope)
    if verbose:
        for t in per_folder.values():
            for line in t.failures:
                print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list failing cases")
    parser.add_argument("--folder", action="append", help="only this folder (repeatable)")
    parser.add_argument("--all", action="store_true", help="also run out-of-scope cases")
    parser.add_argument("-k", help="only cases whose id contains this text")
    args = parser.parse_args(argv)
    cases = load_cases(tuple(args.folder) if args.folder else FOLDERS)
    if args.k:
        cases = [c for c in cases if args.k in c.id]
    outcomes = run(cases, load_scope(), include_excluded=args.all)
    if args.all:
        outcomes = [Outcome(o.case, o.passed, None, o.detail) for o in outcomes]
    report(outcomes, args.verbose)
    return 0 if all(o.passed or o.excluded for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

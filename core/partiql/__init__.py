"""PartiQL for Strand: parser, evaluator and the ledger's statement executor (see ast.py).

Exports the entry points (`parse`, `evaluate`, `evaluate_expr`, `scan_matches`,
`check_statement`), the errors, and the query language's own values and hooks (MISSING,
Bag, Context, Lookup, Source). `parse` is imported lazily so that the evaluator's modules
load even while the parser is being rebuilt.
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    PartiQLError,
    PartiQLEvaluationError,
    PartiQLSemanticError,
    PartiQLSyntaxError,
)
from core.partiql.checks import check_statement
from core.partiql.data import MISSING, Bag, Context, Lookup, Source
from core.partiql.evaluator import evaluate, evaluate_expr, scan_matches


def parse(text: str) -> Any:
    """Parse one PartiQL statement (see core.partiql.parser.parse)."""
    from core.partiql.parser import parse as _parse  # noqa: PLC0415

    return _parse(text)


__all__ = [
    "MISSING",
    "Bag",
    "Context",
    "Lookup",
    "PartiQLError",
    "PartiQLEvaluationError",
    "PartiQLSemanticError",
    "PartiQLSyntaxError",
    "Source",
    "check_statement",
    "evaluate",
    "evaluate_expr",
    "parse",
    "scan_matches",
]

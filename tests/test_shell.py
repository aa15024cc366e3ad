"""The PartiQL shell: multi-line statements, BEGIN/COMMIT, Ion output, typed errors, and the
`python -m core.shell` entry point on a LevelDB ledger."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from amazon.ion import simpleion

from core import Ledger
from core.shell import Shell, run
from core.storage import MemoryStorage


def _session(ledger: Ledger, script: str) -> str:
    out = io.StringIO()
    run(ledger, io.StringIO(script), out)
    return out.getvalue()


def test_statements_span_lines_and_print_ion() -> None:
    ledger = Ledger(MemoryStorage())
    text = _session(
        ledger,
        "CREATE TABLE Car;\nINSERT INTO Car\n  VALUE {'VIN': 'A1', 'Year': 2020}\n\n"
        "SELECT c.VIN, c.Year\nFROM Car AS c;\n",
    )
    assert "-- 1 row" in text
    assert "commit digest" in text
    body = [line for line in text.splitlines() if not line.startswith("--")]
    values = simpleion.loads("\n".join(body), single_value=False)
    assert values[-1] == {"VIN": "A1", "Year": 2020}


def test_begin_commit_runs_one_transaction_and_abort_drops() -> None:
    ledger = Ledger(MemoryStorage())
    _session(ledger, "CREATE TABLE T;\n")
    tip = ledger.engine.durable_seq
    text = _session(
        ledger,
        "BEGIN;\nINSERT INTO T VALUE {'a': 1};\nINSERT INTO T VALUE {'a': 2};\nCOMMIT;\n"
        "BEGIN;\nINSERT INTO T VALUE {'a': 3};\nABORT;\n",
    )
    assert "queued (2 in the transaction)" in text
    assert ledger.engine.durable_seq == tip + 1  # one block for both inserts
    rows = ledger.execute_lambda(
        lambda tx: list(tx.execute_statement("SELECT VALUE t.a FROM T AS t"))
    )
    assert sorted(rows) == [1, 2]


def test_errors_are_reported_with_position_and_change_nothing() -> None:
    ledger = Ledger(MemoryStorage())
    tip = ledger.engine.durable_seq
    out = io.StringIO()
    shell = Shell(ledger, out)
    for line in ["SELECT *", "FROM Nowhere;", "SELECT * FORM x;", "\\tables", "\\q"]:
        shell.feed(line)
    text = out.getvalue()
    assert "TableNotFoundError" in text
    assert "-- syntax error: line 1, column 10:" in text
    assert shell.done
    assert ledger.engine.durable_seq == tip


def test_module_entry_point_on_leveldb(tmp_path: Path) -> None:
    script = tmp_path / "s.sql"
    script.write_text("CREATE TABLE T;\nINSERT INTO T VALUE {'x': 1};\nSELECT * FROM T;\n")
    done = subprocess.run(
        [sys.executable, "-m", "core.shell", str(tmp_path / "db"), "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "{\n  x: 1\n}" in done.stdout
    with Ledger.open(tmp_path / "db") as ledger:
        assert ledger.list_tables() == ["T"]

"""A PartiQL shell: `python -m core.shell <ledger-dir>` (the cluster: `python -m cluster.shell`).

Type statements; one ends with `;` or with an empty line, so a statement may span lines.
Each statement runs in its own transaction (and commits), unless it sits between `BEGIN;`
and `COMMIT;`, which run together as one transaction (`ABORT;` drops them). Results print
as Ion text, then a line with the row count, the time taken, and for a committed write the
block address and commit digest. With a terminal, lines are edited and kept in a history
file (readline). Meta commands: `\\tables`, `\\digest`, `\\help`, `\\quit`.

Invariants: a statement that fails prints its typed error (with line and column for a
syntax error) and changes nothing; the shell never holds a transaction open between
prompts (BEGIN ... COMMIT statements are kept as text until COMMIT).
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from amazon.ion import simpleion

from core.errors import PartiQLSyntaxError, StrandError
from core.transaction import Transaction

HISTORY_FILE = Path.home() / ".strand_history"


class LedgerHandle(Protocol):
    """What the shell needs: the embedded Ledger and the cluster's LedgerCluster both fit."""

    def execute_transaction(self, fn: Callable[[Transaction], Any]) -> Any: ...

    def get_digest(self) -> dict[str, Any]: ...

    def list_tables(self) -> list[str]: ...


def format_value(value: Any) -> str:
    """Ion text of a value, indented."""
    return str(simpleion.dumps(value, binary=False, indent="  ", omit_version_marker=True))


class Shell:
    """The line-driven core of the shell (no terminal needed, so it is testable)."""

    def __init__(self, ledger: LedgerHandle, out: IO[str]) -> None:
        self._ledger = ledger
        self._out = out
        self._lines: list[str] = []
        self._transaction: list[str] | None = None  # statements between BEGIN and COMMIT
        self.done = False

    @property
    def prompt(self) -> str:
        if self._lines:
            return "    -> "
        return "strand(tx)> " if self._transaction is not None else "strand> "

    def feed(self, line: str) -> None:
        """One input line."""
        stripped = line.strip()
        if not self._lines and stripped.startswith("\\"):
            self._meta(stripped)
            return
        if stripped:
            self._lines.append(line.rstrip("\n"))
        if not self._lines or (stripped and not stripped.endswith(";")):
            return
        text = "\n".join(self._lines).strip()
        self._lines = []
        while text.endswith(";"):
            text = text[:-1].rstrip()
        if text:
            self._statement(text)

    def finish(self) -> None:
        """End of input: run what is pending."""
        if self._lines:
            self.feed("")
        if self._transaction:
            self._print("-- input ended inside BEGIN: the transaction was not committed")

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _meta(self, command: str) -> None:
        name = command.split()[0].lower()
        if name in ("\\q", "\\quit", "\\exit"):
            self.done = True
        elif name == "\\tables":
            self._print(format_value(self._ledger.list_tables()))
        elif name == "\\digest":
            digest = self._ledger.get_digest()
            self._print(format_value(digest))
        else:
            self._print(__doc__.split("Invariants")[0].strip() if __doc__ else "")

    def _statement(self, text: str) -> None:
        keyword = text.upper()
        if keyword in ("BEGIN", "START TRANSACTION"):
            if self._transaction is not None:
                self._print("-- already in a transaction")
            else:
                self._transaction = []
            return
        if keyword in ("COMMIT", "ABORT", "ROLLBACK"):
            pending, self._transaction = self._transaction, None
            if pending is None:
                self._print("-- not in a transaction")
            elif keyword == "COMMIT":
                self._run(pending)
            return
        if self._transaction is not None:
            self._transaction.append(text)
            self._print(f"-- queued ({len(self._transaction)} in the transaction)")
            return
        self._run([text])

    def _run(self, statements: list[str]) -> None:
        started = time.perf_counter()

        def fn(tx: Transaction) -> list[list[Any]]:
            return [list(tx.execute_statement(s)) for s in statements]

        try:
            result = self._ledger.execute_transaction(fn)
        except PartiQLSyntaxError as exc:
            self._print(f"-- syntax error: {exc}")  # the message starts with its position
            return
        except StrandError as exc:
            self._print(f"-- {type(exc).__name__}: {exc}")
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        for rows in result.value:
            for row in rows:
                self._print(format_value(row))
            self._print(f"-- {len(rows)} row{'s' * (len(rows) != 1)}")
        summary = f"-- {elapsed_ms:.1f} ms"
        if result.block_address is not None:
            digest = base64.b64encode(result.commit_digest).decode("ascii")
            summary += f"; block {result.block_address['sequenceNo']}, commit digest {digest}"
        self._print(summary)


def run(
    ledger: LedgerHandle, lines: Iterable[str] | None = None, out: IO[str] | None = None
) -> None:
    """Run the shell: over `lines` when given (a script), else interactively on stdin;
    output goes to `out` (default: whatever sys.stdout is at the call)."""
    shell = Shell(ledger, out if out is not None else sys.stdout)
    if lines is not None:
        for line in lines:
            shell.feed(line)
            if shell.done:
                return
        shell.finish()
        return
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_history()
    try:
        while not shell.done:
            try:
                line = input(shell.prompt) if interactive else sys.stdin.readline()
            except EOFError:
                break
            if not interactive and line == "":
                break
            shell.feed(line)
    except KeyboardInterrupt:
        pass
    finally:
        shell.finish()
        if interactive:
            _save_history()


def _enable_history() -> None:
    try:
        import readline

        if HISTORY_FILE.exists():
            readline.read_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        pass


def _save_history() -> None:
    try:
        import readline

        readline.set_history_length(10_000)
        readline.write_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.shell", description=__doc__)
    parser.add_argument("ledger_dir", help="the ledger's directory (created if missing)")
    parser.add_argument("-f", "--file", help="run the statements of this file, then exit")
    args = parser.parse_args(argv)
    from core.ledger import Ledger

    with Ledger.open(args.ledger_dir) as ledger:
        if args.file:
            with open(args.file, encoding="utf-8") as f:
                run(ledger, f)
        else:
            run(ledger)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A ledger killed at any moment reopens at its last complete commit, losing nothing acked.

A child process commits transactions (each inserts 3 documents) and prints each
transaction's ids after execute_lambda returned; the test SIGKILLs it (by its own PID) while
it writes, reopens the ledger, and checks that every acknowledged document is there, that
no transaction is half-present, and that the whole journal still verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import Ledger

CHILD = r"""
import sys
from core import Ledger
ledger = Ledger.open(sys.argv[1])
if "W" not in ledger.list_tables():
    ledger.execute_lambda(lambda tx: tx.create_table("W"))
print("ready", flush=True)
for i in range(100_000):
    ids = ledger.execute_lambda(lambda tx: [tx.insert("W", {"i": i, "k": k}) for k in range(3)])
    print(" ".join(ids), flush=True)
"""


@pytest.mark.parametrize("kill_after_lines", [5, 60, 300])
def test_sigkill_loses_no_acknowledged_commit(tmp_path: Path, kill_after_lines: int) -> None:
    path = tmp_path / "ledger"
    acknowledged: list[list[str]] = []
    for _round in range(2):  # kill twice: recovery of a recovered ledger too
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        assert child.stdout.readline().strip() == "ready"
        lines = 0
        while lines < kill_after_lines and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.split())
            lines += 1
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        assert lines == kill_after_lines, "the child stopped before it was killed"

    with Ledger.open(path) as ledger:
        assert ledger.verify_journal().ok
        present = {r["metadata"]["id"] for r in ledger.history("W")}
        for ids in acknowledged:
            assert set(ids) <= present
        by_block: dict[int, int] = {}
        for revision in ledger.history("W"):
            seq = revision["blockAddress"]["sequenceNo"]
            by_block[seq] = by_block.get(seq, 0) + 1
        assert set(by_block.values()) == {3}  # no transaction is half-present

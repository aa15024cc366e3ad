"""`make demo`: the embedded ledger on a real workload, then an audit an outsider could run.

A bank of accounts takes random transfers from several threads (serializable, with OCC
retries); then the demo takes a digest, fetches a revision and a block with their proofs and
verifies them with `core.verification` alone, proves with a consistency proof that the
journal at the end extends the journal at a digest saved halfway, rescans the whole journal,
and reopens the ledger from LevelDB to show the same digest.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core import Ledger, verification
from core.errors import OccConflictError
from core.transaction import Transaction

ACCOUNTS = 100
START_BALANCE = 1_000


def _open_accounts(ledger: Ledger) -> None:
    def create(tx: Transaction) -> None:
        tx.create_table("Accounts")
        tx.create_index("Accounts", "accountId")

    ledger.execute_lambda(create)

    def insert_accounts(tx: Transaction, first: int) -> None:
        for n in range(first, min(first + 40, ACCOUNTS)):
            account = {"accountId": n, "owner": f"owner-{n}", "balance": START_BALANCE}
            tx.insert("Accounts", account)

    for first in range(0, ACCOUNTS, 40):
        ledger.execute_lambda(partial(insert_accounts, first=first))


def _transfer(tx: Transaction, source: int, target: int, amount: int) -> bool:
    [(source_id, source_doc)] = tx.find("Accounts", accountId=source)
    [(target_id, target_doc)] = tx.find("Accounts", accountId=target)
    if source_doc["balance"] < amount:
        return False
    source_doc["balance"] -= amount
    target_doc["balance"] += amount
    tx.update("Accounts", source_id, source_doc)
    tx.update("Accounts", target_id, target_doc)
    return True


def _run_workload(
    ledger: Ledger,
    transfers: int,
    threads: int,
    console: Console,
    applied: list[int],
    gave_up: list[int],
) -> float:
    done = [0]
    lock = threading.Lock()

    def worker(seed: int, count: int) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            source, target = rng.sample(range(ACCOUNTS), 2)
            amount = rng.randint(1, 200)
            try:
                moved = ledger.execute_lambda(
                    partial(_transfer, source=source, target=target, amount=amount)
                )
            except OccConflictError:  # still conflicting after 4 retries: QLDB gave up too
                moved = False
                with lock:
                    gave_up[0] += 1
            with lock:
                done[0] += 1
                applied[0] += int(moved)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i, transfers // threads)) for i in range(threads)]
    with Progress(
        TextColumn("[bold]transfers"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("transfers", total=transfers // threads * threads)
        for thread in pool:
            thread.start()
        while any(t.is_alive() for t in pool):
            progress.update(task, completed=done[0])
            time.sleep(0.1)
        progress.update(task, completed=done[0])
    return time.perf_counter() - started


def _total(ledger: Ledger) -> int:
    return sum(
        int(doc["balance"]) for _, doc in ledger.execute_lambda(lambda tx: tx.find("Accounts"))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default="data/demo-ledger", help="ledger directory (recreated)")
    parser.add_argument("--transfers", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console()
    path = Path(args.dir)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    console.rule("[bold]Strand: embedded ledger demo")
    with Ledger.open(path) as ledger:
        _open_accounts(ledger)
        applied, gave_up = [0], [0]
        elapsed = _run_workload(
            ledger, args.transfers // 2, args.threads, console, applied, gave_up
        )
        halfway: dict[str, Any] = ledger.get_digest()
        elapsed += _run_workload(
            ledger, args.transfers // 2, args.threads, console, applied, gave_up
        )
        total = _total(ledger)
        digest = ledger.get_digest()
        tip = digest["digestTipAddress"]
        committed = tip["sequenceNo"]
        table = Table(title="workload")
        table.add_column("what")
        table.add_column("value", justify="right")
        attempted = args.transfers // 2 // args.threads * args.threads * 2
        table.add_row("transfer transactions run", f"{attempted:,}")
        table.add_row("  of which moved money (the rest: balance too low)", f"{applied[0]:,}")
        table.add_row("  given up after 4 OCC retries", f"{gave_up[0]:,}")
        table.add_row(
            f"transactions per second ({args.threads} threads)", f"{attempted / elapsed:,.0f}"
        )
        table.add_row("bank total (must stay 100,000)", f"{total:,}")
        table.add_row("journal tip", f"{tip['strandId']}:{committed}")
        table.add_row("digest", digest["digest"].hex())
        console.print(table)

        # An auditor keeps the digest; later it asks for a revision and checks it alone.
        account = ledger.history("Accounts")[-1]
        revision = ledger.get_revision(account["blockAddress"], account["metadata"]["id"], tip)
        ok_revision = verification.verify_revision(
            revision["revision"], revision["proof"], digest["digest"]
        )
        block = ledger.get_block(account["blockAddress"], tip)
        ok_block = verification.verify_block(block["block"], block["proof"], digest["digest"])
        consistency = ledger.get_consistency_proof(halfway["digestTipAddress"], tip)
        ok_consistency = verification.verify_consistency(
            halfway["digestTipAddress"]["sequenceNo"] + 1,
            committed + 1,
            halfway["digest"],
            digest["digest"],
            consistency["proof"],
        )
        report = ledger.verify_journal()
        checks = Table(title="audit (core.verification: hashlib + amazon-ion only)")
        checks.add_column("check")
        checks.add_column("result")
        checks.add_row(
            f"revision {account['metadata']['id']} v{account['metadata']['version']}"
            f" ({len(revision['proof'])} proof hashes)",
            _mark(ok_revision),
        )
        checks.add_row(f"block {account['blockAddress']['sequenceNo']}", _mark(ok_block))
        checks.add_row(
            f"journal at {committed} extends journal at "
            f"{halfway['digestTipAddress']['sequenceNo']}",
            _mark(ok_consistency),
        )
        checks.add_row(f"full journal rescan ({report.blocks_checked} blocks)", _mark(report.ok))
        console.print(checks)
    with Ledger.open(path) as reopened:
        same = reopened.get_digest() == digest
        console.print(f"reopened from LevelDB, same digest: {_mark(same)}")
    good = all(
        [ok_revision, ok_block, ok_consistency, report.ok, same, total == ACCOUNTS * START_BALANCE]
    )
    console.rule("[green]all checks passed" if good else "[red]a check FAILED")
    return 0 if good else 1


def _mark(ok: bool) -> str:
    return "[green]verified[/green]" if ok else "[red]FAILED[/red]"


if __name__ == "__main__":
    sys.exit(main())

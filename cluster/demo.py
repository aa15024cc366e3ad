"""`make demo`: the 3-AZ cluster on local Ray, a bank workload, a leader killed, an audit.

Starts a local Ray with resources az-a/az-b/az-c and the cluster of configs/local-3az.toml
(its data directories recreated), opens a bank of accounts and runs concurrent transfers
with a progress bar; a third of the way in, the leader node is killed (ray.kill): a new
leader is elected and the workload goes on. The killed node is restarted from its LevelDB
and catches up. At the end every replica's digest is compared with the digest actor's (which
checks each digest extends the previous one), the bank total is checked, every acknowledged
transfer is looked up in each replica's journal (and every refused one must be absent), and
a revision with its proof, checked by the digest actor, is verified with core.verification
alone. Transactions reach the leader over TCP; Ray places and restarts the actors.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chaos.workload import (
    START_BALANCE,
    WorkloadResult,
    open_accounts,
    run_transfers,
    total_balance,
)
from cluster.client import LedgerCluster
from cluster.config import load_config
from core import verification

ROOT = Path(__file__).resolve().parent.parent


def _mark(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]FAILED[/red]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "configs" / "local-3az.toml"))
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--transfers", type=int, default=150, help="per thread")
    args = parser.parse_args(argv)
    console = Console()
    config = load_config(args.config)
    for node in config.nodes:  # a fresh ledger every run
        shutil.rmtree(Path(node.data_dir).parent, ignore_errors=True)
    console.rule("[bold]Strand: a 3-AZ cluster on Ray")
    started = time.monotonic()
    cluster = LedgerCluster.start(config)
    try:
        return _run(cluster, args, console, started)
    finally:
        cluster.shutdown()


def _run(cluster: LedgerCluster, args: argparse.Namespace, console: Console, t0: float) -> int:
    first_leader = cluster.wait_ready()
    console.print(f"cluster up in {time.monotonic() - t0:.1f} s; leader: node {first_leader}")
    open_accounts(cluster, args.accounts)
    result = WorkloadResult()
    total = args.threads * args.transfers
    worker = threading.Thread(
        target=run_transfers,
        kwargs={
            "ledger": cluster,
            "accounts": args.accounts,
            "threads": args.threads,
            "count": args.transfers,
            "result": result,
        },
    )
    killed_at: float | None = None
    new_leader: str | None = None
    began = time.monotonic()
    worker.start()
    with Progress(
        TextColumn("[bold]transfers"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("", total=total)
        while worker.is_alive():
            progress.update(task, completed=result.done)
            if killed_at is None and result.done >= total // 3:
                cluster.kill(first_leader)
                killed_at = time.monotonic()
                progress.console.print(f"[red]killed the leader, node {first_leader}")
            if killed_at is not None and new_leader is None:
                new_leader = cluster.leader()
                if new_leader is not None and new_leader != first_leader:
                    progress.console.print(
                        f"[green]node {new_leader} leads after {time.monotonic() - killed_at:.2f} s"
                    )
                else:
                    new_leader = None
            time.sleep(0.1)
        progress.update(task, completed=result.done)
    elapsed = time.monotonic() - began
    console.print(f"restarting node {first_leader} from its LevelDB ...")
    cluster.restart(first_leader)
    digest = cluster.audit("get_digest")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        digest = cluster.audit("get_digest")  # the digest actor checks it extends the last
        target = (digest["digestTipAddress"]["sequenceNo"], digest["digest"])
        digests = cluster.node_digests()
        if len(digests) == 3 and all(v == target for v in digests.values()):
            break
        time.sleep(0.2)
    tip = digest["digestTipAddress"]

    table = Table(title="replicas (each at its commit index)")
    for column in ("node", "AZ", "role", "term", "sequence no", "digest"):
        table.add_column(column)
    for status in cluster.nodes():
        table.add_row(
            status["node"],
            status.get("az", "?"),
            status["role"],
            str(status.get("term", "")),
            str(status.get("sequence_no", "")),
            status["digest"].hex()[:24] + "..." if "digest" in status else "",
        )
    console.print(table)
    same_digest = all(
        (s.get("sequence_no"), s.get("digest")) == (tip["sequenceNo"], digest["digest"])
        for s in cluster.nodes()
    )
    once = not result.unexpected
    for node in cluster.config.node_names:
        counts = Counter(cluster.query("transaction_ids", consistency="stale", node=node)[0])
        once = once and all(counts[t] == 1 for t in result.acknowledged)
        once = once and not any(counts[t] for t in result.failed)
        once = once and max(counts.values()) == 1
    bank = total_balance(cluster)
    [partiql_row] = cluster.execute_lambda(
        lambda tx: list(
            tx.execute_statement("SELECT COUNT(*) AS n, SUM(a.balance) AS total FROM Accounts AS a")
        )
    )
    account = cluster.history("Accounts")[-1]
    revision = cluster.audit(
        "get_revision", account["blockAddress"], account["metadata"]["id"], tip
    )
    proof_ok = verification.verify_revision(
        revision["revision"], revision["proof"], digest["digest"]
    )

    summary = Table(title="workload and audit")
    summary.add_column("check")
    summary.add_column("result", justify="right")
    summary.add_row(f"transfers answered ({args.threads} clients)", f"{result.answered:,}")
    summary.add_row(
        "  that moved money (each must be in the journal once)", f"{len(result.acknowledged):,}"
    )
    summary.add_row("  refused (errors by type)", str(result.errors or "none"))
    summary.add_row("transfers per second, through the failover", f"{result.done / elapsed:,.0f}")
    summary.add_row(
        f"bank total (must be {args.accounts * START_BALANCE:,})",
        f"{bank:,} {_mark(bank == args.accounts * START_BALANCE)}",
    )
    partiql_ok = partiql_row == {"n": args.accounts, "total": bank}
    summary.add_row(
        "PartiQL: SELECT COUNT(*), SUM(a.balance) FROM Accounts",
        f"{partiql_row['n']}, {partiql_row['total']:,} {_mark(partiql_ok)}",
    )
    summary.add_row("every replica at the digest actor's digest", _mark(same_digest))
    summary.add_row(
        "every acknowledged transfer once in every replica's journal, no refused one",
        _mark(once),
    )
    summary.add_row(
        f"final digest at {tip['strandId']}:{tip['sequenceNo']}", digest["digest"].hex()
    )
    summary.add_row(
        f"revision proof ({len(revision['proof'])} hashes), core.verification", _mark(proof_ok)
    )
    summary.add_row("leader killed and replaced", _mark(new_leader is not None))
    console.print(summary)
    good = all(
        [
            same_digest,
            once,
            proof_ok,
            partiql_ok,
            new_leader is not None,
            bank == args.accounts * START_BALANCE,
        ]
    )
    console.rule("[green]all checks passed" if good else "[red]a check FAILED")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())

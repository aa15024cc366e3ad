"""`strand up`, `strand shell`, `strand chaos` and `strand bench`: thin fronts (issue 14).

    strand up    [CONFIG] [--data-root DIR] [--json]   the local cluster, in the foreground
    strand shell --data DIR | [CONFIG] [--start]  [-f FILE]   the PartiQL shell
    strand chaos ARGS...                          `python -m chaos ARGS...`
    strand bench engine|cluster|partiql|failover|gateway ARGS...   benchmarks/<name>.py

`up` starts the cluster of CONFIG (default: the top-level `--config`, configs/local-3az.toml)
on a local Ray with one resource per AZ (`LedgerCluster.start`, which waits for a leader),
prints every node's status (a Rich table, or JSON lines with `--json`) and then serves in
the foreground until SIGINT/SIGTERM, when it stops the cluster. Other commands reach it by
its config alone (`strand status`, `strand shell CONFIG`, `strand digest --config CONFIG`,
...: the client protocol, no Ray needed).

`shell` runs core/shell.py on an embedded ledger (`--data DIR`) or cluster/shell.py on a
cluster (attached, or started here with `--start`). `chaos` and `bench` hand their
arguments to the module or script unchanged (`bench` runs the script in a child process of
this Python, from the checkout's `benchmarks/`). Nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARKS", "add_commands"]

BENCHMARKS = ("engine", "cluster", "partiql", "failover", "gateway")
BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def add_commands(commands: Any) -> None:
    """Register `up`, `shell`, `chaos`, `bench`; each sets `run`."""
    up = commands.add_parser("up", help="start the local 3-AZ cluster (foreground)")
    up.add_argument("cluster_file", nargs="?", metavar="CONFIG", help="default: --config")
    up.add_argument("--data-root", help="keep every node's data here (default: the config's)")
    up.add_argument("--json", action="store_true", help="statuses as JSON lines")
    up.set_defaults(run=_run_up)

    shell = commands.add_parser("shell", help="the PartiQL shell")
    shell.add_argument("cluster_file", nargs="?", metavar="CONFIG", help="default: --config")
    shell.add_argument("--data", help="an embedded ledger's directory (created if missing)")
    shell.add_argument("--start", action="store_true", help="start the cluster here")
    shell.add_argument("--data-root", help="with --start: keep every node's data here")
    shell.add_argument("-f", "--file", help="run the statements of this file, then exit")
    shell.set_defaults(run=_run_shell)

    chaos = commands.add_parser("chaos", help="chaos experiments (python -m chaos)")
    chaos.add_argument("args", nargs=argparse.REMAINDER)
    chaos.set_defaults(run=_run_chaos)

    bench = commands.add_parser("bench", help="benchmarks (benchmarks/<name>.py)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_run_bench)


def _config(args: argparse.Namespace) -> str:
    return str(args.cluster_file or args.config)


def print_statuses(statuses: list[dict[str, Any]], as_json: bool) -> None:
    """Each node's status: JSON lines, or a Rich table."""
    keys = ("node", "role", "term", "sequence_no", "health", "error")
    if as_json:
        for status in statuses:
            print(json.dumps({k: status[k] for k in keys if k in status}), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*keys)
    for status in statuses:
        table.add_row(*(str(status.get(k, "")) for k in keys))
    Console().print(table)


def _run_up(args: argparse.Namespace) -> int:
    from cluster.client import LedgerCluster

    cluster = LedgerCluster.start(_config(args), data_root=args.data_root)
    try:
        print_statuses(cluster.nodes(), args.json)
        leader = cluster.leader()
        message = f"strand up: {_config(args)} running, leader {leader}; Ctrl-C stops it"
        print(json.dumps({"up": True, "leader": leader}) if args.json else message, flush=True)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
    finally:
        cluster.shutdown()
    if not args.json:
        print("strand up: stopped", flush=True)
    return 0


def _run_shell(args: argparse.Namespace) -> int:
    tail = ["-f", args.file] if args.file else []
    if args.data:
        from core import shell as embedded

        return embedded.main([args.data, *tail])
    from cluster import shell as on_cluster

    start = ["--start"] if args.start else []
    root = ["--data-root", args.data_root] if args.data_root else []
    return on_cluster.main([_config(args), *start, *root, *tail])


def _run_chaos(args: argparse.Namespace) -> int:
    from chaos.__main__ import main as chaos_main

    return chaos_main(args.args)


def _run_bench(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"{args.name}.py"
    if not script.is_file():
        print(f"strand bench: no {script} in this checkout", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(script), *args.args], cwd=BENCH_DIR.parent)

"""QLDB gateway benchmark: pyqldb through `strand serve`, next to the native API.

    .venv/bin/python benchmarks/gateway.py [--seconds 8] [--clients 1,16,64]
                                           [--modes embedded,cluster]

One transaction, the same everywhere: `SELECT * FROM Item WHERE uid = ?` (an indexed lookup
of one of 200 documents loaded first) then `INSERT INTO Item ?` of a new ~100-byte document,
committed. Nothing conflicts (every insert is a new document, the lookups read documents
no one writes), so the figures are the commit path's, not OCC retries'.

- gateway: `strand serve --data DIR` (embedded) or `strand serve --cluster CONFIG` (each
  ledger a 3-node replicated group on a local Ray that the server starts) in a process of
  its own; the ledger is made through boto3's `qldb` client (CreateLedger, then ACTIVE) and
  driven by unmodified pyqldb 3.2.4 (`QldbDriver(endpoint_url=...)`, `execute_lambda`) in
  pyqldb's pinned virtual environment (tests/qldb_venv.py): N concurrent drivers are
  threads spread over up to 4 driver processes, started together after each thread ran one
  warm-up transaction; pyqldb checks the server's commit digest on every commit.
- native: the same two statements via `tx.execute_statement` in `Ledger.execute_lambda`
  (a fresh embedded ledger in this process) or `LedgerCluster.execute_lambda` (the same
  ledger group the gateway served, over its TCP client port), from N threads of this
  process.

Printed: transactions/s, mean and p99 latency, the gateway's overhead per transaction
(mean latency through the gateway minus the native one at the same concurrency), the gateway
process's CPU per transaction, and pyqldb's retries (503 when more than `--max-inflight`
ledger calls are queued). Everything runs on this machine: the drivers (pyqldb hashes every
statement in pure Python), the gateway and the ledger share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.client import LedgerCluster  # noqa: E402
from cluster.ledger_groups import ClusterLedgers  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from core.transaction import Transaction  # noqa: E402
from tests.qldb_venv import qldb_python  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY = "AKIDBENCH", "strand-bench-secret"
LEDGER = "bench"
PROBES = 200
MAX_PROCESSES = 4
CLUSTER_CONFIG = """\
cluster_name = "strand-gwbench"
secret = "strand-gateway-benchmark-secret-local-only"
tick_ms = 50
heartbeat_ticks = 2
election_ticks = 10
max_batch_transactions = 256
max_entries_per_message = 64
client_port_base = 52201
{nodes}
[links]
"""
NODE = """
[[nodes]]
name = "{name}"
az = "az-{name}"
host = "127.0.0.1"
port = {port}
data_dir = "{root}/{name}"
"""

# Run by pyqldb's venv: make the ledger through the control plane, its table, index and
# probe documents through pyqldb; or delete it.
SETUP = r"""
import json, sys, time
import boto3
from pyqldb.driver.qldb_driver import QldbDriver
URL, LEDGER, ACTION, PROBES = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
KEYS = dict(aws_access_key_id=sys.argv[5], aws_secret_access_key=sys.argv[6])
qldb = boto3.client("qldb", endpoint_url=URL, region_name="us-east-1", **KEYS)
if ACTION == "delete":
    qldb.delete_ledger(Name=LEDGER)
    sys.exit(0)
qldb.create_ledger(Name=LEDGER, PermissionsMode="STANDARD", DeletionProtection=False)
while qldb.describe_ledger(Name=LEDGER)["State"] != "ACTIVE":
    time.sleep(0.1)
with QldbDriver(LEDGER, endpoint_url=URL, region_name="us-east-1", **KEYS) as d:
    d.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE Item"))
    d.execute_lambda(lambda ex: ex.execute_statement("CREATE INDEX ON Item (uid)"))
    for first in range(0, PROBES, 40):  # QLDB: 40 documents per transaction at most
        d.execute_lambda(lambda ex: ex.execute_statement("INSERT INTO Item ?", [
            {"uid": f"probe-{i}", "pad": "p" * 64} for i in range(first, min(first + 40, PROBES))]))
print("made")
"""

# Run by pyqldb's venv: THREADS drivers (threads sharing one QldbDriver), one warm-up
# transaction each, READY, then on a line of stdin SECONDS of transactions; one JSON line.
DRIVER = r"""
import json, random, sys, threading, time
from botocore.config import Config
from botocore.exceptions import ClientError
from pyqldb.config.retry_config import RetryConfig
from pyqldb.driver.qldb_driver import QldbDriver
URL, LEDGER, THREADS, PREFIX = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
SECONDS, PROBES = float(sys.argv[5]), int(sys.argv[6])
KEYS = dict(aws_access_key_id=sys.argv[7], aws_secret_access_key=sys.argv[8])
lock = threading.Lock()
retries = {}
def backoff(attempt, error, transaction_id):
    if isinstance(error, ClientError):
        key = error.response["Error"]["Code"]
    else:
        key = type(error).__name__
    with lock:
        retries[key] = retries.get(key, 0) + 1
    return min(10 * 2 ** attempt, 1000)
d = QldbDriver(LEDGER, endpoint_url=URL, region_name="us-east-1",
               config=Config(max_pool_connections=THREADS + 2),
               retry_config=RetryConfig(retry_limit=20, custom_backoff=backoff), **KEYS)
def transaction(uid, probe):
    def fn(ex):
        found = list(ex.execute_statement("SELECT * FROM Item WHERE uid = ?", probe))
        assert len(found) == 1, found
        ex.execute_statement("INSERT INTO Item ?", {"uid": uid, "pad": "x" * 64})
    return fn
go = threading.Event()
ready = threading.Barrier(THREADS + 1)
latencies = [[] for _ in range(THREADS)]
errors = []
def work(t):
    rng = random.Random(t)
    n = 0
    def one():
        nonlocal n
        n += 1
        d.execute_lambda(transaction(f"{PREFIX}-{t}-{n}", f"probe-{rng.randrange(PROBES)}"))
    try:
        one()
        ready.wait()
        go.wait()
        end = time.monotonic() + SECONDS
        while True:
            began = time.monotonic()
            if began >= end:
                break
            one()
            latencies[t].append(time.monotonic() - began)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for t in threads: t.start()
ready.wait()
print("READY", flush=True)
sys.stdin.readline()
go.set()
for t in threads: t.join()
d.close()
print(json.dumps({"latencies": [x for per in latencies for x in per], "retries": retries,
                  "errors": errors}))
"""


def statements(tx: Transaction, uid: str, probe: str) -> None:
    """The benchmark's transaction through the native API (the same statements)."""
    found = tx.execute_statement("SELECT * FROM Item WHERE uid = ?", probe)
    assert len(found) == 1, found
    tx.execute_statement("INSERT INTO Item ?", {"uid": uid, "pad": "x" * 64})


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`strand serve` in a process of its own (stopped with SIGTERM)."""

    def __init__(self, where: list[str], log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "serve", *where, "--port", "0",
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("strand serve: listening on "):
            self.stop()
            raise RuntimeError(f"strand serve did not start: {line!r}; see {log}")
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _venv(script: str, *args: str, timeout_s: float = 300) -> str:
    proc = subprocess.run(
        [str(qldb_python()), "-c", script, *args], capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pyqldb script failed: {proc.stderr[-3000:]}")
    return proc.stdout


def run_gateway(server: Server, clients: int, seconds: float, tag: str) -> dict[str, Any]:
    """`clients` pyqldb drivers against the server for `seconds`."""
    processes = min(MAX_PROCESSES, clients)
    shares = [
        clients // processes + (1 if i < clients % processes else 0) for i in range(processes)
    ]
    drivers = [
        subprocess.Popen(
            [
                str(qldb_python()),
                "-c",
                DRIVER,
                server.url,
                LEDGER,
                str(n),
                f"{tag}-p{i}",
                str(seconds),
                str(PROBES),
                ACCESS_KEY,
                SECRET_KEY,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, n in enumerate(shares)
    ]
    try:
        for driver in drivers:
            assert driver.stdout is not None
            line = driver.stdout.readline()
            if line != "READY\n":
                raise RuntimeError(f"a driver did not start: {line!r} {driver.stderr.read()}")  # type: ignore[union-attr]
        cpu_before = _cpu_s(server.process.pid)
        for driver in drivers:
            assert driver.stdin is not None
            driver.stdin.write("go\n")
            driver.stdin.flush()
        results = []
        for driver in drivers:
            out, err = driver.communicate(timeout=seconds + 300)
            if driver.returncode != 0:
                raise RuntimeError(f"a driver failed: {err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        cpu = _cpu_s(server.process.pid) - cpu_before
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
    latencies = [x for r in results for x in r["latencies"]]
    retries: dict[str, int] = {}
    for r in results:
        for code, count in r["retries"].items():
            retries[code] = retries.get(code, 0) + count
    errors = [e for r in results for e in r["errors"]]
    return _summary(latencies, seconds, cpu_s=cpu, retries=retries, errors=errors)


def run_native(handle: Any, clients: int, seconds: float, tag: str) -> dict[str, Any]:
    """`clients` threads of this process running the transaction through `handle`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients)

    def work(t: int) -> None:
        import random

        rng = random.Random(t)
        n = 0

        def one() -> None:
            nonlocal n
            n += 1
            uid, probe = f"{tag}-{t}-{n}", f"probe-{rng.randrange(PROBES)}"
            handle.execute_lambda(lambda tx: statements(tx, uid, probe))

        try:
            one()  # warm-up
            barrier.wait()
            end = time.monotonic() + seconds
            while (began := time.monotonic()) < end:
                one()
                latencies[t].append(time.monotonic() - began)
        except Exception as exc:  # noqa: BLE001 - reported in the table's notes
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _summary([x for per in latencies for x in per], seconds, errors=errors)


def _summary(
    latencies: list[float],
    seconds: float,
    *,
    cpu_s: float | None = None,
    retries: dict[str, int] | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    ordered = sorted(latencies)
    count = len(ordered)
    return {
        "tps": count / seconds,
        "mean_ms": 1000 * statistics.fmean(ordered) if ordered else float("nan"),
        "p99_ms": 1000 * ordered[min(count - 1, int(count * 0.99))] if ordered else float("nan"),
        "count": count,
        "cpu_ms_per_tx": None if cpu_s is None or not count else 1000 * cpu_s / count,
        "retries": retries or {},
        "errors": errors or [],
    }


def _setup_native_embedded(root: Path) -> Ledger:
    ledger = Ledger.open(root / "native")
    ledger.execute_statement("CREATE TABLE Item")
    ledger.execute_statement("CREATE INDEX ON Item (uid)")
    for first in range(0, PROBES, 40):  # 40 documents per transaction at most
        probes = [{"uid": f"probe-{i}", "pad": "p" * 64} for i in range(first, first + 40)]
        ledger.execute_statement(
            "INSERT INTO Item ?", [p for p in probes if int(p["uid"][6:]) < PROBES]
        )
    return ledger


def _cluster_config(root: Path) -> Path:
    nodes = "".join(
        NODE.format(name=name, port=52101 + i, root=root / "base") for i, name in enumerate("abc")
    )
    path = root / "gwbench.toml"
    path.write_text(CLUSTER_CONFIG.format(nodes=nodes))
    return path


def bench_mode(
    mode: str, clients: list[int], seconds: float, root: Path, console: Console
) -> dict[int, dict[str, dict[str, Any]]]:
    """Every concurrency through the gateway, then natively; {clients: {"gateway"|"native"}}."""
    results: dict[int, dict[str, dict[str, Any]]] = {c: {} for c in clients}
    if mode == "embedded":
        where = ["--data", str(root / "served")]
    else:
        where = ["--cluster", str(_cluster_config(root))]
    console.print(f"[bold]{mode}[/]: starting strand serve {where[0]}")
    server = Server(where, root / f"serve-{mode}.log")
    native: Any = None
    try:
        _venv(SETUP, server.url, LEDGER, "create", str(PROBES), ACCESS_KEY, SECRET_KEY)
        for n in clients:
            results[n]["gateway"] = run_gateway(server, n, seconds, f"{mode}-g{n}")
            console.print(f"  gateway x{n}: {results[n]['gateway']['tps']:.0f} tx/s")
        if mode == "embedded":
            native = _setup_native_embedded(root)
        else:  # the group the gateway served, over TCP (no Ray needed in this process)
            native = LedgerCluster.connect(ClusterLedgers(where[1]).config_of(LEDGER))
        for n in clients:
            results[n]["native"] = run_native(native, n, seconds, f"{mode}-n{n}")
            console.print(f"  native  x{n}: {results[n]['native']['tps']:.0f} tx/s")
    finally:
        if native is not None:
            native.close()
        if mode == "cluster":  # stops the group's actors; the server's Ray ends with it
            try:
                _venv(SETUP, server.url, LEDGER, "delete", "0", ACCESS_KEY, SECRET_KEY)
            except Exception as exc:  # noqa: BLE001 - the server stops its Ray regardless
                console.print(f"deleting the ledger failed: {exc}")
        server.stop()
    return results


def table(results: dict[str, dict[int, dict[str, dict[str, Any]]]]) -> Table:
    out = Table(title="pyqldb through strand serve vs the native API (same transaction)")
    columns = (
        *("mode", "drivers", "gateway tx/s", "native tx/s", "gateway mean / p99 ms"),
        *("native mean / p99 ms", "overhead ms/tx", "gateway CPU ms/tx", "retries"),
    )
    for column in columns:
        out.add_column(column, justify="left" if column in ("mode", "retries") else "right")
    for mode, rows in results.items():
        for n, row in rows.items():
            gw, nat = row.get("gateway"), row.get("native")
            if gw is None or nat is None:
                continue
            retries = ", ".join(f"{k} {v}" for k, v in sorted(gw["retries"].items())) or "-"
            if gw["errors"] or nat["errors"]:
                retries += f"; errors {len(gw['errors'])}/{len(nat['errors'])}"
            out.add_row(
                mode,
                str(n),
                f"{gw['tps']:,.0f}",
                f"{nat['tps']:,.0f}",
                f"{gw['mean_ms']:.1f} / {gw['p99_ms']:.1f}",
                f"{nat['mean_ms']:.1f} / {nat['p99_ms']:.1f}",
                f"{gw['mean_ms'] - nat['mean_ms']:+.1f}",
                f"{gw['cpu_ms_per_tx']:.2f}" if gw["cpu_ms_per_tx"] is not None else "-",
                retries,
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--modes", default="embedded,cluster")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    console = Console(width=200)
    qldb_python()  # build pyqldb's environment first (cached)
    results: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="strand-gwbench-") as tmp:
        for mode in args.modes.split(","):
            root = Path(tmp) / mode
            root.mkdir()
            results[mode] = bench_mode(mode, clients, args.seconds, root, console)
    console.print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

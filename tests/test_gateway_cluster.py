"""`strand serve --cluster`: an unmodified pyqldb application against ledgers on the cluster.

The server runs as its own process (`python -m cluster.cli serve --cluster CONFIG`) on the
test session's Ray (RAY_ADDRESS), under a private copy of configs/test-3az.toml. A driver
program in pyqldb's own environment (tests/gateway_drivers.py FAILOVER) creates the ledger
through boto3's `qldb` client (the control plane makes its replicated group), then runs many
small transactions from several threads (an insert with a unique id and a counter increment
each) while this test kills the group's leader (Ray restarts it). The driver retries what
the gateway answers during the leader change; afterwards every acknowledged insert is in the
ledger exactly once, no unacknowledged one is, every counter equals its acknowledged
increments, and pyqldb accepted the server's commit digest every time (it raises otherwise).
The replicas agree on the journal at the end. The group's actors are stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from cluster.ledger_groups import ClusterLedgers
from tests import gateway_drivers
from tests.conftest import private_cluster_config, wait_for
from tests.qldb_venv import qldb_python

CLUSTER = "strand-gwcluster"
PORT_SHIFT = 1800
ACCESS_KEY, SECRET_KEY = "AKIDSTRAND", "strand-secret"
ROOT = Path(__file__).resolve().parent.parent


def _group_actors() -> list[str]:
    import ray

    return [name for name in ray.util.list_named_actors() if name.startswith(f"{CLUSTER}.")]


def _readline(stream: IO[str], timeout_s: float, what: str) -> str:
    """The next line of `stream`, or a failure after `timeout_s`."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not lines:
        raise AssertionError(f"timed out waiting for {what}")
    return lines[0]


class Served:
    """A `strand serve --cluster` process and the config it serves."""

    def __init__(self, process: subprocess.Popen[str], url: str, config: Path, log: Path):
        self.process, self.url, self.config, self.log = process, url, config, log


@pytest.fixture
def served(ray_runtime: None, tmp_path: Path) -> Iterator[Served]:
    import ray

    config = private_cluster_config(tmp_path, CLUSTER, PORT_SHIFT)
    # QLDB's 30 s transactions (the test config's 4 s is for tests that run one past it)
    text = config.read_text()
    assert "transaction_timeout_ms = 4000" in text
    config.write_text(
        text.replace("transaction_timeout_ms = 4000", "transaction_timeout_ms = 30000")
    )
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = tmp_path / "serve.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cluster.cli",
                "serve",
                "--cluster",
                str(config),
                "--port",
                "0",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                "--stop-grace-s",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = _readline(process.stdout, 60, "strand serve to listen")
        assert line.startswith("strand serve: listening on http://127.0.0.1:"), (
            line + log.read_text()[-3000:]
        )
        yield Served(process, line.split()[-1], config, log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        ClusterLedgers(config).shutdown()  # the groups' actors are detached: stop them
        assert _group_actors() == []


def _failover(
    served: Served, *, threads: int, counters: int, after: int, kills: int = 1
) -> dict[str, Any]:
    """Run the FAILOVER driver; kill the group's leader `kills` times while it runs (Ray
    restarts each, another node leads meanwhile); the driver's findings."""
    import json

    ledger = "cars"
    errors = open(served.log.with_name("driver.err"), "w+")  # noqa: SIM115 - closed below
    driver = subprocess.Popen(
        [
            str(qldb_python()),
            "-c",
            gateway_drivers.FAILOVER,
            served.url,
            ledger,
            str(threads),
            str(counters),
            str(after),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )

    def said() -> str:
        errors.seek(0)
        return f"driver: {errors.read()[-6000:]}\nserver: {served.log.read_text()[-6000:]}"

    ledgers = None
    try:
        assert driver.stdout is not None
        assert driver.stdin is not None
        assert _readline(driver.stdout, 90, "the ledger to be made") == "READY\n", said()
        assert _readline(driver.stdout, 60, "transactions to run") == "RUNNING\n", said()
        ledgers = ClusterLedgers(served.config)
        assert ledgers.describe(ledger).state == "ACTIVE"
        cluster = ledgers.open(ledger)
        killed = []
        for round_ in range(kills):
            if round_:
                time.sleep(2.0)  # transactions commit under this leader before the next kill
            old = cluster.leader()
            assert old is not None
            old_term = next(s["term"] for s in cluster.nodes() if s["node"] == old)
            cluster.kill(old, restart=True)  # mid-run: every driver thread has one going
            killed.append(old)

            def new_leader(old_term: int = old_term) -> bool:
                terms = {s["node"]: s.get("term", 0) for s in cluster.nodes()}
                leader = cluster.leader()
                return leader is not None and terms.get(leader, 0) > old_term

            wait_for(new_leader, 30, "another leader")
        driver.stdin.write("killed\n")
        driver.stdin.flush()
        out, _ = driver.communicate(timeout=120)
        assert driver.returncode == 0, said()
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])

        def replicas_agree() -> bool:
            digests = cluster.node_digests()  # the killed ones are back, restarted by Ray
            return len(digests) == 3 and len(set(digests.values())) == 1

        wait_for(replicas_agree, 30, "the replicas to agree")
        result["killed"] = killed
        return result
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
        errors.close()
        if ledgers is not None:
            ledgers.close()


def _check(out: dict[str, Any], threads: int, after: int) -> None:
    """No transaction lost or doubled; every one the driver started after the kills done."""
    assert out["states"][-1] == "ACTIVE"
    assert out["errors"] == []  # pyqldb accepted every commit digest, retried every failure
    assert out["lost"] == []
    assert out["doubled"] == []
    assert out["unacknowledged_present"] == []
    assert out["counters"] == out["expected_counters"]
    assert out["acked_before_kill"] >= 4 * threads
    assert out["acked"] >= out["acked_before_kill"] + threads * after


def _report(out: dict[str, Any]) -> None:
    print(
        f"\n{out['acked']} transactions acknowledged in {out['seconds']:.1f} s, leaders killed: "
        f"{out['killed']}; slowest before/after the kills: "
        f"{out['slowest_s'][0]:.1f}/{out['slowest_s'][1]:.1f} s; retried: {out['retried']}; "
        f"timeline: {out['timeline']}"
    )


def test_pyqldb_through_strand_serve_cluster_survives_a_leader_kill(served: Served) -> None:
    out = _failover(served, threads=6, counters=3, after=5)
    _report(out)
    _check(out, threads=6, after=5)


@pytest.mark.slow
def test_pyqldb_through_strand_serve_cluster_survives_leader_kills(served: Served) -> None:
    out = _failover(served, threads=12, counters=4, after=20, kills=3)
    _report(out)
    _check(out, threads=12, after=20)

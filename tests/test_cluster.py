"""The replicated ledger on Ray: three AZ nodes, the coordinator and the digest actor.

One cluster (configs/test-3az.toml, data under a temporary directory) serves the whole
module; each test leaves it with all three nodes up. Real Ray, real LevelDB, real TCP on
127.0.0.1; every wait is a bounded poll.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from amazon.ion import simpleion

from chaos.workload import WorkloadResult, open_accounts, run_transfers, total_balance
from cluster.client import LedgerCluster
from core import shell, verification
from core.errors import TableNotFoundError
from tests.partiql_steps import load_steps, run_steps

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 40


@pytest.fixture(scope="module")
def cluster(ray_runtime: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerCluster]:
    handle = LedgerCluster.start(
        ROOT / "configs" / "test-3az.toml", data_root=tmp_path_factory.mktemp("cluster")
    )
    open_accounts(handle, ACCOUNTS)
    yield handle
    handle.shutdown()


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def converged(cluster: LedgerCluster) -> bool:
    """Every node is up and holds the digest actor's digest at the same sequence number."""
    digest = cluster.get_digest()
    expected = (digest["digestTipAddress"]["sequenceNo"], digest["digest"])
    nodes = cluster.node_digests()
    return len(nodes) == 3 and all(v == expected for v in nodes.values())


def check_journal(cluster: LedgerCluster, result: WorkloadResult) -> None:
    """On every replica: each acknowledged transaction exactly once; balances conserved."""
    wait_for(lambda: converged(cluster), what="replicas to converge")
    for node in cluster.config.node_names:
        ids, _ = cluster.query("transaction_ids", consistency="stale", node=node)
        counts = Counter(ids)
        assert all(counts[tx_id] == 1 for tx_id in result.acknowledged), node
        assert max(counts.values()) == 1, f"{node}: a transaction id is in two blocks"
    assert total_balance(cluster) == ACCOUNTS * 1_000


def assert_all_answered(result: WorkloadResult, expected: int) -> None:
    """Every transfer committed, except some that QLDB too would give up on (OCC, 4 retries)."""
    assert set(result.errors) <= {"OccConflictError"}, result.errors
    assert result.answered + result.errors.get("OccConflictError", 0) == expected
    assert result.answered >= expected * 0.9


def run_in_background(
    cluster: LedgerCluster, *, threads: int, count: int, seed: int
) -> tuple[threading.Thread, WorkloadResult]:
    result = WorkloadResult()
    thread = threading.Thread(
        target=run_transfers,
        kwargs={
            "ledger": cluster,
            "accounts": ACCOUNTS,
            "threads": threads,
            "count": count,
            "seed": seed,
            "result": result,
        },
        daemon=True,
    )
    thread.start()
    return thread, result


def test_concurrent_transfers_commit_and_every_replica_agrees(cluster: LedgerCluster) -> None:
    result = run_transfers(cluster, accounts=ACCOUNTS, threads=8, count=25, seed=1)
    assert_all_answered(result, 200)
    check_journal(cluster, result)


def test_a_revision_from_the_cluster_verifies_with_core_verification(
    cluster: LedgerCluster,
) -> None:
    doc_id = cluster.execute_lambda(
        lambda tx: tx.insert("Accounts", {"accountId": 999, "balance": 0})
    )
    digest = cluster.get_digest()
    history = cluster.history("Accounts", doc_id)
    address = history[-1]["blockAddress"]
    answer = cluster.get_revision(address, doc_id, digest["digestTipAddress"])
    assert verification.verify_revision(answer["revision"], answer["proof"], digest["digest"])
    tampered = dict(answer["revision"], data={"accountId": 999, "balance": 10**9})
    assert not verification.verify_revision(tampered, answer["proof"], digest["digest"])
    cluster.execute_lambda(lambda tx: tx.delete("Accounts", doc_id))


def test_vehicle_registration_tutorial_runs_on_the_cluster(cluster: LedgerCluster) -> None:
    steps = load_steps("vehicle_registration.ion")

    def tip() -> int:
        return int(cluster.get_digest()["digestTipAddress"]["sequenceNo"])

    assert run_steps(cluster.execute_lambda, tip, steps) == len(steps)
    wait_for(lambda: converged(cluster), what="replicas to converge")
    # the redaction reached every replica, and the redacted revision still verifies
    [reg] = [r for r in cluster.history("VehicleRegistration") if "dataHash" in r]
    digest = cluster.get_digest()
    for node in cluster.config.node_names:
        answer, _ = cluster.query(
            "get_revision",
            reg["blockAddress"],
            reg["metadata"]["id"],
            digest["digestTipAddress"],
            consistency="stale",
            node=node,
        )
        assert "data" not in answer["revision"], node
        assert "dataHash" in answer["revision"], node
        assert verification.verify_revision(answer["revision"], answer["proof"], digest["digest"])
    result = cluster.execute_transaction(
        lambda tx: list(tx.execute_statement("SELECT COUNT(*) FROM Vehicle"))
    )
    assert result.value == [{"_1": 5}]
    assert result.block_address is None
    assert len(result.commit_digest) == 32


def test_the_partiql_shell_runs_against_the_cluster(cluster: LedgerCluster) -> None:
    out = io.StringIO()
    script = (
        "CREATE TABLE ShellCar;\nBEGIN;\nINSERT INTO ShellCar VALUE {'VIN': 'S1'};\n"
        "INSERT INTO ShellCar\n  VALUE {'VIN': 'S2'};\nCOMMIT;\n"
        "SELECT VALUE c.VIN FROM ShellCar AS c ORDER BY c.VIN;\nSELEC oops;\n"
    )
    shell.run(cluster, io.StringIO(script), out)
    text = out.getvalue()
    assert "-- syntax error: line 1, column 7: unexpected 'oops'" in text
    body = [line for line in text.splitlines() if not line.startswith("--")]
    assert simpleion.loads("\n".join(body), single_value=False)[-2:] == ["S1", "S2"]


def test_errors_reach_the_client_typed_and_change_nothing(cluster: LedgerCluster) -> None:
    before = cluster.get_digest()
    with pytest.raises(TableNotFoundError):
        cluster.execute_lambda(lambda tx: tx.insert("NoSuchTable", {"a": 1}))
    assert cluster.get_digest()["digest"] == before["digest"]


def test_stale_reads_from_a_follower_say_what_they_reflect(cluster: LedgerCluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.config.node_names if n != leader)
    tables, seq = cluster.query("list_tables", consistency="stale", node=follower)
    assert "Accounts" in tables
    assert 0 < seq <= cluster.get_digest()["digestTipAddress"]["sequenceNo"]
    linear, linear_seq = cluster.query("list_tables")
    assert linear == tables
    assert linear_seq >= seq


def test_leader_killed_mid_workload(cluster: LedgerCluster) -> None:
    old = cluster.leader()
    assert old is not None
    thread, result = run_in_background(cluster, threads=4, count=60, seed=2)
    wait_for(lambda: result.done >= 20, what="the workload to start")
    cluster.kill(old)
    acked_at_kill = result.answered
    wait_for(lambda: cluster.leader() not in (None, old), what="a new leader")
    thread.join(120)
    assert not thread.is_alive()
    assert result.answered > acked_at_kill, "no commit after the failover"
    cluster.restart(old)
    check_journal(cluster, result)


def test_coordinator_and_digest_actor_killed_mid_workload(cluster: LedgerCluster) -> None:
    thread, result = run_in_background(cluster, threads=4, count=50, seed=3)
    wait_for(lambda: result.done >= 20, what="the workload to start")
    cluster.kill("coordinator", restart=True)
    time.sleep(0.3)
    cluster.kill("digest", restart=True)
    acked_at_kill = result.answered
    thread.join(120)
    assert not thread.is_alive()
    assert result.answered > acked_at_kill
    assert sum(result.errors.values()) <= 4, result.errors
    check_journal(cluster, result)


def test_a_follower_that_missed_many_blocks_catches_up(cluster: LedgerCluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.config.node_names if n != leader)
    cluster.kill(follower)
    result = run_transfers(cluster, accounts=ACCOUNTS, threads=8, count=40, seed=4)
    assert_all_answered(result, 320)
    behind = cluster.get_digest()["digestTipAddress"]["sequenceNo"]
    cluster.restart(follower)
    wait_for(lambda: cluster.node_digests().get(follower, (0, b""))[0] >= behind, what="catch-up")
    check_journal(cluster, result)


def test_a_second_handle_connects_to_the_running_cluster(cluster: LedgerCluster) -> None:
    other = LedgerCluster.connect(cluster.config)
    doc_id = other.execute_lambda(lambda tx: tx.insert("Accounts", {"accountId": 998}))
    assert cluster.history("Accounts", doc_id)[-1]["data"] == {"accountId": 998}
    assert other.get_digest() == cluster.get_digest()
    cluster.execute_lambda(lambda tx: tx.delete("Accounts", doc_id))

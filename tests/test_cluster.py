"""The replicated ledger on Ray: three AZ nodes and the digest actor, clients over TCP.

One cluster (configs/test-3az.toml, data under a temporary directory) serves the whole
module; each test leaves it with all three nodes up. Real Ray, real LevelDB, real TCP on
127.0.0.1, real worker processes; every wait is a bounded poll.
"""

from __future__ import annotations

import base64
import decimal
import io
import os
import signal
import subprocess
import sys
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
from core.errors import (
    InvalidArgumentError,
    LimitExceededError,
    PartiQLSyntaxError,
    StrandError,
    TableNotFoundError,
    TransactionCrashedError,
    TransactionExpiredError,
)
from core.ids import IdSource
from core.transaction import Transaction
from tests.conftest import wait_for
from tests.partiql_steps import load_steps, run_steps

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "test-3az.toml"
ACCOUNTS = 40


@pytest.fixture(scope="module")
def cluster(ray_runtime: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerCluster]:
    handle = LedgerCluster.start(CONFIG, data_root=tmp_path_factory.mktemp("cluster"))
    open_accounts(handle, ACCOUNTS)
    handle.execute_lambda(lambda tx: tx.create_table("Scratch"))  # documents that hold no money
    yield handle
    handle.shutdown()


def converged(cluster: LedgerCluster) -> bool:
    """Every node is up and holds the leader's digest at the same sequence number."""
    digest = cluster.get_digest()
    expected = (digest["digestTipAddress"]["sequenceNo"], digest["digest"])
    nodes = cluster.node_digests()
    return len(nodes) == 3 and all(v == expected for v in nodes.values())


def check_journal(cluster: LedgerCluster, result: WorkloadResult) -> None:
    """On every replica: each acknowledged transfer exactly once, none the client was told
    failed; balances conserved; no worker thread died."""
    assert not result.unexpected, result.unexpected
    wait_for(lambda: converged(cluster), what="replicas to converge")
    for node in cluster.config.node_names:
        ids, _ = cluster.query("transaction_ids", consistency="stale", node=node)
        counts = Counter(ids)
        assert all(counts[tx_id] == 1 for tx_id in result.acknowledged), node
        assert not any(counts[tx_id] for tx_id in result.failed), node
        assert max(counts.values()) == 1, f"{node}: a transaction id is in two blocks"
    assert total_balance(cluster) == ACCOUNTS * 1_000


def assert_all_answered(result: WorkloadResult, expected: int) -> None:
    """Every transfer committed, except some that QLDB too would give up on (OCC, 4 retries)."""
    assert not result.unexpected, result.unexpected
    assert set(result.errors) <= {"OccConflictError"}, result.errors
    assert result.answered + result.errors.get("OccConflictError", 0) == expected
    assert result.answered >= expected * 0.9


def run_in_background(
    cluster: LedgerCluster, *, threads: int, count: int, seed: int
) -> tuple[threading.Thread, WorkloadResult]:
    result = WorkloadResult()
    thread = threading.Thread(
        target=run_transfers,
        kwargs={"ledger": cluster, "accounts": ACCOUNTS, "threads": threads, "count": count,
                "seed": seed, "result": result},
        daemon=True,
    )  # fmt: skip
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
    audited = cluster.audit("get_revision", address, doc_id)  # the digest actor checked it
    assert verification.verify_revision(
        audited["revision"], audited["proof"], audited["digest"]["digest"]
    )
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
            "get_revision", reg["blockAddress"], reg["metadata"]["id"],
            digest["digestTipAddress"], consistency="stale", node=node,
        )  # fmt: skip
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


def test_an_interactive_transaction_commits_with_qldbs_commit_digest(
    cluster: LedgerCluster,
) -> None:
    tx = cluster.begin_transaction()
    [count] = tx.execute_statement("SELECT COUNT(*) FROM Accounts")
    [row] = tx.execute_statement("INSERT INTO Accounts ?", {"accountId": 997, "balance": 0})
    result = tx.commit()
    assert result.block_address is not None
    [after] = cluster.execute_lambda(
        lambda t: list(t.execute_statement("SELECT COUNT(*) FROM Accounts"))
    )
    assert after["_1"] == count["_1"] + 1
    aborted = cluster.begin_transaction()
    aborted.execute_statement("DELETE FROM Accounts AS a WHERE a.accountId = 997")
    aborted.abort()
    cluster.execute_lambda(lambda t: t.delete("Accounts", row["documentId"]))


def test_a_statement_runs_without_pickling_anything(cluster: LedgerCluster) -> None:
    [row] = cluster.execute_statement("INSERT INTO Scratch ?", {"from": "a statement"})
    rows = cluster.execute_statement(
        'SELECT s."from" AS f FROM Scratch AS s BY id WHERE id = ?', row["documentId"]
    )
    assert rows == [{"f": "a statement"}]


def test_errors_reach_the_client_typed_and_change_nothing(cluster: LedgerCluster) -> None:
    before = cluster.get_digest()
    with pytest.raises(TableNotFoundError):
        cluster.execute_lambda(lambda tx: tx.insert("NoSuchTable", {"a": 1}))
    with pytest.raises(ZeroDivisionError):  # the user's own exception, as it was raised
        cluster.execute_lambda(lambda tx: tx.insert("Scratch", {"n": 1}) and 1 / 0)

    class Unpicklable(Exception):
        def __reduce__(self) -> object:
            raise TypeError("no")

    def raise_unpicklable(tx: Transaction) -> None:
        tx.insert("Scratch", {"n": 3})
        raise Unpicklable("with a lock", threading.Lock())

    with pytest.raises(StrandError, match="Unpicklable: .*with a lock"):
        cluster.execute_lambda(raise_unpicklable)
    with pytest.raises(InvalidArgumentError, match="cannot be sent back"):
        cluster.execute_lambda(lambda tx: (tx.insert("Scratch", {"n": 2}), threading.Lock())[1])
    assert cluster.get_digest()["digest"] == before["digest"]


def test_hostile_input_gets_typed_errors_while_others_commit(cluster: LedgerCluster) -> None:
    """Malformed PartiQL, huge numbers, deep nesting, oversized documents and statements, a
    lone surrogate, a statement that would run for minutes: each gets a typed StrandError
    and writes nothing, while four other clients keep committing transfers."""
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(1000):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    hostile: list[tuple[str, tuple[object, ...], type[StrandError]]] = [
        ("SELEC * FROM Accounts", (), PartiQLSyntaxError),
        ("SELECT * FROM Accounts WHERE owner = '\ud800'", (), PartiQLSyntaxError),
        ("INSERT INTO Scratch ?", ({"n": decimal.Decimal("1E+999999999")},), LimitExceededError),
        ("INSERT INTO Scratch ?", ({"n": 10**5000},), LimitExceededError),
        ("SELECT ? * ? FROM Accounts", (10**4000, 10**4000), LimitExceededError),
        ("INSERT INTO Scratch ?", (deep,), LimitExceededError),
        ("INSERT INTO Scratch ?", ({"pad": "x" * 200_000},), LimitExceededError),
        ("SELECT * FROM Accounts WHERE " + " AND ".join(["(1 = 1)"] * 60_000), (),
         LimitExceededError),
        ("SELECT COUNT(*) FROM Accounts a, Accounts b, Accounts c, Accounts d, Accounts e", (),
         TransactionExpiredError),
    ]  # fmt: skip
    before = cluster.execute_statement("SELECT COUNT(*) AS n FROM Scratch")[0]["n"]
    thread, result = run_in_background(cluster, threads=4, count=60, seed=11)
    for statement, parameters, error in hostile:
        with pytest.raises(error):
            cluster.execute_statement(statement, *parameters)
    thread.join(120)
    assert not thread.is_alive()
    assert_all_answered(result, 4 * 60)
    check_journal(cluster, result)
    assert cluster.execute_statement("SELECT COUNT(*) AS n FROM Scratch")[0]["n"] == before


def test_stale_reads_from_a_follower_say_what_they_reflect(cluster: LedgerCluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.config.node_names if n != leader)
    tables, seq = cluster.query("list_tables", consistency="stale", node=follower)
    assert "Accounts" in tables
    assert 0 < seq <= cluster.get_digest()["digestTipAddress"]["sequenceNo"]
    linear, linear_seq = cluster.query("list_tables")
    assert linear == tables
    assert linear_seq >= seq


def test_a_slow_or_stuck_transaction_holds_up_only_its_caller(cluster: LedgerCluster) -> None:
    """A function that burns CPU in Python, one that holds the GIL in a C call, and one that
    never returns (killed at the config's transaction_timeout_ms): meanwhile other callers of
    the same handle commit, and the leader keeps leading (its heartbeats go on)."""
    leader = cluster.leader()
    term = next(s["term"] for s in cluster.nodes() if s["node"] == leader)
    outcomes: dict[str, object] = {}

    def spin(tx: Transaction) -> int:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pass
        return 1

    def hold_the_gil(tx: Transaction) -> int:
        return (7**3_000_000) % 5  # one C call, seconds long, never releasing the GIL

    def forever(tx: Transaction) -> None:
        while True:
            time.sleep(1)

    def run(name: str, fn: Callable[[Transaction], object]) -> None:
        try:
            outcomes[name] = cluster.execute_lambda(fn)
        except Exception as exc:
            outcomes[name] = exc

    slow = [threading.Thread(target=run, args=(n, f)) for n, f in
            (("spin", spin), ("gil", hold_the_gil), ("forever", forever))]  # fmt: skip
    for thread in slow:
        thread.start()
    time.sleep(0.3)
    latencies = []
    for n in range(20):
        started = time.monotonic()
        cluster.execute_lambda(lambda tx, n=n: tx.insert("Scratch", {"quick": n}))
        latencies.append(time.monotonic() - started)
    for thread in slow:
        thread.join(30)
    assert max(latencies) < 1.0, latencies
    assert outcomes["spin"] == 1
    assert outcomes["gil"] == (7**3_000_000) % 5
    assert isinstance(outcomes["forever"], TransactionExpiredError), outcomes["forever"]
    assert next(s["term"] for s in cluster.nodes() if s["node"] == leader) == term


def test_a_transaction_that_crashes_its_worker_is_refused_from_then_on(
    cluster: LedgerCluster,
) -> None:
    tx_id = IdSource(os.urandom).new_id()

    def crash(tx: Transaction) -> None:
        os._exit(3)  # the worker process dies, as on a segfault

    with pytest.raises(TransactionCrashedError):
        cluster.execute_lambda(crash, transaction_id=tx_id)
    assert cluster.execute_lambda(lambda tx: 41 + 1) == 42  # the others go on
    old = cluster.leader()
    assert old is not None
    cluster.kill(old)
    wait_for(lambda: cluster.leader() not in (None, old), what="a new leader")
    with pytest.raises(TransactionCrashedError):  # the record survived the leader change
        cluster.execute_lambda(lambda tx: tx.insert("Scratch", {"never": 1}), transaction_id=tx_id)
    cluster.restart(old)
    wait_for(lambda: converged(cluster), what="the old leader to catch up")


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


def test_a_frozen_leader_is_abandoned_for_the_new_one(cluster: LedgerCluster) -> None:
    old = cluster.leader()
    assert old is not None
    [pid, *_] = cluster.pids(old)
    thread, result = run_in_background(cluster, threads=4, count=80, seed=5)
    wait_for(lambda: result.done >= 20, what="the workload to start")
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at, answered = time.monotonic(), result.answered
        wait_for(lambda: result.answered > answered + 10, timeout_s=15, what="commits again")
        resumed_s = time.monotonic() - stopped_at
    finally:
        os.kill(pid, signal.SIGCONT)
    thread.join(120)
    print(f"\nfrozen leader: commits resumed {resumed_s:.2f} s after SIGSTOP")
    assert resumed_s < 5.0, resumed_s
    check_journal(cluster, result)


def test_the_digest_actor_restarts_and_covers_every_commit(cluster: LedgerCluster) -> None:
    first = cluster.audit("get_digest")
    cluster.kill("digest", restart=True)
    cluster.execute_lambda(lambda tx: tx.insert("Scratch", {"after": 1}))
    committed = cluster.get_digest()["digestTipAddress"]["sequenceNo"]
    wait_for(lambda: _answers(cluster), what="the digest actor to come back")
    second = cluster.audit("get_digest")
    assert second["digestTipAddress"]["sequenceNo"] >= committed
    proof = cluster.get_consistency_proof(first["digestTipAddress"], second["digestTipAddress"])
    old, new = first["digestTipAddress"]["sequenceNo"], second["digestTipAddress"]["sequenceNo"]
    assert verification.verify_consistency(
        old + 1, new + 1, first["digest"], second["digest"], proof["proof"]
    )


def _answers(cluster: LedgerCluster) -> bool:
    try:
        cluster.audit("get_digest")
    except Exception:
        return False
    return True


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


def test_a_client_that_is_not_a_ray_driver_connects_with_the_config_alone(
    cluster: LedgerCluster,
) -> None:
    script = (
        "import sys\n"
        "from cluster import LedgerCluster\n"
        "c = LedgerCluster.connect(sys.argv[1])\n"
        "doc = c.execute_lambda(lambda tx: tx.insert('Accounts', {'accountId': 998}))\n"
        "import ray; assert not ray.is_initialized()\n"
        "print(doc, c.get_digest()['digestTipAddress']['sequenceNo'])\n"
        "c.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(CONFIG)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc_id, seq = done.stdout.split()
    assert cluster.history("Accounts", doc_id)[-1]["data"] == {"accountId": 998}
    assert cluster.get_digest()["digestTipAddress"]["sequenceNo"] >= int(seq)
    cluster.execute_lambda(lambda tx: tx.delete("Accounts", doc_id))


def test_rows_imported_into_the_cluster_export_and_verify_offline(
    cluster: LedgerCluster, tmp_path: Path
) -> None:
    """`strand import` and `strand export` work on the cluster as on an embedded ledger:
    rows go in through the cluster's transactions, and an export read from the cluster
    verifies against a digest saved from it, with core.verification only."""
    from cluster.export import DirectoryStore, export_journal, verify_export
    from cluster.importer import import_file

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"n": {i}, "name": "row {i}"}}\n' for i in range(100)))
    result = import_file(cluster, rows, "Imported", indexes=["n"])
    assert result.totals.documents == 100
    [[count]] = [list(r.values()) for r in cluster.execute_statement(
        "SELECT COUNT(*) FROM Imported")]  # fmt: skip
    assert count == 100
    digest = cluster.get_digest()
    saved = {
        "Digest": base64.b64encode(digest["digest"]).decode(),
        "DigestTipAddress": {"IonText": simpleion.dumps(digest["digestTipAddress"],
                                                        binary=False, omit_version_marker=True)},
    }  # fmt: skip
    store = DirectoryStore(tmp_path / "export")
    exported = export_journal(
        cluster, store, "backup", last_seq=digest["digestTipAddress"]["sequenceNo"]
    )
    assert exported.last_seq == digest["digestTipAddress"]["sequenceNo"]
    report = verify_export(store, "backup", saved)
    assert report.ok, report


def test_the_documents_read_is_bounded_and_names_a_missing_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node's `documents` read (stale reads of a table's copy) answers at most
    DOCUMENTS_MAX documents, refusing more with a typed error; an unknown table is typed too.
    Runs on a real engine (an embedded ledger's) behind the read's host argument."""
    from types import SimpleNamespace

    from cluster import node
    from core import Ledger
    from core.errors import LimitExceededError, TableNotFoundError

    ledger = Ledger.in_memory()
    ledger.execute_statement("CREATE TABLE R")
    for i in range(5):
        ledger.execute_statement("INSERT INTO R ?", {"key": f"k{i}"})
    host = SimpleNamespace(engine=ledger.engine)
    docs = node._documents(host, "R")  # noqa: SLF001
    assert sorted(d["data"]["key"] for d in docs) == [f"k{i}" for i in range(5)]
    assert all(d["seq"] >= 1 and d["version"] == 0 for d in docs)
    monkeypatch.setattr(node, "DOCUMENTS_MAX", 4)
    with pytest.raises(LimitExceededError):
        node._documents(host, "R")  # noqa: SLF001
    with pytest.raises(TableNotFoundError):
        node._documents(host, "Nope")  # noqa: SLF001

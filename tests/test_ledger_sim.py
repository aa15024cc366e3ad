"""Simulation sweeps of the replicated ledger (chaos.ledger_sim): real Replicas and Ledger.

Each swept profile runs `STRAND_LEDGER_SIM_SEEDS` seeds (default 30: the whole file takes
18-25 s on this slow two-core machine); `-m slow` runs a thousand more per profile. A seed
that ever failed stays in REGRESSIONS. The checkers are shown to bite: a coordinator that
acknowledges before the commit, one that takes an unknown outcome for a lost batch, a
follower that trusts the blocks it is sent, and a catch-up that derives state from the
coordinator's prepared (unwritten) batch are each caught within a few seeds. A follower
cut off for a long time catches up to the same digest.

Two engine bugs this simulator found are regression cases here: `request_reset` kept a
dropped batch's OCC marks, so every retry of its transactions conflicted with a batch that
never committed (hasty-2: the ledger could not even create its tables); and
`apply_blocks` derived a catch-up from the coordinator's prepared (unwritten) documents,
leaving stale index entries.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from chaos import ledger_sim
from chaos.ledger_sim import (
    PROFILES,
    LedgerSimOptions,
    LedgerSimulation,
    SimulationError,
    run_seeds,
)
from core import keys, replica
from core.engine import Engine, Genesis, PreparedBatch
from core.errors import OccConflictError, StaleBatchError, StrandError, UnavailableError
from core.ids import IdSource
from core.ledger import Ledger, write_locally
from core.raft import Entry
from core.storage import MemoryStorage
from core.transaction import Transaction

SEEDS_PER_PROFILE = int(os.environ.get("STRAND_LEDGER_SIM_SEEDS", "30"))
SWEPT = ["default", "lossy", "partitions", "eager", "corrupt", "five"]
ROOT = Path(__file__).resolve().parent.parent

# short waits: batches are often dropped (no leader yet) and outcomes often unknown
HASTY = LedgerSimOptions(leader_wait_ms=150, commit_wait_ms=100)
STRICT = dataclasses.replace(PROFILES["default"], strict_occ=True)

# Seeds that once failed, with what they caught. They run first, every time.
REGRESSIONS = [
    pytest.param(
        HASTY,
        2,
        "the first batch was dropped (no leader yet); every retry of the setup conflicted with it",
        id="hasty-2",
    ),
    pytest.param(
        STRICT,
        11,
        "a transfer retried after its batch was dropped conflicted with that batch",
        id="strict-default-11",
    ),
]


@pytest.mark.parametrize(("options", "seed", "caught"), REGRESSIONS)
def test_regression_seeds(options: LedgerSimOptions, seed: int, caught: str) -> None:
    LedgerSimulation(seed, options).run()


def test_engine_a_dropped_batch_does_not_fail_its_retry() -> None:
    """The smallest reproduction of the bug behind the hasty-2 and strict-default-11 seeds."""
    drop = [False]

    def write_batch(engine: Engine, batch: PreparedBatch) -> None:
        if drop[0]:  # a replicated ledger lost its leader: nothing of the batch committed
            drop[0] = False
            engine.request_reset()
            raise StaleBatchError("leader changed")
        write_locally(engine, batch)

    rng = random.Random(0)
    ledger = Ledger(
        MemoryStorage(),
        clock_ms=lambda: 1_700_000_000_000,
        random_bytes=rng.randbytes,
        genesis=Genesis("A" * 22, "B" * 22, 1_700_000_000_000),
        write_batch=write_batch,
    )

    def setup(tx: Transaction) -> str:
        tx.create_table("T")
        return tx.insert("T", {"v": 0})

    doc = ledger.execute_lambda(setup)

    def bump(tx: Transaction) -> None:
        current = tx.get("T", doc)
        assert current is not None
        tx.update("T", doc, {"v": current["v"] + 1})

    drop[0] = True
    with pytest.raises(StaleBatchError):
        ledger.execute_lambda(bump, 0)
    try:  # nothing committed since: nothing the retry reads can have changed
        ledger.execute_lambda(bump, 0)
    except OccConflictError as exc:
        pytest.fail(f"the retry conflicted with the dropped batch: {exc}")


def _catch_up_over_a_prepared_batch_is_safe() -> bool:
    """Engine.apply_blocks while a dropped batch is still prepared: derives from durable state
    (or refuses)? The pattern of cluster/coordinator.py `_resolve`: request_reset, catch up."""
    clock = 1_700_000_000_000
    genesis = Genesis("A" * 22, "B" * 22, clock)
    rng = random.Random(1)
    coordinator = Engine(MemoryStorage(), IdSource(rng.randbytes), clock, genesis=genesis)
    cluster = Engine(MemoryStorage(), IdSource(rng.randbytes), clock, genesis=genesis)

    def commit(engine: Engine, fn: Callable[[Transaction], object]) -> None:
        tx = engine.begin(clock, lambda: clock)
        fn(tx)
        engine.commit([tx], clock)

    doc: list[str] = []

    def create(tx: Transaction) -> None:
        tx.create_table("T")
        tx.create_index("T", "v")
        doc.append(tx.insert("T", {"v": 1}))

    commit(coordinator, create)
    caught = cluster.apply_blocks([coordinator.read_block(1)])
    cluster.write(caught)
    cluster.publish(caught)
    commit(cluster, lambda tx: tx.update("T", doc[0], {"v": 3}))  # committed elsewhere
    tx = coordinator.begin(clock, lambda: clock)
    tx.update("T", doc[0], {"v": 2})
    coordinator.prepare([tx], clock)  # then dropped: the leader changed
    coordinator.request_reset()
    try:
        caught = coordinator.apply_blocks([cluster.read_block(2)])
    except StrandError:
        return True  # refusing is a fix too
    coordinator.write(caught)
    coordinator.publish(caught)

    def index(engine: Engine) -> list[bytes]:
        prefix = keys.INDEX_PREFIX
        return [k for k, _ in engine.storage.scan(prefix, keys.prefix_end(prefix))]

    return index(coordinator) == index(cluster)  # the entry for v=1 must be gone


def test_engine_apply_blocks_ignores_a_prepared_batch() -> None:
    assert _catch_up_over_a_prepared_batch_is_safe()


@pytest.mark.parametrize("profile", SWEPT)
def test_seed_sweep(profile: str) -> None:
    results = run_seeds(range(SEEDS_PER_PROFILE), PROFILES[profile])
    acknowledged = sum(r["acknowledged"] for r in results)
    assert acknowledged > 30 * SEEDS_PER_PROFILE  # the runs did real work
    if profile in ("partitions", "eager"):  # the paths that resolve lost and unknown outcomes
        assert sum(r["catch_ups"] for r in results) > 0
        assert sum(r["unknown"] for r in results) > 0
        assert sum(r["coordinator_crashes"] for r in results) > 0
    if profile == "eager":  # replicas fenced off batches that did not chain onto their logs
        assert sum(r["refused"] for r in results) > 0
    if profile == "corrupt":
        assert sum(r["corrupted"] for r in results) > 0


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_long_seed_sweep(profile: str) -> None:
    run_seeds(range(1000, 2000), PROFILES[profile])


def test_a_seed_replays_exactly() -> None:
    options = PROFILES["partitions"]
    first, second = LedgerSimulation(7, options), LedgerSimulation(7, options)
    assert first.run() == second.run()
    assert first.final_digest == second.final_digest
    assert first.journal == second.journal
    assert first.txs == second.txs
    other = LedgerSimulation(8, options)
    assert other.run() != first.summary()
    assert other.final_digest != first.final_digest


def test_a_seed_replays_in_another_process() -> None:
    """Nothing depends on str hashing (PYTHONHASHSEED): a seed printed by CI replays anywhere."""

    def summaries(hash_seed: str) -> list[str]:
        command = [sys.executable, "-m", "chaos.ledger_sim", "--seeds", "2", "--start", "3"]
        command += ["--profile", "partitions", "--verbose"]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("{")]

    first = summaries("1")
    assert len(first) == 2
    assert first == summaries("2")


def test_cli_runs_seeds_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_sim.main(["--seeds", "2", "--profile", "tight-flow"]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_a_follower_cut_off_for_long_catches_up() -> None:
    quiet = LedgerSimOptions(drop_rate=0, duplicate_rate=0, partition_rate=0, crash_rate=0)
    sim = LedgerSimulation(5, quiet)
    sim.start()
    leader = next(r for r in sim.live() if r.ready_to_serve)
    lagger = next(name for name in sim.names if name != leader.id)
    sim.net.partition = [[lagger], [name for name in sim.names if name != lagger]]
    for _ in range(80):
        sim.advance(5)
        sim.client_operation()
    behind, ahead = sim.replica(lagger).engine.durable_seq, leader.engine.durable_seq
    assert ahead - behind >= 60
    summary = sim.finish()
    assert summary["terms"] == 1  # pre-vote: the cut-off follower never disrupted the leader
    status = sim.replica(lagger).status()
    assert status["sequence_no"] == ahead
    assert status["digest"] == sim.final_digest


def _first_failure(profile: str, seeds: Sequence[int] = range(20)) -> str:
    for seed in seeds:
        try:
            LedgerSimulation(seed, PROFILES[profile]).run()
        except SimulationError as exc:
            return str(exc)
    raise AssertionError("the checkers missed a broken ledger")


def test_checkers_catch_an_acknowledgement_before_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def hopeful(
        self: LedgerSimulation, index: int, term: int, deadline_ms: int, crash_at: int | None
    ) -> bool:
        return True  # "proposed, so it will commit"

    monkeypatch.setattr(LedgerSimulation, "_await_fate", hopeful)
    failure = _first_failure("default")
    assert "seed 0" in failure
    assert "the coordinator holds block" in failure


def test_checkers_catch_a_follower_that_trusts_what_it_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def trusting(self: replica.Replica, after: int, entries: Sequence[Entry]) -> bool:
        """The real bookkeeping of _accept, without checking the blocks."""
        seq, tip_hash = self._tip_at(after)
        tips = {}
        for entry in entries:
            if entry.data:
                header = replica.batch_header(entry.data)
                seq, tip_hash = header.first_seq + header.count - 1, header.last_hash
            tips[entry.index] = (seq, tip_hash)
        for index in [i for i in self._tips if i > after]:
            del self._tips[index]
            self._checked.discard(index)
        self._tips.update(tips)
        self._checked.update(e.index for e in entries if e.data)
        return True

    monkeypatch.setattr(replica.Replica, "_accept", trusting)
    failure = _first_failure("corrupt")
    assert "differs from the cluster's" in failure


def test_checkers_catch_a_retry_of_a_transaction_whose_outcome_was_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Taking an unknown outcome for a lost batch: the client is told that a transaction that
    committed failed, or its retry commits it twice."""
    write_batch = LedgerSimulation._write_batch

    def overconfident(self: LedgerSimulation, engine: Engine, batch: PreparedBatch) -> None:
        try:
            write_batch(self, engine, batch)
        except UnavailableError as exc:
            raise StaleBatchError("surely it was lost") from exc

    monkeypatch.setattr(LedgerSimulation, "_write_batch", overconfident)
    failure = _first_failure("partitions")
    assert "failed transaction" in failure or "in the journal 2 times" in failure

"""Simulation sweeps of the replicated ledger (chaos.ledger_sim): the real commit path.

Each swept profile runs `STRAND_LEDGER_SIM_SEEDS` seeds (default 10); `-m slow` runs a
thousand more per profile. A seed that ever failed stays in REGRESSIONS.

The checkers are shown to bite: for each failure mode the simulator injects, the protection
against it is switched off (monkeypatched) and a checker must catch the broken cluster:
- drop: commit only what a majority stores -> a committed entry on one log;
- duplicate: keep entries already held (truncate only at a conflict) -> no settling; and a
  session request runs once -> a transfer journaled twice;
- reorder: log matching (prev_index, prev_term) -> a committed entry changes;
- partition: a majority of votes elects -> two leaders in one term;
- one-way partition: check-quorum (a leader that hears nobody steps down) -> no progress;
- crash losing unsynced writes: sync new entries, term and vote -> a committed entry on one
  log;
- leader deposed mid-batch: acknowledge only an entry applied under its own term -> an
  acknowledged transaction missing from the journal;
- client retry after a timeout: a transaction id commits once -> a transaction journaled
  twice;
- a tampered block: followers recompute every block's hashes -> a block differs.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
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
from core import commit, engine, raft, replica
from core.raft import Role

SEEDS_PER_PROFILE = int(os.environ.get("STRAND_LEDGER_SIM_SEEDS", "6"))
ROOT = Path(__file__).resolve().parent.parent

# Seeds that once failed, with what they caught. They run first, every time.
REGRESSIONS = [
    pytest.param(
        "echo",
        3,
        "a Run delivered twice ran again after its first delivery had failed, and committed",
        id="echo-3",
    ),
    pytest.param("echo", 64, "the same, another interleaving", id="echo-64"),
    pytest.param(
        "corrupt",
        1,
        "an interactive statement delivered twice ran twice (two Transfer documents)",
        id="corrupt-1",
    ),
]


@pytest.mark.parametrize(("profile", "seed", "caught"), REGRESSIONS)
def test_regression_seeds(profile: str, seed: int, caught: str) -> None:
    del caught
    LedgerSimulation(seed, PROFILES[profile]).run()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_seed_sweep(profile: str) -> None:
    results = run_seeds(range(SEEDS_PER_PROFILE), PROFILES[profile])
    assert sum(r["acknowledged"] for r in results) > 20 * SEEDS_PER_PROFILE  # real work
    faults = {
        "lossy": "dropped",
        "partitions": "one_way",
        "deposed": "deposed",
        "deposed-hasty": "deposed",
        "crashes": "crashes",
        "corrupt": "corrupted",
    }
    if profile in faults:
        assert sum(r[faults[profile]] for r in results) > 0
    if profile in ("partitions", "deposed-hasty", "crashes"):  # outcomes clients had to resolve
        assert sum(r["failed"] + r["unknown"] for r in results) > 0


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


QUIET = LedgerSimOptions(drop_rate=0, duplicate_rate=0, partition_rate=0, crash_rate=0)


def test_a_follower_cut_off_for_long_catches_up() -> None:
    sim = LedgerSimulation(5, QUIET)
    sim.start()
    leader = next(r for r in sim.live() if r.ready_to_serve)
    lagger = next(name for name in sim.names if name != leader.id)
    sim.net.partition = [[lagger], [name for name in sim.names if name != lagger]]
    sim.operations_left = 120
    while sim.operations_left or any(c.busy for c in sim.clients):
        sim.step()
    behind, ahead = sim.replica(lagger).engine.durable_seq, leader.engine.durable_seq
    assert ahead - behind >= 60
    summary = sim.finish()
    assert summary["terms"] == 1  # pre-vote: the cut-off follower never disrupted the leader
    status = sim.replica(lagger).status()
    assert status["sequence_no"] >= ahead
    assert status["digest"] == sim.final_digest
    # the lagger caught up through entries rebuilt from the leader's journal: its own log
    # holds each applied batch as a reference, not a second copy of the blocks
    assert sim.replica(lagger).log.last_index() > 60


def one_way_into_the_leader(seed: int) -> int:
    """Cut every link into the leader (it still sends): the two others must take over."""
    sim = LedgerSimulation(seed, QUIET)
    sim.start()
    leader = next(r.id for r in sim.live() if r.node.role is Role.LEADER)
    sim.net.blocked = {(name, leader) for name in sim.names if name != leader}
    return sim.require_progress(3_000)


def test_a_leader_that_hears_nobody_is_replaced() -> None:
    assert one_way_into_the_leader(1) > 0


def first_failure(profile: str, seeds: range = range(20)) -> str:
    for seed in seeds:
        try:
            LedgerSimulation(seed, PROFILES[profile]).run()
        except SimulationError as exc:
            return str(exc)
    raise AssertionError("the checkers missed a broken cluster")


def test_caught_without_majority_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def commit_on_own_log(self: raft.RaftNode) -> bool:
        index = self._progress[self.id].match
        if index > self.commit and self.term_at(index) == self.term:
            self.commit = index
            return True
        return False

    monkeypatch.setattr(raft.RaftNode, "_maybe_commit", commit_on_own_log)
    assert "stored on only" in first_failure("partitions", range(3))


def test_caught_when_duplicates_truncate_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raft.RaftNode, "_new_entries", lambda self, entries: list(entries))
    assert "did not settle" in first_failure("echo", range(3))


def test_caught_when_a_session_request_runs_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        commit.CommitMachine, "_first_delivery", staticmethod(lambda tx, waiter: True)
    )
    failure = first_failure("corrupt", range(3))
    assert "Transfer documents" in failure or "in the journal" in failure


def test_caught_without_log_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        raft.RaftNode, "_log_matches", lambda self, index, term: index <= self.last_index()
    )
    failure = first_failure("lossy", range(10))
    assert "committed Raft entry" in failure or "differs" in failure


def test_caught_without_a_majority_of_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        raft.RaftNode, "_won", lambda self: sum(self._votes.values()) * 2 >= len(self.voters) - 1
    )
    failure = first_failure("partitions", range(5))
    assert "two leaders in term" in failure or "committed Raft entry" in failure


def test_caught_without_check_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ledger_sim.RaftConfig

    def no_check_quorum(**kwargs: object) -> raft.RaftConfig:
        return original(**kwargs, check_quorum=False)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger_sim, "RaftConfig", no_check_quorum)
    with pytest.raises(SimulationError, match="no transaction committed"):
        one_way_into_the_leader(1)


def test_caught_without_syncing_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica, "needs_sync", lambda rd, term_vote: False)
    assert "stored on only" in first_failure("crashes", range(3))


def test_caught_when_a_deposed_leader_acknowledges(monkeypatch: pytest.MonkeyPatch) -> None:
    decided = commit.CommitMachine._decided

    def hopeful(self: commit.CommitMachine, batch: commit._Batch, *, committed: bool) -> None:
        decided(self, batch, committed=True)  # "the index was applied, so it committed"

    monkeypatch.setattr(commit.CommitMachine, "_decided", hopeful)
    assert "acknowledged transaction" in first_failure("deposed", range(6))


def test_caught_when_a_retried_id_commits_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.Engine, "_check_new_transaction", lambda self, tx_id, batch: None)
    monkeypatch.setattr(commit.CommitMachine, "_known_outcome", lambda self, tx_id: None)
    failure = first_failure("deposed-hasty", range(3))
    assert "in the journal 2 times" in failure or "transaction pointer" in failure, failure


def test_caught_when_followers_trust_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = replica.decode_batch
    monkeypatch.setattr(replica, "decode_batch", lambda data, check=True: decode(data, check=False))
    assert "differs from the cluster's" in first_failure("corrupt", range(3))


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["default"].nodes = 5  # type: ignore[misc]

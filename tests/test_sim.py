"""Simulation sweeps: the real core.raft under a seeded network, disk and clock (chaos.sim).

The default suite runs several hundred seeds across fault profiles (lossy network,
partitions, crashes, five nodes, tight flow control); `-m slow` runs thousands. A seed that
ever failed stays here as a regression case. The checkers are shown to bite: each of three
deliberately broken variants of the protocol or the host is caught within a few seeds.
"""

from __future__ import annotations

import os

import pytest

from chaos import sim
from chaos.sim import SimOptions, Simulation, SimulationError
from core import raft

PROFILES = {
    "default": SimOptions(),
    "lossy": SimOptions(drop_rate=0.3, duplicate_rate=0.1, latency_ms=(1, 30)),
    "partitions": SimOptions(partition_rate=0.01, heal_rate=0.005, crash_rate=0.003),
    "five-nodes": SimOptions(nodes=5, crash_rate=0.002, partition_rate=0.005),
    "tight-flow": SimOptions(max_entries_per_message=1, max_inflight_entries=2, propose_rate=0.5),
}
SEEDS_PER_PROFILE = int(os.environ.get("STRAND_SIM_SEEDS", "30"))

# Seeds that once failed, with what they caught. They run first, every time.
REGRESSIONS = [
    ("default", 4, "RaftNode.entries() sliced the unstable log with a negative bound"),
    ("default", 7, "same bug: applied entries skipped after a follower appended"),
]


@pytest.mark.parametrize(("profile", "seed", "caught"), REGRESSIONS)
def test_regression_seeds(profile: str, seed: int, caught: str) -> None:
    Simulation(seed, PROFILES[profile]).run()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_seed_sweep(profile: str) -> None:
    committed = 0
    for seed in range(SEEDS_PER_PROFILE):
        committed += Simulation(seed, PROFILES[profile]).run()["committed"]
    assert committed > 50 * SEEDS_PER_PROFILE  # the runs did real work


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_long_seed_sweep(profile: str) -> None:
    for seed in range(1000, 3000):
        Simulation(seed, PROFILES[profile]).run()


def test_a_seed_replays_exactly() -> None:
    first, second = Simulation(11, PROFILES["partitions"]), Simulation(11, PROFILES["partitions"])
    assert first.run() == second.run()
    assert first.committed == second.committed
    assert Simulation(12, PROFILES["partitions"]).run() != first.summary()


def _first_failure(monkeypatch: pytest.MonkeyPatch, target: object, name: str, fake: object) -> str:
    monkeypatch.setattr(target, name, fake)
    for seed in range(100):
        try:
            Simulation(seed, PROFILES["partitions"]).run()
        except SimulationError as exc:
            return str(exc)
    raise AssertionError("the checkers missed a broken protocol")


def test_checkers_catch_a_commit_without_a_majority(monkeypatch: pytest.MonkeyPatch) -> None:
    def commit_on_any_ack(self: raft.RaftNode) -> bool:
        index = max(p.match for p in self._progress.values())
        if index > self.commit and self.term_at(index) == self.term:
            self.commit = index
            return True
        return False

    failure = _first_failure(monkeypatch, raft.RaftNode, "_maybe_commit", commit_on_any_ack)
    assert "seed" in failure


def test_checkers_catch_votes_that_ignore_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    def vote_for_anyone(self: raft.RaftNode, m: raft.VoteRequest) -> None:
        if self.vote in (None, m.sender) or m.pre_vote:
            if not m.pre_vote:
                self.vote = m.sender
            self._send(raft.VoteResponse(m.term, self.id, m.sender, True, m.pre_vote))

    failure = _first_failure(monkeypatch, raft.RaftNode, "_on_vote_request", vote_for_anyone)
    assert "seed" in failure


def test_checkers_catch_a_host_that_forgets_its_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    def forget_vote(self: Simulation, disk: sim.Disk, rd: raft.Ready) -> None:
        if rd.hard_state is not None:
            disk.hard_state = raft.HardState(rd.hard_state.term, None, rd.hard_state.commit)
        disk.store.append(rd.entries)

    failure = _first_failure(monkeypatch, Simulation, "_persist", forget_vote)
    assert "two leaders" in failure or "differ" in failure or "stored on only" in failure

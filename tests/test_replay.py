"""`python -m chaos replay`: a real chaos schedule runs in the deterministic simulator.

The schedule of a shipped experiment, or the one a real run carried out (its report.json,
with the targets it picked), drives the real core state machines in chaos/ledger_sim.py; an
honest build passes, and a deliberately broken one (chaos/broken.py, applied in this
process, where the simulator runs) is caught, with the seed that replays it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos import broken
from chaos.__main__ import main
from chaos.ledger_sim import SimulationError
from chaos.replay import Replay, schedule_from_file
from core.raft import RaftNode

ROOT = Path(__file__).resolve().parent.parent
NODES = ("a", "b", "c")
ELECTION_TIMEOUT_MS = 500  # configs/local-3az.toml: 10 ticks of 50 ms


def test_every_fault_of_the_nemesis_schedule_is_applied_and_the_run_passes() -> None:
    faults, seed = schedule_from_file(ROOT / "configs/chaos/nemesis.toml", NODES)
    replay = Replay(faults, NODES, seed, ELECTION_TIMEOUT_MS)
    summary = replay.run()
    assert sorted(replay.applied) == sorted(f["kind"] for f in faults)
    assert summary["acknowledged"] > 0, summary


def test_a_reports_schedule_keeps_the_targets_the_real_run_picked(tmp_path: Path) -> None:
    report = {
        "seed": 11,
        "faults": [
            {"kind": "isolate-follower", "at_s": 1.0, "healed_s": 3.0, "target": "c"},
            {"kind": "kill-node-process", "at_s": 4.0, "target": "a"},
            {"kind": "clock-skew", "at_s": 5.0, "healed_s": 6.0, "target": "b"},
        ],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    faults, seed = schedule_from_file(path, NODES)
    assert seed == 11
    replay = Replay(faults, NODES, seed, ELECTION_TIMEOUT_MS)
    assert [(f.kind, f.node) for f in replay.faults] == [
        ("isolate-follower", "n2"), ("kill-node-process", "n0"), ("clock-skew", "n1")
    ]  # fmt: skip
    assert (replay.faults[0].at_ms, replay.faults[0].end_ms) == (200, 600)  # scaled 1:5
    replay.run()
    assert replay.applied == ["isolate-follower", "kill-node-process"]
    assert replay.skipped == ["clock-skew"]


def test_replay_catches_a_broken_build_and_names_the_seed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    owner, attribute, replacement = broken.BREAKS["ack-before-majority"]
    monkeypatch.setattr(owner, attribute, replacement)
    status = main(["replay", str(ROOT / "configs/chaos/partition-leader.toml"), "--seeds", "6"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "replay it: python -m chaos replay" in out


def test_an_honest_build_passes_the_same_replay(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["replay", str(ROOT / "configs/chaos/partition-leader.toml"), "--seeds", "3"])
    assert status == 0, capsys.readouterr().out


def test_a_broken_replay_raises_simulation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _, attribute, replacement = broken.BREAKS["ack-before-majority"]
    monkeypatch.setattr(RaftNode, attribute, replacement)
    faults, _ = schedule_from_file(ROOT / "configs/chaos/partition-leader.toml", NODES)
    failures = 0
    for seed in range(1, 7):
        try:
            Replay(faults, NODES, seed, ELECTION_TIMEOUT_MS).run()
        except SimulationError:
            failures += 1
    assert failures > 0

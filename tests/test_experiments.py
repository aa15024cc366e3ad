"""Chaos experiments (configs/chaos/) end to end, short versions, on a real cluster.

Each runs `chaos.runner.run` as `python -m chaos run` does: a fresh cluster of its own
(ports and name of this module's, toxiproxy on every link), the workload with its faults,
the checkers; the report must say every check passed and the plot must exist. The full set
runs with `make chaos` (every shipped experiment at full length). Needs toxiproxy, as
tests/test_toxiproxy.py does.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from chaos.experiments import ExperimentError, load_experiment, parse_experiment
from chaos.runner import run
from chaos.toxiproxy import HOW_TO_INSTALL, find_server
from tests.conftest import private_cluster_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "configs" / "chaos").glob("*.toml"))
NODES = ("a", "b", "c")
# kills also run in test_cluster.py
SHORT = ["partition-leader", "disk-full", "register", "append"]
# the rest of the shipped set, shortened the same way, under -m slow (`make chaos`: full length)
REST = [p.stem for p in SHIPPED if p.stem not in SHORT and p.stem != "power-cut"]


def _shortened(path: Path, out: Path, duration_s: float = 10.0) -> Path:
    """The experiment squeezed into `duration_s` (fault times and lengths scaled)."""
    data = tomllib.loads(path.read_text())
    scale = duration_s / float(data["workload"]["duration_s"])
    lines = ["[workload]"]
    workload = dict(data["workload"], duration_s=duration_s)
    lines += [f"{k} = {json.dumps(v)}" for k, v in workload.items()]
    for fault in data.get("faults", []):
        lines.append("[[faults]]")
        for key, value in fault.items():
            if key in ("at_s", "duration_s"):
                value = round(value * scale, 2)
            lines.append(f"{key} = {json.dumps(value)}")
    short = out / path.name
    short.write_text("\n".join(lines) + "\n")
    return short


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_experiment_parses(path: Path) -> None:
    experiment = load_experiment(path, NODES)
    assert experiment.faults


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"faults": [{"kind": "meteor", "at_s": 1}]}, "unknown fault 'meteor'"),
        ({"faults": [{"kind": "latency", "at_s": 1, "duration_s": 1, "latency": 5}]},
         "takes no ['latency']"),
        ({"faults": [{"kind": "pause-node", "at_s": 1}]}, "duration_s: must be a number"),
        ({"faults": [{"kind": "kill-leader", "at_s": 1, "duration_s": 2}]}, "does not last"),
        ({"faults": [{"kind": "pause-node", "at_s": 9, "duration_s": 5}]}, "ends after"),
        ({"faults": [{"kind": "stall", "at_s": 1, "duration_s": 1, "link": "a->z"}]},
         "link: 'src->dst'"),
        ({"faults": [{"kind": "pause-node", "at_s": 1, "duration_s": 1, "node": "q"}]},
         "no node 'q'"),
        ({"extra": {}}, "unknown sections"),
        ({"workload": {"kind": "bank", "clients": 1, "keys": 2, "duration_s": 10, "seed": 1}},
         "takes `accounts`"),
    ],
)  # fmt: skip
def test_a_bad_experiment_is_refused_before_anything_starts(
    change: dict[str, object], message: str
) -> None:
    data: dict[str, object] = {
        "workload": {"kind": "bank", "clients": 2, "accounts": 4, "duration_s": 10, "seed": 1}
    }
    data.update(change)
    with pytest.raises(ExperimentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_experiment(data, NODES, "bad")


@pytest.fixture(scope="module")
def toxiproxy_available() -> None:
    if find_server() is None:
        if os.environ.get("STRAND_REQUIRE_TOXIPROXY") == "1":
            pytest.fail(HOW_TO_INSTALL)
        pytest.skip(HOW_TO_INSTALL)


@pytest.mark.parametrize(
    "name", [*SHORT, *(pytest.param(name, marks=pytest.mark.slow) for name in REST)]
)
def test_a_short_experiment_passes_every_check(
    name: str, ray_runtime: None, toxiproxy_available: None, tmp_path: Path
) -> None:
    config = private_cluster_config(tmp_path, "strand-experiments", 900)
    experiment = _shortened(ROOT / "configs" / "chaos" / f"{name}.toml", tmp_path)
    report = run(experiment, tmp_path / "out", config)
    assert report["ok"], json.dumps(report["violations"], indent=1)[:3000]
    assert report["converged"]
    assert report["lost_acknowledged"] == 0
    assert report["acknowledged"] > 0
    assert report["proofs_verified"] > 0
    assert all("not injected" not in str(f["target"]) for f in report["faults"]), report["faults"]
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    for key in ("attempted", "acknowledged", "failed", "unknown", "lost_acknowledged",
                "violations", "linearizable", "converged", "proofs_verified", "faults",
                "unavailable_s"):  # fmt: skip
        assert key in saved
    assert all("recovery_s" in fault for fault in saved["faults"])


def test_a_power_cut_everywhere_loses_no_acknowledged_commit(
    ray_runtime: None, toxiproxy_available: None, tmp_path: Path
) -> None:
    """Every node killed at once, twice, on a disk that keeps only what was synced
    (chaos/disk.py, which the runner picks for a power cut): what the clients were told
    committed is all there afterwards."""
    config = private_cluster_config(tmp_path, "strand-experiments", 900)
    short = _shortened(ROOT / "configs" / "chaos" / "power-cut.toml", tmp_path, 8.0)
    report = run(short, tmp_path / "out", config)
    assert report["ok"], json.dumps(report["violations"], indent=1)[:3000]
    assert report["acknowledged"] > 0
    assert [f["kind"] for f in report["faults"]] == ["power-cut", "power-cut"]
    assert report["storage"] == "power-cut"
    assert report["unknown_resolved"] is not None


# (break, experiment, storage double, what the checkers must report)
BROKEN = [  # ack-before-majority is also caught in the simulator by default (test_replay.py)
    pytest.param(
        "ack-before-majority",
        "partition-leader",
        None,
        "lost_acknowledged",
        marks=pytest.mark.slow,
    ),
    ("stale-follower-read", "register", None, "linearizability"),
    ("lost-fsync", "power-cut", "power-cut", "lost_acknowledged"),
]


@pytest.mark.parametrize(
    ("broken", "experiment", "storage", "caught"),
    BROKEN,
    ids=["ack-before-majority", "stale-follower-read", "lost-fsync"],
)
def test_a_deliberately_broken_build_fails_its_experiment(
    broken: str, experiment: str, storage: str | None, caught: str, ray_runtime: None,
    toxiproxy_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The checkers catch what they claim to: the same short experiment that passes above
    fails on nodes with one protection removed (chaos/broken.py)."""
    monkeypatch.setenv("STRAND_TEST_BREAK", broken)
    if storage is not None:
        monkeypatch.setenv("STRAND_TEST_STORAGE", storage)
    config = private_cluster_config(tmp_path, "strand-broken", 900)
    short = _shortened(ROOT / "configs" / "chaos" / f"{experiment}.toml", tmp_path)
    report = run(short, tmp_path / "out", config, converge_timeout_s=15)
    assert not report["ok"], "a broken build passed every check"
    if caught == "lost_acknowledged":
        assert report["lost_acknowledged"] > 0, report["violations"]
    else:
        assert report["violations"][caught], report["violations"]
        assert report["linearizable"] is False

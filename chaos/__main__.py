"""`python -m chaos`: chaos and failover experiments on a real local cluster.

    python -m chaos run configs/chaos/<name>.toml --out <dir> [--config configs/local-3az.toml]
    python -m chaos list
    python -m chaos replay configs/chaos/<name>.toml [--seeds N]

`run` starts a fresh cluster, runs the experiment (chaos/runner.py), writes
`<dir>/report.json` and `<dir>/timeline.png`, and exits 1 when any check fails. `list` prints
the fault kinds and the shipped experiments. `replay` runs the experiment's seed (and the
next seeds) in the deterministic simulator (chaos/ledger_sim.py) under the profile whose
faults overlap the experiment's, where a failure can be replayed step by step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from chaos.experiments import FAULT_KINDS, ExperimentError, load_experiment

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "chaos"
# which simulator profile covers which fault kinds (replay)
_PROFILES = {
    "partitions": {"partition-leader", "isolate-follower", "partition-random", "bridge"},
    "deposed": {"one-way"},
    "lossy": {"latency", "bandwidth", "slow-close", "reset-peer", "stall"},
    "crashes": {"kill-leader", "kill-follower", "kill-node-process", "restart-node",
                "pause-node", "disk-full", "clock-skew"},
}  # fmt: skip


def _list() -> int:
    print("fault kinds:")
    for kind, spec in FAULT_KINDS.items():
        params = ", ".join(sorted(spec.params)) or "-"
        lasting = "duration_s" if spec.lasts else "one-off"
        print(f"  {kind:18} {lasting:10} {params:40} {spec.about}")
    print("experiments:")
    for path in sorted(SHIPPED.glob("*.toml")):
        print(f"  {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from chaos.runner import run

    with Progress() as bar:
        task = bar.add_task(Path(args.experiment).stem, total=1.0)

        def progress(now_s: float, total_s: float, operations: int) -> None:
            label = f"{Path(args.experiment).stem}: {operations} operations"
            bar.update(task, completed=min(now_s / total_s, 1.0), description=label)

        report = run(args.experiment, args.out, args.config, progress)
    summary = {k: report[k] for k in ("attempted", "acknowledged", "failed", "unknown",
                                      "lost_acknowledged", "converged", "proofs_verified",
                                      "unavailable_s", "ok")}  # fmt: skip
    print(json.dumps(summary, indent=2))
    problems = {k: v for k, v in report["violations"].items() if v}
    if problems:
        print(json.dumps(problems, indent=2)[:4000])
    print(f"report: {Path(args.out) / 'report.json'}; plot: {Path(args.out) / 'timeline.png'}")
    return 0 if report["ok"] else 1


def _replay(args: argparse.Namespace) -> int:
    from chaos.ledger_sim import PROFILES, LedgerSimulation, SimulationError
    from cluster.config import load_config

    experiment = load_experiment(args.experiment, load_config(args.config).node_names)
    kinds = {fault.kind for fault in experiment.faults}
    profile = max(_PROFILES, key=lambda name: len(_PROFILES[name] & kinds))
    seed = experiment.workload.seed
    print(f"simulator profile {profile!r} (covers {sorted(_PROFILES[profile] & kinds)}), "
          f"seeds {seed}..{seed + args.seeds - 1}")  # fmt: skip
    for s in range(seed, seed + args.seeds):
        try:
            LedgerSimulation(s, PROFILES[profile]).run()
        except SimulationError as exc:
            print(f"seed {s}: {exc}")
            return 1
    print("every seed passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run one experiment on a fresh local cluster")
    run_cmd.add_argument("experiment")
    run_cmd.add_argument("--out", required=True)
    run_cmd.add_argument("--config", default="configs/local-3az.toml")
    commands.add_parser("list", help="fault kinds and shipped experiments")
    replay = commands.add_parser("replay", help="the experiment's seeds in the simulator")
    replay.add_argument("experiment")
    replay.add_argument("--seeds", type=int, default=20)
    replay.add_argument("--config", default="configs/local-3az.toml")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "run":
            return _run(args)
        return _replay(args)
    except ExperimentError as exc:
        print(f"python -m chaos: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`python -m chaos`: chaos and failover experiments on a real local cluster.

    python -m chaos run configs/chaos/<name>.toml --out <dir> [--config configs/local-3az.toml]
    python -m chaos list
    python -m chaos replay configs/chaos/<name>.toml | <dir>/report.json [--seed S] [--seeds N]

`run` starts a fresh cluster, runs the experiment (chaos/runner.py), writes
`<dir>/report.json` and `<dir>/timeline.png`, and exits 1 when any check fails. `list` prints
the fault kinds and the shipped experiments. `replay` runs the schedule of an experiment
(or the one a real run carried out, from its report.json) in the deterministic simulator
with the run's seed and the next ones (chaos/replay.py), where the fault kinds overlap, so a
failure can be replayed step by step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from chaos.experiments import FAULT_KINDS, ExperimentError

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "chaos"


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
    from chaos.ledger_sim import SimulationError
    from chaos.replay import UNMODELLED, Replay, schedule_from_file
    from cluster.config import load_config

    config = load_config(args.config)
    faults, seed = schedule_from_file(args.schedule, config.node_names)
    if args.seed is not None:
        seed = args.seed
    kinds = sorted({f["kind"] for f in faults})
    skipped = sorted(set(kinds) & UNMODELLED)
    print(
        f"replaying {len(faults)} faults ({', '.join(kinds)}) in the simulator, seeds "
        f"{seed}..{seed + args.seeds - 1}" + (f"; not modelled: {skipped}" if skipped else "")
    )
    for s in range(seed, seed + args.seeds):
        replay = Replay(faults, config.node_names, s, config.election_timeout_ms)
        try:
            summary = replay.run()
        except SimulationError as exc:
            print(f"seed {s}: {exc}")
            print(f"replay it: python -m chaos replay {args.schedule} --seed {s} --seeds 1")
            return 1
        print(
            f"seed {s}: passed, faults applied: {replay.applied}"
            + (f"; {summary}" if args.verbose else "")
        )
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
    replay = commands.add_parser(
        "replay", help="an experiment's (or a run's report.json's) schedule in the simulator"
    )
    replay.add_argument("schedule", help="configs/chaos/<name>.toml or <out>/report.json")
    replay.add_argument("--seed", type=int, default=None, help="default: the workload's")
    replay.add_argument("--seeds", type=int, default=5)
    replay.add_argument("--verbose", action="store_true")
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

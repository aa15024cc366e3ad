"""`strand import`: the command line of cluster/importer.py.

    strand import FILE --table T (--data DIR | --cluster CONFIG) [--format jsonl|csv|ion]
                  [--types col=int,...] [--index FIELD ...] [--batch-size N]
                  [--checkpoint F] [--rejects F] [--import-id ID] [--json] [--no-progress]
    strand import --qldb-export DIR --digest DIGEST.json (--data DIR | --cluster CONFIG)
                  [--with-history] [--accept-unverified-data] [--record F] [--checkpoint F]

The first loads rows into a table in batches (one transaction each), resumable from its
checkpoint (rerun the same command); rejected rows go to the rejects file with reasons. The
second verifies a QLDB export against the digest saved from QLDB before writing anything,
then migrates the live documents (and with --with-history every revision) and writes a
migration record. Exit status: 0 done, 1 refused (verification, input, ledger), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import StrandError
from core.importing import Batch, parse_types
from core.qldb_export import VerificationFailed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="JSON Lines, CSV or Ion rows")
    parser.add_argument("--table", help="the table the rows go into (created when missing)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, help="an embedded ledger's directory")
    where.add_argument("--cluster", type=Path, help="a cluster's config file")
    parser.add_argument("--format", choices=("jsonl", "csv", "ion"), dest="fmt")
    parser.add_argument("--types", help="CSV column types: col=int,col2=decimal,...")
    parser.add_argument("--index", action="append", default=[], help="index FIELD (repeat)")
    parser.add_argument("--batch-size", type=int, default=40, help="documents per transaction")
    parser.add_argument("--parallel", type=int, default=8, help="batches in flight at once")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: beside input)")
    parser.add_argument("--rejects", type=Path, help="rejected rows, JSON Lines")
    parser.add_argument("--import-id", help="name this import anew (imports a file again)")
    parser.add_argument("--qldb-export", type=Path, help="a QLDB journal export directory")
    parser.add_argument("--digest", type=Path, help="the digest saved from QLDB (GetDigest JSON)")
    parser.add_argument("--with-history", action="store_true", help="also <table>_history")
    parser.add_argument(
        "--accept-unverified-data",
        action="store_true",
        help="migrate a JSON export whose data JSON's lost types keep from being verified",
    )
    parser.add_argument("--record", type=Path, help="the migration record's JSON file")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--no-progress", action="store_true")


@contextmanager
def _progress(
    enabled: bool, what: str
) -> Iterator[Callable[[int, int | None], Callable[[Batch], None]] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[docs]} docs, {task.fields[rejects]} rejected"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:

        def start(done: int, total: int | None) -> Callable[[Batch], None]:
            task = bar.add_task(what, total=total, completed=done, docs=0, rejects=0)
            counts = {"docs": 0, "rejects": 0}

            def advance(batch: Batch) -> None:
                counts["docs"] += len(batch.documents)
                counts["rejects"] += len(batch.rejects)
                position = batch.next_offset if total is not None and batch.next_offset else None
                completed = position if position is not None else batch.next_record - 1
                bar.update(
                    task, completed=completed, docs=counts["docs"], rejects=counts["rejects"]
                )

            return advance

        yield start


def _open_target(args: argparse.Namespace) -> Any:
    if args.data is not None:
        from core import Ledger

        return Ledger.open(args.data)
    from cluster.client import LedgerCluster

    return LedgerCluster.connect(args.cluster)


def run(args: argparse.Namespace) -> int:
    from cluster import importer

    show = not args.no_progress and not args.json and sys.stderr.isatty()
    if args.qldb_export is None and (args.file is None or not args.table):
        print(
            "strand import: give FILE and --table, or --qldb-export and --digest", file=sys.stderr
        )
        return 2
    if args.qldb_export is not None and args.digest is None:
        print("strand import: --qldb-export needs --digest", file=sys.stderr)
        return 2
    try:
        types = parse_types(args.types)
    except ValueError as exc:
        print(f"strand import: {exc}", file=sys.stderr)
        return 2
    target = _open_target(args)
    try:
        if args.qldb_export is not None:
            saved = json.loads(args.digest.read_text())
            with _progress(show, "migrating") as progress:
                result = importer.migrate_qldb_export(
                    target,
                    args.qldb_export,
                    saved,
                    with_history=args.with_history,
                    accept_unverified_data=args.accept_unverified_data,
                    record_path=args.record,
                    checkpoint_path=args.checkpoint,
                    progress=progress,
                    parallel=args.parallel,
                )
            out: dict[str, Any] = {
                "verified": {
                    "blocks": result.verified.blocks_checked,
                    "revisions": result.verified.revisions,
                    "dataVerified": result.verified.data_verified,
                },
                "documents": result.record["record"]["documents"],
                "historyRevisions": result.record["record"]["historyRevisions"],
                "recordFile": result.record_file,
                "idMap": result.ids_file,
                "strandDigest": result.record["strandDigestWithRecord"],
                "alreadyDone": result.already_done,
            }
        else:
            with _progress(show, f"importing {args.file.name}") as progress:
                done = importer.import_file(
                    target,
                    args.file,
                    args.table,
                    fmt=args.fmt,
                    types=types,
                    indexes=args.index,
                    batch_size=args.batch_size,
                    checkpoint_path=args.checkpoint,
                    rejects_path=args.rejects,
                    import_id=args.import_id,
                    progress=progress,
                    parallel=args.parallel,
                )
            run_s = done.run.elapsed_s
            out = {
                "table": done.table,
                "documents": done.totals.documents,
                "rejected": done.totals.rejected,
                "batches": done.totals.next_batch,
                "replayedBatches": done.totals.replayed_batches,
                "thisRun": {
                    "documents": done.run.documents,
                    "seconds": round(run_s, 3),
                    "docsPerSecond": round(done.run.documents / run_s) if run_s > 0 else None,
                },
                "checkpoint": done.checkpoint,
                "rejectsFile": done.rejects_file,
                "rejectsSample": done.run.rejects_sample[:5],
                "alreadyDone": done.already_done,
            }
    except VerificationFailed as exc:
        print(f"strand import: the export does NOT verify, nothing written: {exc}", file=sys.stderr)
        return 1
    except (StrandError, OSError, ValueError) as exc:
        print(f"strand import: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        target.close()
    if args.json:
        print(json.dumps(out, default=str))
    else:
        _summary(out)
    return 0


def _summary(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in out.items():
        if value in (None, [], {}):
            continue
        table.add_row(
            f"[bold]{key}",
            json.dumps(value, default=str) if isinstance(value, dict | list) else str(value),
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strand import", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

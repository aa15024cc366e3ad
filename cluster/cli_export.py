"""`strand digest`, `strand export`, `strand verify` and `strand restore` (issue 14).

    strand digest  (--ledger DIR | --config PATH) [--out FILE]     save a digest (GetDigest JSON)
    strand export  (--ledger DIR | --config PATH) TARGET [--start T] [--end T]
                   [--first-seq N] [--last-seq N] [--format F] [--parquet]
    strand verify export TARGET --digest FILE [--export-id ID]  offline, no ledger needed
    strand verify block|revision FILE --digest FILE   a GetBlock/GetRevision answer (JSON)
    strand restore TARGET DIR [--digest FILE]        a new embedded ledger from an export

TARGET is a directory or `s3://bucket/prefix` (boto3's credential chain; the endpoint from
`--endpoint-url` or AWS_ENDPOINT_URL_S3). `verify export` and `restore` find the export
anywhere under a directory (e.g. one downloaded from S3, its prefix kept as folders or not).
Every command takes `--json` for scripts; without it, a Rich progress bar shows while blocks
are read. Exit status: 0 done (verified), 1 the
export or proof does not verify or the ledger refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import StrandError
from core.export_format import OUTPUT_FORMATS
from core.verification import VerificationError

__all__ = ["add_commands", "saved_digest_json"]


def saved_digest_json(digest: dict[str, Any]) -> dict[str, Any]:
    """A `get_digest()` answer as QLDB's GetDigest returned it (what `strand digest` writes)."""
    tip = digest["digestTipAddress"]
    return {
        "Digest": base64.b64encode(bytes(digest["digest"])).decode(),
        "DigestTipAddress": {
            "IonText": f'{{strandId:"{tip["strandId"]}",sequenceNo:{int(tip["sequenceNo"])}}}'
        },
    }


def _ledger_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--ledger", help="an embedded ledger's directory")
    group.add_argument("--config", dest="cluster_config", help="a cluster's config file")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a directory, or s3://bucket/prefix")
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3)")


def add_commands(commands: Any) -> None:
    """Register the subcommands; each sets `run` (called with the parsed arguments)."""
    digest = commands.add_parser("digest", help="save a ledger's digest (GetDigest JSON)")
    _ledger_arguments(digest)
    digest.add_argument("--out", help="write it here (default: stdout)")
    digest.set_defaults(run=_run_digest)

    export = commands.add_parser("export", help="export the journal (QLDB's layout)")
    _ledger_arguments(export)
    _store_arguments(export)
    export.add_argument("--start", help="inclusive start time (ISO 8601, UTC if no offset)")
    export.add_argument("--end", help="exclusive end time (ISO 8601)")
    export.add_argument("--first-seq", type=int, help="first block (inclusive)")
    export.add_argument("--last-seq", type=int, help="last block (inclusive)")
    export.add_argument("--format", choices=OUTPUT_FORMATS, default="ION_TEXT")
    export.add_argument("--parquet", action="store_true", help="also revisions as Parquet")
    export.add_argument("--ledger-name", default="ledger", help="named in the manifest")
    _json_flag(export)
    export.set_defaults(run=_run_export)

    verify = commands.add_parser("verify", help="verify an export, block or revision offline")
    kinds = verify.add_subparsers(dest="kind", required=True)
    v_export = kinds.add_parser("export", help="an export against a saved digest")
    _store_arguments(v_export)
    v_export.add_argument("--digest", required=True, help="saved digest JSON (strand digest)")
    v_export.add_argument("--export-id", help="which export, when the prefix holds several")
    _json_flag(v_export)
    v_export.set_defaults(run=_run_verify_export)
    for kind in ("block", "revision"):
        v = kinds.add_parser(kind, help=f"a Get{kind.title()} answer (JSON) against a digest")
        v.add_argument("answer", help=f"JSON file: {{{kind.title()}: {{IonText}}, Proof}}")
        v.add_argument("--digest", required=True, help="saved digest JSON")
        _json_flag(v)
        v.set_defaults(run=_run_verify_proof)

    restore = commands.add_parser("restore", help="re-create a ledger from an export")
    _store_arguments(restore)
    restore.add_argument("directory", help="the new ledger's directory (must not exist)")
    restore.add_argument("--digest", help="verify against this saved digest first")
    restore.add_argument("--export-id", help="which export, when the prefix holds several")
    _json_flag(restore)
    restore.set_defaults(run=_run_restore)


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar (shown only when the work lasts over a second), or nothing."""
    if quiet or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, visible=False)
        started = datetime.datetime.now()

        def update(done: int, total: int) -> None:
            visible = (datetime.datetime.now() - started).total_seconds() > 1
            bar.update(task, completed=done, total=total or None, visible=visible)

        yield update


@contextmanager
def _open_ledger(args: argparse.Namespace) -> Iterator[Any]:
    if args.ledger:
        from core import Ledger

        if not Path(args.ledger).is_dir():
            raise SystemExit(f"strand: no ledger at {args.ledger}")
        ledger = Ledger.open(args.ledger, create_if_missing=False)
        try:
            yield ledger
        finally:
            ledger.close()
        return
    from cluster.client import LedgerCluster
    from cluster.config import load_config

    cluster = LedgerCluster(load_config(args.cluster_config or args.config))
    try:
        yield cluster
    finally:
        cluster.close()


def _load_digest(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"strand: cannot read the digest {path}: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"strand: {path} is not a saved digest")
    return value


def _time(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _print(args: argparse.Namespace, value: dict[str, Any], text: str) -> None:
    print(json.dumps(value) if args.json else text)


# --- commands -----------------------------------------------------------------------------


def _run_digest(args: argparse.Namespace) -> int:
    with _open_ledger(args) as ledger:
        saved = saved_digest_json(ledger.get_digest())
    text = json.dumps(saved, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from cluster.export import export_journal, open_store

    store, prefix = open_store(args.target, endpoint_url=args.endpoint_url)
    with _open_ledger(args) as ledger, _progress("exporting", args.json) as progress:
        result = export_journal(
            ledger,
            store,
            prefix,
            start_time=_time(args.start),
            end_time=_time(args.end),
            first_seq=args.first_seq,
            last_seq=args.last_seq,
            output_format=args.format,
            parquet=args.parquet,
            ledger_name=args.ledger_name,
            progress=progress,
        )
    seconds = max(result.seconds, 1e-9)
    _print(
        args,
        result.as_json(),
        f"export {result.export_id}: blocks {result.first_seq}..{result.last_seq} in "
        f"{len(result.keys)} objects, {result.bytes_written / 1e6:.1f} MB in {seconds:.1f} s "
        f"({result.blocks / seconds:.0f} blocks/s)",
    )
    return 0


def _run_verify_export(args: argparse.Namespace) -> int:
    from cluster.export import open_export, verify_export

    store, prefix = open_export(
        args.target, endpoint_url=args.endpoint_url, export_id=args.export_id
    )
    with _progress("verifying", args.json) as progress:
        report = verify_export(
            store, prefix, _load_digest(args.digest), export_id=args.export_id, progress=progress
        )
    lines = [
        f"{'VERIFIED' if report.ok else 'NOT VERIFIED'}: {report.blocks_checked} blocks "
        f"({report.first_seq}..{report.last_seq}), digest tip {report.digest_tip_seq}"
    ]
    if report.beyond_tip:
        lines.append(f"{report.beyond_tip} blocks after the digest's tip are chained, not covered")
    if report.unchecked_revisions:
        lines.append(
            f"{report.unchecked_revisions} revisions' data could not be checked (JSON loses "
            "Ion types)"
        )
    lines += [f"  {problem}" for problem in report.problems]
    if report.problem_count > len(report.problems):
        lines.append(f"  ... {report.problem_count - len(report.problems)} more problems")
    _print(args, report.as_json(), "\n".join(lines))
    return 0 if report.ok else 1


def _run_verify_proof(args: argparse.Namespace) -> int:
    from core import verification
    from core.export_verification import parse_digest

    digest, _, tip = parse_digest(_load_digest(args.digest))
    try:
        answer = json.loads(Path(args.answer).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"strand: cannot read {args.answer}: {exc}") from None
    name = args.kind.title()
    problem = None
    try:
        if not isinstance(answer, dict) or name not in answer or "Proof" not in answer:
            raise VerificationError(f"the answer has no {name} and Proof")
        check = verification.check_block if args.kind == "block" else verification.check_revision
        check(answer[name], answer["Proof"], digest)
    except VerificationError as exc:
        problem = str(exc)
    _print(
        args,
        {"ok": problem is None, "problem": problem, "digestTipSequenceNo": tip},
        f"VERIFIED: the {args.kind} is in the ledger at digest tip {tip}"
        if problem is None
        else f"NOT VERIFIED: {problem}",
    )
    return 0 if problem is None else 1


def _run_restore(args: argparse.Namespace) -> int:
    from cluster.export import open_export, restore_export

    store, prefix = open_export(
        args.target, endpoint_url=args.endpoint_url, export_id=args.export_id
    )
    saved = _load_digest(args.digest) if args.digest else None
    with _progress("restoring", args.json) as progress:
        result = restore_export(
            store,
            prefix,
            args.directory,
            saved_digest=saved,
            export_id=args.export_id,
            progress=progress,
        )
    _print(
        args,
        result.as_json(),
        f"restored {result.blocks} blocks into {result.path}; digest "
        f"{base64.b64encode(result.digest).decode()} at tip {result.tip_seq}"
        + (" (equal to the saved digest)" if result.verified_against_saved_digest else ""),
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed command of this module; StrandError and bad input exit 1 with a message."""
    try:
        code: int = args.run(args)
        return code
    except (StrandError, VerificationError, ValueError, OSError) as exc:
        print(f"strand {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

"""`strand stream ...`: journal streams from the command line (cluster/streams.py).

    strand stream create  (--kinesis-stream NAME [--endpoint-url URL] [--region R]
                           [--no-aggregation] | --jsonl PATH)
                          [--start-seq N | --start-time ISO] [--end-time ISO] [--end-seq N]
                          [--name NAME]
    strand stream list | describe ID | cancel ID
    strand stream run     (embedded: deliver the ledger's streams until interrupted)
    strand stream read    --kinesis-stream NAME [--endpoint-url URL] [--verify]

Where: `--data DIR` is an embedded ledger's directory (a `create` there then runs the stream
in this process until it ends or Ctrl-C, as `run` does); otherwise the cluster of
`strand --config PATH` (create starts a Ray StreamActor, so it attaches to the cluster's Ray;
the other commands need only the config). `read` reads a Kinesis stream from its start,
deaggregates it and, with `--verify`, checks every BLOCK_SUMMARY against the chain
(core.stream_records.ChainVerifier). `--json` prints JSON for scripts. Exit status 0, 1 when
the ledger refuses or a record does not verify, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import threading
from typing import Any

from core.errors import StrandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="an embedded ledger's directory (else the cluster)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    sub = parser.add_subparsers(dest="stream_command", required=True)
    create = sub.add_parser("create", help="start a stream")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--kinesis-stream", help="a Kinesis data stream's name")
    target.add_argument("--jsonl", help="a JSON Lines file to append to")
    create.add_argument("--endpoint-url", help="a Kinesis-compatible endpoint")
    create.add_argument("--region")
    create.add_argument("--no-aggregation", action="store_true", help="one record per put")
    start = create.add_mutually_exclusive_group()
    start.add_argument("--start-seq", type=int)
    start.add_argument("--start-time", help="inclusive, ISO 8601")
    create.add_argument("--end-time", help="exclusive, ISO 8601")
    create.add_argument("--end-seq", type=int, help="exclusive")
    create.add_argument("--name", default="stream", help="the stream's name")
    sub.add_parser("list", help="every stream and its status")
    for name in ("describe", "cancel"):
        sub.add_parser(name).add_argument("stream_id")
    sub.add_parser("run", help="embedded: deliver the ledger's streams until interrupted")
    read = sub.add_parser("read", help="read a Kinesis stream's records back")
    read.add_argument("--kinesis-stream", required=True)
    read.add_argument("--endpoint-url")
    read.add_argument("--region")
    read.add_argument("--verify", action="store_true", help="check the chain as it reads")


def _time(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _sink(args: argparse.Namespace) -> dict[str, Any]:
    if args.jsonl:
        return {"kind": "jsonl", "path": args.jsonl}
    spec: dict[str, Any] = {"kind": "kinesis", "stream_name": args.kinesis_stream}
    if args.endpoint_url:
        spec["endpoint_url"] = args.endpoint_url
    if args.region:
        spec["region"] = args.region
    if args.no_aggregation:
        spec["aggregation"] = False
    return spec


def _show(args: argparse.Namespace, value: Any) -> None:
    if args.json:
        print(json.dumps(value, default=str))
    elif isinstance(value, list):
        for item in value:
            print(f"{item['StreamId']}  {item['Status']:<9}  checkpoint {item['Checkpoint']}")
    else:
        for key, item in value.items():
            print(f"{key}: {item}")


def _read(args: argparse.Namespace) -> int:
    from cluster.stream_sinks import read_kinesis
    from core.stream_records import ChainVerifier, StreamVerificationError, sequence_no

    verifier = ChainVerifier()
    count = 0
    try:
        for record in read_kinesis(
            args.kinesis_stream, endpoint_url=args.endpoint_url, region=args.region
        ):
            count += 1
            if args.verify:
                verifier.feed(record)
            elif args.json:
                print(json.dumps({"recordType": record["recordType"], "seq": sequence_no(record)}))
    except StreamVerificationError as exc:
        print(f"strand stream read: record {count} does not verify: {exc}", file=sys.stderr)
        return 1
    summary = {"records": count, "blocks": verifier.blocks, "duplicates": verifier.duplicates,
               "last": None if verifier.last is None else verifier.last[0]}  # fmt: skip
    _show(args, summary)
    return 0


def run(args: argparse.Namespace) -> int:
    """`strand stream ...` (see the module docstring)."""
    if args.stream_command == "read":
        return _read(args)
    from cluster.streams import StreamService

    ledger: Any = None
    cluster: Any = None
    try:
        if args.data:
            from core import Ledger

            ledger = Ledger.open(args.data, create_if_missing=False)
            service: Any = StreamService.for_ledger(ledger)
        else:
            from cluster.client import LedgerCluster
            from cluster.config import load_config

            cluster = LedgerCluster(load_config(args.config))
            if args.stream_command == "create":
                from cluster.streams import ClusterStreams

                service = ClusterStreams(cluster)
            else:
                service = StreamService.for_cluster(cluster)
        command = args.stream_command
        if command == "create":
            state = service.create(
                _sink(args), stream_name=args.name, start_seq=args.start_seq,
                inclusive_start_time=_time(args.start_time),
                exclusive_end_time=_time(args.end_time), exclusive_end_seq=args.end_seq,
            )  # fmt: skip
            _show(args, state.describe())
            if ledger is not None:
                _run_embedded(service)
        elif command == "list":
            _show(args, [s.describe() for s in service.list()])
        elif command == "describe":
            _show(args, service.describe(args.stream_id).describe())
        elif command == "cancel":
            _show(args, service.cancel(args.stream_id).describe())
        elif command == "run":
            if ledger is None:
                print("strand stream run: needs --data (a cluster runs streams as actors)")
                return 2
            service.resume()
            _run_embedded(service)
    except StrandError as exc:
        print(f"strand stream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if ledger is not None:
            ledger.close()
        if cluster is not None:
            cluster.close()
    return 0


def _run_embedded(service: Any) -> None:
    """Deliver until every stream of this process is final, or Ctrl-C."""
    try:
        while any(not s.final for s in service.list()):
            threading.Event().wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()

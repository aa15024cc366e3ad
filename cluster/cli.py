"""The `strand` command: operations on a running cluster.

    strand up      [CONFIG]                 start the local 3-AZ cluster (cli_fronts.py)
    strand shell   --data DIR | [CONFIG] [--start]   the PartiQL shell
    strand status  [--config PATH]          each node's role, term, position and health
    strand scrub   [--config PATH] NODE     check every entry NODE stores now; repair it
    strand rebuild [--config PATH] NODE     replace NODE's storage and re-seed it from its peers
    strand serve   --data DIR | --cluster CONFIG ...   QLDB's protocols over HTTP (serve.py)
    strand import  FILE --table T | --qldb-export DIR --digest F ...   rows in (cli_import.py)
    strand stream  create|list|describe|cancel|run|read ...   journal streams (cli_stream.py)
    strand digest | export | verify export|block|revision | restore ...   (cli_export.py)
    strand chaos ARGS | strand bench engine|cluster|partiql|failover|gateway ARGS   fronts

`status` and `scrub` need only the config (they speak the client protocol); `rebuild`
attaches to the cluster's Ray (RAY_ADDRESS, or the local one) because it replaces an actor's
storage. Exit status 0 on success, 1 when the cluster refuses, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from cluster.client import LedgerCluster
from cluster.config import load_config
from core.errors import StrandError

DEFAULT_CONFIG = "configs/local-3az.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strand", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the cluster's config file")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="each node's status")
    from cluster import cli_export  # digest, export, verify, restore (issue 14)

    cli_export.add_commands(commands)
    from cluster import cli_fronts  # up, shell, chaos, bench (issue 14)

    cli_fronts.add_commands(commands)
    for name in ("scrub", "rebuild"):
        command = commands.add_parser(name)
        command.add_argument("node")
    from cluster.gateway import serve

    serve.add_arguments(commands.add_parser("serve", help="QLDB's protocols over HTTP"))
    from cluster import cli_import  # rows, or a verified QLDB export, into a ledger (issue 14)

    cli_import.add_arguments(commands.add_parser("import", help="rows or a QLDB export in"))
    from cluster import cli_stream  # journal streams (issue 14)

    cli_stream.add_arguments(commands.add_parser("stream", help="journal streams"))
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:
        return cli_export.run(args)
    if args.command == "serve":
        return serve.run(args)
    if args.command == "import":
        return cli_import.run(args)
    if args.command == "stream":
        return cli_stream.run(args)
    config = load_config(args.config)
    cluster = LedgerCluster(config)
    try:
        if args.command == "status":
            for status in cluster.nodes():
                keys = ("node", "role", "term", "sequence_no", "health", "error")
                print(json.dumps({k: status[k] for k in keys if k in status}))
        elif args.command == "scrub":
            print(json.dumps(cluster.scrub(args.node)))
        else:
            cluster.rebuild(args.node)
            print(f"node {args.node} rebuilt; it is catching up from the leader")
    except StrandError as exc:
        print(f"strand {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

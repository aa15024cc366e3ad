"""The PartiQL shell against a cluster: `python -m cluster.shell <config> [--start]`.

The same shell as `python -m core.shell` (see core/shell.py), driving a `LedgerCluster`:
by default it attaches to a cluster already running on the local Ray (started by
`make demo`-style code or another shell with --start); with `--start` it starts the
cluster's actors itself and stops them when the shell ends.

Invariants: the shell only ends the actors it started (with --start); it holds no
transaction open between prompts.
"""

from __future__ import annotations

import argparse
import sys

from cluster.client import LedgerCluster
from core import shell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.shell", description=__doc__)
    parser.add_argument("config", help="the cluster's config file (configs/local-3az.toml)")
    parser.add_argument("--start", action="store_true", help="start the cluster here")
    parser.add_argument("--data-root", help="with --start: keep every node's data here")
    parser.add_argument("-f", "--file", help="run the statements of this file, then exit")
    args = parser.parse_args(argv)
    if args.start:
        handle = LedgerCluster.start(args.config, data_root=args.data_root)
    else:
        handle = LedgerCluster.connect(args.config)
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as f:
                shell.run(handle, f)
        else:
            shell.run(handle)
    finally:
        if args.start:
            handle.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

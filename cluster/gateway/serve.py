"""`strand serve`: the HTTP gateway in front of a data directory or a cluster.

    strand serve --data DIR [--host 127.0.0.1] [--port N|0]
                 (--access-key K --secret-key S | --keys FILE.toml)
                 [--session-idle-timeout-s N] [--session-max-lifetime-s N]
                 [--transaction-timeout-s N] [--max-sessions N] [--max-inflight N]
                 [--tls-cert F --tls-key F] [--s3-endpoint-url URL]
    strand serve --cluster CONFIG ...          (each ledger a replicated group on Ray)

Prints `strand serve: listening on http://HOST:PORT` (https with TLS) once it listens
(with `--port 0`, the port picked), then serves until SIGTERM or SIGINT, when it stops
gracefully (cluster/gateway/server.py; journal exports still running are stopped first and
run again at the next start, cluster/s3_exports.py). The keys file is TOML: a `[keys]`
table mapping each access key to its secret key. Exit status 0 after a clean stop, 2 on bad
usage.

Invariants: the server never starts without at least one access key; `--data` and
`--cluster` are exclusive; a TLS certificate and key come together.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
import tomllib
from pathlib import Path
from typing import Any

from cluster.gateway.server import Gateway, GatewayConfig
from cluster.gateway.session import DEFAULT_MAX_INFLIGHT, SessionConfig
from core.qldb_session import (
    DEFAULT_IDLE_TIMEOUT_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_TRANSACTION_TIMEOUT_MS,
    SessionLimits,
)


class UsageError(Exception):
    """Bad arguments or files given to `strand serve` (exit status 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` subcommand's flags (cluster/cli.py adds the subparser)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="directory holding one embedded ledger per subdirectory")
    where.add_argument("--cluster", metavar="CONFIG", help="a cluster config (TOML)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--keys", metavar="FILE", help="TOML: [keys] access-key = secret-key")
    parser.add_argument(
        "--session-idle-timeout-s", type=float, default=DEFAULT_IDLE_TIMEOUT_MS / 1000
    )
    parser.add_argument(
        "--session-max-lifetime-s",
        type=float,
        default=DEFAULT_MAX_LIFETIME_MS / 1000,
        help="a session ends at its first new transaction after this long (0: never)",
    )
    parser.add_argument(
        "--transaction-timeout-s", type=float, default=DEFAULT_TRANSACTION_TIMEOUT_MS / 1000
    )
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS)
    parser.add_argument("--max-inflight", type=int, default=DEFAULT_MAX_INFLIGHT)
    parser.add_argument("--stop-grace-s", type=float, default=10.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument(
        "--s3-endpoint-url",
        help="S3 endpoint for ExportJournalToS3 (default: boto3's, e.g. AWS_ENDPOINT_URL_S3)",
    )


def load_keys(args: argparse.Namespace) -> dict[str, str]:
    keys: dict[str, str] = {}
    if args.keys:
        try:
            table = tomllib.loads(Path(args.keys).read_text()).get("keys")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read the keys file {args.keys}: {exc}") from None
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in table.items()
        ):
            raise UsageError(f"{args.keys}: needs a [keys] table of access key = secret key")
        keys.update(table)
    if (args.access_key is None) != (args.secret_key is None):
        raise UsageError("--access-key and --secret-key go together")
    if args.access_key is not None:
        keys[args.access_key] = args.secret_key
    if not keys:
        raise UsageError("give --access-key/--secret-key or --keys: every request is signed")
    return keys


def make_config(args: argparse.Namespace) -> GatewayConfig:
    limits = SessionLimits(
        idle_timeout_ms=int(args.session_idle_timeout_s * 1000),
        max_lifetime_ms=int(args.session_max_lifetime_s * 1000),
        transaction_timeout_ms=int(args.transaction_timeout_s * 1000),
        max_sessions=args.max_sessions,
    )
    if min(limits.idle_timeout_ms, limits.transaction_timeout_ms, limits.max_sessions) <= 0:
        raise UsageError("timeouts and --max-sessions must be positive")
    return GatewayConfig(
        keys=load_keys(args),
        session=SessionConfig(limits=limits, max_inflight=args.max_inflight),
        stop_grace_s=args.stop_grace_s,
    )


def make_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate and key: {exc}") from None
    return context


def open_ledgers(args: argparse.Namespace) -> Any:
    """The LedgerSet to serve: embedded (`--data`) or on the cluster (`--cluster`)."""
    if args.cluster is not None:
        try:
            from cluster.ledger_groups import ClusterLedgers
        except ImportError:
            raise UsageError("--cluster is not available yet in this build") from None
        return ClusterLedgers(args.cluster)
    from cluster import ledgers

    embedded = getattr(ledgers, "EmbeddedLedgers", None)
    if embedded is None:
        raise UsageError("--data is not available yet in this build")
    Path(args.data).mkdir(parents=True, exist_ok=True)
    return embedded(Path(args.data))


async def _serve(ledgers: Any, config: GatewayConfig, args: argparse.Namespace) -> None:
    gateway = Gateway(ledgers, config)
    ssl_context = make_ssl_context(args)
    port = await gateway.start(args.host, args.port, ssl_context)
    from cluster import s3_exports  # journal exports left IN_PROGRESS run again now

    s3_exports.jobs_for(ledgers, s3_endpoint_url=getattr(args, "s3_endpoint_url", None))
    print(f"strand serve: listening on {gateway.scheme}://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    print("strand serve: stopping", flush=True)
    await loop.run_in_executor(None, s3_exports.close_jobs, ledgers)  # before ledgers close
    await gateway.stop()


def run(args: argparse.Namespace) -> int:
    """`strand serve` with parsed arguments; the exit status."""
    try:
        config = make_config(args)
        make_ssl_context(args)  # fail before opening anything
        ledgers = open_ledgers(args)
    except UsageError as exc:
        print(f"strand serve: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(ledgers, config, args))
    print("strand serve: stopped", flush=True)
    return 0

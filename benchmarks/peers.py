"""Peer systems for side-by-side benchmarks: a 3-member etcd cluster and a PostgreSQL
"ledger table", started, driven and stopped on this machine.

    .venv/bin/python benchmarks/peers.py [--seconds 5] [--clients 1,4,16,64]

What Strand is compared with (the README's Benchmarks section quotes these peers):

* ``EtcdCluster``: three etcd members (Debian's ``etcd-server``) on 127.0.0.1 with default
  timeouts (100 ms heartbeat, 1 s election). One operation = one put of a 100-byte value
  under a key never written before, through etcd's v3 JSON gateway (``POST /v3/kv/put``,
  base64 key and value) over an HTTP/1.1 keep-alive connection; a put is acknowledged once
  it is committed on a majority (etcd fsyncs its WAL on every member).
* ``PostgresServer``: one PostgreSQL 15 server on 127.0.0.1 with ``fsync=on`` and
  ``synchronous_commit=on``. One operation = one transaction that inserts a row into
  ``documents`` and a row into ``audit`` whose ``hash = sha256(previous hash || content)``,
  serialised on the single ``chain_head`` row (``SELECT ... FOR UPDATE``, then ``UPDATE``),
  the way teams build a ledger table on PostgreSQL. ``verify_chain()`` recomputes the chain.
* ``run_load``: the load harness shared by all systems (Strand's included): ``clients``
  threads, each owning the operation (and so the connection) that ``op_factory()`` made for
  it, start together and run for ``seconds``; only operations started and finished inside
  that window are counted.

Use from another benchmark (``benchmarks/`` is on ``sys.path`` when a script in it runs)::

    from peers import EtcdCluster, PostgresServer, run_load

    with EtcdCluster() as etcd:
        row = run_load(etcd.client_op_factory(), clients=16, seconds=5)
    print(row["tx_per_s"], row["p50_ms"], row["p99_ms"])

Invariants:

* Everything listens on 127.0.0.1 only, on ports picked free at run time, and lives in a
  fresh temporary directory (under ``workdir`` if given) that ``stop()`` removes.
* ``stop()`` (also run by ``__exit__``, and by ``start()`` itself when starting fails) ends
  exactly the processes this object started, by PID (SIGTERM/SIGINT, then SIGKILL after a
  grace period), never by name. It is idempotent. ``main()`` turns SIGTERM into
  ``KeyboardInterrupt`` so Ctrl-C and ``kill`` both leave nothing behind.
* ``start()`` returns only once the system accepts writes: etcd has one leader agreed on by
  all members and a put succeeded; PostgreSQL accepted a connection and its schema exists.
* A missing peer raises ``PeerUnavailable`` whose message says how to install it; ``main()``
  prints it and goes on with the other system.
* PostgreSQL refuses to run as root: when this process is root, ``initdb`` and ``postgres``
  are started as the ``postgres`` user (``subprocess`` ``user=``/``group=``, so the PID held
  is the postmaster's own), in a data directory owned by that user.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import itertools
import json
import logging
import math
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self

log = logging.getLogger("peers")

Op = Callable[[], object]
"""One operation of one client; raises on failure. If it has a ``close()`` method,
``run_load`` calls it when the client thread ends."""

OpFactory = Callable[[], Op]
"""Called once per client thread (in that thread) to make the thread's own operation."""

VALUE_BYTES = 100
ETCD_INSTALL_HINT = "install it with: apt-get install -y etcd-server  (Debian/Ubuntu)"
PG_INSTALL_HINT = "install it with: apt-get install -y postgresql  (Debian 12 ships 15)"
PSYCOPG_INSTALL_HINT = "install it with: .venv/bin/pip install -e '.[bench]'  (psycopg[binary])"


class PeerUnavailable(RuntimeError):
    """A peer system cannot run here (binary or driver missing); the message says how to
    install it."""


# --------------------------------------------------------------------------------------
# Load harness


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def run_load(op_factory: OpFactory, clients: int, seconds: float) -> dict[str, float]:
    """Run ``clients`` threads doing operations back to back for ``seconds``.

    Each thread calls ``op_factory()`` once (not timed), then all threads wait on a barrier;
    the window ``[start, start + seconds)`` is fixed when the last one arrives. An operation
    is counted (and its latency kept) if it started and finished inside the window; one
    that raised counts in ``errors`` instead. Returns ``tx_per_s`` (completed operations /
    ``seconds``), ``p50_ms``, ``p99_ms`` (nearest rank; nan when nothing completed),
    ``count`` and ``errors``. An exception from ``op_factory`` is re-raised here.
    """
    if clients < 1 or seconds <= 0:
        raise ValueError("clients must be >= 1 and seconds > 0")
    window: list[float] = []  # [start, end], set by the barrier's action

    def open_window() -> None:
        start = time.perf_counter()
        window.extend((start, start + seconds))

    barrier = threading.Barrier(clients, action=open_window)
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    setup_failures: list[BaseException] = []
    first_error: list[str] = []

    def client() -> None:
        nonlocal errors
        try:
            op = op_factory()
        except BaseException as exc:
            setup_failures.append(exc)
            barrier.abort()
            return
        own: list[float] = []
        own_errors = 0
        try:
            barrier.wait()
            _, end = window
            while not stop.is_set():
                began = time.perf_counter()
                if began >= end:
                    break
                try:
                    op()
                except Exception as exc:
                    if time.perf_counter() < end:
                        own_errors += 1
                        if not first_error:
                            first_error.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.001)  # no hot loop against a peer that is down
                    continue
                finished = time.perf_counter()
                if finished < end:
                    own.append((finished - began) * 1000.0)
        except threading.BrokenBarrierError:
            pass
        finally:
            close = getattr(op, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
            with lock:
                latencies.extend(own)
                errors += own_errors

    threads = [
        threading.Thread(target=client, name=f"load-{k}", daemon=True) for k in range(clients)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        barrier.abort()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=15)
    if setup_failures:
        raise setup_failures[0]
    if first_error:
        log.warning("%d failed operations; first: %s", errors, first_error[0])
    latencies.sort()
    return {
        "tx_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) if latencies else math.nan,
        "p99_ms": _percentile(latencies, 0.99),
        "count": float(len(latencies)),
        "errors": float(errors),
    }


# --------------------------------------------------------------------------------------
# Process helpers


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (all probed at once, then
    released: another process could still take one before it is used)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Peer:
    """Temporary directory and child-process bookkeeping shared by the peers."""

    name = "peer"
    urgent_signal: int = signal.SIGKILL
    """Sent when the graceful stop timed out or was interrupted, before SIGKILL."""
    stop_one_at_a_time = False
    """Signal the processes one by one, each given its grace, rather than all together."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        self.workdir = Path(workdir) if workdir is not None else None
        self.root: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pids(self) -> list[int]:
        """PIDs of the processes this object started and that are still running."""
        return [proc.pid for proc in self._procs if proc.poll() is None]

    def _make_root(self) -> Path:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"strand-{self.name}-", dir=self.workdir))
        return self.root

    def _spawn(self, argv: Sequence[str], log_path: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log_file)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; stop() shuts children down
            **kwargs,
        )
        self._procs.append(proc)
        return proc

    def _stop_processes(self, steps: Sequence[tuple[int, float]]) -> None:
        """Stop this object's processes, by PID: send each step's signal to those still
        running and give them its grace period (seconds); then the urgent signal, then
        SIGKILL. Interrupted (Ctrl-C), it skips straight to the urgent signal."""
        try:
            for sig, grace in steps:
                if self.stop_one_at_a_time:
                    for proc in self._procs:
                        if proc.poll() is None:
                            with contextlib.suppress(ProcessLookupError):
                                proc.send_signal(sig)
                            self._wait_all([proc], grace)
                    continue
                alive = self._signal_alive(sig)
                if not alive:
                    break
                self._wait_all(alive, grace)
            self._stop_now()
        except BaseException:
            self._stop_now()
            raise
        finally:
            self._procs.clear()
            for log_file in self._logs:
                log_file.close()
            self._logs.clear()

    def _signal_alive(self, sig: int) -> list[subprocess.Popen[bytes]]:
        alive = [proc for proc in self._procs if proc.poll() is None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        return alive

    @staticmethod
    def _wait_all(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))

    def _stop_now(self) -> None:
        if self.urgent_signal != signal.SIGKILL:
            self._wait_all(self._signal_alive(self.urgent_signal), 3.0)
        alive = self._signal_alive(signal.SIGKILL)
        if alive:
            log.warning("%s: killed pids %s", self.name, [proc.pid for proc in alive])
        self._wait_all(alive, 5.0)

    def _remove_root(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


# --------------------------------------------------------------------------------------
# etcd


class EtcdPut:
    """One client's operation: put a fresh key with a 100-byte value on one member, over
    one keep-alive HTTP/1.1 connection (reopened after an error).

    The HTTP exchange is done on a plain socket: the request is one prebuilt ``sendall``
    (TCP_NODELAY), the response is read by its Content-Length (anything else, such as a
    chunked response, raises). ``http.client`` does the same work with about three times
    the client CPU (0.215 against 0.066 ms per put measured here, mostly its header
    parsing), and on 2 cores that CPU is taken from etcd: side by side on one cluster,
    16 clients did 1,942 puts/s through ``http.client`` and 2,791 this way.
    ``EtcdPutStdlib`` is the ``http.client`` version, for cross-checking.
    """

    def __init__(self, host: str, port: int, client_id: int) -> None:
        self.address = (host, port)
        self.prefix = f"bench/{os.getpid()}/{client_id:04d}/".encode()
        self.value = base64.b64encode(os.urandom(VALUE_BYTES))
        self.counter = itertools.count()
        self.head = (
            f"POST /v3/kv/put HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        ).encode()
        self.sock: socket.socket | None = None
        self.reader: Any = None  # the socket's buffered reader

    def body(self) -> bytes:
        """The JSON of the next put (base64 has no character JSON must escape)."""
        key = base64.b64encode(self.prefix + b"%012d" % next(self.counter))
        return b'{"key":"' + key + b'","value":"' + self.value + b'"}'

    def __call__(self) -> None:
        body = self.body()
        try:
            if self.sock is None:
                sock = socket.create_connection(self.address, timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock, self.reader = sock, sock.makefile("rb")
            self.sock.sendall(self.head % len(body) + body)
            status, payload, keep_alive = self._response()
        except (OSError, ValueError):
            self.close()
            raise
        if not keep_alive:
            self.close()
        if status != 200:
            raise RuntimeError(f"etcd put: HTTP {status}: {payload[:200]!r}")

    def _response(self) -> tuple[int, bytes, bool]:
        line = self.reader.readline(65537)
        if not line:
            raise ConnectionError("etcd closed the connection")
        status = int(line.split(None, 2)[1])
        length = -1
        keep_alive = True
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionError("etcd closed the connection")
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ValueError(f"unsupported Transfer-Encoding: {value.strip()!r}")
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        if length < 0:
            raise ValueError("etcd's response has no Content-Length")
        payload: bytes = self.reader.read(length)
        if len(payload) != length:
            raise ConnectionError("etcd's response was cut short")
        return status, payload, keep_alive

    def close(self) -> None:
        for closable in (self.reader, self.sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self.sock = self.reader = None


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class EtcdPutStdlib(EtcdPut):
    """``EtcdPut`` through ``http.client`` (same request, more client CPU per put)."""

    def __init__(self, host: str, port: int, client_id: int) -> None:
        super().__init__(host, port, client_id)
        self.conn = _NoDelayHTTPConnection(host, port, timeout=10)

    def __call__(self) -> None:
        try:
            self.conn.request(
                "POST", "/v3/kv/put", self.body(), headers={"Content-Type": "application/json"}
            )
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.status != 200:
            raise RuntimeError(f"etcd put: HTTP {response.status}: {payload[:200]!r}")

    def close(self) -> None:
        self.conn.close()


class _MemberExited(RuntimeError):
    pass


def _etcd_call(port: int, path: str, body: Mapping[str, object], timeout: float = 2.0) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload)
    finally:
        conn.close()


class EtcdCluster(_Peer):
    """Three etcd members on 127.0.0.1 (default timeouts), data in a temporary directory.

    ``client_ports`` lists the members' client ports once started; ``leader_port()`` asks
    the cluster which one leads now.
    """

    name = "etcd"
    members = 3
    # SIGTERM to all members at once leaves the leader trying to hand over leadership to a
    # member that is going away: it exits ~7 s later. One at a time, all exit in ~0.1 s.
    stop_one_at_a_time = True

    def __init__(
        self, workdir: str | os.PathLike[str] | None = None, etcd_binary: str | None = None
    ) -> None:
        super().__init__(workdir)
        self.etcd_binary = etcd_binary
        self.client_ports: list[int] = []
        self.version = ""
        self._client_ids = itertools.count()

    def start(self, timeout: float = 30.0) -> None:
        """Start the members and return once they agree on a leader and a put succeeded."""
        binary = self.etcd_binary or shutil.which("etcd")
        if binary is None:
            raise PeerUnavailable(f"etcd is not on PATH: {ETCD_INSTALL_HINT}")
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        self.version = " ".join(out.stdout.split()[:3])
        for attempt in range(3):
            try:
                self._start_once(binary, timeout)
                return
            except _MemberExited as exc:
                self.stop()
                # A port picked free can be taken before etcd binds it: retry on new ports.
                if attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
                log.warning("an etcd port was taken (%s); retrying on new ports", exc)
            except BaseException:
                self.stop()
                raise

    def _start_once(self, binary: str, timeout: float) -> None:
        root = self._make_root()
        ports = free_ports(2 * self.members)
        self.client_ports = ports[: self.members]
        peer_ports = ports[self.members :]
        names = [f"m{i}" for i in range(self.members)]
        initial_cluster = ",".join(
            f"{name}=http://127.0.0.1:{port}" for name, port in zip(names, peer_ports, strict=True)
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for name, client_port, peer_port in zip(names, self.client_ports, peer_ports, strict=True):
            client_url = f"http://127.0.0.1:{client_port}"
            peer_url = f"http://127.0.0.1:{peer_port}"
            argv = [
                binary,
                f"--name={name}",
                f"--data-dir={root / name}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={initial_cluster}",
                f"--initial-cluster-token=strand-bench-{root.name}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
            ]
            self._spawn(argv, root / f"{name}.log", env=env, cwd=root)
        self._wait_ready(timeout)

    def _check_alive(self) -> None:
        for i, proc in enumerate(self._procs):
            if proc.poll() is not None:
                assert self.root is not None
                raise _MemberExited(
                    f"etcd member m{i} exited with {proc.returncode}:\n"
                    + _tail(self.root / f"m{i}.log")
                )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe: EtcdPut | None = None
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                leader = self.leader_port()
                probe = probe or EtcdPut("127.0.0.1", leader, client_id=next(self._client_ids))
                probe()
                probe.close()
                return
            except (OSError, RuntimeError, http.client.HTTPException, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)
        raise RuntimeError(f"etcd cluster not ready after {timeout:.0f} s ({last})")

    def leader_port(self) -> int:
        """Client port of the member all members name as leader (ValueError if none yet)."""
        leaders = set()
        port_of: dict[str, int] = {}
        for port in self.client_ports:
            status = _etcd_call(port, "/v3/maintenance/status", {})
            leaders.add(str(status.get("leader", "0")))
            port_of[str(status["header"]["member_id"])] = port
        if len(leaders) != 1 or "0" in leaders or next(iter(leaders)) not in port_of:
            raise ValueError(f"no agreed leader yet: {sorted(leaders)}")
        return port_of[next(iter(leaders))]

    def verify_unique_puts(self) -> int:
        """Check that every put so far wrote a key never written before (each put bumps the
        revision by one, so keys == revision - 1); return the number of keys."""
        every_key = base64.b64encode(b"\0").decode()
        answer = _etcd_call(
            self.leader_port(),
            "/v3/kv/range",
            {"key": every_key, "range_end": every_key, "count_only": True},
            timeout=30,
        )
        keys, revision = int(answer.get("count", 0)), int(answer["header"]["revision"])
        if keys != revision - 1:
            raise RuntimeError(f"etcd holds {keys} keys at revision {revision}: a key was reused")
        return keys

    def client_op_factory(
        self,
        endpoints: Literal["leader", "all"] = "leader",
        http: Literal["lean", "stdlib"] = "lean",
    ) -> OpFactory:
        """Op factory for ``run_load``: each call makes one client (one HTTP connection).

        ``endpoints="leader"`` connects every client to the current leader (the shortest
        path, like a client routed to the leader); ``"all"`` spreads clients round-robin
        over the members, as ``etcdctl``/``benchmark --endpoints`` would, so puts sent to
        a follower are forwarded to the leader. ``http``: ``"lean"`` (``EtcdPut``) or
        ``"stdlib"`` (``EtcdPutStdlib``, through ``http.client``).
        """
        if not self.client_ports:
            raise RuntimeError("EtcdCluster is not started")
        ports = [self.leader_port()] if endpoints == "leader" else list(self.client_ports)
        kind = EtcdPut if http == "lean" else EtcdPutStdlib
        made = itertools.count()  # this factory's clients, for the round-robin

        def factory() -> Op:
            port = ports[next(made) % len(ports)]
            return kind("127.0.0.1", port, next(self._client_ids))  # ids unique: keys too

        return factory

    def stop(self) -> None:
        """SIGTERM the members one at a time (each SIGKILLed after 10 s), remove the
        temporary directory."""
        try:
            self._stop_processes([(signal.SIGTERM, 10.0)])
        finally:
            self.client_ports = []
            self._remove_root()


# --------------------------------------------------------------------------------------
# PostgreSQL

PG_SCHEMA = r"""
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    body jsonb NOT NULL
);
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id),
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE chain_head (
    id int PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO chain_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- One ledger transaction's body: the document row, then the audit row chained to the head.
-- content = UTF-8 of "<seq>:<document id>:<body as jsonb text>"; hash = sha256(prev || content)
CREATE FUNCTION ledger_insert(doc jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    doc_id bigint;
    head_seq bigint;
    head_hash bytea;
    new_hash bytea;
BEGIN
    INSERT INTO documents (body) VALUES (doc) RETURNING id INTO doc_id;
    SELECT seq, hash INTO head_seq, head_hash FROM chain_head WHERE id = 1 FOR UPDATE;
    new_hash := sha256(head_hash || convert_to(
        (head_seq + 1)::text || ':' || doc_id::text || ':' || doc::text, 'UTF8'));
    INSERT INTO audit (seq, document_id, prev_hash, hash)
        VALUES (head_seq + 1, doc_id, head_hash, new_hash);
    UPDATE chain_head SET seq = head_seq + 1, hash = new_hash WHERE id = 1;
    RETURN head_seq + 1;
END
$$;
"""


def audit_hash(prev_hash: bytes, seq: int, document_id: int, body_text: str) -> bytes:
    """The audit chain's hash, as ``ledger_insert`` computes it in SQL."""
    return hashlib.sha256(prev_hash + f"{seq}:{document_id}:{body_text}".encode()).digest()


def _find_pg_bindir() -> Path | None:
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    for path in candidates:
        if (path / "postgres").is_file() and (path / "initdb").is_file():
            return path
    return None


class PgLedgerInsert:
    """One client's operation: one chained ledger transaction over its own connection.

    ``mode="function"`` calls ``ledger_insert`` (one round trip, autocommit: the call is the
    transaction). ``mode="statements"`` sends BEGIN, the document INSERT, the chain head's
    SELECT ... FOR UPDATE, the audit INSERT (hash computed here) and the head UPDATE, then
    COMMIT, each a round trip, as application code would.
    """

    def __init__(self, conninfo: str, client_id: int, mode: Literal["function", "statements"]):
        import psycopg

        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.client_id = client_id
        self.mode = mode
        self.counter = itertools.count()
        self.payload = "x" * VALUE_BYTES

    def __call__(self) -> None:
        from psycopg.types.json import Jsonb

        doc = Jsonb({"client": self.client_id, "n": next(self.counter), "payload": self.payload})
        if self.mode == "function":
            self.conn.execute("SELECT ledger_insert(%s)", (doc,))
            return
        with self.conn.transaction():
            row = self.conn.execute(
                "INSERT INTO documents (body) VALUES (%s) RETURNING id, body::text", (doc,)
            ).fetchone()
            assert row is not None
            doc_id, body_text = row
            head = self.conn.execute(
                "SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE"
            ).fetchone()
            assert head is not None
            seq = head[0] + 1
            prev = bytes(head[1])
            new_hash = audit_hash(prev, seq, doc_id, body_text)
            self.conn.execute(
                "INSERT INTO audit (seq, document_id, prev_hash, hash) VALUES (%s, %s, %s, %s)",
                (seq, doc_id, prev, new_hash),
            )
            self.conn.execute(
                "UPDATE chain_head SET seq = %s, hash = %s WHERE id = 1", (seq, new_hash)
            )

    def close(self) -> None:
        self.conn.close()


class PostgresServer(_Peer):
    """One PostgreSQL server on 127.0.0.1 (fsync and synchronous_commit on) holding the
    ledger-table schema, data directory and unix socket in a temporary directory.

    ``conninfo`` is the libpq connection string (TCP to 127.0.0.1) once started.
    """

    name = "postgres"
    urgent_signal = signal.SIGQUIT  # immediate shutdown: the postmaster takes its backends

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        bindir: str | os.PathLike[str] | None = None,
        max_connections: int = 200,
    ) -> None:
        super().__init__(workdir)
        self.bindir = Path(bindir) if bindir is not None else None
        self.max_connections = max_connections
        self.port = 0
        self.conninfo = ""
        self.version = ""
        self._client_ids = itertools.count()

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that drop root to the postgres user (nothing when not root)."""
        if os.geteuid() != 0:
            return {}
        try:
            user = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PeerUnavailable(
                f"running as root and there is no 'postgres' user: {PG_INSTALL_HINT}"
            ) from exc
        env = {
            "HOME": user.pw_dir,
            "USER": "postgres",
            "LOGNAME": "postgres",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": env}

    def start(self, timeout: float = 60.0) -> None:
        """initdb, start the server, create the schema; return once it accepts writes."""
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise PeerUnavailable(f"the psycopg driver is missing: {PSYCOPG_INSTALL_HINT}") from exc
        bindir = self.bindir or _find_pg_bindir()
        if bindir is None or not (bindir / "postgres").is_file():
            raise PeerUnavailable(f"PostgreSQL binaries not found: {PG_INSTALL_HINT}")
        try:
            self._start(bindir, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, bindir: Path, timeout: float) -> None:
        run_as = self._run_as()
        root = self._make_root()
        data, sockets = root / "data", root / "sock"
        sockets.mkdir()
        if run_as:
            # The temp dir is 0700: hand it to postgres (its parent, e.g. /tmp, must be
            # traversable by that user).
            for path in (root, sockets):
                os.chown(path, run_as["user"], run_as["group"])
        initdb_log = root / "initdb.log"
        # Tracked like the server, so that stop() ends it (SIGINT: initdb cleans up) if this
        # is interrupted. --no-sync only skips syncing the fresh files once: the server runs
        # with fsync=on.
        initdb = self._spawn(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            initdb_log, cwd=root, **run_as,
        )  # fmt: skip
        returncode = initdb.wait(timeout=120)
        self._procs.remove(initdb)
        if returncode != 0:
            hint = " (the postgres user must be able to reach it: o+x on its parents)"
            raise RuntimeError(
                f"initdb in {root} failed ({returncode}){hint if run_as else ''}:\n"
                + _tail(initdb_log)
            )
        self.version = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        server_log = root / "postgres.log"
        if run_as:
            server_log.touch()
            os.chown(server_log, run_as["user"], run_as["group"])
        for _attempt in range(3):  # the free port may be taken before postgres binds it
            self.port = free_ports(1)[0]
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": str(sockets),
                "fsync": "on",
                "synchronous_commit": "on",
                "full_page_writes": "on",
                "max_connections": str(self.max_connections),
            }
            argv = [str(bindir / "postgres"), "-D", str(data)]
            for key, value in settings.items():
                argv += ["-c", f"{key}={value}"]
            proc = self._spawn(argv, server_log, cwd=root, **run_as)
            self.conninfo = (
                f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"
            )
            if self._wait_accepting(proc, timeout, server_log):
                break
            self._stop_processes([(signal.SIGINT, 10.0)])
        else:
            raise RuntimeError(f"postgres did not start:\n{_tail(server_log)}")
        self._create_schema()

    def _wait_accepting(self, proc: subprocess.Popen[bytes], timeout: float, logf: Path) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                if "Address already in use" in _tail(logf, 40):
                    return False
                raise RuntimeError(f"postgres exited with {proc.returncode}:\n{_tail(logf)}")
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres not accepting connections after {timeout:.0f} s")

    def _create_schema(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(PG_SCHEMA)  # several statements: simple query protocol, no params
            settings = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'wal_sync_method')"
            ).fetchall()
        found: dict[str, str] = dict(settings)
        if found.get("fsync") != "on" or found.get("synchronous_commit") != "on":
            raise RuntimeError(f"postgres is not durable as configured: {found}")
        log.info("postgres %s on port %d, %s", self.version, self.port, found)

    def client_op_factory(self, mode: Literal["function", "statements"] = "function") -> OpFactory:
        """Op factory for ``run_load``: each call opens one connection (see PgLedgerInsert)."""
        if not self.conninfo or not self.pids:
            raise RuntimeError("PostgresServer is not started")
        conninfo = self.conninfo

        def factory() -> Op:
            return PgLedgerInsert(conninfo, next(self._client_ids), mode)

        return factory

    def verify_chain(self) -> int:
        """Recompute the audit chain from the first row; return its length. Raises if a
        link is broken or the chain head does not point at the last row."""
        import psycopg

        prev = bytes(32)
        seq = 0
        with psycopg.connect(self.conninfo) as conn, conn.cursor(name="chain") as cur:
            cur.execute(
                "SELECT a.seq, a.document_id, a.prev_hash, a.hash, d.body::text "
                "FROM audit a JOIN documents d ON d.id = a.document_id ORDER BY a.seq"
            )
            for row_seq, doc_id, prev_hash, row_hash, body_text in cur:
                seq += 1
                if row_seq != seq or bytes(prev_hash) != prev:
                    raise RuntimeError(f"audit chain broken at seq {row_seq}")
                if audit_hash(prev, seq, doc_id, body_text) != bytes(row_hash):
                    raise RuntimeError(f"audit hash mismatch at seq {row_seq}")
                prev = bytes(row_hash)
            cur.close()
            head = conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        if head is None or head[0] != seq or bytes(head[1]) != prev:
            raise RuntimeError(f"chain head {head!r} does not match the last audit row {seq}")
        return seq

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), after 30 s immediate shutdown (SIGQUIT),
        then SIGKILL; remove the temporary directory."""
        try:
            self._stop_processes([(signal.SIGINT, 30.0)])
        finally:
            self.conninfo = ""
            self._remove_root()


# --------------------------------------------------------------------------------------
# Command line

Results = dict[str, dict[int, dict[str, float]]]
"""system name -> clients -> run_load's result."""


def results_table(title: str, results: Results) -> Any:
    """A rich Table with one row per client count and tx/s, p50, p99 per system."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("clients", justify="right")
    for system in results:
        for column in ("tx/s", "p50 ms", "p99 ms"):
            table.add_column(f"{system} {column}", justify="right")
    counts = sorted({clients for rows in results.values() for clients in rows})
    for clients in counts:
        cells = [str(clients)]
        for rows in results.values():
            row = rows.get(clients)
            if row is None:
                cells += ["-", "-", "-"]
            else:
                cells += [
                    f"{row['tx_per_s']:,.0f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                ]
        table.add_row(*cells)
    return table


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so finally blocks stop the peers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def measure_peer(
    peer: EtcdCluster | PostgresServer,
    factory: OpFactory,
    client_counts: Sequence[int],
    seconds: float,
    warmup: float,
    console: Any,
) -> dict[int, dict[str, float]]:
    """Warm up with 4 clients, then one run_load per client count."""
    if warmup > 0:
        run_load(factory, 4, warmup)
    rows: dict[int, dict[str, float]] = {}
    for clients in client_counts:
        rows[clients] = row = run_load(factory, clients, seconds)
        console.print(
            f"  {peer.name:<8} {clients:>3} clients {row['tx_per_s']:>8,.0f} tx/s"
            f"  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms"
            f"  {row['count']:>7,.0f} ok  {row['errors']:.0f} errors",
            soft_wrap=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.markup import escape

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="window per client count")
    parser.add_argument("--clients", default="1,4,16,64", help="comma-separated client counts")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of 4-client warm-up")
    parser.add_argument("--systems", default="etcd,postgres", help="etcd and/or postgres")
    parser.add_argument("--etcd-endpoints", choices=("leader", "all"), default="leader")
    parser.add_argument("--etcd-http", choices=("lean", "stdlib"), default="lean")
    parser.add_argument("--pg-mode", choices=("function", "statements"), default="function")
    parser.add_argument("--workdir", default=None, help="parent of the temporary directories")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: Results = {}
    notes: list[str] = []
    status = 0
    with _sigterm_as_interrupt():
        for system in systems:
            try:
                if system == "etcd":
                    with EtcdCluster(args.workdir) as etcd:
                        console.print(
                            f"{etcd.version}, 3 members, client ports {etcd.client_ports}",
                            soft_wrap=True,
                        )
                        factory = etcd.client_op_factory(args.etcd_endpoints, args.etcd_http)
                        results["etcd"] = measure_peer(
                            etcd, factory, client_counts, args.seconds, args.warmup, console
                        )
                        keys = etcd.verify_unique_puts()
                        notes.append(f"etcd: {keys:,} keys, one per put (revision = keys + 1)")
                elif system == "postgres":
                    with PostgresServer(args.workdir) as pg:
                        console.print(f"{pg.version}, port {pg.port}", soft_wrap=True)
                        factory = pg.client_op_factory(args.pg_mode)
                        results["postgres"] = measure_peer(
                            pg, factory, client_counts, args.seconds, args.warmup, console
                        )
                        notes.append(f"postgres audit chain verified: {pg.verify_chain():,} rows")
                else:
                    parser.error(f"unknown system {system!r}")
            except PeerUnavailable as exc:
                console.print(f"[bold yellow]{system} skipped:[/] {escape(str(exc))}")
            except (RuntimeError, OSError) as exc:  # it did not start or broke: say why, go on
                console.print(f"[bold red]{system} failed:[/] {escape(str(exc))}")
                status = 1
            except KeyboardInterrupt:
                console.print("[red]interrupted: peers stopped[/]")
                return 130
    if results:
        described = {
            "etcd": f"etcd: 100-byte puts, endpoints={args.etcd_endpoints}, {args.etcd_http} HTTP",
            "postgres": f"postgres: hash-chained ledger insert ({args.pg_mode})",
        }
        table = results_table(f"Peers on 127.0.0.1, {args.seconds:g} s per row", results)
        table.caption = "; ".join(described[system] for system in results)
        console.print(table)
    for note in notes:
        console.print(note)
    return status


if __name__ == "__main__":
    sys.exit(main())

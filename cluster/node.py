"""StorageNode: the Ray actor that hosts one replica of the ledger in one availability zone.

The node is a shell (all protocol logic is in core/): `NodeHost` owns one LevelDB directory,
the `core.replica.Replica` on it, the `core.commit.CommitMachine` beside it, and runs them on
an asyncio loop on a thread of its own, started in `__init__`, so a node that Ray restarts is
back in the cluster without anyone calling it. On that loop:
- a timer ticks the replica and the machine every `tick_ms`;
- the peer transport (cluster/transport.py) delivers peers' Raft messages (core.wire);
- the client port (cluster/clientserver.py) delivers clients' requests (core.client_wire);
- the worker pool (cluster/workers.py) delivers the results of the jobs it ran;
- after any input, `_process` carries out the duties in the order core states them:
  `process_ready` (persist, apply), send its messages, `observe`, then the machine's duties
  (run a job on a worker, send a reply, serve a read), and repeats until nothing is ready.
Reads of committed state (queries, digests, proofs) run on a small thread pool, so a long
one (`verify_journal` of a big journal) never delays heartbeats. Ray is the control plane
only: it places the actor (`resources={az: ...}`), restarts it, and serves `status`, `pids`
and `shutdown` calls for experiments; no transaction crosses Ray.

Storage faults are handled crash-only. Any exception that escapes a loop callback (a failed
disk write on the writer thread, ENOSPC, an I/O error while reading the log) or a storage
I/O error met by a read ends the process at once (`os._exit`, exit status 70): Ray restarts
the actor, which reopens its LevelDB and rejoins from what is durable, so a node never goes
on serving, or reporting a role, after its disk failed. A node that cannot open its storage
(the disk is still full, LevelDB finds its files corrupt) does not raise from the actor's
constructor, which would leave Ray an actor it never restarts: `StorageNode` stays up in a
"failed" state, says why in `status`, and tries to open again every `reopen_interval_s`
(a full disk that is freed heals by itself; a corrupt one needs `rebuild`). Damage found in
committed data (cluster/scrub.py) is handled by the scrubber, not by exiting.

Invariants: the replica and the machine are touched only on the loop's thread; a client is
answered only what the machine decided; a node that does not lead answers every request
with the leader's name (and the client port comes from the config); a node whose storage
failed serves nothing more from that process.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from cluster import userdata
from cluster.clientserver import ClientServer
from cluster.common import commit_config, genesis_of, raft_config
from cluster.config import ClusterConfig
from cluster.scrub import Scrubber
from cluster.transport import Transport
from cluster.workers import WorkerPool
from core import client_wire, keys, queries, streams, wire
from core.commit import CommitMachine
from core.errors import (
    CorruptLedgerError,
    InvalidArgumentError,
    LimitExceededError,
    StrandError,
    TableNotFoundError,
    UnavailableError,
)
from core.raft import Message, Role
from core.replica import ReadyWork, Replica, ReplicaOutput, seed_hard_state
from core.requests import Dispatch, Done, Duty, Failed, JobResult, Read, Reply, Request, Serve
from core.storage import (
    LevelDBStorage,
    Storage,
    StorageClosedError,
    StorageCorruptionError,
    StorageError,
)
from core.wire import WireError

log = logging.getLogger("strand.node")
if os.environ.get("STRAND_TEST_BREAK"):  # a deliberately broken build (chaos/broken.py)
    from chaos import broken

    broken.apply(os.environ["STRAND_TEST_BREAK"])


def open_storage(data_dir: str | os.PathLike[str]) -> Storage:
    """The node's LevelDB; for the chaos tests (STRAND_TEST_STORAGE=power-cut), one that keeps
    only synced writes across a kill (chaos/disk.py), so a missing fsync shows."""
    if os.environ.get("STRAND_TEST_STORAGE") == "power-cut":
        from chaos.disk import LevelDBPowerCutStorage

        return LevelDBPowerCutStorage(data_dir)
    return LevelDBStorage(data_dir)


FATAL_EXIT_STATUS = 70  # EX_SOFTWARE: Ray sees a dead worker and restarts the actor
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
ROOT = Path(__file__).resolve().parent.parent


_clock_offset_ms = 0  # moved by chaos experiments (StorageNode.set_clock_offset_ms)


def _now_ms() -> int:
    """The node's wall clock: the host's, plus an offset a clock-skew experiment sets (one
    node per process, so one offset per node)."""
    return time.time_ns() // 1_000_000 + _clock_offset_ms


def exit_process(reason: str) -> None:
    """Crash-only: end this process now, without unwinding (no handler, no flush can run
    against storage that failed). Ray restarts the actor."""
    log.critical("%s; the process exits so that it restarts from what is durable", reason)
    logging.shutdown()
    os._exit(FATAL_EXIT_STATUS)


class NodeHost:
    """The replica, the commit machine, the transports and the workers on an asyncio loop."""

    def __init__(
        self,
        config: ClusterConfig,
        name: str,
        *,
        seed: int | None = None,
        labels: dict[str, Any] | None = None,
        on_fatal: Callable[[str], None] = exit_process,
    ) -> None:
        self.config = config
        self.on_fatal = on_fatal
        self.name = name
        self.labels = dict(labels or {})  # reported in status (e.g. the Ray node it runs on)
        node = config.node(name)
        os.makedirs(node.data_dir, exist_ok=True)
        self.storage = open_storage(node.data_dir)
        rng = random.Random(seed if seed is not None else time.time_ns())
        try:
            self.replica = Replica(
                name, config.node_names, self.storage, config=raft_config(config), rng=rng,
                genesis=genesis_of(config), now_ms=_now_ms(),
            )  # fmt: skip
        except BaseException as exc:
            self.storage.close()
            if isinstance(exc, StrandError):
                raise
            raise CorruptLedgerError(f"node {name} cannot read its storage: {exc!r}") from exc
        self.machine = CommitMachine(
            self.replica, rng=random.Random(rng.getrandbits(64)), now_ms=_now_ms(),
            config=commit_config(config),
        )  # fmt: skip
        self.engine = self.replica.engine
        self.loop = asyncio.new_event_loop()
        self.transport = Transport(
            name, (node.host, node.port), config.peer_addresses(name), config.secret,
            self._on_peer_message,
        )  # fmt: skip
        client_port = config.client_port(name)
        self.clients = ClientServer(
            name, (node.host, client_port or 0), config.secret, self._on_client_messages,
            self._on_client_gone,
        )  # fmt: skip
        self.workers: WorkerPool | None = None
        self._reads: dict[tuple[int, int], bytes] = {}
        self._outbox: dict[int, list[bytes]] = {}
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="strand-read")
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        # a Ready's storage write runs on this thread; meanwhile inputs wait in `_deferred`
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="strand-write")
        self._writing = False
        self._deferred: collections.deque[Callable[[], None]] = collections.deque()
        self.stats: dict[str, float] = {"ready_ms": 0.0, "readies": 0, "requests": 0}
        self.scrubber = Scrubber(
            self.engine, interval_ms=config.scrub_interval_ms, fetch_blocks=self._fetch_blocks,
            run_on_loop=self.run_on_loop, set_promotable=self.replica.set_promotable,
        )  # fmt: skip
        self._peers_client: Any = None  # a LedgerCluster handle, to fetch blocks from peers
        self._stopped = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"strand-node-{name}", daemon=True)
        self._thread.start()
        if not self._started.wait(30) or self._start_error is not None:
            # e.g. a port still held by the process this one replaces: leave nothing behind
            # (the LevelDB lock above all), so that the next attempt can open
            self._abandon_start()
            raise StrandError(f"node {name} did not start: {self._start_error!r}")
        self.scrubber.start()

    # ----------------------------------------------------------------- the loop
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_failed)
        try:
            self.loop.run_until_complete(self.transport.start())
            self.loop.run_until_complete(self.clients.start())
        except BaseException as exc:  # noqa: BLE001 - reported by __init__
            self._start_error = exc
            self._started.set()
            return
        self.loop.call_soon(self._tick)
        self._started.set()
        self.loop.run_forever()

    def _abandon_start(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.clients.close())
                self.loop.run_until_complete(self.transport.close())
            self.loop.close()
        self._readers.shutdown(wait=False)
        self._writer.shutdown(wait=False)
        self.storage.close()

    def _loop_failed(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An exception escaped a callback on the loop: the replica's state is unknown."""
        exc = context.get("exception")
        if "handle" not in context and not isinstance(exc, StorageError):
            loop.default_exception_handler(context)  # a socket's or a task's: not the replica's
            return
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.on_fatal(f"node {self.name}: {context.get('message')}: {exc!r}")

    def _when_idle(self, fn: Callable[[], None]) -> None:
        """Feed an input to the replica or the machine now, or, while a Ready's write is on
        the writer thread (nothing may touch them then), as soon as it is done."""
        if self._writing:
            self._deferred.append(fn)
        else:
            fn()

    def _tick(self) -> None:
        """Raft's clock; an idle node does no more than this (nothing else wakes it)."""
        if self._stopped.is_set():
            return
        self._when_idle(self._tick_now)
        self.loop.call_later(self.config.tick_ms / 1000, self._tick)

    def _tick_now(self) -> None:
        self.replica.tick()
        if self.replica.has_ready():
            self._schedule()

    def _machine_timer(self) -> None:
        """The commit machine's own timers (a retry's backoff, a transaction's expiry)."""
        self._timer = None
        self._when_idle(self._machine_tick)

    def _machine_tick(self) -> None:
        self.machine.tick(_now_ms())
        self._schedule()

    def _arm_machine_timer(self) -> None:
        due = self.machine.next_due_ms()
        if due is None:
            return
        at = self.loop.time() + max(0, due - _now_ms()) / 1000
        if self._timer is not None and self._timer.when() <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(at, self._machine_timer)

    def _on_peer_message(self, peer: str, payload: bytes) -> None:
        try:
            message = wire.decode(payload)
        except WireError as exc:
            log.warning("node %s: dropped a malformed message from %s: %s", self.name, peer, exc)
            return
        if message.sender != peer:
            log.warning("node %s: %s sent a message signed %s", self.name, peer, message.sender)
            return
        self._when_idle(functools.partial(self._step, message))

    def _step(self, message: Message) -> None:
        self.replica.step(message)
        self._schedule()

    def _on_client_messages(self, connection: int, messages: list[bytes]) -> None:
        requests = []
        for data in messages:  # decoded at once, even while a write is on the disk
            try:
                request_id, request, read = client_wire.decode_request(data)
            except WireError as exc:
                log.warning("node %s: a malformed request: %s", self.name, exc)
                continue
            self.stats["requests"] += 1
            if isinstance(request, Read):
                self._reads[(connection, request_id)] = read
            requests.append((request_id, request))
        self._when_idle(functools.partial(self._submit, connection, requests))

    def _submit(self, connection: int, requests: list[tuple[int, Request]]) -> None:
        now = _now_ms()
        for request_id, request in requests:
            self.machine.submit(connection, request_id, request, now)
        self._schedule()

    def _on_client_gone(self, connection: int) -> None:
        self._when_idle(functools.partial(self.machine.client_gone, connection))
        self._outbox.pop(connection, None)
        for key in [k for k in self._reads if k[0] == connection]:
            del self._reads[key]

    def _ran(self, job_id: int, result: JobResult) -> None:
        self._when_idle(functools.partial(self._ran_now, job_id, result))

    def _ran_now(self, job_id: int, result: JobResult) -> None:
        self.machine.ran(job_id, result, _now_ms())
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._process)

    def _process(self) -> None:
        """Carry out every duty, in core's order, until nothing is ready (see the docstring).

        A Ready that writes goes to the writer thread (`_written` goes on from there); the
        loop meanwhile keeps reading sockets, decoding, serving workers' reads."""
        self._scheduled = False
        if self._writing:
            return
        replica, machine = self.replica, self.machine
        while True:
            self._carry_out(machine.take_duties())  # may propose: the replica has a Ready
            work = replica.start_ready(self._send)
            if work is None:
                break
            if work.writes:
                self._writing = True
                started = time.perf_counter()
                future = self._writer.submit(work.write)
                future.add_done_callback(functools.partial(self._write_done, work, started))
                break
            self._finished(replica.finish_ready(work))
        self._flush()
        self._arm_machine_timer()

    def _write_done(
        self, work: ReadyWork, started: float, future: concurrent.futures.Future[None]
    ) -> None:
        """On the writer thread: back to the loop."""
        self.loop.call_soon_threadsafe(self._written, work, future, started)

    def _written(
        self, work: ReadyWork, future: concurrent.futures.Future[None], started: float
    ) -> None:
        self._writing = False
        future.result()  # a storage failure stops here (the node must be restarted)
        self.stats["ready_ms"] += (time.perf_counter() - started) * 1000
        self.stats["readies"] += 1
        self._finished(self.replica.finish_ready(work))
        deferred, self._deferred = self._deferred, collections.deque()
        for fn in deferred:  # the inputs that arrived meanwhile, in order
            fn()
        self._process()

    def _finished(self, out: ReplicaOutput) -> None:
        for message in out.messages:
            self._send(message)
        self.machine.observe(out)
        if out.role is Role.LEADER and (self.workers is None or not self.workers.warm):
            # a new leader starts its workers now, while it waits for its first entry to
            # commit, so the first transactions after a failover do not wait for processes
            self._pool().warm_up()

    def _carry_out(self, duties: list[Duty]) -> None:
        for duty in duties:
            if isinstance(duty, Reply):
                self._queue_reply(
                    duty.client, client_wire.encode_outcome(duty.request_id, duty.outcome)
                )
            elif isinstance(duty, Dispatch):
                self._pool().submit(duty.job)
            else:
                self._serve(duty)

    def _send(self, message: Message) -> None:
        self.transport.send(message.to, wire.encode(message))

    def _queue_reply(self, connection: int, data: bytes) -> None:
        self._outbox.setdefault(connection, []).append(data)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for connection, messages in outbox.items():
            self.clients.send(connection, messages)

    def _pool(self) -> WorkerPool:
        if self.workers is None:
            self.workers = WorkerPool(self.loop, self.engine, self._ran, cwd=str(ROOT))
        return self.workers

    # ----------------------------------------------------------------- scrubbing
    def run_on_loop(self, fn: Callable[[], Any], timeout_s: float = 60.0) -> Any:
        """Run `fn` on the loop's thread between two writes (from another thread); its value."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                done.set_exception(exc)
            self._schedule()

        self.loop.call_soon_threadsafe(self._when_idle, call)
        return done.result(timeout_s)

    def _fetch_blocks(self, seqs: list[int]) -> dict[int, bytes]:
        """The stored bytes of blocks `seqs` from a peer that has them (the leader first)."""
        from cluster.client import LedgerCluster

        if self._peers_client is None:
            self._peers_client = LedgerCluster(self.config)
        peers = [n for n in self.config.node_names if n != self.name]
        leader = self.replica.node.leader
        peers.sort(key=lambda n: n != leader)
        fetched: dict[int, bytes] = {}
        for peer in peers:
            wanted = [seq for seq in seqs if seq not in fetched]
            for start in range(0, len(wanted), RAW_BLOCKS_MAX):
                chunk = wanted[start : start + RAW_BLOCKS_MAX]
                try:
                    blocks, _ = self._peers_client.query(
                        "raw_blocks", chunk, consistency="stale", node=peer
                    )
                except StrandError as exc:
                    log.warning("node %s: %s did not send blocks: %s", self.name, peer, exc)
                    break
                fetched.update({int(seq): bytes(raw) for seq, raw in blocks})
        return fetched

    # ----------------------------------------------------------------- reads
    def _serve(self, duty: Serve) -> None:
        payload = self._reads.pop((duty.client, duty.request_id), b"")
        future = self._readers.submit(self.read, payload)
        future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(self._served, duty, f))

    def _served(self, duty: Serve, future: concurrent.futures.Future[Done | Failed]) -> None:
        outcome = future.result()
        self._queue_reply(duty.client, client_wire.encode_outcome(duty.request_id, outcome))
        self._flush()

    def read(self, payload: bytes) -> Done | Failed:
        """Run a read on committed state (any thread): its value and the sequence number it
        reflects (read before the read: the answer reflects at least that much)."""
        seq = self.engine.durable_seq
        try:
            method, args = userdata.decode_read(payload)
            reader = _READS.get(method)
            if reader is None:
                raise InvalidArgumentError(f"unknown read {method!r:.40}")
            value = reader(self, *args)
            return Done(None, userdata.encode_value(value), seq)
        except StorageError as exc:
            if not isinstance(exc, StorageCorruptionError | StorageClosedError):
                self.on_fatal(f"node {self.name}: storage failed during a read: {exc}")
            self.scrubber.request()
            return Failed(CorruptLedgerError(f"node {self.name} cannot read that: {exc}"))
        except CorruptLedgerError as exc:
            self.scrubber.request()  # damage met by a read: check everything now
            return Failed(exc)
        except StrandError as exc:
            return Failed(exc)
        except (TypeError, ValueError) as exc:
            return Failed(InvalidArgumentError(f"bad arguments to a read: {exc}"))

    def status(self) -> dict[str, Any]:
        status = self.replica.status()  # reads only published state: safe from any thread
        node = self.config.node(self.name)
        status["az"] = node.az
        status["client_address"] = [self.labels.get("advertise_host", node.host), self.clients.port]
        status["pid"] = os.getpid()
        status.update(self.labels)
        status["transport"] = self.transport.stats.as_dict()
        status["machine"] = dict(self.machine.stats)
        status["host"] = dict(self.stats)
        status["workers"] = {} if self.workers is None else dict(self.workers.stats)
        status.update(self.scrubber.status())
        return status

    def pids(self) -> list[int]:
        """This node's process and its worker processes (for experiments that signal them)."""
        pids = [os.getpid()]
        if self.workers is not None:
            pids += self.workers.pids
        return pids

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.scrubber.stop()
        if self._peers_client is not None:
            self._peers_client.close()

        async def close() -> None:
            await self.clients.close()
            await self.transport.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
            if self.workers is not None:
                workers = self.workers
                self.loop.call_soon_threadsafe(workers.close)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self._readers.shutdown(wait=True, cancel_futures=True)
            self._writer.shutdown(wait=True)
            self.storage.close()


RAW_BLOCKS_MAX = 256  # blocks per raw_blocks read


def _raw_blocks(host: NodeHost, seqs: list[int]) -> list[tuple[int, bytes]]:
    """Blocks as this node stores them (for a peer repairing its copy; it checks them)."""
    if len(seqs) > RAW_BLOCKS_MAX:
        raise InvalidArgumentError(f"at most {RAW_BLOCKS_MAX} blocks per raw_blocks read")
    engine = host.engine
    out = []
    for seq in seqs:
        if isinstance(seq, int) and 0 <= seq <= engine.durable_seq:
            raw = engine.storage.get(keys.block_key(seq))
            if raw is not None:
                out.append((seq, raw))
    return out


def _transaction_ids(host: NodeHost) -> list[str]:
    """The transaction id of every block after genesis, in journal order."""
    engine = host.engine
    return [engine.read_block(seq)["transactionId"] for seq in range(1, engine.durable_seq + 1)]


DOCUMENTS_MAX = 1000  # documents per `documents` read


def _documents(host: NodeHost, table: str) -> list[dict[str, Any]]:
    """The table's live documents as this node holds them (a stale read): each with its
    id, version and the block of its revision."""
    engine = host.engine
    table_id = engine.catalog.active_by_name.get(table)
    if table_id is None:
        raise TableNotFoundError(f"no table {table!r:.80}")
    out: list[dict[str, Any]] = []
    for doc_id, state in engine.scan_docs(table_id):
        if len(out) == DOCUMENTS_MAX:
            raise LimitExceededError(f"more than {DOCUMENTS_MAX} documents in {table!r:.80}")
        out.append({"id": doc_id, "version": state.version, "seq": state.seq, "data": state.data})
    return out


def _stream(host: NodeHost, stream_id: str) -> bytes | None:
    """A journal stream's state as this node applied it (core.streams.encode_state)."""
    state = host.replica.stream(stream_id)
    return None if state is None else streams.encode_state(state)


_READS: dict[str, Callable[..., Any]] = {
    "stream": _stream,
    "streams": lambda host: [streams.encode_state(s) for s in host.replica.streams()],
    "durable_seq": lambda host: host.engine.durable_seq,
    "status": lambda host: host.status(),
    "transaction_ids": _transaction_ids,
    "documents": _documents,
    "raw_blocks": _raw_blocks,
    "scrub": lambda host: host.scrubber.request(),
    "committed_seq": lambda host, tx_id: host.engine.committed_seq(tx_id),
    "history": lambda host, *args: queries.history(host.engine, *args),
    "get_digest": lambda host, *args: queries.get_digest(host.engine, *args),
    "get_block": lambda host, *args: queries.get_block(host.engine, *args),
    "get_revision": lambda host, *args: queries.get_revision(host.engine, *args),
    "get_consistency_proof": lambda host, *args: queries.get_consistency_proof(host.engine, *args),
    "verify_journal": lambda host: queries.verify_journal(host.engine),
    "list_tables": lambda host: sorted(host.engine.catalog.active_by_name),
}


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=8)  # type: ignore[call-overload]
class StorageNode:
    """One AZ's node (see the module docstring): Ray calls are for the control plane only.

    The actor outlives a node that cannot open its storage: it reports "failed" with the
    reason and tries again every `reopen_interval_s`, until it opens or is rebuilt."""

    reopen_interval_s = 2.0

    def __init__(self, config: ClusterConfig, name: str) -> None:
        logging.basicConfig(level=logging.WARNING)
        self.config = config
        self.name = name
        self.labels: dict[str, Any] = {"ray_node_id": ray.get_runtime_context().get_node_id()}
        if config.node(name).host in WILDCARD_HOSTS:  # listening everywhere: say where
            self.labels["advertise_host"] = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.host: NodeHost | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._open()
        if self.host is None:
            threading.Thread(target=self._reopen, name="strand-reopen", daemon=True).start()

    def _open(self) -> None:
        try:
            self.host = NodeHost(self.config, self.name, labels=self.labels)
            self.error = None
        except StrandError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("node %s cannot open its storage: %s", self.name, self.error)

    def _reopen(self) -> None:
        while True:
            time.sleep(self.reopen_interval_s)
            with self._lock:
                if self.host is not None:
                    return
                self._open()

    def _host(self) -> NodeHost:
        host = self.host
        if host is None:
            raise UnavailableError(f"node {self.name} failed: {self.error}")
        return host

    def ping(self) -> str:
        return self.name

    def status(self) -> dict[str, Any]:
        host = self.host
        if host is None:
            node = self.config.node(self.name)
            return {"node": self.name, "role": "failed", "error": self.error, "az": node.az,
                    "pid": os.getpid(), **self.labels}  # fmt: skip
        return host.status()

    def pids(self) -> list[int]:
        host = self.host
        return [os.getpid()] if host is None else host.pids()

    def rebuild(self, term: int) -> None:
        """Replace this node's storage with an empty one, which then catches up from the
        leader by Raft. The old directory is kept beside it (`<data_dir>.replaced-<time>`).

        `term` is the highest term any other node has seen: the new storage starts as if
        it had voted for itself in that term, so the node, which forgot every vote it
        cast, can vote again only in a later term and never twice in one."""
        with self._lock:
            if self.host is not None:
                self.host.stop()
                self.host = None
            self.error = "being rebuilt"
            data_dir = Path(self.config.node(self.name).data_dir)
            if data_dir.exists():
                data_dir.rename(data_dir.with_name(f"{data_dir.name}.replaced-{time.time_ns()}"))
            data_dir.mkdir(parents=True)
            storage = LevelDBStorage(data_dir)
            try:
                seed_hard_state(storage, term, self.name)
            finally:
                storage.close()
            self._open()
        if self.host is None:
            raise UnavailableError(f"node {self.name} did not open after the rebuild: {self.error}")

    def set_clock_offset_ms(self, offset_ms: int) -> None:
        """Skew this node's clock (chaos experiments): Raft ticks stay on the host's clock,
        what the node stamps and times by (block times, transaction deadlines) moves."""
        global _clock_offset_ms
        _clock_offset_ms = int(offset_ms)

    def forget_progress(self, peer: str) -> None:
        """`peer` was rebuilt on empty storage: if this node leads, it probes it afresh."""
        host = self._host()
        host.run_on_loop(functools.partial(host.replica.forget_progress, peer))

    def shutdown(self) -> None:
        if self.host is not None:
            self.host.stop()

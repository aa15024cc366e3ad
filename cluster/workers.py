"""The node's pool of worker processes (cluster/worker.py), where user code runs.

Everything here runs on the node's asyncio loop: each worker's socket is watched with
`add_reader`, so jobs, the reads they make and their results never cross a thread (the
leader process has one thread that matters, and no GIL hand-offs on the commit path).
`submit(job)` queues a `core.requests.Job`; an idle worker takes up to `batch_jobs` queued
jobs (its share of the queue, so all idle workers run at once), runs them in order, asks the
node for reads (served here from the engine: committed state), and each result goes to
`on_result(job_id, JobResult)` as it arrives. `min_workers` start with the pool (two: the
cores of a small machine); when a job has waited `grow_after_ms` with every worker busy,
the pool grows, up to `max_workers`, so one slow transaction function (up to its 30 s)
holds up only its own worker; extra workers leave after `idle_s` without work. A node that
begins to lead calls `warm_up()`: the minimum starts at once, each worker building the
PartiQL parser (~1 s of CPU) before its first job, and the pool does not grow while one does
(so a failover's first transactions neither wait for process starts nor set off a dozen
parser builds on the same cores).

A worker that dies (its socket closes) crashed: the job it was running is reported
`crashed`, the jobs sent with it but not started go back to the head of the queue, and the
worker is replaced. A job still running at its deadline has its worker killed (SIGKILL, by
the PID this pool started) and is reported `expired`.

Invariants: every submitted job gets exactly one result, unless the pool is closed; a job
runs at most once per submit; only processes this pool started are ever signalled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack

from cluster.worker import FRAME_BYTES_MAX, send_frame
from core import codec, keys
from core.client_wire import decode_error, encode_error
from core.engine import Engine
from core.errors import StrandError
from core.requests import Job, JobResult

log = logging.getLogger("strand.workers")

OnResult = Callable[[int, JobResult], None]
_LENGTH = struct.Struct(">I")


class _Worker:
    def __init__(self, pool: WorkerPool, number: int, *, warm: bool = False) -> None:
        self.pool = pool
        self.number = number
        self.warming = warm  # building the parser before its first job (until "ready")
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cluster.worker", str(child.fileno())]
            + (["--warm"] if warm else []),
            pass_fds=(child.fileno(),),
            env={**os.environ, "PYTHONHASHSEED": "0"},
            cwd=pool.cwd,
        )
        child.close()
        self.sock = parent
        self.buffer = bytearray()
        self.jobs: collections.deque[Job] = collections.deque()  # sent, not yet answered
        self.expired = False  # this pool killed it at its running job's deadline
        self.idle_since = time.monotonic()
        self.alive = True
        send_frame(parent, ["hello", pool.engine.strand_id])
        pool.loop.add_reader(parent.fileno(), self._readable)

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def run(self, jobs: list[Job]) -> None:
        engine = self.pool.engine
        body = [
            [j.job_id, j.transaction_id, j.start_ms, j.payload, j.state, j.deadline_ms]
            for j in jobs
        ]
        self.jobs.extend(jobs)
        try:
            send_frame(self.sock, ["jobs", engine.durable_seq, engine.catalog_version, body])
        except OSError as exc:
            self._died(exc, started=False)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as exc:
            self._died(exc, started=True)
            return
        if not data:
            self._died(ConnectionError("the worker closed its socket"), started=True)
            return
        self.buffer += data
        while len(self.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length > FRAME_BYTES_MAX:
                self._died(ValueError(f"a frame of {length} bytes"), started=True)
                return
            if len(self.buffer) < _LENGTH.size + length:
                return
            body = bytes(self.buffer[_LENGTH.size : _LENGTH.size + length])
            del self.buffer[: _LENGTH.size + length]
            try:
                self._message(msgpack.unpackb(body, raw=False))
            except (OSError, ValueError, TypeError) as exc:
                self._died(exc, started=True)
                return

    def _message(self, message: list[Any]) -> None:
        if message[0] == "ready":
            self.warming = False
            return
        if message[0] == "read":
            send_frame(self.sock, serve_read(self.pool.engine, message[1], message[2]))
            return
        _, job_id, state, value, error, user_error = message
        job = self.jobs.popleft()
        if job.job_id != job_id:
            raise ValueError(f"worker answered job {job_id}, expected {job.job_id}")
        if not self.jobs:
            self.idle_since = time.monotonic()
        result = JobResult(
            state=state, value=value, user_error=user_error,
            error=None if error is None else decode_error(error),
        )  # fmt: skip
        self.pool.finished(self, job, result)

    def _died(self, exc: BaseException, *, started: bool) -> None:
        """The process died (or spoke nonsense): blame the job it was running, if it had
        started one; the others sent with it go back to the queue."""
        if not self.alive:
            return
        jobs = list(self.jobs)
        self.jobs.clear()
        expired = self.expired
        self.stop()
        pool = self.pool
        pool.forget(self)
        if pool.closed:
            return
        if not started or not jobs:
            if jobs:
                log.warning("worker %d failed before its jobs started: %r", self.number, exc)
            pool.requeue(jobs)
            return
        culprit = jobs[0]
        log.warning("worker %d died running job %d (%r)", self.number, culprit.job_id, exc)
        pool.requeue(jobs[1:])
        pool.finished(self, culprit, JobResult(crashed=True, expired=expired))

    def kill(self, *, expired: bool) -> None:
        if self.process.poll() is None:
            self.expired = expired
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(ValueError, OSError):
            self.pool.loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.pool.reap(self.process)


def serve_read(engine: Engine, method: str, args: list[Any]) -> list[Any]:
    """Answer a worker's read: ["data", durable_seq, catalog_version, result] or ["fail", e].
    The durable sequence number is taken before the read (see cluster/worker.py)."""
    durable, version = engine.durable_seq, engine.catalog_version
    storage = engine.storage
    try:
        result: Any
        if method == "doc":
            result = storage.get(keys.doc_key(args[0], args[1]))
        elif method == "scan":
            prefix = keys.doc_prefix(args[0])
            result = [
                [key[23:45].decode("ascii"), raw]
                for key, raw in storage.scan(prefix, keys.prefix_end(prefix))
            ]
        elif method == "index":
            table = next(
                t.table_id
                for t in engine.catalog.tables.values()
                if any(i.index_id == args[0] for i in t.indexes)
            )
            result = [
                [table, doc_id, storage.get(keys.doc_key(table, doc_id))]
                for doc_id in engine.index_doc_ids(args[0], args[1])
            ]
        elif method == "block":
            result = storage.get(keys.block_key(args[0]))
        elif method == "catalog":
            result = [codec.pack(t.to_document()) for t in engine.catalog.tables.values()]
        elif method == "history":
            table_id, doc_id, start, end = codec.unpack(args[0])
            history = engine.table_history(table_id, doc_id, start, end)
            result = codec.pack(history, check_names=False)
        else:
            raise StrandError(f"unknown read {method!r:.40}")
    except StrandError as exc:
        return ["fail", encode_error(exc)]
    except StopIteration:
        return ["fail", encode_error(StrandError(f"no index {args[0]!r:.40}"))]
    return ["data", durable, version, result]


class WorkerPool:
    """See the module docstring. Every method runs on `loop`'s thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        on_result: OnResult,
        *,
        min_workers: int = 2,
        max_workers: int = 16,
        grow_after_ms: float = 50.0,
        batch_jobs: int = 16,
        idle_s: float = 30.0,
        cwd: str | None = None,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self.on_result = on_result
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.grow_after_s = grow_after_ms / 1000
        self.batch_jobs = batch_jobs
        self.idle_s = idle_s
        self.cwd = cwd
        self.closed = False
        self._queue: collections.deque[Job] = collections.deque()
        self._waiting_since: float | None = None
        self._workers: list[_Worker] = []
        self._zombies: list[subprocess.Popen[bytes]] = []
        self._numbers = 0
        self.stats = {"jobs": 0, "crashes": 0, "expired": 0, "spawned": 0}
        self._timer = loop.call_later(0.02, self._check)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def submit(self, job: Job) -> None:
        if self.closed:
            return
        if not self._queue:
            self._waiting_since = time.monotonic()
        self._queue.append(job)
        self.stats["jobs"] += 1
        self._fill()
        self._dispatch()

    @property
    def warm(self) -> bool:
        """Whether the pool holds its minimum of workers (or is closed)."""
        return self.closed or len(self._workers) >= self.min_workers

    def warm_up(self) -> None:
        """Start the minimum of workers now, each building the PartiQL parser before it takes
        a job (a node that begins to lead calls it, so that work overlaps the election). The
        pool does not grow while a worker warms up: jobs queued meanwhile wait for it rather
        than start more processes that would each build the parser on the same cores."""
        while len(self._workers) < self.min_workers and not self.closed:
            self._spawn(warm=True)

    def _fill(self) -> None:
        while len(self._workers) < self.min_workers and not self.closed:
            self._spawn()

    def _spawn(self, *, warm: bool = False) -> None:
        self._numbers += 1
        self._workers.append(_Worker(self, self._numbers, warm=warm))
        self.stats["spawned"] += 1

    def _dispatch(self) -> None:
        """Give the queue to the idle workers, a share each (so they run in parallel)."""
        idle = [w for w in self._workers if not w.busy and w.alive]
        for i, worker in enumerate(idle):
            if not self._queue:
                break
            share = -(-len(self._queue) // (len(idle) - i))
            count = min(self.batch_jobs, share)
            worker.run([self._queue.popleft() for _ in range(count)])
        self._waiting_since = time.monotonic() if self._queue else None

    def finished(self, worker: _Worker, job: Job, result: JobResult) -> None:
        if result.crashed:
            self.stats["expired" if result.expired else "crashes"] += 1
        self.on_result(job.job_id, result)
        if not worker.busy and self._queue:
            self._dispatch()

    def requeue(self, jobs: list[Job]) -> None:
        if jobs:
            self._queue.extendleft(reversed(jobs))
            self._waiting_since = self._waiting_since or time.monotonic()
        self._fill()
        self._dispatch()

    def forget(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    def reap(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            self._zombies.append(process)

    def _check(self) -> None:
        """Every 20 ms: kill a worker whose job ran past its deadline; grow the pool while
        jobs wait; let extra idle workers go; collect dead processes."""
        if self.closed:
            return
        now_ms = time.time_ns() // 1_000_000
        for worker in list(self._workers):
            if worker.jobs and now_ms > worker.jobs[0].deadline_ms:
                worker.kill(expired=True)
        since = self._waiting_since
        if since is not None and time.monotonic() - since > self.grow_after_s:
            if (
                all(w.busy for w in self._workers)
                and not any(w.warming for w in self._workers)
                and len(self._workers) < self.max_workers
            ):
                self._spawn()
            self._dispatch()
        spare = len(self._workers) - self.min_workers
        for worker in list(self._workers):
            if spare > 0 and not worker.busy and time.monotonic() - worker.idle_since > self.idle_s:
                worker.stop()
                self.forget(worker)
                spare -= 1
        self._zombies = [p for p in self._zombies if p.poll() is None]
        self._timer = self.loop.call_later(0.02, self._check)

    def close(self) -> None:
        self.closed = True
        self._timer.cancel()
        self._queue.clear()
        for worker in list(self._workers):
            worker.stop()
        self._workers.clear()
        for process in self._zombies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

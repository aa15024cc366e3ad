"""The node's pool of worker processes (cluster/worker.py), where user code runs.

`WorkerPool.submit(job)` queues a `core.requests.Job`; each worker has a thread here that
takes queued jobs (up to `batch_jobs` at a time), sends them to its process, serves the
reads the jobs make (straight from the node's engine: committed state, safe from any thread)
and hands each result to `on_result(job_id, JobResult)` (which the node forwards to its
event loop). The pool grows while jobs wait and every worker is busy, up to `max_workers`,
so one slow transaction function (up to its 30 s) holds up only its own worker; workers
above `min_workers` leave after `idle_s` without work.

A worker that dies (its socket closes) crashed: the job it was running is reported
`crashed`, the jobs sent with it but not started go back to the head of the queue, and the
worker is replaced. A job still running at its deadline has its worker killed (SIGKILL, by
the PID this pool started) and is reported `expired`.

Invariants: every submitted job gets exactly one result, unless the pool is closed; a job
runs at most once per submit; only processes this pool started are ever signalled.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from cluster.worker import recv_frame, send_frame
from core import codec, keys
from core.client_wire import encode_error
from core.engine import Engine
from core.errors import StrandError
from core.requests import Job, JobResult

log = logging.getLogger("strand.workers")

OnResult = Callable[[int, JobResult], None]


class _Worker:
    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.running: Job | None = None  # the job being run now
        self.expired = False  # this pool killed it at `running`'s deadline
        self.idle_since = time.monotonic()
        self.thread = threading.Thread(
            target=self._serve, name=f"strand-worker-{number}", daemon=True
        )

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cluster.worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
            env=env,
            cwd=self.pool.cwd,
        )
        child.close()
        self.sock = parent
        send_frame(parent, ["hello", self.pool.engine.strand_id])

    def _serve(self) -> None:
        pool = self.pool
        while not pool.closed:
            jobs = pool.take(self)
            if jobs is None:
                break
            try:
                if self.process is None or self.process.poll() is not None:
                    self._spawn()
                self._run(jobs)
            except (OSError, ConnectionError, ValueError) as exc:
                self._died(jobs, exc)
            except BaseException:  # a bug here must not strand the jobs: fail them loudly
                log.exception("worker %d", self.number)
                self._died(jobs, RuntimeError("the worker's thread failed"))
        self.stop()

    def _run(self, jobs: list[Job]) -> None:
        assert self.sock is not None
        engine = self.pool.engine
        body = [[j.job_id, j.transaction_id, j.start_ms, j.payload, j.state] for j in jobs]
        send_frame(self.sock, ["jobs", engine.durable_seq, engine.catalog_version, body])
        pending = collections.deque(jobs)
        self.running = pending[0]  # from here on, a death is the running job's doing
        while pending:
            message = recv_frame(self.sock)
            if message[0] == "read":
                send_frame(self.sock, serve_read(engine, message[1], message[2]))
                continue
            _, job_id, state, value, error, user_error = message
            job = pending.popleft()
            if job.job_id != job_id:
                raise ValueError(f"worker answered job {job_id}, expected {job.job_id}")
            self.running = pending[0] if pending else None
            self.pool.result(job, _result(state, value, error, user_error))
        self.idle_since = time.monotonic()

    def _died(self, jobs: list[Job], exc: BaseException) -> None:
        """The process died (or spoke nonsense): blame the job it was running."""
        culprit, expired = self.running, self.expired
        self.running, self.expired = None, False
        self.stop()
        if culprit is None:  # it died before the jobs reached it: none of them is to blame
            if not self.pool.closed:
                log.warning("worker %d failed before its jobs started: %r", self.number, exc)
                self.pool.requeue(jobs)
            return
        log.warning("worker %d died running job %d (%r)", self.number, culprit.job_id, exc)
        position = next(i for i, j in enumerate(jobs) if j is culprit)
        self.pool.requeue(jobs[position + 1 :])
        self.pool.result(culprit, JobResult(crashed=True, expired=expired))

    def kill(self, *, expired: bool) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            self.expired = expired
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)


def _result(state: Any, value: Any, error: Any, user_error: Any) -> JobResult:
    from core.client_wire import decode_error

    return JobResult(
        state=state,
        value=value,
        error=None if error is None else decode_error(error),
        user_error=user_error,
    )


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
            result = codec.pack(
                engine.table_history(table_id, doc_id, start, end), check_names=False
            )
        else:
            raise StrandError(f"unknown read {method!r:.40}")
    except StrandError as exc:
        return ["fail", encode_error(exc)]
    except StopIteration:
        return ["fail", encode_error(StrandError(f"no index {args[0]!r:.40}"))]
    return ["data", durable, version, result]


class WorkerPool:
    """See the module docstring. `submit`, `close`: any thread; `on_result`: pool threads."""

    def __init__(
        self,
        engine: Engine,
        on_result: OnResult,
        *,
        min_workers: int = 1,
        max_workers: int = 16,
        batch_jobs: int = 16,
        idle_s: float = 30.0,
        cwd: str | None = None,
    ) -> None:
        self.engine = engine
        self.on_result = on_result
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.batch_jobs = batch_jobs
        self.idle_s = idle_s
        self.cwd = cwd
        self.closed = False
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._workers: list[_Worker] = []
        self._idle = 0
        self._numbers = 0
        self._deadlines = threading.Thread(target=self._watch, name="strand-deadlines", daemon=True)
        self._deadlines.start()
        self.stats = {"jobs": 0, "crashes": 0, "expired": 0, "spawned": 0}

    def submit(self, job: Job) -> None:
        with self._cond:
            if self.closed:
                return
            self._queue.append(job)
            self.stats["jobs"] += 1
            if self._idle == 0 and len(self._workers) < self.max_workers:
                self._add_worker()
            self._cond.notify()

    def _add_worker(self) -> None:
        self._numbers += 1
        worker = _Worker(self, self._numbers)
        self._workers.append(worker)
        self.stats["spawned"] += 1
        worker.thread.start()

    def take(self, worker: _Worker) -> list[Job] | None:
        """The next jobs for `worker` (None: it should stop)."""
        with self._cond:
            self._idle += 1
            try:
                while not self._queue:
                    if self.closed:
                        return None
                    spare = len(self._workers) > self.min_workers
                    idle_for = time.monotonic() - worker.idle_since
                    if spare and idle_for > self.idle_s:
                        self._workers.remove(worker)
                        return None
                    self._cond.wait(min(self.idle_s, 1.0))
                # share the queue among the idle workers: several run in parallel
                share = -(-len(self._queue) // max(1, self._idle))
                count = min(self.batch_jobs, share)
                return [self._queue.popleft() for _ in range(count)]
            finally:
                self._idle -= 1

    def requeue(self, jobs: list[Job]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(jobs))
            self._cond.notify_all()

    def result(self, job: Job, result: JobResult) -> None:
        if result.crashed:
            self.stats["expired" if result.expired else "crashes"] += 1
        self.on_result(job.job_id, result)

    def _watch(self) -> None:
        """Kill a worker whose job ran past its deadline."""
        while not self.closed:
            time.sleep(0.05)
            now_ms = time.time_ns() // 1_000_000
            with self._cond:
                late = [w for w in self._workers if w.running and now_ms > w.running.deadline_ms]
            for worker in late:
                worker.kill(expired=True)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._queue.clear()
            workers = list(self._workers)
            self._cond.notify_all()
        for worker in workers:
            worker.kill(expired=False)
        for worker in workers:
            worker.thread.join(5)
            worker.stop()

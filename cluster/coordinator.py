"""CommitCoordinator: the Ray actor that runs transactions, orders them and forms the blocks.

Theory of operation. The coordinator is an embedded `core.Ledger` over its own LevelDB (a
copy of the journal, never ahead of what the cluster committed) whose `write_batch` hook
replicates each group commit before storing it: the batch's blocks become ONE Raft entry
proposed to the leader StorageNode (`propose`, one Ray call per batch, answered when the
entry is applied on the leader, i.e. durable on a majority). So everything the embedded
ledger does for OCC (serializable validation against the head, group commit, pipelining of
the next batch's validation with this batch's replication) holds on the cluster unchanged.

Clients send transaction functions (Ray pickles them) with their own transaction ids, many
per call. A function runs here, next to the state it reads; its return value goes back.

When a proposal's outcome is unknown (leader lost, call timed out, node died) or the leader
says the batch no longer chains onto its log ("stale"), the coordinator resolves it from the
committed journal: it fences off older proposals on every node (a token newer than any it
used), asks the leader for a barrier (everything in the leader's log applied), copies the
blocks it lacks, and then the batch either is in the journal (success) or is not and never
will be (StaleBatchError: the Ledger re-runs those transactions). After a restart (Ray
max_restarts) it does the same before serving.

Invariants: a transaction is acknowledged only after its block is on a majority; a
transaction id commits at most once (an id already in the journal raises
TransactionCommittedError; concurrent requests with one id share one execution); the
coordinator's journal is always a prefix of the cluster's committed journal.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from cluster.common import NAMESPACE, actor_name, coordinator_dir, genesis_of, ship
from cluster.config import ClusterConfig
from cluster.node import NOT_LEADER, OK, STALE
from core import codec
from core.engine import Engine, PreparedBatch
from core.errors import StaleBatchError, TransactionCommittedError, UnavailableError
from core.ledger import Ledger
from core.replica import encode_batch
from core.storage import LevelDBStorage
from core.transaction import Transaction

COMMIT_TIMEOUT_S = 20.0
PROPOSE_TIMEOUT_S = 3.0
Outcome = tuple[str, Any]  # ("ok", return value) or ("error", exception)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=256)  # type: ignore[call-overload]
class CommitCoordinator:
    """See the module docstring."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        os.makedirs(coordinator_dir(config), exist_ok=True)
        # a rebuildable copy of committed blocks: no fsync (the majority has them durably)
        self.storage = LevelDBStorage(coordinator_dir(config), sync=False)
        self.ledger = Ledger(
            self.storage,
            genesis=genesis_of(config),
            write_batch=self._write_batch,
            max_batch_transactions=config.max_batch_transactions,
        )
        self.engine = self.ledger.engine
        self.leader: str | None = None
        self._fence = _now_ms()
        self._sync_lock = threading.Lock()
        self._synced = False
        self._inflight: dict[str, Future[Outcome]] = {}
        self._inflight_lock = threading.Lock()
        self.stats = {"batches": 0, "resolves": 0, "stale": 0}

    # ----------------------------------------------------------------- client API
    def execute(
        self, requests: list[tuple[str, Callable[[Transaction], Any], int]]
    ) -> list[Outcome]:
        """Run and commit each (transaction id, function, retry limit) of one call, grouped."""
        self._ensure_synced()
        mine: list[tuple[int, str, Callable[[Transaction], Any], int]] = []
        futures: list[Future[Outcome] | None] = []
        with self._inflight_lock:
            for i, (tx_id, fn, retry_limit) in enumerate(requests):
                running = self._inflight.get(tx_id)
                if running is None:  # a resent id still running elsewhere waits for it
                    self._inflight[tx_id] = Future()
                    mine.append((i, tx_id, fn, retry_limit))
                futures.append(running)
        work = [(tx_id, self._guarded(tx_id, fn), limit) for _, tx_id, fn, limit in mine]
        outcomes: list[Outcome | None] = [None] * len(requests)
        for (i, tx_id, _, _), (ok, value) in zip(mine, self.ledger.execute_many(work), strict=True):
            outcomes[i] = ("ok", ship(value)) if ok else ("error", value)
            with self._inflight_lock:
                future = self._inflight.pop(tx_id)
            future.set_result(outcomes[i])  # type: ignore[arg-type]
        for i, running in enumerate(futures):
            if running is not None:
                outcomes[i] = running.result()
        return [o if o is not None else ("error", UnavailableError("lost")) for o in outcomes]

    def status(self) -> dict[str, Any]:
        return {
            "sequence_no": self.engine.durable_seq,
            "leader": self.leader,
            "fence": self._fence,
            **self.stats,
        }

    def ping(self) -> str:
        return "coordinator"

    def _guarded(
        self, tx_id: str, fn: Callable[[Transaction], Any]
    ) -> Callable[[Transaction], Any]:
        engine = self.engine

        def attempt(tx: Transaction) -> Any:
            seq = engine.committed_seq(tx_id)
            if seq is not None:
                raise TransactionCommittedError(
                    f"transaction {tx_id} is already in the journal (block {seq})", tx_id, seq
                )
            return fn(tx)

        return attempt

    # ----------------------------------------------------------------- replication
    def _node(self, name: str) -> Any:
        return ray.get_actor(actor_name(self.config.cluster_name, name), namespace=NAMESPACE)

    def _find_leader(self) -> str | None:
        refs = {}
        for name in self.config.node_names:
            try:
                refs[name] = self._node(name).status.remote()
            except ValueError:  # not registered (being restarted)
                continue
        best: tuple[int, str] | None = None
        for name, ref in refs.items():
            try:
                status = ray.get(ref, timeout=2)
            except (RayError, GetTimeoutError):
                continue
            leads = status["role"] == "leader" and status["ready"]
            if leads and (best is None or status["term"] > best[0]):
                best = (status["term"], name)
        self.leader = None if best is None else best[1]
        return self.leader

    def _leader_or_wait(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            leader = self.leader or self._find_leader()
            if leader is not None:
                return leader
            time.sleep(self.config.tick_ms / 1000 * 5)
        raise UnavailableError("no leader could be found")

    def _write_batch(self, engine: Engine, batch: PreparedBatch) -> None:
        """Ledger hook: replicate, then store locally; or resolve from the journal."""
        if batch.generation != engine.generation:
            raise StaleBatchError("the batch was prepared before a reset")
        data = encode_batch(batch.blocks)
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        maybe_appended = False
        while True:
            try:
                leader = self._leader_or_wait(deadline)
            except UnavailableError:
                if maybe_appended:
                    raise UnavailableError("the batch's outcome is unknown: no leader") from None
                raise
            try:
                ref = self._node(leader).propose.remote(data, self._fence, PROPOSE_TIMEOUT_S)
                status, detail = ray.get(ref, timeout=PROPOSE_TIMEOUT_S + 2)
            except (RayError, GetTimeoutError, ValueError):
                self.leader = None
                maybe_appended = True
                break
            if status == OK:
                engine.write(batch)
                engine.publish(batch)
                self.stats["batches"] += 1
                return
            if status == NOT_LEADER:
                self.leader = detail if detail in self.config.node_names else None
                if self.leader is None:
                    time.sleep(self.config.tick_ms / 1000)
                continue
            maybe_appended = True  # stale, or appended but not committed in time
            if status == STALE:
                self.stats["stale"] += 1
            break
        self._resolve(engine, batch, deadline)

    def _resolve(self, engine: Engine, batch: PreparedBatch, deadline: float) -> None:
        """Learn from the committed journal whether `batch` is in it; StaleBatchError if not."""
        self.stats["resolves"] += 1
        engine.request_reset()
        with self._sync_lock:
            self._catch_up(deadline)
        if engine.durable_seq >= batch.seq:
            stored = engine.read_block(batch.first_seq)
            if stored["blockHash"] == batch.blocks[0]["blockHash"]:
                return  # it committed: the catch-up stored it
        raise StaleBatchError("the batch is not in the journal; its transactions are retried")

    def _catch_up(self, deadline: float) -> None:
        """Fence older proposals, wait for the leader's log to commit, copy missing blocks."""
        engine = self.engine
        while True:
            leader = self._leader_or_wait(deadline)
            self._fence = max(self._fence + 1, _now_ms())
            for name in self.config.node_names:  # fence every node we can reach
                if name != leader:
                    with contextlib.suppress(ValueError):
                        self._node(name).barrier.remote(self._fence, 0.0)
            try:
                status, detail = ray.get(
                    self._node(leader).barrier.remote(self._fence, PROPOSE_TIMEOUT_S),
                    timeout=PROPOSE_TIMEOUT_S + 2,
                )
            except (RayError, GetTimeoutError, ValueError):
                status, detail = NOT_LEADER, None
            if status != OK:
                self.leader = detail if detail in self.config.node_names else None
                if time.monotonic() > deadline:
                    raise UnavailableError("the journal could not be read from a leader")
                time.sleep(self.config.tick_ms / 1000)
                continue
            node = self._node(leader)
            while True:
                raws = ray.get(node.read_blocks.remote(engine.durable_seq + 1, 512), timeout=30)
                if not raws:
                    return
                caught = engine.apply_blocks([codec.decode(raw) for raw in raws])
                engine.write(caught)
                engine.publish(caught)

    def _ensure_synced(self) -> None:
        if self._synced:
            return
        with self._sync_lock:
            if not self._synced:
                self.engine.request_reset()
                self._catch_up(time.monotonic() + COMMIT_TIMEOUT_S)
                self._synced = True

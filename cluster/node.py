"""StorageNode: the Ray actor that hosts one replica of the ledger in one availability zone.

The actor is a thin shell around `core.replica.Replica` (all protocol logic is there). It
owns one LevelDB directory and runs an asyncio loop on a thread of its own, started in
`__init__`, so a node that Ray restarts is back in the cluster without anyone calling it:
- a timer ticks the replica every `tick_ms`;
- the TCP `Transport` delivers peers' messages (HMAC-authenticated, core.wire-encoded);
- after any input, ONE `process_ready` runs per loop iteration (so messages that arrive
  together share one synced write), then its messages go out and waiters are woken.
Ray calls (from the coordinator, the digest actor and clients) run on Ray's threads and
hand work to the loop with `run_coroutine_threadsafe`; reads of committed state go straight
to the engine (LevelDB is safe for concurrent readers).

Invariants: the replica is touched only on the loop's thread; `propose` answers "ok" only
once its entry is applied on this node as the leader's (same index AND term), i.e. durable
on a majority; a proposal carrying a fence token older than one this node has seen is
refused, so a coordinator that gave up on an earlier proposal can rely on it never landing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from cluster.common import genesis_of, raft_config, ship
from cluster.config import ClusterConfig
from cluster.transport import Transport
from core import keys, queries, wire
from core.errors import NotLeaderError, StaleBatchError, StrandError
from core.raft import Role
from core.replica import Replica
from core.storage import LevelDBStorage

log = logging.getLogger("strand.node")

# Outcomes of `propose`, as plain tuples (no exception pickling across Ray).
OK, NOT_LEADER, STALE, UNAVAILABLE = "ok", "not-leader", "stale", "unavailable"


class NodeHost:
    """The replica, its transport and its timers on an asyncio loop (runs in any process)."""

    def __init__(self, config: ClusterConfig, name: str, *, seed: int | None = None) -> None:
        self.config = config
        self.name = name
        node = config.node(name)
        os.makedirs(node.data_dir, exist_ok=True)
        self.storage = LevelDBStorage(node.data_dir)
        rng = random.Random(seed if seed is not None else time.time_ns())
        self.replica = Replica(
            name,
            config.node_names,
            self.storage,
            config=raft_config(config),
            rng=rng,
            genesis=genesis_of(config),
            now_ms=time.time_ns() // 1_000_000,
        )
        self.loop = asyncio.new_event_loop()
        self.transport = Transport(
            name,
            (node.host, node.port),
            config.peer_addresses(name),
            config.secret,
            self._on_message,
        )
        self._proposals: dict[int, tuple[int, asyncio.Future[bool]]] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_ids = 0
        self._scheduled = False
        self._fence = 0
        self.stats: dict[str, float] = {"proposals": 0, "propose_ms": 0.0, "ready_ms": 0.0}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"strand-node-{name}", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)

    # ----------------------------------------------------------------- the loop
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.transport.start())
        self.loop.call_soon(self._tick)
        self._started.set()
        self.loop.run_forever()

    def _tick(self) -> None:
        if self._stopped.is_set():
            return
        self.replica.tick()
        self._process()
        self.loop.call_later(self.config.tick_ms / 1000, self._tick)

    def _on_message(self, peer: str, payload: bytes) -> None:
        try:
            message = wire.decode(payload)
        except wire.WireError as exc:
            log.warning("node %s: dropped a malformed message from %s: %s", self.name, peer, exc)
            return
        if message.sender != peer:
            log.warning("node %s: %s sent a message signed %s", self.name, peer, message.sender)
            return
        self.replica.step(message)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        replica = self.replica
        while replica.has_ready():
            started = time.perf_counter()
            out = replica.process_ready()
            self.stats["ready_ms"] += (time.perf_counter() - started) * 1000
            if out is None:
                break
            for message in out.messages:
                self.transport.send(message.to, wire.encode(message))
            for index, term in out.applied:
                waiting = self._proposals.pop(index, None)
                if waiting is not None and not waiting[1].done():
                    waiting[1].set_result(waiting[0] == term)
            for state in out.read_states:
                future = self._reads.pop(state.request_id, None)
                if future is not None and not future.done():
                    future.set_result(state.index)
        if replica.node.role is not Role.LEADER and self._reads:
            for future in self._reads.values():
                if not future.done():
                    future.set_exception(NotLeaderError("lost leadership", replica.node.leader))
            self._reads.clear()

    def call(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Run a coroutine-returning or plain function on the loop and wait for its result."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)

    # ----------------------------------------------------------------- operations (loop)
    async def propose(self, data: bytes, fence: int, timeout_s: float) -> tuple[str, Any]:
        replica = self.replica
        if fence < self._fence:
            return (STALE, f"fence {fence} is older than {self._fence}")
        self._fence = fence
        if not replica.ready_to_serve:
            if replica.node.role is Role.LEADER:
                return (UNAVAILABLE, "the new leader has not committed its first entry yet")
            return (NOT_LEADER, replica.node.leader)
        try:
            index = replica.propose(data)
        except StaleBatchError as exc:
            return (STALE, str(exc))
        except NotLeaderError as exc:
            return (NOT_LEADER, exc.leader)
        future: asyncio.Future[bool] = self.loop.create_future()
        self._proposals[index] = (replica.node.term, future)
        self._schedule()
        started = self.loop.time()
        try:
            committed = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return (UNAVAILABLE, f"entry {index} not committed within {timeout_s} s")
        self.stats["proposals"] += 1
        self.stats["propose_ms"] += (self.loop.time() - started) * 1000
        return (OK, index) if committed else (STALE, f"entry {index} was replaced")

    async def barrier(self, fence: int, timeout_s: float) -> tuple[str, Any]:
        """As the leader: wait until every entry now in the log is applied; fence older tokens."""
        replica = self.replica
        self._fence = max(self._fence, fence)
        if not replica.ready_to_serve:
            return (NOT_LEADER, replica.node.leader)
        target = replica.node.last_index()
        deadline = self.loop.time() + timeout_s
        while replica.applied < target:
            if self.loop.time() > deadline or replica.node.role is not Role.LEADER:
                return (UNAVAILABLE, "the log did not commit in time")
            await asyncio.sleep(self.config.tick_ms / 1000)
        return (OK, replica.engine.durable_seq)

    async def read_barrier(self, timeout_s: float) -> int:
        """ReadIndex: the sequence number a linearizable read may be served at."""
        replica = self.replica
        if not replica.ready_to_serve:
            raise NotLeaderError(f"node {self.name} does not lead", replica.node.leader)
        self._read_ids += 1
        future: asyncio.Future[int] = self.loop.create_future()
        if not replica.read_index(self._read_ids):
            raise NotLeaderError(f"node {self.name} does not lead", replica.node.leader)
        self._reads[self._read_ids] = future
        self._schedule()
        await asyncio.wait_for(future, timeout_s)
        return replica.engine.durable_seq

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()

        async def close() -> None:
            await self.transport.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.storage.close()


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=64)  # type: ignore[call-overload]
class StorageNode:
    """One AZ's replica (see the module docstring). Methods return plain data."""

    def __init__(self, config: ClusterConfig, name: str) -> None:
        logging.basicConfig(level=logging.WARNING)
        self.host = NodeHost(config, name)
        self.engine = self.host.replica.engine

    def ping(self) -> str:
        return self.host.name

    def propose(self, data: bytes, fence: int, timeout_s: float = 5.0) -> tuple[str, Any]:
        host = self.host
        return host.call(lambda: host.propose(data, fence, timeout_s), timeout_s + 1)  # type: ignore[no-any-return]

    def barrier(self, fence: int, timeout_s: float = 5.0) -> tuple[str, Any]:
        host = self.host
        return host.call(lambda: host.barrier(fence, timeout_s), timeout_s + 1)  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        host = self.host
        status: dict[str, Any] = host.call(host.replica.status, 5)
        status["az"] = host.config.node(host.name).az
        status["transport"] = host.transport.stats.as_dict()
        status["stats"] = dict(host.stats)
        return status

    def read_blocks(self, first_seq: int, max_count: int = 512) -> list[bytes]:
        """Committed blocks from `first_seq` on, as the journal stores them (framed msgpack)."""
        last = min(self.engine.durable_seq, first_seq + max_count - 1)
        storage = self.engine.storage
        out = []
        for seq in range(first_seq, last + 1):
            raw = storage.get(keys.block_key(seq))
            if raw is None:
                break
            out.append(raw)
        return out

    def block_hashes(self, first_seq: int, max_count: int = 65_536) -> list[bytes]:
        last = min(self.engine.durable_seq, first_seq + max_count - 1)
        return [self.engine.get_node(0, seq) for seq in range(first_seq, last + 1)]

    def query(self, method: str, args: tuple[Any, ...], linearizable: bool = True) -> Any:
        """A read of committed state: through ReadIndex on the leader, or stale (any node).

        Returns (result, sequence_no it reflects); errors come back as StrandError values.
        """
        host = self.host
        try:
            if linearizable:
                host.call(lambda: host.read_barrier(5.0), 6)
            seq = self.engine.durable_seq
            return ("ok", ship(_QUERIES[method](self.engine, *args)), seq)
        except StrandError as exc:
            return ("error", exc, None)
        except TimeoutError:
            return ("error", NotLeaderError("the read did not complete", None), None)

    def shutdown(self) -> None:
        self.host.stop()


def _list_tables(engine: Any) -> list[str]:
    return sorted(engine.catalog.active_by_name)


def _transaction_ids(engine: Any) -> list[str]:
    """The transaction id of every block after genesis, in journal order."""
    return [engine.read_block(seq)["transactionId"] for seq in range(1, engine.durable_seq + 1)]


_QUERIES: dict[str, Callable[..., Any]] = {
    "transaction_ids": _transaction_ids,
    "committed_seq": lambda engine, tx_id: engine.committed_seq(tx_id),
    "history": queries.history,
    "get_digest": queries.get_digest,
    "get_block": queries.get_block,
    "get_revision": queries.get_revision,
    "get_consistency_proof": queries.get_consistency_proof,
    "verify_journal": queries.verify_journal,
    "list_tables": _list_tables,
}

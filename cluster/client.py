"""LedgerCluster: the client handle of a Strand cluster, with the embedded Ledger's API.

    from cluster import LedgerCluster
    cluster = LedgerCluster.start("configs/local-3az.toml")  # starts local Ray if none runs
    cluster.execute_lambda(lambda tx: tx.insert("Car", {"VIN": "1"}))
    cluster.get_digest(); cluster.get_revision(address, doc_id); cluster.history("Car")

Swapping `Ledger.open(path)` for `LedgerCluster.start(config)` is the one-line switch.

Transactions: `execute_lambda(fn)` gives the call a transaction id, then hands (id, fn) to
the CommitCoordinator, where fn runs next to the state it reads (Ray pickles it, closures
included; like on the embedded ledger it must not have side effects outside the
transaction, and its return value must pickle). Concurrent callers share Ray calls: while
`max_inflight_calls` calls (default 1) are out, new transactions queue, and the next call
takes the whole queue; the coordinator commits one call's transactions as one group. If
the coordinator dies, the same ids are sent again once Ray has restarted it: the
coordinator finds an id already in the journal (TransactionCommittedError) instead of
applying it twice.

Reads: the digest actor serves digests, blocks and revisions with proofs; other reads go
to the leader through ReadIndex (linearizable), or, with `consistency="stale"`, to any
node, returning the sequence number they reflect.

For experiments: `leader()`, `nodes()`, `node_digests()`, `kill(name)`, `restart(name)`,
`shutdown()`. Invariants: an acknowledged transaction is durable on a majority; a call
this handle retries is one that cannot commit twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from cluster.common import (
    COORDINATOR,
    DIGEST,
    HELPER_RESOURCE,
    NAMESPACE,
    NODE_RESOURCE,
    actor_name,
    unship,
)
from cluster.config import ClusterConfig, load_config
from cluster.coordinator import CommitCoordinator
from cluster.digest import DigestActor
from cluster.node import StorageNode
from core.errors import LedgerClosedError, NotLeaderError, UnavailableError
from core.ids import IdSource
from core.ledger import DEFAULT_RETRY_LIMIT, TransactionResult, run_reporting
from core.transaction import Transaction

T = TypeVar("T")
CALL_TIMEOUT_S = 60.0


class _Request:
    __slots__ = ("tx_id", "fn", "retry_limit", "outcome", "done")

    def __init__(self, tx_id: str, fn: Callable[[Transaction], Any], retry_limit: int) -> None:
        self.tx_id = tx_id
        self.fn = fn
        self.retry_limit = retry_limit
        self.outcome: tuple[str, Any] | None = None
        self.done = threading.Event()


class LedgerCluster:
    """A handle on a running cluster (see the module docstring). Safe to share between threads."""

    def __init__(self, config: ClusterConfig, *, owns_ray: bool, max_inflight_calls: int = 1):
        self.config = config
        self._owns_ray = owns_ray
        self._ids = IdSource(os.urandom)
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._inflight = 0
        self._max_inflight = max_inflight_calls
        self._closed = False
        self._handles: dict[str, Any] = {}  # actors this handle created (they live while held)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def start(
        cls,
        config: str | os.PathLike[str] | ClusterConfig,
        *,
        data_root: str | os.PathLike[str] | None = None,
    ) -> LedgerCluster:
        """Start the cluster's actors (and a local Ray with one resource per AZ, if none runs).

        `data_root` puts every node's LevelDB (and the coordinator's) under that directory
        instead of the configured ones.
        """
        cfg = config if isinstance(config, ClusterConfig) else load_config(config)
        if data_root is not None:
            cfg = _with_data_root(cfg, Path(data_root))
        owns_ray = False
        if not ray.is_initialized():
            resources = {node.az: 1.0 for node in cfg.nodes}
            ray.init(
                namespace=NAMESPACE,
                resources=resources,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=os.environ.get("STRAND_RAY_LOGS") == "1",
            )
            owns_ray = True
        handle = cls(cfg, owns_ray=owns_ray)
        for node in cfg.nodes:
            handle._spawn_node(node.name)
        handle._spawn_helpers()
        handle.wait_ready()
        return handle

    @classmethod
    def connect(
        cls, config: str | os.PathLike[str] | ClusterConfig, address: str = "auto"
    ) -> LedgerCluster:
        """Attach to a cluster started elsewhere (same config, same Ray cluster)."""
        cfg = config if isinstance(config, ClusterConfig) else load_config(config)
        owns_ray = False
        if not ray.is_initialized():
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
            owns_ray = True
        handle = cls(cfg, owns_ray=owns_ray)
        handle.wait_ready()
        return handle

    def _spawn_node(self, name: str) -> Any:
        az = self.config.node(name).az
        handle = StorageNode.options(  # type: ignore[attr-defined]
            name=self._name(name), namespace=NAMESPACE, resources={az: NODE_RESOURCE}
        ).remote(self.config, name)
        self._handles[name] = handle
        return handle

    def _spawn_helpers(self) -> None:
        az = self.config.nodes[0].az
        self._handles[COORDINATOR] = CommitCoordinator.options(  # type: ignore[attr-defined]
            name=self._name(COORDINATOR), namespace=NAMESPACE, resources={az: HELPER_RESOURCE}
        ).remote(self.config)
        self._handles[DIGEST] = DigestActor.options(  # type: ignore[attr-defined]
            name=self._name(DIGEST), namespace=NAMESPACE, resources={az: HELPER_RESOURCE}
        ).remote(self.config)

    def _name(self, role: str) -> str:
        return actor_name(self.config.cluster_name, role)

    def _actor(self, role: str) -> Any:
        return ray.get_actor(self._name(role), namespace=NAMESPACE)

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """Wait until a leader serves and the helpers answer; returns the leader's name."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get([self._actor(r).ping.remote() for r in (COORDINATOR, DIGEST)], timeout=5)
                leader = self.leader()
                if leader is not None:
                    return leader
            except (RayError, GetTimeoutError, ValueError):
                pass
            time.sleep(0.05)
        raise UnavailableError(f"no leader within {timeout_s} s")

    def shutdown(self) -> None:
        """Stop every actor of the cluster (and Ray, if this handle started it)."""
        with self._cond:
            self._closed = True
        for role in (COORDINATOR, DIGEST, *self.config.node_names):
            try:
                actor = self._actor(role)
            except ValueError:
                continue
            if role in self.config.node_names:
                with contextlib.suppress(RayError, GetTimeoutError):
                    ray.get(actor.shutdown.remote(), timeout=10)
            ray.kill(actor, no_restart=True)
        self._handles.clear()
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> LedgerCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ----------------------------------------------------------------- transactions
    def execute_lambda(
        self, fn: Callable[[Transaction], T], retry_limit: int = DEFAULT_RETRY_LIMIT
    ) -> T:
        """Run `fn(tx)` in a transaction on the coordinator and commit it on a majority.

        The coordinator retries the whole function up to `retry_limit` times on OCC conflict.
        """
        request = _Request(self._ids.new_id(), fn, retry_limit)
        with self._cond:
            if self._closed:
                raise LedgerClosedError("the cluster handle is shut down")
            self._queue.append(request)
            while not request.done.is_set() and request in self._queue:
                if self._inflight < self._max_inflight:
                    self._send_queued()
                else:
                    self._cond.wait()
        request.done.wait()
        assert request.outcome is not None
        kind, value = request.outcome
        if kind == "ok":
            return unship(value)  # type: ignore[no-any-return]
        raise value

    def execute_transaction(
        self, fn: Callable[[Transaction], T], retry_limit: int = DEFAULT_RETRY_LIMIT
    ) -> TransactionResult[T]:
        """`execute_lambda`, returning also the transaction id, its block address (None
        when it wrote nothing) and the commit digest, as `Ledger.execute_transaction` does."""
        value, tx_id, digest = self.execute_lambda(
            functools.partial(run_reporting, fn), retry_limit
        )
        seq, _ = self.query("committed_seq", tx_id)
        strand = self.get_digest()["digestTipAddress"]["strandId"]
        address = None if seq is None else {"strandId": strand, "sequenceNo": seq}
        return TransactionResult(value, tx_id, address, digest)

    def _send_queued(self) -> None:
        """Send the whole queue in one call. Called and returns with `_cond` held."""
        batch, self._queue = self._queue, []
        self._inflight += 1
        self._cond.release()
        try:
            outcomes = self._call_coordinator([(r.tx_id, r.fn, r.retry_limit) for r in batch])
        except BaseException as exc:
            outcomes = [("error", exc)] * len(batch)
        finally:
            self._cond.acquire()
            self._inflight -= 1
            self._cond.notify_all()
        for request, outcome in zip(batch, outcomes, strict=True):
            request.outcome = outcome
            request.done.set()

    def _call_coordinator(self, requests: list[tuple[str, Any, int]]) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                ref = self._actor(COORDINATOR).execute.remote(requests)
                return ray.get(ref, timeout=CALL_TIMEOUT_S)  # type: ignore[no-any-return]
            except (RayActorError, ValueError):
                # the coordinator died (Ray restarts it): resend the same ids, which the
                # restarted coordinator recognises if they committed
                if time.monotonic() > deadline:
                    raise UnavailableError("the commit coordinator did not come back") from None
                time.sleep(0.1)

    # ----------------------------------------------------------------- journal reads
    def _digest_call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                return unship(
                    ray.get(getattr(self._actor(DIGEST), method).remote(*args), timeout=30)
                )
            except (RayActorError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def get_digest(self, digest_tip_address: Any = None) -> dict[str, Any]:
        return self._digest_call("get_digest", digest_tip_address)  # type: ignore[no-any-return]

    def get_block(self, block_address: Any, digest_tip_address: Any = None) -> dict[str, Any]:
        return self._digest_call("get_block", block_address, digest_tip_address)  # type: ignore[no-any-return]

    def get_revision(
        self, block_address: Any, document_id: str, digest_tip_address: Any = None
    ) -> dict[str, Any]:
        result = self._digest_call("get_revision", block_address, document_id, digest_tip_address)
        return result  # type: ignore[no-any-return]

    def get_consistency_proof(
        self, old_tip_address: Any, new_tip_address: Any = None
    ) -> dict[str, Any]:
        result = self._digest_call("get_consistency_proof", old_tip_address, new_tip_address)
        return result  # type: ignore[no-any-return]

    def query(
        self, method: str, *args: Any, consistency: str = "linearizable", node: str | None = None
    ) -> tuple[Any, int]:
        """Run a read on a node: (result, the sequence number it reflects).

        "linearizable" (default) goes through the leader's ReadIndex; "stale" reads whatever
        `node` (default: any answering node) has applied.
        """
        if consistency not in ("linearizable", "stale"):
            raise ValueError("consistency is 'linearizable' or 'stale'")
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            target = node
            if target is None:
                target = self.leader() if consistency == "linearizable" else self._any_node()
            if target is not None:
                try:
                    ref = self._actor(target).query.remote(
                        method, args, consistency == "linearizable"
                    )
                    kind, value, seq = ray.get(ref, timeout=30)
                except (RayError, GetTimeoutError, ValueError):
                    kind, value, seq = "error", NotLeaderError("node unreachable"), None
                if kind == "ok":
                    return unship(value), seq
                if not isinstance(value, NotLeaderError) or node is not None:
                    raise value
            if time.monotonic() > deadline:
                raise UnavailableError("no node could serve the read")
            time.sleep(0.05)

    def history(
        self, table: str, document_id: str | None = None, start: Any = None, end: Any = None
    ) -> list[dict[str, Any]]:
        return self.query("history", table, document_id, start, end)[0]  # type: ignore[no-any-return]

    def verify_journal(self) -> Any:
        return self.query("verify_journal")[0]

    def list_tables(self) -> list[str]:
        return self.query("list_tables")[0]  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- experiments
    def nodes(self) -> list[dict[str, Any]]:
        """Each reachable node's status (role, term, leader, indexes, sequence_no, digest)."""
        refs = []
        for name in self.config.node_names:
            try:
                refs.append((name, self._actor(name).status.remote()))
            except ValueError:
                refs.append((name, None))
        out = []
        for name, ref in refs:
            try:
                out.append(ray.get(ref, timeout=5) if ref is not None else _down(name))
            except (RayError, GetTimeoutError):
                out.append(_down(name))
        return out

    def _any_node(self) -> str | None:
        for status in self.nodes():
            if status["role"] != "down":
                return str(status["node"])
        return None

    def leader(self) -> str | None:
        """The node that leads (in the highest term) and has committed in its term, if any."""
        leaders = [s for s in self.nodes() if s["role"] == "leader" and s.get("ready")]
        if not leaders:
            return None
        return str(max(leaders, key=lambda s: s["term"])["node"])

    def node_digests(self) -> dict[str, tuple[int, bytes]]:
        """Each live replica's (sequence number, digest) at its commit index."""
        return {
            s["node"]: (s["sequence_no"], s["digest"]) for s in self.nodes() if s["role"] != "down"
        }

    def kill(self, name: str, *, restart: bool = False) -> None:
        """Kill an actor ("a", "coordinator", "digest", ...) the hard way (ray.kill).

        Nodes stay down until `restart(name)` unless `restart=True`; with `restart=True` Ray
        restarts the actor itself (max_restarts), as after a crash.
        """
        ray.kill(self._actor(name), no_restart=not restart)

    def restart(self, name: str, timeout_s: float = 30.0) -> None:
        """Start a killed node again from its LevelDB directory."""
        if name not in self.config.node_names:
            raise ValueError(f"{name!r} is not a node of this cluster")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._actor(name)
            except ValueError:
                break  # the name is free
            if time.monotonic() > deadline:
                raise UnavailableError(f"node {name} is still registered")
            time.sleep(0.05)
        ray.get(self._spawn_node(name).ping.remote(), timeout=timeout_s)

    def coordinator_status(self) -> dict[str, Any]:
        return ray.get(self._actor(COORDINATOR).status.remote(), timeout=10)  # type: ignore[no-any-return]


def _down(name: str) -> dict[str, Any]:
    return {"node": name, "role": "down"}


def _with_data_root(config: ClusterConfig, root: Path) -> ClusterConfig:
    nodes = tuple(
        dataclasses.replace(node, data_dir=os.fspath(root / node.name)) for node in config.nodes
    )
    return dataclasses.replace(config, nodes=nodes)

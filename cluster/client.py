"""LedgerCluster: the client handle of a Strand cluster, with the embedded Ledger's API.

    from cluster import LedgerCluster
    cluster = LedgerCluster.start("configs/local-3az.toml")  # or .connect(config): TCP only
    cluster.execute_lambda(lambda tx: tx.insert("Car", {"VIN": "1"}))
    cluster.get_digest(); cluster.get_revision(address, doc_id); cluster.history("Car")

Swapping `Ledger.open(path)` for `LedgerCluster.start(config)` is the one-line switch.

The data plane is TCP, not Ray: the handle talks to each node's client port
(cluster/connection.py, authenticated with the cluster secret), so a process that is not a
Ray driver connects with the config file alone. `execute_lambda(fn)` gives the call a
transaction id and sends `fn` (cloudpickled, closures included) to the leader, where a worker
process runs it next to the data; like on the embedded ledger it must have no side effects
outside the transaction, and its return value comes back (an Ion value as it was, anything
else pickled). Concurrent callers share frames, each gets its own outcome.

Retries, by the rules of core/commit.py: a `NotLeaderError` or a broken connection sends the
same request, same transaction id, to the leader (found through the nodes' status); a
resent run joins the one in flight or learns that it committed (`TransactionCommittedError`
when its value is gone). A failure reported after an earlier send went unanswered is
checked with `Resolve`: the leader answers with the transaction's block, or fences it off
for good, so the caller is never told "failed" about a transaction that committed. A caller
waiting on a node that stops answering is moved as soon as another node leads (the
watchdog polls the nodes' status while a call is slow).

Ray is the control plane: `start` places one StorageNode per AZ resource (`init_ray`:
attaching to a running Ray cluster when `RAY_ADDRESS` is set or `address=` is given, else
starting a local one; cluster/ledger_groups.py starts its Ray the same way) and the digest
actor; `kill`, `restart`, `pids` are for experiments.
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

from cluster import userdata
from cluster.common import DIGEST, HELPER_RESOURCE, NAMESPACE, NODE_RESOURCE, actor_name
from cluster.config import ClusterConfig, load_config
from cluster.connection import Call, Calls
from core.errors import (
    CapacityExceededError,
    CorruptLedgerError,
    InvalidArgumentError,
    LedgerClosedError,
    NotLeaderError,
    TransactionCommittedError,
    UnavailableError,
)
from core.ids import IdSource, is_id
from core.ionhash import dot, ion_hash
from core.journal import statement_digest
from core.ledger import DEFAULT_RETRY_LIMIT, TransactionResult, run_reporting
from core.requests import (
    Abort,
    Begin,
    Commit,
    Done,
    Execute,
    Failed,
    Outcome,
    Read,
    Request,
    Resolve,
    Run,
    UpdateStream,
)
from core.streams import StreamOp
from core.transaction import Transaction

T = TypeVar("T")
log = logging.getLogger("strand.client")
CALL_TIMEOUT_S = 120.0  # give up on learning an outcome after this long
ATTEMPT_TIMEOUT_S = 40.0  # a transaction runs for 30 s at most
STATUS_TIMEOUT_S = 0.5
NODE_READ_TIMEOUT_S = 5.0  # a linearizable read asked of one node, before the leader
TEST_SWITCHES = ("STRAND_TEST_BREAK", "STRAND_TEST_STORAGE")  # passed on to the nodes


class LedgerCluster:
    """A handle on a running cluster (see the module docstring). Safe to share between threads."""

    node_resource = NODE_RESOURCE  # the share of its AZ's resource each node actor takes
    helper_resource = HELPER_RESOURCE  # the digest actor's

    def __init__(self, config: ClusterConfig, *, owns_ray: bool = False) -> None:
        self.config = config
        self._owns_ray = owns_ray
        self._ids = IdSource(os.urandom)
        self._advertised: dict[str, tuple[str, int]] = {}
        self._calls = Calls(config.secret, self._address)
        self._leader = config.node_names[0]
        self._closed = False
        self._handles: dict[str, Any] = {}  # actors this handle created (they live while held)
        self._lifetime: str | None = None
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="strand-watchdog", daemon=True)
        self._watchdog.start()

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def start(
        cls,
        config: str | os.PathLike[str] | ClusterConfig,
        *,
        data_root: str | os.PathLike[str] | None = None,
        address: str | None = None,
        detached: bool = False,
    ) -> LedgerCluster:
        """Start the cluster's actors on Ray and wait for a leader.

        Attaches to a running Ray cluster when `address` is given or RAY_ADDRESS is set (its
        nodes must carry the AZ resources); otherwise starts a local Ray with one resource
        per AZ. `data_root` puts every node's LevelDB under that directory instead of the
        configured ones. `detached` actors outlive this process (stop them with `shutdown`
        from any handle on the same Ray cluster).
        """
        cfg = config if isinstance(config, ClusterConfig) else load_config(config)
        if data_root is not None:
            cfg = _with_data_root(cfg, Path(data_root))
        handle = cls(cfg, owns_ray=init_ray(cfg, address))
        handle._lifetime = "detached" if detached else None
        for node in cfg.nodes:
            handle._spawn_node(node.name)
        handle._spawn_digest()
        handle.wait_ready()
        return handle

    @classmethod
    def connect(cls, config: str | os.PathLike[str] | ClusterConfig) -> LedgerCluster:
        """Attach to a running cluster with its config alone (no Ray needed)."""
        cfg = config if isinstance(config, ClusterConfig) else load_config(config)
        handle = cls(cfg)
        handle.wait_ready()
        return handle

    def _spawn_node(self, name: str) -> Any:
        from cluster.node import StorageNode

        az = self.config.node(name).az
        options: dict[str, Any] = {}
        # test-only switches (chaos/broken.py, chaos/disk.py) reach the nodes this starts
        switches = {k: os.environ[k] for k in TEST_SWITCHES if os.environ.get(k)}
        if switches:
            options["runtime_env"] = {"env_vars": switches}
        handle = StorageNode.options(  # type: ignore[attr-defined]
            name=self._name(name),
            namespace=NAMESPACE,
            resources={az: self.node_resource},
            lifetime=self._lifetime,
            **options,
        ).remote(self.config, name)
        self._handles[name] = handle
        return handle

    def _spawn_digest(self) -> None:
        from cluster.digest import DigestActor

        az = self.config.nodes[0].az
        self._handles[DIGEST] = DigestActor.options(  # type: ignore[attr-defined]
            name=self._name(DIGEST),
            namespace=NAMESPACE,
            resources={az: self.helper_resource},
            lifetime=self._lifetime,
        ).remote(self.config)

    def _name(self, role: str) -> str:
        return actor_name(self.config.cluster_name, role)

    def _actor(self, role: str) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(address="auto", namespace=NAMESPACE, logging_level=logging.WARNING)
        return ray.get_actor(self._name(role), namespace=NAMESPACE)

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """Wait until a leader serves; returns its name."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise UnavailableError(f"no leader within {timeout_s} s")

    def close(self) -> None:
        """Close this handle's connections (the cluster keeps running)."""
        self._closed = True
        self._stop.set()
        self._calls.close()

    def shutdown(self) -> None:
        """Stop every actor of the cluster (and Ray, if this handle started it)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        self.close()
        for role in (DIGEST, *self.config.node_names):
            try:
                actor = self._actor(role)
            except ValueError:
                continue
            if role in self.config.node_names:
                with contextlib.suppress(RayError, GetTimeoutError):
                    ray.get(actor.shutdown.remote(), timeout=20)
            ray.kill(actor, no_restart=True)
        self._handles.clear()
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> LedgerCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ----------------------------------------------------------------- calls
    def _address(self, node: str) -> tuple[str, int]:
        override = self.config.client_link(node)  # e.g. a proxy in between
        if override is not None:
            return override
        advertised = self._advertised.get(node)
        if advertised is not None:
            return advertised
        port = self.config.client_port(node)
        if port is None:
            raise UnavailableError("the cluster config has no client_port_base")
        return self.config.node(node).host, port

    def _once(
        self, node: str, request: Request, timeout_s: float, read: bytes = b""
    ) -> Outcome | None:
        if self._closed:
            raise LedgerClosedError("the cluster handle is closed")
        call: Call = self._calls.send(node, request, read)
        return self._calls.wait(call, timeout_s)

    def _call(self, request: Request, read: bytes = b"") -> Outcome:
        """Send `request` to the leader until it is decided (see the module docstring)."""
        return self._call_at(request, read)[0]

    def _call_at(self, request: Request, read: bytes = b"") -> tuple[Outcome, str]:
        """`_call`, and the node that decided it."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        in_doubt = False
        pause = 0.01
        while time.monotonic() < deadline:
            node = self._leader
            outcome = self._once(node, request, ATTEMPT_TIMEOUT_S, read)
            if outcome is None:  # lost, or abandoned for a newer leader: same id, again
                in_doubt = in_doubt or isinstance(request, Run | Commit)
                self._find_leader()
                continue
            if isinstance(outcome, Failed) and isinstance(outcome.error, NotLeaderError):
                leader = outcome.error.leader
                if leader in self.config.node_names and leader != node:
                    self._leader = leader
                else:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.2)
                    self._find_leader()
                continue
            if isinstance(outcome, Failed) and isinstance(
                outcome.error, CapacityExceededError | UnavailableError
            ):
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            doubtful = (
                in_doubt and isinstance(outcome, Failed) and isinstance(request, Run | Commit)
            )
            if doubtful and not isinstance(outcome.error, TransactionCommittedError):  # type: ignore[union-attr]
                return self._resolved(request.transaction_id, outcome), node  # type: ignore[union-attr, arg-type]
            return outcome, node
        tx_id = getattr(request, "transaction_id", None)
        raise UnavailableError(
            f"no leader decided the request in {CALL_TIMEOUT_S} s (transaction {tx_id})"
        )

    def _resolved(self, tx_id: str, failure: Failed) -> Outcome:
        """An earlier send went unanswered: did the transaction commit after all?"""
        answer = self._call(Resolve(tx_id))
        if isinstance(answer, Done) and answer.sequence_no is not None:
            message = (
                f"transaction {tx_id} committed (block {answer.sequence_no}); its result was lost"
            )
            return Failed(TransactionCommittedError(message, tx_id, answer.sequence_no))
        return failure

    @staticmethod
    def _raise(outcome: Failed) -> None:
        if outcome.error is not None:
            raise outcome.error
        assert outcome.user_error is not None
        raise userdata.decode_user_error(outcome.user_error)

    # ----------------------------------------------------------------- transactions
    def _run(self, payload: bytes, retry_limit: int, transaction_id: str | None) -> Done:
        tx_id = self._ids.new_id() if transaction_id is None else transaction_id
        if not is_id(tx_id):
            raise InvalidArgumentError(f"a transaction id is 22 base62 characters, not {tx_id!r}")
        outcome = self._call(Run(tx_id, payload, retry_limit))
        if isinstance(outcome, Failed):
            self._raise(outcome)
        assert isinstance(outcome, Done)
        return outcome

    def execute_lambda(
        self,
        fn: Callable[[Transaction], T],
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        *,
        transaction_id: str | None = None,
    ) -> T:
        """Run `fn(tx)` in a transaction on the leader and commit it on a majority; the
        whole function is run again on OCC conflict, up to `retry_limit` times. A
        `transaction_id` of the caller's commits at most once, however often it is sent."""
        done = self._run(userdata.encode_function(fn), retry_limit, transaction_id)
        value: T = None if done.value is None else userdata.decode_value(done.value)  # type: ignore[assignment]
        return value

    def execute_transaction(
        self,
        fn: Callable[[Transaction], T],
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        *,
        transaction_id: str | None = None,
    ) -> TransactionResult[T]:
        """`execute_lambda`, returning also the transaction id, its block address (None
        when it wrote nothing) and the commit digest, as `Ledger.execute_transaction` does."""
        payload = userdata.encode_function(functools.partial(run_reporting, fn))
        done = self._run(payload, retry_limit, transaction_id)
        assert done.value is not None
        value, tx_id, digest = userdata.decode_value(done.value)
        address = None
        if done.sequence_no is not None:
            address = {"strandId": self._strand_id(), "sequenceNo": done.sequence_no}
        return TransactionResult(value, tx_id, address, digest)

    def execute_statement(
        self, statement: str, *parameters: Any, retry_limit: int = DEFAULT_RETRY_LIMIT
    ) -> list[Any]:
        """Run one PartiQL statement in a transaction of its own; its rows. Nothing is
        pickled: the statement and its Ion parameters travel as they are."""
        done = self._run(userdata.encode_statements([(statement, parameters)]), retry_limit, None)
        assert done.value is not None
        [rows] = userdata.decode_value(done.value)
        return rows  # type: ignore[no-any-return]

    def begin_transaction(self) -> ClusterTransaction:
        """An interactive transaction (statements sent one at a time, then commit): QLDB's
        session transaction. It lives on the leader that began it, 30 s at most."""
        outcome, node = self._call_at(Begin())
        if isinstance(outcome, Failed):
            self._raise(outcome)
        assert isinstance(outcome, Done)
        assert outcome.transaction_id is not None
        return ClusterTransaction(self, node, outcome.transaction_id)

    def update_stream(self, op: StreamOp) -> None:
        """Replicate a change to a journal stream's state (cluster/streams.py); returns once
        it is applied on a majority. Changes are idempotent: resent until decided."""
        outcome = self._call(UpdateStream(op))
        if isinstance(outcome, Failed):
            self._raise(outcome)

    # ----------------------------------------------------------------- reads
    def query(
        self, method: str, *args: Any, consistency: str = "linearizable", node: str | None = None
    ) -> tuple[Any, int]:
        """Run a read on a node: (result, the sequence number it reflects at least).

        "linearizable" (default) goes to the leader, which confirms its leadership first
        (ReadIndex); asked of a `node`, it goes there first, and when that node is not the
        leader (it says so) the read goes on to the leader. "stale" reads whatever `node`
        (default: the first that answers) holds. A node that finds the entries it needs
        damaged (CorruptLedgerError: it is repairing them from its peers) is passed over:
        the read goes to the other nodes' copies.
        """
        if consistency not in ("linearizable", "stale"):
            raise ValueError("consistency is 'linearizable' or 'stale'")
        payload = userdata.encode_read(method, args)
        if consistency == "linearizable":
            outcome: Outcome | None = None
            if node is not None:
                outcome = self._once(node, Read(True), NODE_READ_TIMEOUT_S, payload)
                if outcome is None or _not_leader(outcome):
                    outcome = None
            if outcome is None:
                outcome = self._call(Read(True), payload)
            if _damaged(outcome):  # history does not change: another replica's copy serves
                outcome = self._stale(payload, None)
        else:
            outcome = self._stale(payload, node)
        if isinstance(outcome, Failed):
            self._raise(outcome)
        assert isinstance(outcome, Done)
        assert outcome.value is not None
        return userdata.decode_value(outcome.value), int(outcome.sequence_no or 0)

    def _stale(self, payload: bytes, node: str | None) -> Outcome:
        names = [node] if node is not None else list(self.config.node_names)
        damaged: Outcome | None = None
        for _ in range(3):
            for name in names:
                outcome = self._once(name, Read(False), 10.0, payload)
                if outcome is not None and node is None and _damaged(outcome):
                    damaged = outcome
                    continue
                if outcome is not None:
                    return outcome
            if damaged is not None:
                return damaged
            time.sleep(0.1)
        raise UnavailableError(f"no node of {names} answered")

    def _strand_id(self) -> str:
        from cluster.common import genesis_of

        return genesis_of(self.config).strand_id

    def get_digest(self, digest_tip_address: Any = None) -> dict[str, Any]:
        return self.query("get_digest", digest_tip_address)[0]  # type: ignore[no-any-return]

    def get_block(self, block_address: Any, digest_tip_address: Any = None) -> dict[str, Any]:
        return self.query("get_block", block_address, digest_tip_address)[0]  # type: ignore[no-any-return]

    def get_revision(
        self, block_address: Any, document_id: str, digest_tip_address: Any = None
    ) -> dict[str, Any]:
        return self.query("get_revision", block_address, document_id, digest_tip_address)[0]  # type: ignore[no-any-return]

    def get_consistency_proof(
        self, old_tip_address: Any, new_tip_address: Any = None
    ) -> dict[str, Any]:
        return self.query("get_consistency_proof", old_tip_address, new_tip_address)[0]  # type: ignore[no-any-return]

    def history(
        self, table: str, document_id: str | None = None, start: Any = None, end: Any = None
    ) -> list[dict[str, Any]]:
        return self.query("history", table, document_id, start, end)[0]  # type: ignore[no-any-return]

    def verify_journal(self) -> Any:
        return self.query("verify_journal")[0]

    def list_tables(self) -> list[str]:
        return self.query("list_tables")[0]  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- the nodes
    def _status(self, name: str) -> dict[str, Any] | None:
        outcome = self._once(
            name, Read(False), STATUS_TIMEOUT_S, userdata.encode_read("status", [])
        )
        if not isinstance(outcome, Done) or outcome.value is None:
            return None
        status: dict[str, Any] = userdata.decode_value(outcome.value)
        return status

    def _ray_status(self, name: str) -> dict[str, Any] | None:
        """What the node's actor says when its client port does not answer (a node whose
        storage failed to open says "failed" and why), if this process is a Ray driver."""
        import ray

        if not ray.is_initialized():
            return None
        try:
            status: dict[str, Any] = ray.get(
                self._actor(name).status.remote(), timeout=STATUS_TIMEOUT_S
            )
        except Exception:  # noqa: BLE001 - a dead, restarting or unknown actor: down
            return None
        return status

    def nodes(self) -> list[dict[str, Any]]:
        """Each node's status (role, term, leader, indexes, sequence_no, digest, az), or
        {"node": name, "role": "down"} for one that does not answer. A node whose storage
        failed to open says {"role": "failed", "error": ...} (asked through Ray, when this
        process is a Ray driver). Each status also says where the node serves clients
        (learned here for the next connection to it)."""
        return self._statuses(ask_ray=True)

    def _statuses(self, *, ask_ray: bool) -> list[dict[str, Any]]:
        out = []
        for name in self.config.node_names:
            status = self._status(name)
            if status is None and ask_ray:
                status = self._ray_status(name)
            if status is None:
                status = {"node": name, "role": "down"}
            elif isinstance(status.get("client_address"), list):
                host, port = status["client_address"]
                self._advertised[name] = (str(host), int(port))
            out.append(status)
        return out

    def _find_leader(self) -> str | None:
        leaders = [
            s for s in self._statuses(ask_ray=False) if s["role"] == "leader" and s.get("ready")
        ]
        if not leaders:
            return None
        best = max(leaders, key=lambda s: s["term"])
        self._leader = str(best["node"])
        return self._leader

    def leader(self) -> str | None:
        """The node that leads (in the highest term) and has committed in its term, if any."""
        return self._find_leader()

    def node_digests(self) -> dict[str, tuple[int, bytes]]:
        """Each live replica's (sequence number, digest) at its commit index."""
        return {s["node"]: (s["sequence_no"], s["digest"]) for s in self.nodes() if "digest" in s}

    def _watch(self) -> None:
        """While a call waits longer than an election timeout, poll the nodes; move callers
        off a node that another node has replaced as leader (a frozen leader, say)."""
        patience_s = self.config.election_timeout_ms / 1000
        while not self._stop.wait(patience_s / 2):
            waiting = self._calls.pending_nodes()
            if not waiting:
                continue
            time.sleep(patience_s / 2)
            still = self._calls.pending_nodes() & waiting
            if not still:
                continue
            leader = self._find_leader()
            if leader is None:
                continue
            for node in still - {leader}:
                log.info("abandoning %s: %s leads", node, leader)
                self._calls.abandon(node)

    # ----------------------------------------------------------------- experiments
    def kill(self, name: str, *, restart: bool = False) -> None:
        """Kill a node's actor the hard way (ray.kill); with `restart`, Ray restarts it."""
        import ray

        ray.kill(self._actor(name), no_restart=not restart)

    def restart(self, name: str, timeout_s: float = 30.0) -> None:
        """Start a node again from its LevelDB directory: a killed one, one whose actor
        died, or a live one (killed first), e.g. one stuck "failed" after its storage
        failed to open."""
        import ray

        if name not in self.config.node_names:
            raise ValueError(f"{name!r} is not a node of this cluster")
        with contextlib.suppress(ValueError):
            ray.kill(self._actor(name), no_restart=True)
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

    def rebuild(self, name: str, timeout_s: float = 60.0) -> None:
        """Re-seed node `name` from its peers: its storage is replaced by an empty one (the
        old directory is kept beside it) and it catches up from the leader by Raft. Every
        other node must answer: the highest term they have seen fences off the votes the
        node forgot (see StorageNode.rebuild). Returns once the node is up; it has caught
        up when `node_digests()` agree."""
        import ray

        if name not in self.config.node_names:
            raise ValueError(f"{name!r} is not a node of this cluster")
        terms = []
        for peer in self.config.node_names:
            if peer == name:
                continue
            status = self._status(peer)
            if status is None or "term" not in status:
                raise UnavailableError(
                    f"rebuilding {name} needs every other node to answer; {peer} does not"
                )
            terms.append(int(status["term"]))
        try:
            actor = self._actor(name)
        except ValueError:
            actor = self._spawn_node(name)
        ray.get(actor.rebuild.remote(max(terms)), timeout=timeout_s)
        for peer in self.config.node_names:  # the leader forgets what the old node acknowledged
            if peer != name:
                ray.get(self._actor(peer).forget_progress.remote(name), timeout=timeout_s)

    def scrub(self, name: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """Have node `name` check every stored entry now (and repair what it finds, see
        cluster/scrub.py); returns its status once a pass that began after this call has
        ended: health ("ok" or "damaged"), findings, counters."""
        target, _ = self.query("scrub", consistency="stale", node=name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._status(name)
            if status is not None and int(status.get("passes", 0)) >= int(target):
                return status
            time.sleep(0.1)
        raise UnavailableError(f"node {name} did not finish a scrub within {timeout_s} s")

    def audit(self, method: str, *args: Any) -> Any:
        """Ask the digest actor (which verifies every answer before it serves it):
        "get_digest", "get_block" or "get_revision", with their arguments."""
        import ray

        return userdata.decode_value(
            ray.get(getattr(self._actor(DIGEST), method).remote(*args), timeout=60)
        )

    def pids(self, name: str) -> list[int]:
        """The OS processes of a node (its actor's and its workers'), for process faults."""
        import ray

        return ray.get(self._actor(name).pids.remote(), timeout=10)  # type: ignore[no-any-return]


class ClusterTransaction:
    """An interactive transaction on the cluster (`LedgerCluster.begin_transaction`)."""

    def __init__(self, cluster: LedgerCluster, node: str, transaction_id: str) -> None:
        self._cluster = cluster
        self._node = node
        self.transaction_id = transaction_id
        self._digest = ion_hash(transaction_id)

    def execute_statement(self, statement: str, *parameters: Any) -> list[Any]:
        """Run one PartiQL statement in this transaction; its rows."""
        payload = userdata.encode_statement(statement, parameters)
        outcome = self._cluster._once(
            self._node, Execute(self.transaction_id, payload), ATTEMPT_TIMEOUT_S
        )
        if outcome is None:
            raise UnavailableError(
                f"the node running transaction {self.transaction_id} did not answer"
            )
        if isinstance(outcome, Failed):
            LedgerCluster._raise(outcome)
        assert isinstance(outcome, Done)
        assert outcome.value is not None
        text_hash = ion_hash(statement)
        self._digest = dot(
            self._digest, statement_digest(text_hash, [ion_hash(p) for p in parameters])
        )
        return userdata.decode_value(outcome.value)  # type: ignore[no-any-return]

    def commit(self, commit_digest: bytes | None = None) -> TransactionResult[None]:
        """Commit; the server checks QLDB's commit digest (the one computed here from the
        statements sent, or `commit_digest`) against its own. If the node does not answer,
        the leader resolves whether it committed."""
        cluster = self._cluster
        digest = self._digest if commit_digest is None else commit_digest
        outcome = cluster._once(self._node, Commit(self.transaction_id, digest), ATTEMPT_TIMEOUT_S)
        if outcome is None:
            lost = Failed(UnavailableError(f"transaction {self.transaction_id} did not commit"))
            outcome = cluster._resolved(self.transaction_id, lost)
        if isinstance(outcome, Failed):
            if isinstance(outcome.error, TransactionCommittedError):
                # committed, its answer lost: the leader checked `digest` against its own
                seq = outcome.error.sequence_no
                outcome = Done(self.transaction_id, None, seq, digest)
            else:
                LedgerCluster._raise(outcome)
        assert isinstance(outcome, Done)
        address = None
        if outcome.sequence_no is not None:
            address = {"strandId": self._cluster._strand_id(), "sequenceNo": outcome.sequence_no}
        return TransactionResult(
            None, self.transaction_id, address, outcome.commit_digest or self._digest
        )

    def abort(self) -> None:
        self._cluster._once(self._node, Abort(self.transaction_id), 5.0)


def _not_leader(outcome: Outcome) -> bool:
    return isinstance(outcome, Failed) and isinstance(outcome.error, NotLeaderError)


def _damaged(outcome: Outcome) -> bool:
    return isinstance(outcome, Failed) and isinstance(outcome.error, CorruptLedgerError)


def _with_data_root(config: ClusterConfig, root: Path) -> ClusterConfig:
    nodes = tuple(
        dataclasses.replace(node, data_dir=os.fspath(root / node.name)) for node in config.nodes
    )
    return dataclasses.replace(config, nodes=nodes)


def init_ray(config: ClusterConfig, address: str | None = None) -> bool:
    """Initialise Ray in this process unless it is: attach to the Ray cluster at `address`
    or RAY_ADDRESS (its nodes must carry the AZ resources), else start a local Ray with one
    resource per AZ of `config`. Whether this call initialised it (its caller owns it)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
    else:
        # Token authentication is on by default for a local Ray since 2.59 (setting
        # RAY_AUTH_MODE here would come after Ray read it at import); the loopback
        # address is ours to choose.
        ray.init(
            _node_ip_address="127.0.0.1",
            namespace=NAMESPACE,
            resources={node.az: 1.0 for node in config.nodes},
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=os.environ.get("STRAND_RAY_LOGS") == "1",
        )
    return True

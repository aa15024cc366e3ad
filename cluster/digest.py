"""DigestActor: the Merkle tree over the committed journal, serving digests and proofs.

It keeps its own copy of the tree (every complete node, in memory) built from the block
hashes of committed blocks, which it pulls from the leader StorageNode before answering
(so a digest covers at least every block committed before the call). Blocks themselves are
read from a node on demand and checked (their hashes recomputed, and the leaf of the
tree compared) before a proof is built for them. After a restart it rebuilds the tree from
a node's LevelDB, which for 10^5 blocks takes well under a second.

Invariants: the tree only grows; leaf n is the hash of block n as committed; every answer
has the same shape as the embedded ledger's (core.queries), so `core.verification` checks
it unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from cluster.common import NAMESPACE, actor_name, genesis_of, ship
from cluster.config import ClusterConfig
from core import codec, merkle, queries
from core.errors import BlockNotFoundError, CorruptLedgerError, UnavailableError
from core.journal import Block, check_block


class _Tree:
    """A JournalSource for core.queries: the tree here, blocks fetched from a node."""

    def __init__(self, strand_id: str, fetch: Any) -> None:
        self.strand_id = strand_id
        self.frontier = merkle.Frontier()
        self.nodes: dict[tuple[int, int], bytes] = {}
        self._fetch = fetch

    @property
    def durable_seq(self) -> int:
        return self.frontier.size - 1

    def append(self, leaf: bytes) -> None:
        for level, index, node in self.frontier.append(leaf):
            self.nodes[(level, index)] = node

    def get_node(self, level: int, index: int) -> bytes:
        try:
            return self.nodes[(level, index)]
        except KeyError:
            raise BlockNotFoundError(f"no Merkle node ({level}, {index})") from None

    def read_block(self, seq: int) -> Block:
        raw = self._fetch(seq)
        block: Block = codec.decode(raw)
        problem = check_block(block)
        if problem is not None or block["blockHash"] != self.get_node(0, seq):
            raise CorruptLedgerError(f"block {seq} from the node does not match the tree")
        return block


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=16)  # type: ignore[call-overload]
class DigestActor:
    """See the module docstring."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._leader: str | None = None
        self.tree = _Tree(genesis_of(config).strand_id, self._fetch_block)

    def ping(self) -> str:
        return "digest"

    def _node(self, name: str) -> Any:
        return ray.get_actor(actor_name(self.config.cluster_name, name), namespace=NAMESPACE)

    def _statuses(self) -> dict[str, dict[str, Any]]:
        refs = {}
        for name in self.config.node_names:  # ask them all at once
            try:
                refs[name] = self._node(name).status.remote()
            except ValueError:  # not registered (being restarted)
                continue
        out = {}
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=2)
            except (RayError, GetTimeoutError):
                continue
        return out

    def _source(self) -> str:
        """The node to read from: the ready leader, else the most advanced node."""
        statuses = self._statuses()
        leaders = [s for s in statuses.values() if s["role"] == "leader" and s["ready"]]
        if leaders:
            return str(max(leaders, key=lambda s: s["term"])["node"])
        if statuses:
            return str(max(statuses.values(), key=lambda s: s["sequence_no"])["node"])
        raise UnavailableError("no storage node answers")

    def _fetch_block(self, seq: int) -> bytes:
        for _ in range(3):
            name = self._leader or self._source()
            try:
                raws = ray.get(self._node(name).read_blocks.remote(seq, 1), timeout=10)
            except (RayError, GetTimeoutError, ValueError):
                self._leader = None
                continue
            if raws:
                return bytes(raws[0])
            self._leader = None
        raise BlockNotFoundError(f"no node serves block {seq}")

    def catch_up(self) -> int:
        """Pull the hashes of newly committed blocks; returns the tree's last sequence number."""
        with self._lock:
            deadline = time.monotonic() + 10
            while True:
                try:
                    name = self._leader or self._source()
                    hashes = ray.get(
                        self._node(name).block_hashes.remote(self.tree.frontier.size), timeout=10
                    )
                    self._leader = name
                    break
                except (RayError, GetTimeoutError, ValueError, UnavailableError):
                    self._leader = None
                    if time.monotonic() > deadline:
                        raise UnavailableError("no node serves block hashes") from None
                    time.sleep(0.05)
            for leaf in hashes:
                self.tree.append(bytes(leaf))
            return self.tree.durable_seq

    def get_digest(self, tip_address: Any = None) -> tuple[str, object]:
        self.catch_up()
        return ship(queries.get_digest(self.tree, tip_address))

    def get_block(self, address: Any, tip_address: Any = None) -> tuple[str, object]:
        self.catch_up()
        return ship(queries.get_block(self.tree, address, tip_address))

    def get_revision(
        self, address: Any, document_id: str, tip_address: Any = None
    ) -> tuple[str, object]:
        self.catch_up()
        return ship(queries.get_revision(self.tree, address, document_id, tip_address))

    def get_consistency_proof(self, old_tip: Any, new_tip: Any = None) -> tuple[str, object]:
        self.catch_up()
        return ship(queries.get_consistency_proof(self.tree, old_tip, new_tip))

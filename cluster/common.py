"""What every cluster actor agrees on: actor names, the ledger's genesis, Raft settings.

Invariants: the genesis block is a pure function of the cluster's name, so three nodes that
start from empty directories, without talking to each other, hold the same block 0 (and
the same strand id); names are unique per Ray namespace, so a client finds each actor by
name after any restart.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig
from core import codec
from core.engine import Genesis
from core.ids import base62_id
from core.raft import RaftConfig

NAMESPACE = "strand"
COORDINATOR = "coordinator"
DIGEST = "digest"
# Block 0's timestamp: the day Amazon QLDB stopped (every Strand cluster's genesis shares it).
GENESIS_MS = 1_753_920_000_000  # 2025-07-31T00:00:00Z
NODE_RESOURCE = 0.5  # of the node's AZ resource: one node per AZ, room for the others
HELPER_RESOURCE = 0.1  # coordinator and digest actor


def actor_name(cluster_name: str, role: str) -> str:
    return f"{cluster_name}/{role}"


def genesis_of(config: ClusterConfig) -> Genesis:
    def derived(tag: str) -> str:
        digest = hashlib.sha256(f"strand:{tag}:{config.cluster_name}".encode()).digest()
        return base62_id(digest[:16])

    return Genesis(derived("strand"), derived("genesis-transaction"), GENESIS_MS)


def raft_config(config: ClusterConfig) -> RaftConfig:
    return RaftConfig(
        election_ticks=config.election_ticks,
        heartbeat_ticks=config.heartbeat_ticks,
        max_entries_per_message=config.max_entries_per_message,
        max_inflight_entries=max(4 * config.max_entries_per_message, 256),
    )


def coordinator_dir(config: ClusterConfig) -> str:
    """The coordinator's own LevelDB: beside the nodes' directories."""
    first = Path(config.nodes[0].data_dir)
    return os.fspath(first.parent / "coordinator")


def ship(value: object) -> tuple[str, object]:
    """A value to send through Ray: Ion values (documents, blocks, whose Timestamps do not
    survive pickling) go in core.codec's Ion-preserving encoding; anything else as is."""
    try:
        return ("ion", codec.pack(value, check_names=False))
    except (TypeError, ValueError):
        return ("py", value)


def unship(shipped: tuple[str, object]) -> Any:
    kind, payload = shipped
    if kind == "ion":
        assert isinstance(payload, bytes)
        return codec.unpack(payload)
    return payload

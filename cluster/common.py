"""What every cluster actor agrees on: actor names, the ledger's genesis, Raft settings.

Invariants: the genesis block is a pure function of the cluster's name, so three nodes that
start from empty directories, without talking to each other, hold the same block 0 (and
the same strand id); names are unique per Ray namespace, so a client finds each actor by
name after any restart.
"""

from __future__ import annotations

import hashlib

from cluster.config import ClusterConfig
from core.commit import CommitConfig
from core.engine import Genesis
from core.ids import base62_id
from core.raft import RaftConfig

NAMESPACE = "strand"
DIGEST = "digest"
# Block 0's timestamp: the day Amazon QLDB stopped (every Strand cluster's genesis shares it).
GENESIS_MS = 1_753_920_000_000  # 2025-07-31T00:00:00Z
NODE_RESOURCE = 0.5  # of the node's AZ resource: one node per AZ, room for the others
HELPER_RESOURCE = 0.1  # the digest actor


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


def commit_config(config: ClusterConfig) -> CommitConfig:
    return CommitConfig(
        max_batch_transactions=config.max_batch_transactions,
        transaction_timeout_ms=config.transaction_timeout_ms,
    )

"""DigestActor: digests and proofs, each checked before it is served, for auditors on Ray.

It keeps no copy of the journal or of the Merkle tree: every question goes to the leader over
the client data plane (a linearizable read, so a digest covers every block committed before
the call), where the node answers from the complete Merkle nodes and blocks it stores
(core.queries). What the actor adds is distrust, as an auditor's client would: before it
serves an answer it verifies it with `core.verification` alone (a block or revision against
its proof and the digest it names), and it remembers the last digest it served and demands
a consistency proof from it to every newer digest, so it never serves a digest of a journal
that rewrote what an earlier digest covered. A restarted actor serves at once: its memory is
one digest, whatever the journal's length.

Methods return `cluster.userdata.encode_value` bytes (Ion values survive them; pickling does
not keep amazon-ion's timestamps): `LedgerCluster.audit(method, ...)` decodes them.

Invariants: every digest served is consistent with every earlier one this incarnation served;
every proof served verifies against the digest it comes with.
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from cluster import userdata
from cluster.config import ClusterConfig
from core import verification
from core.errors import CorruptLedgerError


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=16)  # type: ignore[call-overload]
class DigestActor:
    """See the module docstring."""

    def __init__(self, config: ClusterConfig) -> None:
        from cluster.client import LedgerCluster

        self.cluster = LedgerCluster(config)
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None  # the newest digest served
        self.stats = {"digests": 0, "consistency_checks": 0, "proofs_checked": 0}

    def ping(self) -> str:
        return "digest"

    def _digest(self, tip_address: Any = None) -> dict[str, Any]:
        digest = self.cluster.get_digest(tip_address)
        with self._lock:
            last = self._last
            seq = digest["digestTipAddress"]["sequenceNo"]
            if last is not None:
                old, new = last, digest
                if seq < last["digestTipAddress"]["sequenceNo"]:
                    old, new = digest, last
                self._check_consistent(old, new)
            if last is None or seq > last["digestTipAddress"]["sequenceNo"]:
                self._last = digest
            self.stats["digests"] += 1
        return digest

    def _check_consistent(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_seq = old["digestTipAddress"]["sequenceNo"]
        new_seq = new["digestTipAddress"]["sequenceNo"]
        if old_seq == new_seq:
            if old["digest"] != new["digest"]:
                raise CorruptLedgerError(f"two digests at block {old_seq}")
            return
        proof = self.cluster.get_consistency_proof(old["digestTipAddress"], new["digestTipAddress"])
        self.stats["consistency_checks"] += 1
        if not verification.verify_consistency(
            old_seq + 1, new_seq + 1, old["digest"], new["digest"], proof["proof"]
        ):
            raise CorruptLedgerError(
                f"the digest at block {new_seq} does not extend the one served at block {old_seq}"
            )

    def get_digest(self, tip_address: Any = None) -> bytes:
        return userdata.encode_value(self._digest(tip_address))

    def get_block(self, address: Any, tip_address: Any = None) -> bytes:
        digest = self._digest(tip_address)
        answer = self.cluster.get_block(address, digest["digestTipAddress"])
        if not verification.verify_block(answer["block"], answer["proof"], digest["digest"]):
            raise CorruptLedgerError(f"the block at {address} does not verify")
        self.stats["proofs_checked"] += 1
        return userdata.encode_value({**answer, "digest": digest})

    def get_revision(self, address: Any, document_id: str, tip_address: Any = None) -> bytes:
        digest = self._digest(tip_address)
        answer = self.cluster.get_revision(address, document_id, digest["digestTipAddress"])
        if not verification.verify_revision(answer["revision"], answer["proof"], digest["digest"]):
            raise CorruptLedgerError(f"the revision of {document_id} at {address} does not verify")
        self.stats["proofs_checked"] += 1
        return userdata.encode_value({**answer, "digest": digest})

    def status(self) -> dict[str, Any]:
        with self._lock:
            last = self._last
        seq = None if last is None else last["digestTipAddress"]["sequenceNo"]
        return {"last_served_sequence_no": seq, **self.stats}

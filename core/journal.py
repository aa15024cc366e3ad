"""Journal blocks, built and checked exactly as QLDB built them.

A block is the journal record of one committed transaction, a dict of Ion values shaped like
QLDB's: blockAddress {strandId, sequenceNo}, transactionId, blockTimestamp, blockHash,
entriesHash, previousBlockHash, entriesHashList, transactionInfo {statements, documents},
revisions [{blockAddress, hash, data, metadata}].

Hashing (reference: shared/reference/qldb.md section 1):
    revision.hash    = dot(H(metadata), H(data))        (a deleted document's revision has
                                                          no data: dot(H(metadata), b""))
    entriesHashList  = [H(transactionInfo)] + [root_of(revision hashes)] if any revisions
    entriesHash      = root_of(entriesHashList)          (pairwise, odd node carried up)
    blockHash        = dot(entriesHash, previousBlockHash)

Invariants: `build_block` is a pure function of its arguments; `check_block` recomputes every
hash a block carries from the block's own contents, so a block that passes it cannot have been
altered without also altering its blockHash, which the next block and the Merkle tree pin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.ionhash import dot, ion_hash
from core.merkle import path_of, root_of

Block = dict[str, Any]
Revision = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatementRecord:
    """One executed statement as transactionInfo records it."""

    text: str
    start_time: Any  # Ion timestamp
    digest: bytes


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    """One new revision of one document. `data is None` means the document was deleted."""

    table_name: str
    table_id: str
    doc_id: str
    version: int
    data: Mapping[str, Any] | None
    data_hash: bytes  # H(data), or b"" for a delete
    statement_indexes: tuple[int, ...]


def statement_digest(text_hash: bytes, parameter_hashes: Sequence[bytes]) -> bytes:
    """H(statement) joined with the hash of each parameter in order (QLDB's commit-digest rule)."""
    digest = text_hash
    for parameter_hash in parameter_hashes:
        digest = dot(digest, parameter_hash)
    return digest


def build_block(
    *,
    strand_id: str,
    sequence_no: int,
    transaction_id: str,
    timestamp: Any,
    previous_block_hash: bytes,
    statements: Sequence[StatementRecord],
    writes: Sequence[DocumentWrite],
) -> Block:
    """The block of one transaction, with every hash computed."""
    address = {"strandId": strand_id, "sequenceNo": sequence_no}
    revisions: list[Revision] = []
    documents: dict[str, Any] = {}
    for write in writes:
        metadata = {
            "id": write.doc_id,
            "version": write.version,
            "txTime": timestamp,
            "txId": transaction_id,
        }
        revision: Revision = {
            "blockAddress": address,
            "hash": dot(ion_hash(metadata), write.data_hash),
        }
        if write.data is not None:
            revision["data"] = write.data
        revision["metadata"] = metadata
        revisions.append(revision)
        documents[write.doc_id] = {
            "tableName": write.table_name,
            "tableId": write.table_id,
            "statements": list(write.statement_indexes),
        }
    transaction_info = {
        "statements": [
            {"statement": s.text, "startTime": s.start_time, "statementDigest": s.digest}
            for s in statements
        ],
        "documents": documents,
    }
    entries = [ion_hash(transaction_info)]
    if revisions:
        entries.append(root_of([r["hash"] for r in revisions]))
    entries_hash = root_of(entries)
    return {
        "blockAddress": address,
        "transactionId": transaction_id,
        "blockTimestamp": timestamp,
        "blockHash": dot(entries_hash, previous_block_hash),
        "entriesHash": entries_hash,
        "previousBlockHash": previous_block_hash,
        "entriesHashList": entries,
        "transactionInfo": transaction_info,
        "revisions": revisions,
    }


def revision_hash_of(revision: Mapping[str, Any]) -> bytes:
    """Recompute a revision's hash from its metadata and data (or dataHash when redacted)."""
    if "data" in revision:
        data_hash = ion_hash(revision["data"])
    else:
        data_hash = bytes(revision.get("dataHash", b""))
    return dot(ion_hash(revision["metadata"]), data_hash)


def check_block(block: Mapping[str, Any]) -> str | None:
    """None when every hash in the block matches its contents, else what does not match."""
    try:
        address = block["blockAddress"]
        revisions = block["revisions"]
        for position, revision in enumerate(revisions):
            if revision.get("blockAddress") != address:
                return f"revision {position} names another block"
            if bytes(revision["hash"]) != revision_hash_of(revision):
                return f"revision {position} does not match its hash"
            metadata = revision["metadata"]
            if metadata["txId"] != block["transactionId"]:
                return f"revision {position} names another transaction"
            if metadata["txTime"] != block["blockTimestamp"]:
                return f"revision {position} has another txTime than the block"
        entries = [bytes(h) for h in block["entriesHashList"]]
        if not entries or entries[0] != ion_hash(block["transactionInfo"]):
            return "transactionInfo does not match entriesHashList"
        if revisions:
            if len(entries) != 2 or entries[1] != root_of([bytes(r["hash"]) for r in revisions]):
                return "revision hashes do not match entriesHashList"
        elif len(entries) != 1:
            return "entriesHashList lists revisions the block does not hold"
        if bytes(block["entriesHash"]) != root_of(entries):
            return "entriesHash does not match entriesHashList"
        expected = dot(bytes(block["entriesHash"]), bytes(block["previousBlockHash"]))
        if bytes(block["blockHash"]) != expected:
            return "blockHash does not match entriesHash and previousBlockHash"
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        return f"malformed block: {exc!r}"
    return None


def revision_proof_in_block(block: Mapping[str, Any], position: int) -> list[bytes]:
    """The proof from revision `position` of `block` up to the block's blockHash."""
    revision_hashes = [bytes(r["hash"]) for r in block["revisions"]]
    entries = [bytes(h) for h in block["entriesHashList"]]
    proof = path_of(revision_hashes, position)
    proof.extend(path_of(entries, len(entries) - 1))
    proof.append(bytes(block["previousBlockHash"]))
    return proof

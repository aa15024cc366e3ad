"""QLDB's journal stream records, built from blocks, and a consumer that checks them.

Every record is binary Ion `{qldbStreamArn, recordType, payload}` (shared/reference/qldb-wire.md):
- CONTROL: `payload{controlRecordType: "CREATED" | "COMPLETED"}`;
- BLOCK_SUMMARY: the block's fields minus `revisions`, plus `revisionSummaries[{hash,
  documentId}]` (one per revision, in the block's order);
- REVISION_DETAILS: one per revision, `payload{tableInfo{tableName, tableId}, revision}`,
  the revision exactly as the journal holds it (`data`, or `dataHash` once redacted).
Every revision of the block is described, the catalog's (`information_schema.user_tables`)
included. Building is a pure function of the block: a block delivered twice gives the
same bytes twice.

`ChainVerifier` is the consumer's side: fed records in the order they arrive, it drops
duplicates (by block sequence number; a revision by its block and hash) and checks each new
BLOCK_SUMMARY against the chain it has verified so far: its sequence number follows the
last one (a gap is an error: Strand streams deliver in order), its `previousBlockHash` is
the last block's `blockHash`, `entriesHash` is the Merkle root of `entriesHashList`,
`blockHash = dot(entriesHash, previousBlockHash)`, `entriesHashList[0]` is
`H(transactionInfo)` (when the record kept Ion's types) and the root of the revision
summaries' hashes is the list's second hash; each REVISION_DETAILS's hash recomputes
(`dot(H(metadata), H(data))`) and is one its block summarised. It needs only hashlib and
amazon-ion (through core.ionhash and core.merkle), like core.verification. Anchored with
`trusted` (a block's sequence number and hash, e.g. from a digest the consumer checked),
the first block must chain to it; otherwise the first block verified is the anchor.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amazon.ion import simpleion

from core.ionhash import dot, ion_hash
from core.journal import Block
from core.merkle import root_of

CONTROL, BLOCK_SUMMARY, REVISION_DETAILS = "CONTROL", "BLOCK_SUMMARY", "REVISION_DETAILS"
CREATED, COMPLETED = "CREATED", "COMPLETED"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
HASH_FIELDS = frozenset({"blockHash", "entriesHash", "previousBlockHash", "hash", "dataHash"})

Record = dict[str, Any]


def stream_arn(
    ledger_name: str, stream_id: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT
) -> str:
    return f"arn:aws:qldb:{region}:{account}:stream/{ledger_name}/{stream_id}"


def control_record(arn: str, control: str) -> Record:
    if control not in (CREATED, COMPLETED):
        raise ValueError(f"unknown control record {control!r}")
    return {"qldbStreamArn": arn, "recordType": CONTROL, "payload": {"controlRecordType": control}}


def block_records(arn: str, block: Block) -> list[Record]:
    """The BLOCK_SUMMARY and the REVISION_DETAILS records of one block, in that order."""
    revisions = block.get("revisions") or []
    summary = {k: v for k, v in block.items() if k != "revisions"}
    summary["revisionSummaries"] = [
        {"hash": r["hash"], "documentId": r["metadata"]["id"]} for r in revisions
    ]
    out: list[Record] = [{"qldbStreamArn": arn, "recordType": BLOCK_SUMMARY, "payload": summary}]
    documents = block["transactionInfo"].get("documents") or {}
    for revision in revisions:
        doc = documents.get(revision["metadata"]["id"]) or {}
        table = {"tableName": doc.get("tableName"), "tableId": doc.get("tableId")}
        payload = {"tableInfo": table, "revision": revision}
        out.append({"qldbStreamArn": arn, "recordType": REVISION_DETAILS, "payload": payload})
    return out


def encode(record: Record) -> bytes:
    """A record as binary Ion."""
    return simpleion.dumps(record, binary=True)  # type: ignore[no-any-return]


def decode(data: bytes) -> Record:
    value = simpleion.loads(data)
    if not isinstance(value, Mapping) or "recordType" not in value:
        raise ValueError("not a journal stream record")
    return value  # type: ignore[return-value]


def sequence_no(record: Mapping[str, Any]) -> int | None:
    """The block a BLOCK_SUMMARY or REVISION_DETAILS record belongs to (None: CONTROL)."""
    payload = record["payload"]
    if record["recordType"] == BLOCK_SUMMARY:
        return int(payload["blockAddress"]["sequenceNo"])
    if record["recordType"] == REVISION_DETAILS:
        return int(payload["revision"]["blockAddress"]["sequenceNo"])
    return None


# ----------------------------------------------------------------- JSON Lines


def to_json(value: Any) -> Any:
    """Ion down-converted to JSON (the Ion cookbook's rules): blobs base64, timestamps as
    Ion text, decimals as numbers, s-expressions as lists, annotations dropped."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime):
        return simpleion.dumps(value, binary=False, omit_version_marker=True)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value if not isinstance(value, str) else str(value)
    return str(value)


def json_line(record: Record) -> str:
    return json.dumps(to_json(record), separators=(",", ":"))


def from_json(record: Mapping[str, Any]) -> Record:
    """A record read back from JSON Lines, its hashes bytes again (base64 decoded), so that
    `ChainVerifier(check_transaction_info=False)` checks it."""

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            inner = "hash" if key == "entriesHashList" else None
            return [walk(v, inner) for v in value]
        if key in HASH_FIELDS and isinstance(value, str):
            return base64.b64decode(value)
        return value

    out = walk(record, None)
    assert isinstance(out, dict)
    return out


# ----------------------------------------------------------------- the consumer's checks


class StreamVerificationError(ValueError):
    """A record does not verify against the chain (a gap, a broken link, a wrong hash)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record seen for the first time (duplicates are dropped)."""

    record: Record
    sequence_no: int | None


class ChainVerifier:
    """Checks records as they arrive (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        *,
        trusted: tuple[int, bytes] | None = None,
        first_seq: int | None = None,
        check_transaction_info: bool = True,
    ) -> None:
        self.last: tuple[int, bytes] | None = trusted
        self.first_seq = first_seq if trusted is None else trusted[0] + 1
        self.check_transaction_info = check_transaction_info
        self._pending: set[bytes] = set()  # revision hashes of the last block not yet detailed
        self.controls: list[str] = []
        self.blocks = 0
        self.revisions = 0
        self.duplicates = 0

    def feed(self, record: Mapping[str, Any]) -> Accepted | None:
        """Check one record; its `Accepted` if new, None for a duplicate."""
        kind = record.get("recordType")
        if kind == CONTROL:
            control = str(record["payload"]["controlRecordType"])
            if control in self.controls:
                self.duplicates += 1
                return None
            self.controls.append(control)
            return Accepted(dict(record), None)
        if kind == BLOCK_SUMMARY:
            return self._summary(record)
        if kind == REVISION_DETAILS:
            return self._revision(record)
        raise StreamVerificationError(f"unknown record type {kind!r}")

    def _summary(self, record: Mapping[str, Any]) -> Accepted | None:
        block = record["payload"]
        seq = int(block["blockAddress"]["sequenceNo"])
        block_hash = bytes(block["blockHash"])
        if self.last is not None and seq <= self.last[0]:
            if seq == self.last[0] and block_hash != self.last[1]:
                raise StreamVerificationError(f"block {seq} arrived twice with different hashes")
            self.duplicates += 1
            return None
        expected = self.first_seq if self.last is None else self.last[0] + 1
        if expected is not None and seq != expected:
            raise StreamVerificationError(f"block {seq} arrived where block {expected} was due")
        previous = bytes(block["previousBlockHash"])
        if self.last is not None and previous != self.last[1]:
            raise StreamVerificationError(f"block {seq} does not chain to block {seq - 1}")
        hashes = [bytes(h) for h in block["entriesHashList"]]
        entries_hash = bytes(block["entriesHash"])
        if root_of(hashes) != entries_hash:
            raise StreamVerificationError(f"block {seq}: entriesHash is not the entries' root")
        if dot(entries_hash, previous) != block_hash:
            raise StreamVerificationError(f"block {seq}: blockHash does not recompute")
        if self.check_transaction_info and ion_hash(block["transactionInfo"]) != hashes[0]:
            raise StreamVerificationError(f"block {seq}: transactionInfo does not hash")
        summaries = [bytes(s["hash"]) for s in block.get("revisionSummaries") or []]
        if summaries and (len(hashes) < 2 or root_of(summaries) != hashes[1]):
            raise StreamVerificationError(f"block {seq}: revision summaries do not hash")
        self.last = (seq, block_hash)
        self._pending = set(summaries)
        self.blocks += 1
        return Accepted(dict(record), seq)

    def _revision(self, record: Mapping[str, Any]) -> Accepted | None:
        revision = record["payload"]["revision"]
        seq = int(revision["blockAddress"]["sequenceNo"])
        claimed = bytes(revision["hash"])
        if self.last is None or seq < self.last[0] or claimed not in self._pending:
            if self.last is not None and seq <= self.last[0]:
                self.duplicates += 1
                return None
            raise StreamVerificationError(f"a revision of block {seq} before its block summary")
        if "data" in revision:
            data_hash = ion_hash(revision["data"])
        else:
            data_hash = bytes(revision.get("dataHash") or b"")
        if (
            self.check_transaction_info
            and dot(ion_hash(revision["metadata"]), data_hash) != claimed
        ):
            raise StreamVerificationError(f"a revision of block {seq} does not hash")
        self._pending.discard(claimed)
        self.revisions += 1
        return Accepted(dict(record), seq)

    def feed_all(self, records: Sequence[Mapping[str, Any]]) -> list[Accepted]:
        return [a for a in map(self.feed, records) if a is not None]

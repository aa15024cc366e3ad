"""Reading the journal: digests, blocks and revisions with proofs, history, audits.

Everything here reads only durable state: it first takes the engine's durable sequence
number, then reads storage, so an answer is always about a journal prefix that is on disk.
Every proof is computed in O(log n) storage reads at any past tip the caller names.

Invariants: a block or revision is served only after its bytes passed their checksum and
its hashes were recomputed (Engine.read_block); `verify_journal` checks every stored entry
(core/scrub.py) and reports what it finds, never raising for a finding.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core import keys, merkle
from core.catalog import TableDef
from core.engine import Engine
from core.errors import (
    BlockNotFoundError,
    InvalidArgumentError,
    RevisionNotFoundError,
    TableNotFoundError,
)
from core.journal import Block, revision_proof_in_block
from core.scrub import Finding, Scrub, damaged_blocks


class JournalSource(Protocol):
    """What digests and proofs need: an Engine, or the cluster's digest actor."""

    @property
    def strand_id(self) -> str: ...

    @property
    def durable_seq(self) -> int: ...

    def get_node(self, level: int, index: int) -> bytes: ...

    def read_block(self, seq: int) -> Block: ...


@dataclass(frozen=True, slots=True)
class JournalReport:
    """The outcome of a full check of the stored state: `findings` lists every damaged
    entry (core.scrub.Finding); `first_bad_sequence_no` is the first damaged block's."""

    ok: bool
    blocks_checked: int
    first_bad_sequence_no: int | None = None
    problem: str | None = None
    findings: tuple[Finding, ...] = ()


def _address(engine: JournalSource, seq: int) -> dict[str, Any]:
    return {"strandId": engine.strand_id, "sequenceNo": seq}


def _sequence_no(engine: JournalSource, address: object, what: str) -> int:
    if not isinstance(address, Mapping) or set(address) != {"strandId", "sequenceNo"}:
        raise InvalidArgumentError(f"{what} is {{strandId, sequenceNo}}, got {address!r}")
    seq = address["sequenceNo"]
    if address["strandId"] != engine.strand_id:
        raise BlockNotFoundError(f"{what}: this ledger has no strand {address['strandId']!r}")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise InvalidArgumentError(f"{what}: sequenceNo must be an int >= 0, got {seq!r}")
    return seq


def _tip(engine: JournalSource, seq: int, tip_address: object) -> int:
    durable = engine.durable_seq
    tip = durable if tip_address is None else _sequence_no(engine, tip_address, "digest tip")
    if tip > durable:
        raise BlockNotFoundError(f"digest tip {tip} is beyond the journal's tip {durable}")
    if seq > tip:
        raise BlockNotFoundError(f"block {seq} is beyond the digest tip {tip}")
    return tip


def get_digest(engine: JournalSource, tip_address: object = None) -> dict[str, Any]:
    """The Merkle root over blocks 0..tip (default: the current tip) and its tip address."""
    tip = _tip(engine, 0, tip_address)
    return {
        "digest": merkle.root_at(tip + 1, engine.get_node),
        "digestTipAddress": _address(engine, tip),
    }


def get_block(engine: JournalSource, address: object, tip_address: object = None) -> dict[str, Any]:
    """The block and its proof up to the digest at `tip_address` (default: current tip)."""
    seq = _sequence_no(engine, address, "block address")
    tip = _tip(engine, seq, tip_address)
    return {
        "block": engine.read_block(seq),
        "proof": merkle.inclusion_proof(seq, tip + 1, engine.get_node),
        "digestTipAddress": _address(engine, tip),
    }


def get_revision(
    engine: JournalSource, address: object, document_id: str, tip_address: object = None
) -> dict[str, Any]:
    """One revision of a block and its proof: inside the block, then up the strand tree."""
    seq = _sequence_no(engine, address, "block address")
    tip = _tip(engine, seq, tip_address)
    block = engine.read_block(seq)
    for position, revision in enumerate(block["revisions"]):
        if revision["metadata"]["id"] == document_id:
            proof = revision_proof_in_block(block, position)
            proof.extend(merkle.inclusion_proof(seq, tip + 1, engine.get_node))
            return {"revision": revision, "proof": proof, "digestTipAddress": _address(engine, tip)}
    raise RevisionNotFoundError(f"block {seq} holds no revision of document {document_id!r}")


def get_consistency_proof(
    engine: JournalSource, old_tip_address: object, new_tip_address: object = None
) -> dict[str, Any]:
    """Proof that the journal at the newer tip extends the journal at the older tip."""
    old = _sequence_no(engine, old_tip_address, "old digest tip")
    new = _tip(engine, old, new_tip_address)
    return {
        "proof": merkle.consistency_proof(old + 1, new + 1, engine.get_node),
        "oldTipAddress": _address(engine, old),
        "newTipAddress": _address(engine, new),
    }


def _table_for_history(engine: Engine, name: str) -> TableDef:
    catalog = engine.catalog
    if name in catalog.active_by_name:
        return catalog.by_name(name)
    for table in catalog.tables.values():
        if table.name == name:
            return table
    raise TableNotFoundError(f"no table named {name!r}")


def _as_utc(value: datetime.datetime | None, what: str) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        raise InvalidArgumentError(f"{what} must be a datetime, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def history(
    engine: Engine,
    table_name: str,
    document_id: str | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """Every revision of the table's documents (or of one) active in [start, end]."""
    table = _table_for_history(engine, table_name)
    return table_history(engine, table.table_id, document_id, start, end)


def table_history(
    engine: Engine,
    table_id: str,
    document_id: str | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """`history` of the table with that id (a dropped table's name may have been reused)."""
    lo, hi = _as_utc(start, "start"), _as_utc(end, "end")
    durable = engine.durable_seq
    prefix = keys.revision_prefix(table_id, document_id or "")
    located: list[tuple[str, int, int]] = []
    for key, value in engine.storage.scan(prefix, keys.prefix_end(prefix)):
        _, doc_id, version = keys.revision_key_parts(key)
        seq = keys.decode_u64(value)
        if seq <= durable:
            located.append((doc_id, version, seq))
    blocks: dict[int, Block] = {}
    revisions: list[dict[str, Any]] = []
    for i, (doc_id, _version, seq) in enumerate(located):
        block = blocks.get(seq) or blocks.setdefault(seq, engine.read_block(seq))
        revision = next(r for r in block["revisions"] if r["metadata"]["id"] == doc_id)
        successor = located[i + 1] if i + 1 < len(located) else None
        ends_at = None
        if successor is not None and successor[0] == doc_id:
            ends_at = (
                blocks.get(successor[2])
                or blocks.setdefault(successor[2], engine.read_block(successor[2]))
            )["blockTimestamp"]
        begins_at = revision["metadata"]["txTime"]
        if hi is not None and begins_at > hi:
            continue
        if lo is not None and ends_at is not None and ends_at <= lo:
            continue
        revisions.append(revision)
    return revisions


def verify_journal(engine: Engine) -> JournalReport:
    """Check every block, Merkle node, pointer, document and index entry (core.scrub)."""
    scrub = Scrub(engine)
    findings = tuple(scrub.run())
    if not findings:
        return JournalReport(True, scrub.next_seq)
    blocks = damaged_blocks(findings)
    first = blocks[0] if blocks else None
    return JournalReport(False, scrub.next_seq, first, findings[0].problem, findings)

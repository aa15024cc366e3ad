"""Scrubbing: find any damaged byte in a ledger's stored state, report it, and mend it.

A `Scrub` walks the journal from block 0 in steps (`step(limit)`), so a node can pace it,
and checks everything that is stored:

- every block (`B`): it decodes, its hashes recompute (`check_block`), its address is its
  place, and it chains to the block before;
- every complete Merkle node (`N`): equal to the node recomputed from the block hashes;
- every revision pointer (`R`) and transaction pointer (`T`) the blocks imply;
- then (`finish`) every current document (`D`, against the latest revision the blocks
  hold) and every index entry (`X`, against the current documents).

It never raises for what it finds: each problem is a `Finding`. What a block must hash to is
decided by a vote of three witnesses (its own hash, its Merkle leaf, the next block's
previousBlockHash), and the walk goes on with that hash, so one damaged block or node is one
finding, and a block rewritten with recomputed hashes is caught.

Mending (`mend`): `B`, `N`, `R` and `T` entries never change once written (a redaction
rewrites a block's data but keeps its hashes), so a finding on one carries the right value,
except a damaged block, whose right bytes only a healthy replica has: `repair_blocks` takes
them and writes each only if it hashes to what the journal expects. `D` and `X` entries
change with every commit, so their findings are candidates, re-derived against the state
current when `mend` runs (`document_fixes`); the caller runs `mend` where no commit is
being written (a node's loop thread between two writes).

Invariants: a scrub only reads; `mend` and `repair_blocks` write only values derived from
blocks that verify, so they can only undo damage, never rewrite history; no clock, no I/O
but the engine's storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import codec, keys, merkle
from core.catalog import REDACTION_TABLE_ID, SYSTEM_TABLE_ID
from core.engine import Engine, decode_doc, encode_doc
from core.errors import StrandError
from core.ionhash import ion_hash
from core.journal import check_block
from core.transaction import index_keys

BLOCK, MERKLE, REVISION, TRANSACTION, DOCUMENT, INDEX = (
    "block", "merkle", "revision", "transaction", "document", "index",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finding:
    """One damaged entry: its kind, key, the block it concerns (if any) and what is wrong.
    `value` is the right value of an immutable entry (None: delete it, or unknown here)."""

    kind: str
    key: bytes
    sequence_no: int | None
    problem: str
    value: bytes | None = None


@dataclass(slots=True)
class Scrub:
    """A pass over one engine's stored state; see the module docstring."""

    engine: Engine
    stop_seq: int = -1  # the last block this pass covers (the durable tip when it began)
    next_seq: int = 0
    findings: list[Finding] = field(default_factory=list)
    _frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    _previous_hash: bytes = b""
    # (table id, doc id) -> (version, sequence number, dataHash or None when deleted)
    _latest: dict[tuple[str, str], tuple[int, int, bytes | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stop_seq < 0:
            self.stop_seq = self.engine.durable_seq

    @property
    def blocks_done(self) -> bool:
        return self.next_seq > self.stop_seq

    def step(self, limit: int) -> int:
        """Check up to `limit` more blocks; returns how many were checked."""
        start = self.next_seq
        stop = min(self.stop_seq + 1, start + limit)
        storage = self.engine.storage
        stored = dict(storage.scan(keys.block_key(start), keys.block_key(stop)))
        for seq in range(start, stop):
            self._check_block(seq, stored.get(keys.block_key(seq)))
        self.next_seq = stop
        return stop - start

    def run(self) -> list[Finding]:
        """The whole pass at once."""
        while not self.blocks_done:
            self.step(4096)
        return self.finish()

    # ----------------------------------------------------------------- blocks
    def _leaf(self, seq: int) -> bytes | None:
        raw = self.engine.storage.get(keys.node_key(0, seq))
        leaf = None if raw is None else _unframe(raw)
        return leaf if leaf is not None and len(leaf) == 32 else None

    def _next_previous_hash(self, seq: int) -> bytes | None:
        raw = self.engine.storage.get(keys.block_key(seq + 1))
        try:
            block = None if raw is None else codec.decode(raw)
            return None if block is None else bytes(block["previousBlockHash"])
        except (ValueError, KeyError, TypeError):
            return None

    def expected_hash(self, seq: int, own: bytes | None) -> bytes | None:
        """What block `seq` must hash to, by a vote of three witnesses: the block's own hash
        (`own`, None if it does not verify), its Merkle leaf, and the next block's
        previousBlockHash. Any two that agree win; a lone witness stands; two that
        disagree (the tip and its leaf) decide nothing."""
        leaf = self._leaf(seq)
        if own is not None and own == leaf:
            return own  # the common case: one read, no second block decoded
        follower = self._next_previous_hash(seq) if seq < self.engine.durable_seq else None
        witnesses = [w for w in (own, leaf, follower) if w is not None]
        for witness in witnesses:
            if witnesses.count(witness) >= 2:
                return witness
        return witnesses[0] if len(witnesses) == 1 else None

    def _check_block(self, seq: int, raw: bytes | None) -> None:
        key = keys.block_key(seq)
        block: Any = None
        problem = None
        if raw is None:
            problem = "missing"
        else:
            try:
                block = codec.decode(raw)
            except ValueError as exc:
                problem = f"does not decode: {exc}"
        if block is not None:
            problem = check_block(block)
            if problem is None and block["blockAddress"] != {
                "strandId": self.engine.strand_id, "sequenceNo": seq,
            }:  # fmt: skip
                problem = "blockAddress does not match its place in the journal"
            if problem is None and bytes(block["previousBlockHash"]) != self._previous_hash:
                problem = "previousBlockHash does not match the block before"
        own = None if problem is not None else bytes(block["blockHash"])
        expected = self.expected_hash(seq, own)
        if problem is None and own != expected:
            problem = "its hash is not the one the journal holds for it (a rewritten block)"
        if problem is not None:
            self.findings.append(Finding(BLOCK, key, seq, f"block {seq}: {problem}"))
        else:
            self._check_pointers(seq, block)
        if expected is None:  # nothing to go on: what follows is checked against a guess
            self.findings.append(Finding(BLOCK, key, seq, f"block {seq}: no witness agrees"))
            expected = own or b"\0" * 32
        self._previous_hash = expected
        for level, index, node in self._frontier.append(expected):
            nkey = keys.node_key(level, index)
            stored = self.engine.storage.get(nkey)
            if stored is None or _unframe(stored) != node:
                self.findings.append(
                    Finding(MERKLE, nkey, seq, f"Merkle node ({level}, {index}) is damaged",
                            codec.frame(node))
                )  # fmt: skip

    def _check_pointers(self, seq: int, block: dict[str, Any]) -> None:
        storage = self.engine.storage
        value = keys.encode_u64(seq)
        tkey = keys.tx_key(block["transactionId"])
        if seq > 0 and storage.get(tkey) != value:  # genesis has no pointer
            self.findings.append(
                Finding(TRANSACTION, tkey, seq, f"transaction pointer of block {seq}", value)
            )
        documents = block["transactionInfo"]["documents"]
        for revision in block["revisions"]:
            meta = revision["metadata"]
            doc_id, version = meta["id"], meta["version"]
            table_id = documents[doc_id]["tableId"]
            rkey = keys.revision_key(table_id, doc_id, version)
            if storage.get(rkey) != value:
                self.findings.append(
                    Finding(REVISION, rkey, seq, f"revision pointer of block {seq}", value)
                )
            data_hash = None if "data" not in revision else ion_hash(revision["data"])
            if "data" not in revision and "dataHash" in revision:
                data_hash = bytes(revision["dataHash"])  # redacted: it was not a delete
            self._latest[(table_id, doc_id)] = (version, seq, data_hash)

    # ----------------------------------------------------------------- documents, indexes
    def finish(self) -> list[Finding]:
        """After the blocks: check documents and index entries; returns every finding.

        Documents and index entries change with every commit, so they are read in ONE scan
        (one consistent snapshot, D before X) and judged only where the pass can judge: a
        document whose revision is newer than the pass's last block is skipped, with its
        index entries, and so is the index check when the catalog changed meanwhile."""
        if any(f.kind == BLOCK for f in self.findings):
            return self.findings  # derived state is checked against intact blocks only
        engine = self.engine
        catalog_version, catalog = engine.catalog_version, engine.catalog
        indexes = {
            table.table_id: [(index.index_id, index.field) for index in table.indexes]
            for table in catalog.tables.values()
            if table.indexes
        }
        expected: set[bytes] = set()  # index entries the documents imply
        skipped: set[str] = set()  # doc ids not judged this pass: their index entries neither
        stray: list[bytes] = []
        seen: set[tuple[str, str]] = set()
        scan = engine.storage.scan(keys.DOC_PREFIX, keys.prefix_end(keys.INDEX_PREFIX))
        for key, raw in scan:
            if key[:1] == keys.DOC_PREFIX:
                self._check_document(key, raw, indexes, expected, skipped, seen)
            elif key[:1] == keys.INDEX_PREFIX:
                if key in expected:
                    expected.discard(key)
                elif keys.index_key_doc_id(key) not in skipped:
                    stray.append(key)
        for (table_id, doc_id), (version, _, data_hash) in self._latest.items():
            if (
                data_hash is not None
                and (table_id, doc_id) not in seen
                and not self._newer_revision(table_id, doc_id, version)  # not deleted since
            ):
                self.findings.append(
                    Finding(DOCUMENT, keys.doc_key(table_id, doc_id), None,
                            f"document {table_id}/{doc_id} is missing")
                )  # fmt: skip
        if engine.catalog_version == catalog_version:
            for key in stray:
                self.findings.append(Finding(INDEX, key, None, "a stray index entry"))
            for key in sorted(k for k in expected if keys.index_key_doc_id(k) not in skipped):
                self.findings.append(Finding(INDEX, key, None, "a missing index entry"))
        return self.findings

    def _check_document(
        self,
        key: bytes,
        raw: bytes,
        indexes: dict[str, list[tuple[str, str]]],
        expected: set[bytes],
        skipped: set[str],
        seen: set[tuple[str, str]],
    ) -> None:
        table_id, doc_id = key[1:23].decode("ascii"), key[23:45].decode("ascii")
        seen.add((table_id, doc_id))
        latest = self._latest.get((table_id, doc_id))
        try:
            state = decode_doc(raw)
        except (ValueError, KeyError, TypeError, StrandError):
            state = None
        if state is not None and state.seq > self.stop_seq:
            skipped.add(doc_id)  # written after the pass's last block: not ours to judge
            return
        ok = state is not None and latest is not None and (state.version, state.seq) == latest[:2]
        if ok and state is not None and latest is not None and latest[2] != ion_hash(state.data):
            ok = False
        if not ok or state is None:
            skipped.add(doc_id)  # its index entries wait for the next pass
            if latest is None or not self._newer_revision(table_id, doc_id, latest[0]):
                self.findings.append(
                    Finding(DOCUMENT, key, None, f"document {table_id}/{doc_id} is damaged")
                )
            return
        for index_id, field_name in indexes.get(table_id, ()):
            for vkey in index_keys(state.data, field_name):
                expected.add(keys.index_key(index_id, vkey, doc_id))

    def _newer_revision(self, table_id: str, doc_id: str, version: int) -> bool:
        """Whether a revision of the document after `version` exists (committed after the
        pass began: its current state is not the pass's to judge)."""
        prefix = keys.revision_key(table_id, doc_id, 0)[:45]
        last = self.engine.storage.last_key(prefix, keys.prefix_end(prefix))
        return last is not None and keys.revision_key_parts(last)[2] > version


def _unframe(raw: bytes) -> bytes | None:
    try:
        return codec.unframe(raw)
    except ValueError:
        return None


def damaged_blocks(findings: Iterable[Finding]) -> list[int]:
    return sorted(
        {f.sequence_no for f in findings if f.kind == BLOCK and f.sequence_no is not None}
    )


# --------------------------------------------------------------------- mending
def mend(engine: Engine, findings: Sequence[Finding]) -> int:
    """Write the right value of every finding that can be mended locally (all but damaged
    blocks), re-deriving documents and index entries from the state current now. Returns
    how many entries were written or deleted. Call it where no commit is being written.
    Nothing is mended while any block is damaged: repair the blocks first, scrub again."""
    if damaged_blocks(findings):
        return 0
    puts: dict[bytes, bytes] = {}
    deletes: set[bytes] = set()
    for finding in findings:
        if finding.kind in (MERKLE, REVISION, TRANSACTION) and finding.value is not None:
            puts[finding.key] = finding.value
        elif finding.kind == DOCUMENT:
            table_id, doc_id = finding.key[1:23].decode(), finding.key[23:45].decode()
            value = document_value(engine, table_id, doc_id)
            if value is None:
                deletes.add(finding.key)
            else:
                puts[finding.key] = value
        elif finding.kind == INDEX:
            if index_entry_holds(engine, finding.key):
                puts[finding.key] = b""
            else:
                deletes.add(finding.key)
    if puts or deletes:
        engine.storage.write(sorted(puts.items()), sorted(deletes - puts.keys()))
    return len(puts) + len(deletes - puts.keys())


def document_value(engine: Engine, table_id: str, doc_id: str) -> bytes | None:
    """The `D` value the journal implies for a document now (None: it is deleted)."""
    state = engine.doc_from_journal(table_id, doc_id)
    if state is None:
        return None
    return encode_doc(state.version, state.seq, codec.pack(state.data, check_names=False))


def index_entry_holds(engine: Engine, key: bytes) -> bool:
    """Whether index entry `key` belongs in the index, given the current documents."""
    index_id = key[1:23].decode("ascii", "replace")
    doc_id = keys.index_key_doc_id(key)
    for table in engine.catalog.tables.values():
        for index in table.indexes:
            if index.index_id == index_id and table.table_id not in (
                SYSTEM_TABLE_ID, REDACTION_TABLE_ID,
            ):  # fmt: skip
                raw = engine.storage.get(keys.doc_key(table.table_id, doc_id))
                if raw is None:
                    return False
                data = decode_doc(raw).data
                return key in {
                    keys.index_key(index_id, v, doc_id) for v in index_keys(data, index.field)
                }
    return False


def repair_blocks(engine: Engine, blocks: dict[int, bytes]) -> list[int]:
    """Write the blocks a healthy replica sent (sequence number -> stored bytes) over damaged
    ones, each only if it verifies and hashes to what this journal expects of it (its Merkle
    leaf, or the next block's previousBlockHash). Returns the sequence numbers written."""
    scrub = Scrub(engine)
    good: list[tuple[bytes, bytes]] = []
    for seq, raw in sorted(blocks.items()):
        try:
            block = codec.decode(raw)
        except ValueError:
            continue
        expected = scrub.expected_hash(seq, None)
        if (
            check_block(block) is None
            and block["blockAddress"] == {"strandId": engine.strand_id, "sequenceNo": seq}
            and expected is not None
            and bytes(block["blockHash"]) == expected
        ):
            good.append((keys.block_key(seq), raw))
    if good:
        engine.storage.write(good)
    return [keys.block_seq(k) for k, _ in good]

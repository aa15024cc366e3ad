"""Offline verification of a journal export against a digest saved earlier.

An auditor holds a digest (QLDB's GetDigest answer, `{"Digest": base64, "DigestTipAddress":
{"IonText": "{strandId:\"…\",sequenceNo:N}"}}`, also what `strand digest` writes) and an
export (`core.export_format`). `ExportVerifier` is fed the export's blocks in order, object
by object, and checks, with nothing but `core.verification` (hashlib, amazon-ion, Ion Hash,
Merkle roots):

1. every block's hashes (`verification.check_block`: revisions, transactionInfo,
   entriesHash, blockHash);
2. the sequence: each block follows the one before it, in the strand of the digest, and lies
   in the range its object's name claims;
3. the chain across objects: each block's previousBlockHash is the blockHash before it;
4. the Merkle root over block hashes 0..tip (the export's first blocks, or the
   `strandMerkleFrontier` of its completed manifest for an export that starts later) equals
   the digest.

Every failure is an `ExportProblem` located by object key, block sequence number (when
known) and what failed. An export verifies (`ExportReport.ok`) only when it holds the digest's
tip block and nothing failed. Blocks after the tip are checked (1-3) but no digest covers
them: `ExportReport.beyond_tip` counts them.

This is the one verifier of exports: `strand verify export`, `strand restore --digest` and
the migration from QLDB (`strand import --qldb-export`, which also needs
`ExportReport.refusal() is None`: the whole journal from block 0 to exactly the tip) all feed
it, through the one reader (`core.export_format.decode_object`, cluster/export.py's
`read_export_blocks`).

JSON exports lose the Ion types of documents' data, so a revision whose data does not hash
to its revision hash may have been altered or merely down-converted: such revisions are
counted (`unchecked_revisions`), not failed; everything else of a JSON block (hashes, chain,
transactionInfo) is checked as for Ion.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import verification
from core.iontext import IonTextError, load_text
from core.merkle import Frontier, range_nodes
from core.verification import VerificationError

__all__ = ["ExportProblem", "ExportReport", "ExportVerifier", "parse_digest"]

MAX_PROBLEMS = 100  # reported in full; more are counted


@dataclass(frozen=True, slots=True)
class ExportProblem:
    """What failed, where: the object (key or file), the block's sequence number, if known."""

    key: str
    sequence_no: int | None
    problem: str

    def __str__(self) -> str:
        where = self.key if self.sequence_no is None else f"{self.key} block {self.sequence_no}"
        return f"{where}: {self.problem}"


@dataclass(slots=True)
class ExportReport:
    """The outcome. `ok` only when the digest's tip block was reached and nothing failed."""

    digest_tip_seq: int
    blocks_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    root_checked: bool = False
    beyond_tip: int = 0
    revisions: int = 0
    unchecked_revisions: int = 0
    problems: list[ExportProblem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.root_checked and self.problem_count == 0

    @property
    def data_verified(self) -> bool:
        """Every revision's data hashed to its revision hash (False only for JSON)."""
        return self.unchecked_revisions == 0

    def refusal(self) -> tuple[str, str] | None:
        """(where, why) an export cannot stand for the whole journal up to the digest's tip
        (what a migration needs): the first problem, blocks beyond the tip or before block
        0 missing; None when it can."""
        if self.problems:
            first = self.problems[0]
            where = (
                first.key if first.sequence_no is None else f"{first.key} block {first.sequence_no}"
            )
            return where, first.problem
        if not self.ok:
            return "", "the export does not verify against the digest"
        if self.first_seq != 0:
            return "", f"the export starts at block {self.first_seq}: the whole journal is needed"
        if self.beyond_tip:
            return "", (
                f"the export goes beyond the digest's tip (block {self.digest_tip_seq}) by "
                f"{self.beyond_tip} blocks; save a digest that covers the whole export"
            )
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "digestTipSequenceNo": self.digest_tip_seq,
            "blocksChecked": self.blocks_checked,
            "firstSequenceNo": self.first_seq,
            "lastSequenceNo": self.last_seq,
            "rootChecked": self.root_checked,
            "blocksBeyondTip": self.beyond_tip,
            "revisions": self.revisions,
            "uncheckedRevisions": self.unchecked_revisions,
            "problemCount": self.problem_count,
            "problems": [
                {"key": p.key, "sequenceNo": p.sequence_no, "problem": p.problem}
                for p in self.problems
            ],
        }


def parse_digest(saved: Mapping[str, Any]) -> tuple[bytes, str, int]:
    """(digest, strandId, tip sequence number) of a saved digest: QLDB's GetDigest answer as
    JSON (``{"Digest": "<base64>", "DigestTipAddress": {"IonText": "{strandId:…,sequenceNo:N}"}}``,
    also what `strand digest` writes), or a `get_digest()` result (`digest` bytes,
    `digestTipAddress` a struct); either spelling of the names, the digest as base64 text or
    bytes, the tip as an IonText holder, Ion text or a struct. VerificationError otherwise."""
    try:
        raw = saved["Digest"] if "Digest" in saved else saved["digest"]
        if isinstance(raw, str):
            digest = base64.b64decode(raw, validate=True)
        elif isinstance(raw, bytes | bytearray | memoryview):
            digest = bytes(raw)
        else:
            raise TypeError("the digest is neither base64 text nor bytes")
        tip = (
            saved["DigestTipAddress"] if "DigestTipAddress" in saved else saved["digestTipAddress"]
        )
        if isinstance(tip, Mapping) and "IonText" in tip:
            tip = tip["IonText"]
        if isinstance(tip, str):
            tip = load_text(tip)  # the pure-Python Ion reader
        strand_id, seq = tip["strandId"], tip["sequenceNo"]
    except (KeyError, TypeError, ValueError, IonTextError) as exc:
        raise VerificationError(f"not a saved digest: {exc!r}") from None
    if not isinstance(strand_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise VerificationError("not a saved digest: the tip needs a strandId and a sequenceNo")
    if seq < 0 or len(digest) != 32:
        raise VerificationError("not a saved digest: a 32-byte Digest and a sequenceNo >= 0")
    return digest, strand_id, int(seq)


def _hash(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


class ExportVerifier:
    """Feed blocks in export order (`start_object`, `add_block`/`add_problem`), then `finish`."""

    def __init__(
        self, digest: bytes, strand_id: str, tip_seq: int, frontier: list[bytes] | None = None
    ) -> None:
        self.digest = digest
        self.strand_id = strand_id
        self.report = ExportReport(tip_seq)
        self._frontier_hashes = frontier or []
        self._tree: Frontier | None = None
        self._previous_hash: bytes | None = None
        self._next_seq: int | None = None
        self._key = ""
        self._claimed: tuple[int, int] | None = None
        self._gap = False  # a block was missing or unreadable: the root cannot be computed

    # --- feeding ----------------------------------------------------------------------------
    def start_object(self, key: str, claimed: tuple[int, int] | None) -> None:
        """The next blocks come from object `key`, whose name claims blocks `claimed`."""
        self._key = key
        self._claimed = claimed

    def add_problem(self, key: str, sequence_no: int | None, problem: str) -> None:
        self.report.problem_count += 1
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(ExportProblem(key, sequence_no, problem))

    def add_unreadable(self, key: str, position: str, error: str) -> None:
        """A block that could not be read: located at the block expected there."""
        self._gap = True
        self.add_problem(key, self._next_seq, f"{position}: {error}")

    def _fail(self, seq: int | None, problem: str) -> None:
        self.add_problem(self._key, seq, problem)

    def _start_tree(self, seq: int) -> None:
        """The Merkle tree of blocks 0..seq-1, from the manifest's frontier hashes."""
        nodes = range_nodes(0, seq)
        if seq and len(nodes) != len(self._frontier_hashes):
            self._fail(
                seq,
                f"the export starts at block {seq} and its completed manifest has no Merkle "
                f"frontier of blocks 0..{seq - 1} ({len(self._frontier_hashes)} of "
                f"{len(nodes)} hashes): the root cannot be checked",
            )
            return
        stored = dict(zip(nodes, self._frontier_hashes, strict=True))
        self._tree = Frontier.from_storage(seq, lambda lv, ix: stored[(lv, ix)])

    def add_block(self, block: Mapping[str, Any], *, lossy: bool = False) -> None:
        """Check one block (`lossy`: read from JSON, documents' data may not hash)."""
        report = self.report
        address = block.get("blockAddress")
        seq = address.get("sequenceNo") if isinstance(address, Mapping) else None
        if not isinstance(address, Mapping) or not isinstance(seq, int) or isinstance(seq, bool):
            self._fail(None, f"a block without a sequence number (after {self._next_seq})")
            return
        seq = int(seq)
        if report.first_seq is None:
            report.first_seq = seq
            self._start_tree(seq)
        elif seq != self._next_seq:
            self._gap = True
            self._fail(seq, f"block {self._next_seq} was expected here")
        if address.get("strandId") != self.strand_id:
            self._fail(seq, f"belongs to strand {address.get('strandId')!r}, not the digest's")
        if self._claimed is not None and not self._claimed[0] <= seq <= self._claimed[1]:
            self._fail(seq, f"lies outside the range {self._claimed} the object's name claims")
        report.blocks_checked += 1
        report.last_seq = seq
        self._next_seq = seq + 1
        block_hash = _hash(block.get("blockHash")) or b""
        self._check_hashes(seq, block, block_hash, lossy)
        previous = _hash(block.get("previousBlockHash"))
        if self._previous_hash is not None and previous != self._previous_hash:
            self._fail(seq, "previousBlockHash is not the blockHash of the block before it")
        if self._previous_hash is None and seq == 0 and previous:
            self._fail(seq, "block 0 has a previousBlockHash")
        self._previous_hash = block_hash
        tree = self._tree
        if tree is None or tree.size != seq or seq > report.digest_tip_seq:
            if seq > report.digest_tip_seq:
                report.beyond_tip += 1
            return
        tree.append(block_hash)
        if seq == report.digest_tip_seq:
            root = tree.root()
            if root != self.digest:
                self._fail(
                    seq,
                    f"the Merkle root of blocks 0..{seq} is {root.hex()}, the digest is "
                    f"{self.digest.hex()}",
                )
            report.root_checked = True

    def _check_hashes(
        self, seq: int, block: Mapping[str, Any], block_hash: bytes, lossy: bool
    ) -> None:
        revisions = block.get("revisions")
        self.report.revisions += len(revisions) if isinstance(revisions, list) else 0
        if not lossy:
            try:  # an empty proof leads from blockHash to itself: only the block is checked
                verification.check_block(block, [], block_hash)
            except VerificationError as exc:
                self._fail(seq, str(exc))
            return
        revisions = [r for r in block.get("revisions") or [] if isinstance(r, Mapping)]
        hashes_only = {**block, "revisions": [{"hash": r.get("hash")} for r in revisions]}
        try:
            verification.check_block(hashes_only, [], block_hash)
        except (VerificationError, AttributeError) as exc:
            self._fail(seq, str(exc))
            return
        for revision in revisions:
            try:
                if verification.revision_hash(revision) != _hash(revision.get("hash")):
                    self.report.unchecked_revisions += 1
            except VerificationError:
                self.report.unchecked_revisions += 1

    def finish(self) -> ExportReport:
        report = self.report
        if report.first_seq is None:
            self.add_problem(self._key, None, "the export holds no block")
        elif not report.root_checked and self._gap:
            self.add_problem(
                self._key,
                None,
                "blocks are missing or unreadable: the Merkle root cannot be computed",
            )
        elif not report.root_checked and self._tree is not None:
            last = report.last_seq
            self.add_problem(
                self._key,
                last,
                f"the export ends at block {last}, before the digest's tip block "
                f"{report.digest_tip_seq}: the digest cannot be checked",
            )
        return report

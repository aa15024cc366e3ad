"""The auditor's module: check QLDB (or Strand) revisions, blocks and proofs without the server.

Trust base: this module, `core.ionhash` (Ion Hash SHA-256 and `dot`), `core.merkle` (Merkle
roots and the consistency check) and amazon-ion (only to parse Ion text). Nothing here talks
to a ledger; every answer is recomputed from the values given.

Rules (shared/reference/qldb.md section 1):

- ``H(v)`` is the Ion Hash SHA-256 of `v`; ``dot`` is QLDB's commutative hash join.
- Revision hash = ``dot(H(metadata), H(data))``. A redacted revision carries ``dataHash`` in
  place of ``data`` and ``dataHash`` stands in for ``H(data)``. A revision with neither (the
  revision that deletes a document) hashes as ``dot(H(metadata), b"") == H(metadata)``: an
  empty side of `dot` returns the other, and that is what QLDB and `core.journal` compute
  for a revision without data. A ``data`` field that is present, even ``null``, is hashed.
- Block: ``entriesHash == root_of(entriesHashList)`` (pairwise, odd last node carried up),
  ``blockHash == dot(entriesHash, previousBlockHash)`` (a missing previousBlockHash counts
  as empty), ``H(transactionInfo)`` is in entriesHashList when transactionInfo is given, and
  when revisions are given: every revision that has metadata matches its hash, and the Merkle
  root of all revision hashes, in order, is in entriesHashList. Revisions given as ``{hash}``
  only (QLDB's exports hold such system revisions) enter the root as given.
- A proof verifies when ``reduce(dot, proof, leaf) == digest``. It is never de-duplicated:
  the same hash may appear twice in a row. An empty proof element is the identity of `dot`
  (a genesis block's previousBlockHash is empty) and is accepted as such.

Inputs may be shaped as QLDB returned them or as Strand returns them: dicts or amazon-ion
IonPyDicts; hashes as bytes, bytearray, memoryview or IonPyBytes; proofs as sequences of
hashes. A revision, block, hash or proof may also be given as Ion text (a str) or as the
``{"IonText": "..."}`` value holder of QLDB's API (GetDigest's Digest is bytes; GetBlock's
Block and Proof, GetRevision's Revision and Proof are such holders).

Errors: `revision_hash` and the ``check_*`` functions raise `VerificationError` (a ValueError)
saying what does not verify or what is malformed; the ``verify_*`` functions answer the
question "does this verify?" and return False for anything that does not, malformed input
included. Neither raises KeyError, TypeError or IndexError for bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

from amazon.ion.simple_types import IonPyDict, IonPyNull

from core import merkle
from core.ionhash import IonHashTypeError, dot, ion_hash
from core.iontext import IonTextError, load_text
from core.merkle import root_of

__all__ = [
    "VerificationError",
    "check_block",
    "check_revision",
    "dot",
    "ion_hash",
    "revision_hash",
    "verify_block",
    "verify_consistency",
    "verify_proof",
    "verify_revision",
]


class VerificationError(ValueError):
    """A value does not verify, or is not shaped as the check requires (the message says)."""


# --- input shapes -----------------------------------------------------------------------------


def _ion_text(value: object) -> str | None:
    """The Ion text of a str or of a {"IonText": str} value holder, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and set(value) == {"IonText"}:
        text = value["IonText"]
        if isinstance(text, str):
            return text
    return None


def _parse(value: object, what: str) -> object:
    """`value` itself, or the value its Ion text holds."""
    text = _ion_text(value)
    if text is None:
        return value
    try:  # text from the user: read without amazon-ion's C extension (core/iontext.py)
        return load_text(text)
    except IonTextError as exc:
        raise VerificationError(f"{what} is not valid Ion text: {exc}") from None


def _hash(value: object, what: str) -> bytes:
    value = _parse(value, what)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise VerificationError(f"{what} must be a hash (bytes), not {type(value).__qualname__}")


def _hashes(value: object, what: str) -> list[bytes]:
    value = _parse(value, what)
    if isinstance(value, list | tuple):
        return [_hash(item, f"{what}[{i}]") for i, item in enumerate(value)]
    raise VerificationError(f"{what} must be a list of hashes, not {type(value).__qualname__}")


def _struct(value: object, what: str) -> Mapping[str, Any]:
    value = _parse(value, what)
    if isinstance(value, dict | IonPyDict):
        return value
    raise VerificationError(f"{what} must be a struct, not {type(value).__qualname__}")


def _field(struct: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in struct:
        raise VerificationError(f"{what} has no {name}")
    return struct[name]


def _is_null(value: object) -> bool:
    return value is None or isinstance(value, IonPyNull)


def _ion_hash(value: object, what: str) -> bytes:
    try:
        return ion_hash(value)
    except IonHashTypeError as exc:
        raise VerificationError(f"{what} is not an Ion value: {exc}") from None


def _as_bool(check: Any, *args: object) -> bool:
    try:
        check(*args)
    except VerificationError:
        return False
    return True


# --- revisions --------------------------------------------------------------------------------


def revision_hash(revision: object) -> bytes:
    """``dot(H(metadata), H(data))``; dataHash stands in for H(data); no data: H(metadata).

    Raises `VerificationError` when the revision has no metadata struct, a field is not an
    Ion value, or it carries both data and a dataHash that disagree.
    """
    rev = _struct(revision, "revision")
    metadata = _struct(_field(rev, "metadata", "revision"), "revision metadata")
    metadata_hash = _ion_hash(metadata, "revision metadata")
    if "data" in rev:
        data_hash = _ion_hash(rev["data"], "revision data")
        if "dataHash" in rev and _hash(rev["dataHash"], "revision dataHash") != data_hash:
            raise VerificationError("revision data does not match its dataHash")
    elif "dataHash" in rev:
        data_hash = _hash(rev["dataHash"], "revision dataHash")
    else:
        data_hash = b""  # a deleted document's revision
    return dot(metadata_hash, data_hash)


def _check_proof(leaf: bytes, proof: object, digest: object) -> None:
    path = _hashes(proof, "proof")
    expected = _hash(digest, "digest")
    if not leaf or not expected:
        raise VerificationError("empty hashes never verify")
    if reduce(dot, path, leaf) != expected:
        raise VerificationError("the proof does not lead to the digest")


def verify_proof(leaf_hash: object, proof: object, digest: object) -> bool:
    """``reduce(dot, proof, leaf_hash) == digest``; False for malformed input."""
    try:
        _check_proof(_hash(leaf_hash, "leaf hash"), proof, digest)
    except VerificationError:
        return False
    return True


def check_revision(revision: object, proof: object, digest: object) -> None:
    """Raise `VerificationError` unless the revision matches its hash and the proof leads
    from that hash to `digest`."""
    rev = _struct(revision, "revision")
    claimed = _hash(_field(rev, "hash", "revision"), "revision hash")
    if revision_hash(rev) != claimed:
        raise VerificationError("the revision does not match its hash")
    _check_proof(claimed, proof, digest)


def verify_revision(revision: object, proof: object, digest: object) -> bool:
    """The revision matches its hash and the proof leads from it to `digest`."""
    return _as_bool(check_revision, revision, proof, digest)


# --- blocks -----------------------------------------------------------------------------------


def _check_revisions(revisions: object, entries: list[bytes]) -> None:
    revisions = _parse(revisions, "block revisions")
    if _is_null(revisions):
        return
    if not isinstance(revisions, list | tuple):
        raise VerificationError("block revisions must be a list")
    if not revisions:
        return
    hashes = []
    for position, item in enumerate(revisions):
        what = f"block revision {position}"
        rev = _struct(item, what)
        claimed = _hash(_field(rev, "hash", what), f"{what} hash")
        if "metadata" in rev and revision_hash(rev) != claimed:
            raise VerificationError(f"{what} does not match its hash")
        hashes.append(claimed)
    if root_of(hashes) not in entries:
        raise VerificationError("the root of the revision hashes is not in entriesHashList")


def check_block(block: object, proof: object, digest: object) -> None:
    """Raise `VerificationError` unless every hash of the block matches its contents and the
    proof leads from blockHash to `digest` (see the module docstring for the rules)."""
    blk = _struct(block, "block")
    entries = _hashes(_field(blk, "entriesHashList", "block"), "entriesHashList")
    entries_hash = _hash(_field(blk, "entriesHash", "block"), "entriesHash")
    if root_of(entries) != entries_hash:
        raise VerificationError("entriesHash is not the Merkle root of entriesHashList")
    previous = blk.get("previousBlockHash")
    previous_hash = b"" if _is_null(previous) else _hash(previous, "previousBlockHash")
    block_hash = _hash(_field(blk, "blockHash", "block"), "blockHash")
    if dot(entries_hash, previous_hash) != block_hash:
        raise VerificationError("blockHash is not dot(entriesHash, previousBlockHash)")
    if "transactionInfo" in blk:
        info = _parse(blk["transactionInfo"], "transactionInfo")
        if _ion_hash(info, "transactionInfo") not in entries:
            raise VerificationError("H(transactionInfo) is not in entriesHashList")
    if "revisions" in blk:
        _check_revisions(blk["revisions"], entries)
    _check_proof(block_hash, proof, digest)


def verify_block(block: object, proof: object, digest: object) -> bool:
    """Every hash of the block matches its contents and the proof leads from blockHash to
    `digest`."""
    return _as_bool(check_block, block, proof, digest)


# --- digests ----------------------------------------------------------------------------------


def verify_consistency(
    old_size: int, new_size: int, old_digest: object, new_digest: object, proof: object
) -> bool:
    """Does the strand of `new_size` blocks with `new_digest` extend the one of `old_size`
    blocks with `old_digest`? (`core.merkle.verify_consistency`, RFC 9162 2.1.4.2 with `dot`.)

    Accepts the same hash and proof shapes as the other checks; invalid sizes (not
    ``0 < old_size <= new_size``) and malformed input return False.
    """
    try:
        return merkle.verify_consistency(
            old_size,
            new_size,
            _hash(old_digest, "old digest"),
            _hash(new_digest, "new digest"),
            _hashes(proof, "proof"),
        )
    except (VerificationError, merkle.MerkleError, TypeError):
        return False

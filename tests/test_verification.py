"""core.verification: the auditor's checks of revisions, blocks and proofs."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.core import Timestamp, TimestampPrecision

from core import ionhash, verification
from core.verification import (
    VerificationError,
    check_block,
    dot,
    ion_hash,
    revision_hash,
    verify_block,
    verify_consistency,
    verify_proof,
    verify_revision,
)

# The public revision of qldb.md section 1, exactly as given there.
QLDB_REVISION = (
    '{blockAddress:{strandId:"KLXwBc1ml2A4Yjc8jbFMX3",sequenceNo:429},'
    "hash:{{DrFztoBrWKz+mCV+BnnMfEZRwfJcD+DNLRPLc16SidY=}},"
    'data:{_key:"myKey1",_val:"MyValue1"},'
    'metadata:{id:"5vHoYG5m0OZCsqdYCs8XLH",version:13,txTime:2021-06-02T07:03:05.226Z,'
    'txId:"EVaGjT4dxspC4GUhHi4DDJ"}}'
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ion_blob(data: bytes) -> str:
    return "{{" + base64.b64encode(data).decode() + "}}"


def test_reexports_are_the_core_functions() -> None:
    assert verification.ion_hash is ionhash.ion_hash
    assert verification.dot is ionhash.dot
    assert issubclass(VerificationError, ValueError)


# --- the public QLDB revision -----------------------------------------------------------------


def qldb_revision() -> Any:
    return simpleion.loads(QLDB_REVISION)


def test_public_qldb_revision_verifies() -> None:
    revision = qldb_revision()
    assert revision_hash(revision) == bytes(revision["hash"])
    assert verify_revision(revision, [], revision["hash"])
    assert verify_revision(QLDB_REVISION, [], revision["hash"])  # as Ion text too
    assert verify_revision({"IonText": QLDB_REVISION}, "[]", ion_blob(revision["hash"]))


def test_public_qldb_revision_as_plain_python_values() -> None:
    revision = {
        "hash": base64.b64decode("DrFztoBrWKz+mCV+BnnMfEZRwfJcD+DNLRPLc16SidY="),
        "data": {"_key": "myKey1", "_val": "MyValue1"},
        "metadata": {
            "id": "5vHoYG5m0OZCsqdYCs8XLH",
            "version": 13,
            "txTime": Timestamp(
                2021, 6, 2, 7, 3, 5, 226000, UTC,
                precision=TimestampPrecision.SECOND, fractional_precision=3,
            ),
            "txId": "EVaGjT4dxspC4GUhHi4DDJ",
        },
    }  # fmt: skip
    assert revision_hash(revision) == revision["hash"]


TAMPERINGS = {
    "metadata.id": lambda r: r["metadata"].__setitem__("id", "5vHoYG5m0OZCsqdYCs8XLI"),
    "metadata.version": lambda r: r["metadata"].__setitem__("version", 14),
    "metadata.version-type": lambda r: r["metadata"].__setitem__("version", Decimal(13)),
    "metadata.txId": lambda r: r["metadata"].__setitem__("txId", "EVaGjT4dxspC4GUhHi4DDK"),
    "metadata.txTime": lambda r: r["metadata"].__setitem__(
        "txTime", simpleion.loads("2021-06-02T07:03:05.227Z")
    ),
    "metadata.txTime-precision": lambda r: r["metadata"].__setitem__(
        "txTime", simpleion.loads("2021-06-02T07:03:05.226000Z")
    ),
    "metadata.extra-field": lambda r: r["metadata"].__setitem__("extra", 1),
    "data._val": lambda r: r["data"].__setitem__("_val", "MyValue2"),
    "data.extra-field": lambda r: r["data"].__setitem__("_other", None),
    "data-removed": lambda r: r.__delitem__("data"),
    "hash": lambda r: r.__setitem__("hash", sha(b"forged")),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_qldb_revision_fails(tamper: Any) -> None:
    revision = qldb_revision()
    digest = bytes(revision["hash"])
    tamper(revision)
    assert not verify_revision(revision, [], digest)


def test_block_address_is_not_part_of_the_revision_hash() -> None:
    """QLDB hashes metadata and data only; the address is checked by the proof's position."""
    revision = qldb_revision()
    revision["blockAddress"]["sequenceNo"] = 430
    assert verify_revision(revision, [], revision["hash"])


def test_redacted_revision_verifies_with_its_data_hash() -> None:
    revision = qldb_revision()
    data_hash = ion_hash(revision["data"])
    del revision["data"]
    revision["dataHash"] = data_hash
    assert verify_revision(revision, [], revision["hash"])
    revision["dataHash"] = sha(b"other data")
    assert not verify_revision(revision, [], revision["hash"])


def test_data_and_data_hash_must_agree() -> None:
    revision = qldb_revision()
    revision["dataHash"] = ion_hash(revision["data"])
    assert revision_hash(revision) == bytes(revision["hash"])
    revision["dataHash"] = sha(b"other data")
    with pytest.raises(VerificationError, match="dataHash"):
        revision_hash(revision)
    assert not verify_revision(revision, [], revision["hash"])


def test_deleted_revision_hashes_as_its_metadata() -> None:
    metadata = {"id": "5vHoYG5m0OZCsqdYCs8XLH", "version": 14, "txTime": None, "txId": "x"}
    revision = {"metadata": metadata, "hash": ion_hash(metadata)}
    assert revision_hash(revision) == ion_hash(metadata) == dot(ion_hash(metadata), b"")
    assert verify_revision(revision, [], revision["hash"])
    # A data field that is present, even null, is hashed: it is not a deletion.
    assert revision_hash({**revision, "data": None}) == dot(ion_hash(metadata), ion_hash(None))


# --- proofs -----------------------------------------------------------------------------------


def test_proof_with_a_repeated_hash_verifies() -> None:
    leaf, sibling = sha(b"leaf"), sha(b"sibling")
    digest = dot(dot(leaf, sibling), sibling)
    assert verify_proof(leaf, [sibling, sibling], digest)
    assert not verify_proof(leaf, [sibling], digest)  # never de-duplicated


def test_proof_is_folded_in_order() -> None:
    leaf, a, b = sha(b"leaf"), sha(b"a"), sha(b"b")
    digest = dot(dot(leaf, a), b)
    assert verify_proof(leaf, [a, b], digest)
    assert verify_proof(leaf, (a, b), digest)
    assert not verify_proof(leaf, [b, a], digest)
    assert verify_proof(leaf, [], leaf)
    assert not verify_proof(b"", [], b"")


def test_proof_and_digest_as_ion_text() -> None:
    leaf, a, b = sha(b"leaf"), sha(b"a"), sha(b"b")
    digest = dot(dot(leaf, a), b)
    holder = {"IonText": f"[{ion_blob(a)}, {ion_blob(b)}]"}
    assert verify_proof(leaf, holder, digest)
    assert verify_proof(ion_blob(leaf), holder["IonText"], ion_blob(digest))
    assert verify_proof(bytearray(leaf), [memoryview(a), b], digest)


# --- blocks -----------------------------------------------------------------------------------


def make_revision(doc_id: str, version: int, data: Any, tx_id: str, tx_time: Any) -> dict[str, Any]:
    metadata = {"id": doc_id, "version": version, "txTime": tx_time, "txId": tx_id}
    revision: dict[str, Any] = {"metadata": metadata}
    if data is not None:
        revision["data"] = data
    revision["hash"] = dot(ion_hash(metadata), ion_hash(data) if data is not None else b"")
    return revision


def make_block(sequence_no: int, previous_block_hash: bytes) -> dict[str, Any]:
    """A block built by hand from the rules of qldb.md section 1."""
    tx_id = f"tx{sequence_no:020d}"
    tx_time = Timestamp(
        2021, 6, 2, 7, 3, sequence_no, 226000, UTC,
        precision=TimestampPrecision.SECOND, fractional_precision=3,
    )  # fmt: skip
    statement = "INSERT INTO Vehicle ?"
    transaction_info = {
        "statements": [
            {"statement": statement, "startTime": tx_time, "statementDigest": ion_hash(statement)}
        ],
        "documents": {"doc1": {"tableName": "Vehicle", "tableId": "t1", "statements": [0]}},
    }
    redacted = make_revision("doc3", 0, {"secret": 1}, tx_id, tx_time)
    redacted["dataHash"] = ion_hash(redacted.pop("data"))
    revisions = [
        make_revision("doc1", 0, {"VIN": "1N4AL11D75C109151", "Price": Decimal("23.50")},
                      tx_id, tx_time),
        make_revision("doc2", 3, None, tx_id, tx_time),  # a deletion
        redacted,
        {"hash": sha(b"system revision %d" % sequence_no)},  # a QLDB system revision
    ]  # fmt: skip
    entries = [
        sha(b"system entry"),
        ion_hash(transaction_info),
        merkle_root([r["hash"] for r in revisions]),
    ]
    entries_hash = merkle_root(entries)
    return {
        "blockAddress": {"strandId": "KLXwBc1ml2A4Yjc8jbFMX3", "sequenceNo": sequence_no},
        "transactionId": tx_id,
        "blockTimestamp": tx_time,
        "blockHash": dot(entries_hash, previous_block_hash),
        "entriesHash": entries_hash,
        "previousBlockHash": previous_block_hash,
        "entriesHashList": entries,
        "transactionInfo": transaction_info,
        "revisions": revisions,
    }


def merkle_root(leaves: list[bytes]) -> bytes:
    """Pairwise left to right, an odd last node carried up (written out, not core.merkle)."""
    level = list(leaves)
    while len(level) > 1:
        paired = [dot(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
    return level[0]


def strand() -> tuple[list[dict[str, Any]], bytes]:
    """Three chained blocks and the digest over them: dot(dot(b0, b1), b2)."""
    blocks: list[dict[str, Any]] = []
    previous = b""
    for sequence_no in range(3):
        blocks.append(make_block(sequence_no, previous))
        previous = blocks[-1]["blockHash"]
    b0, b1, b2 = (block["blockHash"] for block in blocks)
    return blocks, dot(dot(b0, b1), b2)


def proofs(blocks: list[dict[str, Any]]) -> list[list[bytes]]:
    b0, b1, b2 = (block["blockHash"] for block in blocks)
    return [[b1, b2], [b0, b2], [dot(b0, b1)]]


def test_hand_built_blocks_verify() -> None:
    blocks, digest = strand()
    for block, proof in zip(blocks, proofs(blocks), strict=True):
        assert verify_block(block, proof, digest)
        check_block(block, proof, digest)


def test_block_read_back_from_ion_verifies() -> None:
    blocks, digest = strand()
    for block, proof in zip(blocks, proofs(blocks), strict=True):
        for binary in (True, False):
            loaded = simpleion.loads(simpleion.dumps(block, binary=binary))
            assert verify_block(loaded, proof, digest)
        text = simpleion.dumps(block, binary=False)
        assert verify_block({"IonText": text}, [ion_blob(h) for h in proof], ion_blob(digest))


def test_revisions_verify_against_the_digest_through_their_block() -> None:
    blocks, digest = strand()
    block, block_proof = blocks[1], proofs(blocks)[1]
    revision_hashes = [r["hash"] for r in block["revisions"]]
    r0, r1, r2, r3 = revision_hashes
    e0, e1, _ = block["entriesHashList"]
    # Revision 0: its sibling, the other pair, the two other entries, previousBlockHash, strand.
    proof = [r1, dot(r2, r3), dot(e0, e1), block["previousBlockHash"], *block_proof]
    assert verify_revision(block["revisions"][0], proof, digest)
    assert not verify_revision(block["revisions"][0], proof[:-1], digest)


def _tamper_block(block: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = block
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


BLOCK_TAMPERINGS = {
    "blockHash": (("blockHash",), sha(b"x")),
    "entriesHash": (("entriesHash",), sha(b"x")),
    "previousBlockHash": (("previousBlockHash",), sha(b"x")),
    "entriesHashList[0]": (("entriesHashList", 0), sha(b"x")),
    "entriesHashList[1]": (("entriesHashList", 1), sha(b"x")),
    "entriesHashList[2]": (("entriesHashList", 2), sha(b"x")),
    "revision-data": (("revisions", 0, "data", "Price"), Decimal("23.5")),
    "revision-metadata": (("revisions", 0, "metadata", "version"), 1),
    "revision-hash": (("revisions", 0, "hash"), sha(b"x")),
    "deleted-revision-hash": (("revisions", 1, "hash"), sha(b"x")),
    "redacted-dataHash": (("revisions", 2, "dataHash"), sha(b"x")),
    "system-revision-hash": (("revisions", 3, "hash"), sha(b"x")),
    "transactionInfo-statement": (
        ("transactionInfo", "statements", 0, "statement"),
        "DELETE FROM Vehicle",
    ),
    "transactionInfo-document": (
        ("transactionInfo", "documents", "doc1", "tableName"),
        "Person",
    ),
}


@pytest.mark.parametrize(("path", "value"), BLOCK_TAMPERINGS.values(), ids=BLOCK_TAMPERINGS.keys())
@pytest.mark.parametrize("position", [0, 1, 2])
def test_tampered_block_fails(path: tuple[Any, ...], value: Any, position: int) -> None:
    blocks, digest = strand()  # fresh blocks: amazon-ion Timestamps cannot be deep-copied
    block = blocks[position]
    proof = proofs(blocks)[position]
    _tamper_block(block, path, value)
    assert not verify_block(block, proof, digest)
    with pytest.raises(VerificationError):
        check_block(block, proof, digest)


def test_block_with_a_wrong_proof_or_digest_fails() -> None:
    blocks, digest = strand()
    b0, b1, b2 = (block["blockHash"] for block in blocks)
    assert not verify_block(blocks[0], [b2, b1], digest)
    assert not verify_block(blocks[0], [b1], digest)
    assert not verify_block(blocks[0], [b1, b2], dot(b0, b1))
    assert not verify_block(blocks[2], proofs(blocks)[0], digest)


def test_block_without_optional_parts_verifies() -> None:
    blocks, digest = strand()
    proof = proofs(blocks)
    del blocks[1]["transactionInfo"], blocks[1]["revisions"]
    assert verify_block(blocks[1], proof[1], digest)
    del blocks[0]["previousBlockHash"]  # a missing previousBlockHash counts as empty
    assert verify_block(blocks[0], proof[0], digest)


# --- malformed input --------------------------------------------------------------------------

MALFORMED_BLOCKS: dict[str, Any] = {
    "none": None,
    "list": [],
    "empty": {},
    "bad-ion-text": "{unclosed",
    "no-entriesHashList": {"entriesHash": b"x", "blockHash": b"x"},
    "entriesHashList-not-list": {"entriesHashList": 5, "entriesHash": b"x", "blockHash": b"x"},
    "hash-is-int": {"entriesHashList": [1], "entriesHash": b"x", "blockHash": b"x"},
    "revision-not-struct": "revisions",
    "revision-without-hash": "revision-hash",
    "transactionInfo-not-ion": "transactionInfo",
}


@pytest.mark.parametrize("case", MALFORMED_BLOCKS.keys())
def test_malformed_block_returns_false_and_check_raises_typed_error(case: str) -> None:
    blocks, digest = strand()
    block: Any = MALFORMED_BLOCKS[case]
    if case == "revision-not-struct":
        block = {**blocks[0], "revisions": [5]}
    elif case == "revision-without-hash":
        block = {**blocks[0], "revisions": [{"metadata": {}}]}
    elif case == "transactionInfo-not-ion":
        block = {**blocks[0], "transactionInfo": object()}
    assert verify_block(block, proofs(blocks)[0], digest) is False
    with pytest.raises(VerificationError):
        check_block(block, proofs(blocks)[0], digest)


@pytest.mark.parametrize(
    "revision",
    [None, 5, "not ion {", {}, {"metadata": 5}, {"metadata": {"a": object()}}, {"hash": b"x"}],
)
def test_malformed_revision(revision: Any) -> None:
    assert verify_revision(revision, [], b"x") is False
    with pytest.raises(VerificationError):
        revision_hash(revision)


@pytest.mark.parametrize(
    ("leaf", "proof", "digest"),
    [
        (None, [], b"x"),
        (b"x", None, b"x"),
        (b"x", [1], b"x"),
        (b"x", "[1, 2]", b"x"),
        (b"x", [], 7),
    ],
)
def test_malformed_proof_returns_false(leaf: Any, proof: Any, digest: Any) -> None:
    assert verify_proof(leaf, proof, digest) is False


# --- consistency ------------------------------------------------------------------------------


def test_consistency_of_strand_digests() -> None:
    blocks, digest = strand()
    b0, b1, b2 = (block["blockHash"] for block in blocks)
    old = dot(b0, b1)
    assert verify_consistency(2, 3, old, digest, [b2])
    assert verify_consistency(2, 3, ion_blob(old), digest, {"IonText": f"[{ion_blob(b2)}]"})
    assert not verify_consistency(2, 3, old, digest, [b1])
    assert not verify_consistency(2, 3, b0, digest, [b2])
    assert verify_consistency(3, 3, digest, digest, [])


@pytest.mark.parametrize(
    ("old_size", "new_size", "proof"),
    [(0, 3, []), (4, 3, []), (-1, 3, []), ("2", 3, []), (2, 3, None), (2, 3, [5])],
)
def test_consistency_with_invalid_input_is_false(old_size: Any, new_size: Any, proof: Any) -> None:
    assert verify_consistency(old_size, new_size, sha(b"a"), sha(b"b"), proof) is False

"""Digests, block and revision proofs at any tip, consistency proofs, and journal audits."""

from __future__ import annotations

import random
from typing import Any

import pytest

from core import Ledger, keys, verification
from core.errors import BlockNotFoundError, InvalidArgumentError, RevisionNotFoundError
from core.journal import check_block
from core.storage import MemoryStorage
from core.transaction import Transaction
from tests.conftest import FakeClock


def _fill(ledger: Ledger, transactions: int) -> list[tuple[dict[str, Any], str]]:
    """Commit `transactions` blocks of 1..3 inserts; return (block address, doc id) pairs."""
    ledger.execute_lambda(lambda tx: tx.create_table("Acct"))
    written: list[tuple[dict[str, Any], str]] = []
    rng = random.Random(7)
    for i in range(transactions):

        def fn(tx: Transaction, i: int = i) -> list[str]:
            return [tx.insert("Acct", {"n": i, "k": k}) for k in range(rng.randint(1, 3))]

        for doc_id in ledger.execute_lambda(fn):
            written.append((ledger.history("Acct", doc_id)[0]["blockAddress"], doc_id))
    return written


def test_every_block_and_revision_verifies_at_every_tip() -> None:
    ledger = Ledger(MemoryStorage(), clock_ms=FakeClock())
    written = _fill(ledger, 20)
    tip = ledger.get_digest()["digestTipAddress"]["sequenceNo"]
    digests = {
        t: ledger.get_digest({"strandId": ledger.strand_id, "sequenceNo": t})["digest"]
        for t in range(tip + 1)
    }
    for address, doc_id in written:
        seq = address["sequenceNo"]
        for t in (seq, (seq + tip) // 2, tip):
            tip_address = {"strandId": ledger.strand_id, "sequenceNo": t}
            got = ledger.get_revision(address, doc_id, tip_address)
            assert verification.verify_revision(got["revision"], got["proof"], digests[t])
            assert not verification.verify_revision(
                got["revision"], got["proof"], digests[t - 1] if t else b"\0" * 32
            )
            block = ledger.get_block(address, tip_address)
            assert verification.verify_block(block["block"], block["proof"], digests[t])
    assert digests[tip] == ledger.get_digest()["digest"]


def test_consistency_between_saved_digests() -> None:
    ledger = Ledger(MemoryStorage(), clock_ms=FakeClock())
    _fill(ledger, 5)
    old = ledger.get_digest()
    _fill_more = [
        ledger.execute_lambda(lambda tx, i=i: tx.insert("Acct", {"x": i})) for i in range(9)
    ]
    assert len(_fill_more) == 9
    new = ledger.get_digest()
    got = ledger.get_consistency_proof(old["digestTipAddress"], new["digestTipAddress"])
    m = old["digestTipAddress"]["sequenceNo"] + 1
    n = new["digestTipAddress"]["sequenceNo"] + 1
    assert verification.verify_consistency(m, n, old["digest"], new["digest"], got["proof"])
    assert not verification.verify_consistency(m, n, new["digest"], new["digest"], got["proof"])


def test_bad_addresses_get_typed_errors(memory_ledger: Ledger) -> None:
    ledger = memory_ledger
    written = _fill(ledger, 2)
    strand = ledger.strand_id
    tip = ledger.get_digest()["digestTipAddress"]["sequenceNo"]
    with pytest.raises(BlockNotFoundError):
        ledger.get_block({"strandId": strand, "sequenceNo": tip + 1})
    with pytest.raises(BlockNotFoundError):
        ledger.get_block({"strandId": "X" * 22, "sequenceNo": 0})
    with pytest.raises(BlockNotFoundError):
        ledger.get_block(
            {"strandId": strand, "sequenceNo": tip}, {"strandId": strand, "sequenceNo": tip - 1}
        )
    with pytest.raises(InvalidArgumentError):
        ledger.get_block({"sequenceNo": 1})
    with pytest.raises(InvalidArgumentError):
        ledger.get_block({"strandId": strand, "sequenceNo": -1})
    with pytest.raises(RevisionNotFoundError):
        ledger.get_revision(written[0][0], "B" * 22)


def test_blocks_are_qldb_shaped(memory_ledger: Ledger) -> None:
    ledger = memory_ledger
    address, doc_id = _fill(ledger, 1)[0]
    block = ledger.get_block(address)["block"]
    assert list(block) == [
        "blockAddress",
        "transactionId",
        "blockTimestamp",
        "blockHash",
        "entriesHash",
        "previousBlockHash",
        "entriesHashList",
        "transactionInfo",
        "revisions",
    ]
    assert check_block(block) is None
    info = block["transactionInfo"]
    assert info["statements"][0]["statement"] == 'INSERT INTO "Acct" ?'
    assert info["documents"][doc_id]["tableName"] == "Acct"
    revision = block["revisions"][0]
    assert set(revision) == {"blockAddress", "hash", "data", "metadata"}
    assert set(revision["metadata"]) == {"id", "version", "txTime", "txId"}
    assert revision["metadata"]["txTime"].fractional_precision == 3
    assert verification.revision_hash(revision) == revision["hash"]
    previous = ledger.get_block(
        {"strandId": ledger.strand_id, "sequenceNo": address["sequenceNo"] - 1}
    )["block"]
    assert block["previousBlockHash"] == previous["blockHash"]


def _stored_blocks(storage: MemoryStorage) -> list[tuple[bytes, bytes]]:
    return list(storage.scan(keys.BLOCK_PREFIX, keys.prefix_end(keys.BLOCK_PREFIX)))


def test_any_flipped_byte_of_any_block_is_detected() -> None:
    storage = MemoryStorage()
    ledger = Ledger(storage, clock_ms=FakeClock())
    _fill(ledger, 3)
    assert ledger.verify_journal().ok
    for key, value in _stored_blocks(storage):
        seq = keys.block_seq(key)
        for position in range(len(value)):
            for flip in (0x01, 0x80):
                corrupted = bytearray(value)
                corrupted[position] ^= flip
                storage.write([(key, bytes(corrupted))])
                report = ledger.verify_journal()
                assert not report.ok, (seq, position)
                assert report.first_bad_sequence_no == seq
        storage.write([(key, value)])
    assert ledger.verify_journal().ok


def test_a_rewritten_block_with_recomputed_hashes_breaks_the_chain() -> None:
    """An attacker who edits a revision and recomputes that block's hashes is still caught."""
    from core import codec
    from core.journal import build_block

    storage = MemoryStorage()
    ledger = Ledger(storage, clock_ms=FakeClock())
    written = _fill(ledger, 3)
    seq = written[0][0]["sequenceNo"]
    key = keys.block_key(seq)
    block = codec.decode(storage.get(key))  # type: ignore[arg-type]
    from core.journal import DocumentWrite, StatementRecord

    statements = [
        StatementRecord(s["statement"], s["startTime"], s["statementDigest"])
        for s in block["transactionInfo"]["statements"]
    ]
    forged_data = {"n": 999, "k": 0}
    writes = [
        DocumentWrite(
            "Acct",
            info["tableId"],
            doc_id,
            0,
            forged_data,
            verification.ion_hash(forged_data),
            tuple(info["statements"]),
        )
        for doc_id, info in block["transactionInfo"]["documents"].items()
    ]
    forged = build_block(
        strand_id=ledger.strand_id,
        sequence_no=seq,
        transaction_id=block["transactionId"],
        timestamp=block["blockTimestamp"],
        previous_block_hash=block["previousBlockHash"],
        statements=statements,
        writes=writes,
    )
    assert check_block(forged) is None
    storage.write([(key, codec.encode(forged))])
    report = ledger.verify_journal()
    assert not report.ok
    assert report.first_bad_sequence_no == seq

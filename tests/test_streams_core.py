"""Journal streams' pure parts: replicated stream state through the commit machine and the
replica (a new Raft entry kind), QLDB's stream records, and the consumer's chain checks.

The cluster, the sinks and the delivery loop are tested in tests/test_streams.py.
"""

from __future__ import annotations

import json

import pytest

from core import Ledger, client_wire, stream_records
from core.errors import NotLeaderError
from core.raftlog import decode_stream_op, encode_stream_op
from core.requests import Done, Failed, Run, UpdateStream
from core.stream_records import ChainVerifier, StreamVerificationError
from core.streams import (
    ACTIVE,
    CANCELED,
    IMPAIRED,
    CheckpointStream,
    CreateStream,
    SetStreamStatus,
    StreamDefinition,
    apply_op,
    first_at_or_after,
)
from tests.test_commit import NAMES, Trio, transfer

DEFINITION = StreamDefinition(
    "s1", "feed", "ledger", stream_records.stream_arn("ledger", "s1"),
    json.dumps({"kind": "jsonl", "path": "/tmp/x"}), 1_700_000_000_000,
)  # fmt: skip


def test_stream_changes_are_idempotent_monotone_and_final_statuses_stick() -> None:
    state = apply_op(None, CreateStream(DEFINITION))
    assert state is not None
    assert state.status == ACTIVE
    assert state.checkpoint is None
    assert apply_op(state, CreateStream(DEFINITION)) is state
    state = apply_op(state, CheckpointStream("s1", 7))
    assert state is not None
    assert state.checkpoint == 7
    assert apply_op(state, CheckpointStream("s1", 3)) == state  # never goes back
    state = apply_op(state, SetStreamStatus("s1", IMPAIRED, "sink down"))
    assert state is not None
    assert (state.status, state.error_cause) == (IMPAIRED, "sink down")
    state = apply_op(state, SetStreamStatus("s1", CANCELED))
    assert state is not None
    assert state.status == CANCELED
    assert apply_op(state, SetStreamStatus("s1", ACTIVE)) == state
    assert apply_op(None, CheckpointStream("s1", 1)) is None


def test_stream_changes_round_trip_through_the_log_and_the_client_wire() -> None:
    for op in (
        CreateStream(DEFINITION),
        CheckpointStream("s1", -1),
        SetStreamStatus("s1", IMPAIRED, "x"),
    ):
        assert decode_stream_op(encode_stream_op(op)) == op
        request_id, request, _ = client_wire.decode_request(
            client_wire.encode_request(5, UpdateStream(op))
        )
        assert (request_id, request) == (5, UpdateStream(op))


def test_a_stream_change_is_replicated_to_every_replica_and_never_a_block() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.setup_accounts(leader)
    follower = next(n for n in NAMES if n != leader)
    trio.submit(follower, 1, UpdateStream(CreateStream(DEFINITION)))
    assert isinstance(trio.outcome(1), Failed)
    assert isinstance(trio.outcome(1).error, NotLeaderError)  # type: ignore[union-attr]
    tip = trio.replicas[leader].engine.durable_seq
    trio.submit(leader, 2, UpdateStream(CreateStream(DEFINITION)))
    trio.submit(leader, 3, Run(trio.ids.new_id(), transfer(), 0))
    trio.submit(leader, 4, UpdateStream(CheckpointStream("s1", 2)))
    trio.submit(leader, 5, UpdateStream(CheckpointStream("s1", 1)))  # late: ignored
    for request_id in (2, 3, 4, 5):
        assert isinstance(trio.outcome(request_id), Done), trio.outcome(request_id)
    trio.tick()
    for replica in trio.replicas.values():
        state = replica.stream("s1")
        assert state is not None
        assert state.checkpoint == 2
        assert state.definition == DEFINITION
        assert [s.stream_id for s in replica.streams()] == ["s1"]
        assert replica.engine.durable_seq == tip + 1  # only the transfer is a block
        for seq in range(replica.engine.durable_seq + 1):
            assert replica.engine.read_block(seq)["transactionInfo"] is not None


def test_a_new_leader_holds_the_checkpoint_its_predecessor_acknowledged() -> None:
    trio = Trio()
    leader = trio.elect()
    trio.submit(leader, 1, UpdateStream(CreateStream(DEFINITION)))
    trio.submit(leader, 2, UpdateStream(CheckpointStream("s1", 9)))
    assert isinstance(trio.outcome(2), Done)
    others = [n for n in NAMES if n != leader]
    trio.blocked = {(leader, n) for n in others} | {(n, leader) for n in others}
    for _ in range(200):
        trio.tick()
        if any(trio.replicas[n].ready_to_serve for n in others):
            break
    new = next(n for n in others if trio.replicas[n].ready_to_serve)
    state = trio.replicas[new].stream("s1")
    assert state is not None
    assert state.checkpoint == 9
    trio.submit(new, 3, UpdateStream(CheckpointStream("s1", 12)))
    assert isinstance(trio.outcome(3), Done)


def test_a_stream_change_proposed_by_a_deposed_leader_is_answered_ask_the_leader() -> None:
    trio = Trio()
    leader = trio.elect()
    others = [n for n in NAMES if n != leader]
    trio.blocked = {(leader, n) for n in others} | {(n, leader) for n in others}
    trio.submit(leader, 1, UpdateStream(CreateStream(DEFINITION)))  # never reaches a majority
    for _ in range(200):
        trio.tick()
        if any(trio.replicas[n].ready_to_serve for n in others):
            break
    trio.blocked = set()
    for _ in range(20):
        trio.tick()
    outcome = trio.outcome(1)
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, NotLeaderError)
    assert all(r.stream("s1") is None for r in trio.replicas.values())


# ----------------------------------------------------------------- records and the consumer


def _ledger_with_blocks(count: int) -> Ledger:
    ledger = Ledger.in_memory()
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    for i in range(count):
        ledger.execute_lambda(lambda tx, i=i: tx.insert("Car", {"VIN": str(i), "n": i}))
    return ledger


def _records(ledger: Ledger, first: int = 0) -> list[bytes]:
    arn = stream_records.stream_arn("ledger", "s1")
    out = [stream_records.encode(stream_records.control_record(arn, "CREATED"))]
    for seq in range(first, ledger.engine.durable_seq + 1):
        block = ledger.engine.read_block(seq)
        out += [stream_records.encode(r) for r in stream_records.block_records(arn, block)]
    return out


def test_records_have_qldbs_shape_and_verify_in_order_with_duplicates_dropped() -> None:
    ledger = _ledger_with_blocks(3)
    raw = _records(ledger)
    records = [stream_records.decode(r) for r in raw]
    assert records[0]["payload"] == {"controlRecordType": "CREATED"}
    block2 = next(r for r in records if stream_records.sequence_no(r) == 2)
    assert block2["recordType"] == "BLOCK_SUMMARY"
    assert set(block2["payload"]) >= {
        "blockAddress", "transactionId", "blockTimestamp", "blockHash", "entriesHash",
        "previousBlockHash", "entriesHashList", "transactionInfo", "revisionSummaries",
    }  # fmt: skip
    assert "revisions" not in block2["payload"]
    details = [r for r in records if r["recordType"] == "REVISION_DETAILS"]
    assert {r["payload"]["tableInfo"]["tableName"] for r in details} >= {"Car"}
    verifier = ChainVerifier(first_seq=0)
    accepted = verifier.feed_all(records + records[3:])  # a redelivered tail: dropped
    assert verifier.blocks == ledger.engine.durable_seq + 1
    assert verifier.duplicates == len(records) - 3
    assert len(accepted) == len(records)


def test_the_consumer_reports_a_gap_a_broken_link_and_a_changed_revision() -> None:
    ledger = _ledger_with_blocks(3)
    records = [stream_records.decode(r) for r in _records(ledger)]
    summaries = [i for i, r in enumerate(records) if r["recordType"] == "BLOCK_SUMMARY"]
    gap = records[: summaries[2]] + records[summaries[3] :]
    with pytest.raises(StreamVerificationError, match="due"):
        ChainVerifier().feed_all(gap)
    tampered = [stream_records.decode(stream_records.encode(r)) for r in records]
    tampered[summaries[2]]["payload"]["previousBlockHash"] = b"\x00" * 32
    with pytest.raises(StreamVerificationError):
        ChainVerifier().feed_all(tampered)
    relinked = [stream_records.decode(stream_records.encode(r)) for r in records]
    forged = b"\x07" * 32  # a block hash swapped, the next block's link swapped to match
    relinked[summaries[2]]["payload"]["blockHash"] = forged
    relinked[summaries[3]]["payload"]["previousBlockHash"] = forged
    with pytest.raises(StreamVerificationError, match="does not recompute"):
        ChainVerifier().feed_all(relinked)
    entries = [stream_records.decode(stream_records.encode(r)) for r in records]
    entries[summaries[2]]["payload"]["entriesHashList"][0] = forged
    with pytest.raises(StreamVerificationError, match="entries' root"):
        ChainVerifier().feed_all(entries)
    changed = [stream_records.decode(stream_records.encode(r)) for r in records]
    detail = next(i for i, r in enumerate(changed) if r["recordType"] == "REVISION_DETAILS"
                  and r["payload"]["tableInfo"]["tableName"] == "Car")  # fmt: skip
    changed[detail]["payload"]["revision"]["data"]["n"] = 99
    with pytest.raises(StreamVerificationError, match="does not hash"):
        ChainVerifier().feed_all(changed)
    anchored = ChainVerifier(trusted=(1, b"\x01" * 32))
    with pytest.raises(StreamVerificationError, match="chain"):
        anchored.feed_all(records[summaries[2] :])


def test_json_lines_records_read_back_and_verify_their_chain() -> None:
    ledger = _ledger_with_blocks(2)
    lines = [stream_records.json_line(stream_records.decode(r)) for r in _records(ledger)]
    back = [stream_records.from_json(json.loads(line)) for line in lines]
    verifier = ChainVerifier(first_seq=0, check_transaction_info=False)
    verifier.feed_all(back)
    assert verifier.blocks == ledger.engine.durable_seq + 1


def test_the_start_time_is_found_by_binary_search() -> None:
    stamps = [10, 10, 20, 30, 30, 40]
    reads: list[int] = []

    def at(seq: int) -> int:
        reads.append(seq)
        return stamps[seq]

    assert first_at_or_after(30, 5, at) == 3
    assert first_at_or_after(5, 5, at) == 0
    assert first_at_or_after(41, 5, at) == 6
    assert len(reads) <= 12

"""core.replica and core.wire: the ledger on Raft, three replicas in one process, no Ray.

Messages go through core.wire's encoding; storage is MemoryStorage (or LevelDB for the
restart test). The proposer is an embedded Ledger whose write_batch proposes to the leader
and pumps messages until the entry is applied (the commit machine's own tests are in
tests/test_commit.py).
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import wire
from core.engine import Engine, Genesis, PreparedBatch
from core.errors import StaleBatchError
from core.ledger import Ledger
from core.raft import Append, AppendResponse, Entry, RaftConfig, Role, VoteRequest, VoteResponse
from core.raftlog import encode_batch
from core.replica import Replica, seed_hard_state
from core.storage import LevelDBStorage, MemoryStorage, Storage

GENESIS = Genesis("0" * 21 + "A", "0" * 21 + "B", 1_700_000_000_000)
CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=2)
NAMES = ("a", "b", "c")


class Trio:
    def __init__(self, stores: dict[str, Storage] | None = None) -> None:
        self.stores = stores or {n: MemoryStorage() for n in NAMES}
        self.replicas = {
            n: Replica(n, NAMES, self.stores[n], config=CONFIG, rng=random.Random(i),
                       genesis=GENESIS, now_ms=0)
            for i, n in enumerate(NAMES)
        }  # fmt: skip
        self.down: set[str] = set()

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for name, replica in self.replicas.items():
                if name in self.down:
                    continue
                out = replica.process_ready()
                if out is None:
                    continue
                moved = True
                for message in out.messages:
                    if message.to not in self.down:
                        self.replicas[message.to].step(wire.decode(wire.encode(message)))
            if not moved:
                return

    def elect(self) -> Replica:
        for _ in range(60):
            for name, replica in self.replicas.items():
                if name not in self.down:
                    replica.tick()
            self.pump()
            leaders = [r for r in self.replicas.values() if r.ready_to_serve]
            if leaders:
                return leaders[0]
        raise AssertionError("no leader")

    def proposer(self) -> Ledger:
        def replicate(engine: Engine, batch: PreparedBatch) -> None:
            leader = self.elect()
            index = leader.propose(encode_batch(batch.blocks))
            self.pump()
            assert leader.applied >= index
            engine.write(batch)
            engine.publish(batch)

        return Ledger(MemoryStorage(), genesis=GENESIS, write_batch=replicate)

    def settle(self) -> None:
        for _ in range(6):
            for name, replica in self.replicas.items():
                if name not in self.down:
                    replica.tick()
            self.pump()


def test_three_replicas_and_the_proposer_hold_one_journal() -> None:
    trio = Trio()
    ledger = trio.proposer()
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    for n in range(15):
        ledger.execute_lambda(lambda tx, n=n: tx.insert("Car", {"vin": n}))
    trio.settle()
    digests = {r.status()["digest"] for r in trio.replicas.values()}
    assert digests == {ledger.get_digest()["digest"]}
    assert {r.engine.durable_seq for r in trio.replicas.values()} == {16}


def offer_to_a_follower(blocks: list[dict[str, object]]) -> None:
    """Send `blocks` as the next entry from the leader; the follower must refuse them all."""
    trio = Trio()
    leader = trio.elect()
    follower = next(r for r in trio.replicas.values() if r is not leader)
    last = follower.node.last_index()
    entry = Entry(leader.node.term, last + 1, encode_batch(blocks))
    before = follower.status()["digest"]
    follower.step(
        Append(leader.node.term, leader.id, follower.id, last, follower.node.term_at(last),
               (entry,), leader.node.commit)
    )  # fmt: skip
    out = follower.process_ready()
    assert out is not None
    [reply] = [m for m in out.messages if isinstance(m, AppendResponse)]
    assert not reply.success
    assert follower.node.last_index() == last
    assert follower.status()["digest"] == before


def test_a_follower_refuses_a_block_whose_hashes_do_not_recompute() -> None:
    source = Ledger(MemoryStorage(), genesis=GENESIS)
    source.execute_lambda(lambda tx: tx.create_table("Car"))
    block = source.engine.read_block(1)
    offer_to_a_follower([dict(block, transactionId="1" * 22)])  # blockHash no longer matches


def test_a_follower_refuses_a_block_that_does_not_chain() -> None:
    other = Ledger(MemoryStorage(), genesis=GENESIS)
    other.execute_lambda(lambda tx: tx.create_table("Car"))
    other.execute_lambda(lambda tx: tx.create_table("Boat"))
    offer_to_a_follower([other.engine.read_block(2)])  # valid hashes; block 1 is missing here


def test_the_leader_refuses_a_batch_that_does_not_extend_its_log() -> None:
    trio = Trio()
    ledger = trio.proposer()
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    stale = Ledger(MemoryStorage(), genesis=GENESIS)
    stale.execute_lambda(lambda tx: tx.create_table("Boat"))  # also block 1, another chain
    leader = trio.elect()
    with pytest.raises(StaleBatchError):
        leader.propose(encode_batch([stale.engine.read_block(1)]))


def test_a_restarted_replica_rebuilds_from_leveldb(tmp_path: Path) -> None:
    stores: dict[str, Storage] = {n: LevelDBStorage(tmp_path / n) for n in NAMES}
    trio = Trio(stores)
    ledger = trio.proposer()
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    trio.settle()
    victim = next(n for n, r in trio.replicas.items() if r.node.role is not Role.LEADER)
    trio.down.add(victim)
    for n in range(10):
        ledger.execute_lambda(lambda tx, n=n: tx.insert("Car", {"vin": n}))
    trio.stores[victim].close()
    trio.stores[victim] = LevelDBStorage(tmp_path / victim)
    trio.replicas[victim] = Replica(
        victim, NAMES, trio.stores[victim], config=CONFIG, rng=random.Random(9),
        genesis=GENESIS, now_ms=0,
    )  # fmt: skip
    assert trio.replicas[victim].engine.durable_seq == 1  # what it had
    trio.down.clear()
    trio.settle()
    assert trio.replicas[victim].status()["digest"] == ledger.get_digest()["digest"]
    for store in trio.stores.values():
        store.close()


names = st.sampled_from(["a", "b", "c", "node-7"])
counts = st.integers(min_value=0, max_value=2**40)
entries = st.builds(Entry, counts, counts, st.binary(max_size=64))
messages = st.one_of(
    st.builds(VoteRequest, counts, names, names, counts, counts, st.booleans()),
    st.builds(VoteResponse, counts, names, names, st.booleans(), st.booleans()),
    st.builds(
        Append,
        counts,
        names,
        names,
        counts,
        counts,
        st.lists(entries, max_size=4).map(tuple),
        counts,
        counts,
    ),  # fmt: skip
    st.builds(AppendResponse, counts, names, names, st.booleans(), counts, counts, counts),
)


@given(messages)
def test_wire_round_trips_every_message(message: object) -> None:
    assert wire.decode(wire.encode(message)) == message  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_wire_rejects_garbage_with_a_typed_error(payload: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire.decode(payload)


def test_wire_rejects_wrong_types() -> None:
    bad = msgpack.packb([3, 1, "a", "b", 0, 0, [[1, 1, "not bytes"]], 0, 0])
    with pytest.raises(wire.WireError):
        wire.decode(bad)


def test_a_replica_rebuilt_on_empty_storage_catches_up_and_votes_only_in_later_terms() -> None:
    trio = Trio()
    ledger = trio.proposer()
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    for n in range(10):
        ledger.execute_lambda(lambda tx, n=n: tx.insert("Car", {"vin": n}))
    trio.settle()
    leader = next(r for r in trio.replicas.values() if r.ready_to_serve)
    victim = next(n for n in NAMES if n != leader.id)
    term = max(r.node.term for n, r in trio.replicas.items() if n != victim)
    storage = MemoryStorage()
    seed_hard_state(storage, term, victim)
    trio.stores[victim] = storage
    trio.replicas[victim] = Replica(
        victim, NAMES, storage, config=CONFIG, rng=random.Random(9), genesis=GENESIS, now_ms=0
    )
    assert trio.replicas[victim].node.term == term
    assert trio.replicas[victim].node.vote == victim  # no vote for anyone else in `term`
    trio.settle()
    assert trio.replicas[victim].engine.durable_seq == 0  # Raft: it acknowledged all that
    leader.forget_progress(victim)  # what the operator's rebuild tells the leader
    trio.settle()
    digests = {r.status()["digest"] for r in trio.replicas.values()}
    assert digests == {ledger.get_digest()["digest"]}

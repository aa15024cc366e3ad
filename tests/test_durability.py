"""What must survive a power cut does; what a directory of an earlier format holds is never
misread; block times never go back; a node opens in time independent of its log's length.

The disk is chaos.disk.PowerCutStorage: writes not synced are lost at the cut (all of them,
or all but a prefix). Each durability test also runs with the protection switched off
(the write left unsynced) to show that it would catch the loss.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from chaos.disk import LevelDBPowerCutStorage, PowerCutStorage
from chaos.ledger_sim import LedgerSimOptions, LedgerSimulation, SimulationError
from core import codec, engine, keys, replica
from core.engine import Engine, Genesis
from core.errors import CorruptLedgerError
from core.ids import IdSource, ms_from_timestamp
from core.ledger import Ledger
from core.raft import RaftConfig
from core.raftlog import META_RAFT_FORMAT, RAFT_FORMAT, encode_batch
from core.replica import META_RAFT_APPLIED, Replica
from core.storage import MemoryStorage

GENESIS = Genesis("0" * 21 + "A", "0" * 21 + "B", 1_700_000_000_000)


# ----------------------------------------------------------------- power cuts


def commit_then_cut(storage: PowerCutStorage, keep: int) -> tuple[set[str], Ledger]:
    """16 threads commit; the power goes; the ledger reopens on what the disk kept."""
    ledger = Ledger(storage, genesis=GENESIS)
    ledger.execute_lambda(lambda tx: tx.create_table("Car"))
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def client(k: int) -> None:
        ids = IdSource(random.Random(k).randbytes)
        for n in range(25):
            tx_id = ids.new_id()
            ledger.execute_lambda(
                lambda tx, n=n: tx.insert("Car", {"k": k, "n": n}), transaction_id=tx_id
            )
            with lock:
                acknowledged.add(tx_id)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    storage.power_cut(keep=min(keep, storage.unsynced))
    return acknowledged, Ledger(storage, genesis=GENESIS)


def lost(acknowledged: set[str], reopened: Ledger) -> set[str]:
    return {t for t in acknowledged if reopened.engine.committed_seq(t) is None}


@pytest.mark.parametrize("keep", [0, 3])
def test_the_embedded_ledger_loses_no_acknowledged_commit_at_a_power_cut(keep: int) -> None:
    storage = PowerCutStorage()
    acknowledged, reopened = commit_then_cut(storage, keep)
    assert len(acknowledged) == 400
    assert not lost(acknowledged, reopened)
    assert reopened.verify_journal().ok
    assert storage.synced_writes > 0


def test_a_ledger_that_does_not_sync_loses_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    write = engine.Engine.write_batches

    def unsynced(
        self: Engine, batches: Any, puts: Any = None, deletes: Any = None, *, sync: bool = True
    ) -> None:
        write(self, batches, puts, deletes, sync=False)

    monkeypatch.setattr(engine.Engine, "write_batches", unsynced)
    acknowledged, reopened = commit_then_cut(PowerCutStorage(), 0)
    assert lost(acknowledged, reopened)  # the protection this file checks, switched off


QUIET = LedgerSimOptions(
    drop_rate=0, duplicate_rate=0, partition_rate=0, crash_rate=0, operations=30
)


def cut_every_replica_at_once(seed: int) -> dict[str, int]:
    """The replicas of a simulated cluster (real Replicas and commit machines) commit; the
    power goes everywhere at once; they restart on what their disks kept."""
    sim = LedgerSimulation(seed, QUIET)
    sim.start()
    sim.operations_left = 30
    while sim.operations_left or any(c.busy for c in sim.clients):
        sim.step()
    for name in sim.names:
        sim._crash(name)  # noqa: SLF001  (a power cut: unsynced writes are lost)
    return sim.finish()  # every acknowledged transaction must be in the journal


def test_replicas_lose_no_acknowledged_commit_when_the_power_goes_everywhere() -> None:
    for seed in range(3):
        summary = cut_every_replica_at_once(seed)
        assert summary["acknowledged"] > 20


def test_replicas_that_do_not_sync_their_log_lose_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica, "needs_sync", lambda rd, term_vote: False)
    caught = 0
    for seed in range(3):
        try:
            cut_every_replica_at_once(seed)
        except SimulationError:
            caught += 1
    assert caught


# ----------------------------------------------------------------- block times


def test_the_node_disk_double_keeps_only_synced_writes_across_a_kill(tmp_path: Any) -> None:
    """LevelDBPowerCutStorage (what nodes run on with STRAND_TEST_STORAGE=power-cut): reads
    see every write; the directory holds only what synced writes left, in order."""
    disk = LevelDBPowerCutStorage(tmp_path / "db")
    disk.write([(b"a", b"1"), (b"b", b"1")], sync=True)
    disk.write([(b"b", b"2"), (b"c", b"2")], [b"a"], sync=False)
    assert (disk.get(b"a"), disk.get(b"c")) == (None, b"2")
    disk._level.close()  # noqa: SLF001  (the process dies: nothing more reaches the disk)
    again = LevelDBPowerCutStorage(tmp_path / "db")
    assert list(again.scan(b"", b"z")) == [(b"a", b"1"), (b"b", b"1")]
    again.write([(b"b", b"3")], [b"a"], sync=False)
    again.write([(b"d", b"4")], sync=True)  # makes the one before it durable too
    again.close()
    third = LevelDBPowerCutStorage(tmp_path / "db")
    assert list(third.scan(b"", b"z")) == [(b"b", b"3"), (b"d", b"4")]
    third.close()


def test_a_block_is_never_stamped_before_the_one_before_it() -> None:
    ahead = Engine(MemoryStorage(), IdSource(random.Random(1).randbytes), 0, genesis=GENESIS)
    behind = Engine(MemoryStorage(), IdSource(random.Random(2).randbytes), 0, genesis=GENESIS)
    late_ms = 1_800_000_000_000  # the old leader's clock ran ahead
    tx = ahead.begin(late_ms, lambda: late_ms)
    tx.create_table("Car")
    batch, _ = ahead.prepare([tx], late_ms)
    ahead.write(batch)
    ahead.publish(batch)
    applied = behind.apply_blocks(batch.blocks)  # the new leader applied it as a follower
    behind.write(applied)
    behind.publish(applied)
    early_ms = late_ms - 60_000  # and its own clock is a minute behind
    tx = behind.begin(early_ms, lambda: early_ms)
    tx.insert("Car", {"n": 1})
    mine, _ = behind.prepare([tx], early_ms)
    [block] = mine.blocks
    assert ms_from_timestamp(block["blockTimestamp"]) == late_ms
    assert ms_from_timestamp(block["revisions"][0]["metadata"]["txTime"]) == late_ms


# ----------------------------------------------------------------- formats


def _ledger_with_an_index() -> tuple[MemoryStorage, str]:
    storage = MemoryStorage()
    ledger = Ledger(storage, genesis=GENESIS)

    def setup(tx: Any) -> str:
        tx.create_table("Car")
        tx.create_index("Car", "VIN")
        return str(tx.insert("Car", {"VIN": "1N4", "Year": 2011}))

    return storage, ledger.execute_lambda(setup)


def test_a_strand_1_ledger_is_upgraded_in_place() -> None:
    storage, doc_id = _ledger_with_an_index()
    index_keys = [k for k, _ in storage.scan(keys.INDEX_PREFIX, keys.prefix_end(keys.INDEX_PREFIX))]
    stale = [k[:23] + b"\x00" * 32 + k[55:] for k in index_keys]  # keys of the old hashing
    storage.write([(k, b"") for k in stale] + [(keys.META_FORMAT, b"strand-1")], index_keys)
    upgraded = Ledger(storage, genesis=GENESIS)
    assert storage.get(keys.META_FORMAT) == keys.FORMAT_VERSION
    assert upgraded.execute_lambda(lambda tx: [d for d, _ in tx.find("Car", VIN="1N4")]) == [doc_id]
    now = {k for k, _ in storage.scan(keys.INDEX_PREFIX, keys.prefix_end(keys.INDEX_PREFIX))}
    assert now == set(index_keys)


def test_a_ledger_of_an_unknown_format_is_refused_with_what_to_do() -> None:
    storage, _ = _ledger_with_an_index()
    storage.write([(keys.META_FORMAT, b"strand-9")])
    with pytest.raises(CorruptLedgerError, match="cannot read: open it with the Strand release"):
        Ledger(storage, genesis=GENESIS)


def _replica(storage: Any) -> Replica:
    return Replica("a", ("a",), storage, config=RaftConfig(election_ticks=2), rng=random.Random(0),
                   genesis=GENESIS, now_ms=0)  # fmt: skip


def _single_replica_log(count: int) -> MemoryStorage:
    """A one-node replica that committed `count` batches (so `count` applied log entries)."""
    storage = MemoryStorage()
    node = _replica(storage)
    for _ in range(10):
        node.tick()
        node.process_ready()
    source = Engine(MemoryStorage(), IdSource(random.Random(3).randbytes), 0, genesis=GENESIS)
    clock = lambda: 1_700_000_000_000  # noqa: E731
    for n in range(count):
        tx = source.begin(clock(), clock)
        if n == 0:
            tx.create_table("Car")
        else:
            tx.insert("Car", {"n": n})
        batch, _ = source.prepare([tx], clock())
        source.write(batch)
        source.publish(batch)
        node.propose(encode_batch(batch.blocks))
        while node.process_ready() is not None:
            pass
    assert node.engine.durable_seq == count
    return storage


def test_a_raft_1_log_is_upgraded_in_place_to_references() -> None:
    storage = _single_replica_log(20)
    applied = keys.decode_u64(storage.get(META_RAFT_APPLIED) or b"")
    # make it what raft-1 wrote: every entry whole, no format marker
    node = _replica(storage)
    whole = [
        (keys.log_key(e.index), codec.frame(msgpack.packb([e.term, e.data])))
        for e in node.log.entries(1, applied + 1)
    ]
    storage.write(whole, [META_RAFT_FORMAT])
    before = sum(len(v) for _, v in storage.scan(keys.LOG_PREFIX, keys.prefix_end(keys.LOG_PREFIX)))
    reopened = _replica(storage)
    assert storage.get(META_RAFT_FORMAT) == RAFT_FORMAT
    after = sum(len(v) for _, v in storage.scan(keys.LOG_PREFIX, keys.prefix_end(keys.LOG_PREFIX)))
    assert after < before / 5  # the blocks are stored once, in the journal
    assert [e.data for e in reopened.log.entries(1, applied + 1)] == [
        e.data for e in node.log.entries(1, applied + 1)
    ]


def test_a_raft_log_of_an_unknown_format_is_refused() -> None:
    storage = _single_replica_log(2)
    storage.write([(META_RAFT_FORMAT, b"raft-7")])
    with pytest.raises(CorruptLedgerError, match="delete the node's data directory"):
        _replica(storage)


# ----------------------------------------------------------------- restart cost


@dataclasses.dataclass
class CountingStorage:
    """A MemoryStorage that counts what is read (get calls, scanned items)."""

    inner: MemoryStorage
    reads: int = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.inner.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        for pair in self.inner.scan(start, stop, reverse=reverse):
            self.reads += 1
            yield pair

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        self.reads += 1
        return self.inner.last_key(start, stop)

    def write(self, puts: Any, deletes: Any = (), *, sync: bool = True) -> None:
        self.inner.write(puts, deletes, sync=sync)

    def close(self) -> None:
        self.inner.close()


def test_opening_a_replica_does_not_read_its_whole_log() -> None:
    short, long = (
        CountingStorage(_single_replica_log(20)),
        CountingStorage(_single_replica_log(400)),
    )
    _replica(short)
    _replica(long)
    assert long.reads < short.reads + 20  # not ~400 more: the log is read on demand
    assert long.reads < 100

"""The scrub (core/scrub.py): every damaged byte of every stored entry is found and reported
(never raised), derived entries are mended in place, damaged blocks are repaired from a
healthy copy by hash, and nothing else is ever written."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Ledger, keys, scrub
from core.storage import MemoryStorage
from core.transaction import Transaction
from tests.conftest import FakeClock

DERIVED_PREFIXES = (keys.NODE_PREFIX, keys.REVISION_PREFIX, keys.TX_PREFIX, keys.DOC_PREFIX)


def _ledger(transactions: int = 12) -> tuple[Ledger, MemoryStorage]:
    storage = MemoryStorage()
    ledger = Ledger(storage, clock_ms=FakeClock())
    ledger.execute_statement("CREATE TABLE Acct")
    ledger.execute_statement("CREATE INDEX ON Acct (owner)")
    rng = random.Random(3)
    ids: list[str] = []
    for i in range(transactions):

        def fn(tx: Transaction, i: int = i) -> None:
            if ids and rng.random() < 0.4:
                tx.update("Acct", rng.choice(ids), {"owner": f"o{i % 4}", "n": i})
            elif len(ids) > 2 and rng.random() < 0.1:
                tx.delete("Acct", ids.pop(0))
            else:
                ids.append(tx.insert("Acct", {"owner": f"o{i % 4}", "n": i}))

        ledger.execute_lambda(fn)
    return ledger, storage


def _entries(storage: MemoryStorage, prefix: bytes) -> list[tuple[bytes, bytes]]:
    return list(storage.scan(prefix, keys.prefix_end(prefix)))


def _flip(value: bytes, position: int) -> bytes:
    damaged = bytearray(value)
    damaged[position % len(damaged)] ^= 0x20
    return bytes(damaged)


def test_a_healthy_ledger_has_no_finding() -> None:
    ledger, _ = _ledger()
    report = ledger.verify_journal()
    assert report.ok
    assert report.findings == ()
    assert report.blocks_checked == ledger.engine.durable_seq + 1


def test_a_flipped_byte_in_a_block_before_the_tip_is_found_and_repaired_from_a_copy() -> None:
    ledger, storage = _ledger()
    digest = ledger.get_digest()
    seq = ledger.engine.durable_seq // 2
    key = keys.block_key(seq)
    good = storage.get(key)
    assert good is not None
    storage.write([(key, _flip(good, len(good) // 2))])
    report = ledger.verify_journal()  # reports, does not raise
    assert not report.ok
    assert report.first_bad_sequence_no == seq
    assert [f.kind for f in report.findings] == [scrub.BLOCK]
    assert scrub.mend(ledger.engine, report.findings) == 0  # blocks first: nothing mended
    # a "copy" that is damaged too, or another block, is refused; the healthy bytes are taken
    assert scrub.repair_blocks(ledger.engine, {seq: _flip(good, 3)}) == []
    other = storage.get(keys.block_key(seq + 1))
    assert other is not None
    assert scrub.repair_blocks(ledger.engine, {seq: other}) == []
    assert scrub.repair_blocks(ledger.engine, {seq: good}) == [seq]
    assert ledger.verify_journal().ok
    assert ledger.get_digest() == digest


def test_each_kind_of_derived_entry_is_found_and_mended() -> None:
    ledger, storage = _ledger()
    digest = ledger.get_digest()
    before = dict(storage.scan(b"\x00", b"\xff"))
    for prefix in DERIVED_PREFIXES:
        entries = _entries(storage, prefix)
        key, value = entries[len(entries) // 3]
        storage.write([(key, _flip(value, 5))])
        report = ledger.verify_journal()
        assert not report.ok, prefix
        assert len(report.findings) == 1, report.findings
        assert report.findings[0].key == key
        assert report.first_bad_sequence_no is None  # no block is damaged
        assert scrub.mend(ledger.engine, report.findings) == 1
        assert ledger.verify_journal().ok
    assert dict(storage.scan(b"\x00", b"\xff")) == before
    assert ledger.get_digest() == digest


def test_stray_and_missing_index_entries_are_found_and_mended() -> None:
    ledger, storage = _ledger()
    before = dict(storage.scan(b"\x00", b"\xff"))
    entries = _entries(storage, keys.INDEX_PREFIX)
    key = entries[0][0]
    stray = key[:30] + bytes([key[30] ^ 1]) + key[31:]  # a byte of the value hash flipped
    storage.write([(stray, b"")], [key])  # as a flipped key byte does: one gone, one new
    report = ledger.verify_journal()
    assert sorted(f.key for f in report.findings) == sorted([key, stray])
    assert {f.kind for f in report.findings} == {scrub.INDEX}
    assert scrub.mend(ledger.engine, report.findings) == 2
    assert dict(storage.scan(b"\x00", b"\xff")) == before


def test_mending_uses_the_state_current_when_it_runs() -> None:
    """Findings made before a commit must not undo that commit when they are mended after."""
    ledger, storage = _ledger()
    table_id = ledger.engine.catalog.active_by_name["Acct"]
    docs = _entries(storage, keys.doc_prefix(table_id))
    (key, value), (other_key, _) = docs[0], docs[1]
    other = other_key[23:45].decode()
    damaged_id = key[23:45].decode()
    index_entry = next(
        k for k, _ in _entries(storage, keys.INDEX_PREFIX)
        if keys.index_key_doc_id(k) not in (damaged_id, other)
    )  # fmt: skip
    storage.write([(key, _flip(value, 7))], [index_entry])
    findings = ledger.verify_journal().findings
    assert {f.kind for f in findings} == {scrub.DOCUMENT, scrub.INDEX}
    ledger.execute_lambda(lambda tx: tx.update("Acct", other, {"owner": "new", "n": -1}))
    new = ledger.execute_lambda(lambda tx: tx.insert("Acct", {"owner": "o1", "n": 99}))
    scrub.mend(ledger.engine, findings)
    assert ledger.execute_lambda(lambda tx: tx.get("Acct", other)) == {"owner": "new", "n": -1}
    assert ledger.execute_lambda(lambda tx: tx.get("Acct", new)) == {"owner": "o1", "n": 99}
    assert ledger.verify_journal().ok


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, 10**6), position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_any_flipped_bit_in_any_stored_entry_is_reported(
    which: int, position: int, bit: int
) -> None:
    ledger, storage = _ledger(6)
    entries = [(k, v) for k, v in storage.scan(b"\x00", b"\xff") if k[:1] not in (b"M", b"X") and v]
    key, value = entries[which % len(entries)]
    damaged = bytearray(value)
    damaged[position % len(damaged)] ^= 1 << bit
    storage.write([(key, bytes(damaged))])
    report = ledger.verify_journal()
    assert not report.ok
    assert any(f.key == key for f in report.findings)


def test_a_scrub_thread_stopped_part_way_judges_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """cluster/scrub.py's Scrubber stopped mid-pass (a node shutting down) must not report
    what it never read: documents of blocks not yet checked are not 'damaged'."""
    import threading

    from cluster.scrub import Scrubber

    ledger, _ = _ledger(transactions=60)
    calls: list[str] = []
    stepped = threading.Event()
    scrubber = Scrubber(
        ledger.engine, interval_ms=3_600_000, fetch_blocks=lambda seqs: {},
        run_on_loop=lambda fn: calls.append("loop") or fn(),
        set_promotable=lambda ok: calls.append(f"promotable={ok}"),
        first_delay_ms=0, step_blocks=1, paced_share=0.01,  # slow: stopped long before done
    )  # fmt: skip
    real_step = scrub.Scrub.step

    def step(self: scrub.Scrub, limit: int) -> int:
        stepped.set()
        return real_step(self, limit)

    monkeypatch.setattr(scrub.Scrub, "step", step)
    scrubber.start()
    assert stepped.wait(10)
    scrubber.stop()
    assert scrubber.findings == []
    assert scrubber.health == "ok"
    assert calls == []  # nothing mended, leadership untouched
    assert scrubber.stats["findings_total"] == 0

"""The embedded Ledger's API: documents, tables, indexes, history, limits, typed errors."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from typing import Any

import pytest

from core import Ledger
from core.errors import (
    DocumentNotFoundError,
    IndexExistsError,
    InvalidArgumentError,
    InvalidDocumentError,
    LimitExceededError,
    TableExistsError,
    TableNotFoundError,
    TransactionExpiredError,
)
from core.ids import is_id
from core.storage import MemoryStorage, StorageError
from core.transaction import Transaction
from tests.conftest import FakeClock


def _setup_cars(ledger: Ledger) -> list[str]:
    def fn(tx: Transaction) -> list[str]:
        tx.create_table("Vehicle")
        tx.create_index("Vehicle", "VIN")
        return [
            tx.insert("Vehicle", {"VIN": f"VIN{i}", "Make": "Tesla", "Year": 2020 + i})
            for i in range(3)
        ]

    return ledger.execute_lambda(fn)


def test_insert_get_update_delete_roundtrip(ledger: Ledger) -> None:
    ids = _setup_cars(ledger)
    assert all(is_id(i) for i in ids)
    assert ledger.execute_lambda(lambda tx: tx.get("Vehicle", ids[0])) == {
        "VIN": "VIN0",
        "Make": "Tesla",
        "Year": 2020,
    }
    ledger.execute_lambda(lambda tx: tx.update("Vehicle", ids[0], {"VIN": "VIN0", "Year": 1}))
    assert ledger.execute_lambda(lambda tx: tx.get("Vehicle", ids[0])) == {"VIN": "VIN0", "Year": 1}
    ledger.execute_lambda(lambda tx: tx.delete("Vehicle", ids[1]))
    assert ledger.execute_lambda(lambda tx: tx.get("Vehicle", ids[1])) is None
    with pytest.raises(DocumentNotFoundError):
        ledger.execute_lambda(lambda tx: tx.update("Vehicle", ids[1], {"x": 1}))


def test_find_with_and_without_index_sees_own_writes(ledger: Ledger) -> None:
    ids = _setup_cars(ledger)
    found = ledger.execute_lambda(lambda tx: tx.find("Vehicle", VIN="VIN2"))
    assert found == [(ids[2], {"VIN": "VIN2", "Make": "Tesla", "Year": 2022})]
    by_make = ledger.execute_lambda(lambda tx: tx.find("Vehicle", Make="Tesla"))
    assert sorted(d for d, _ in by_make) == sorted(ids)

    def own_writes(tx: Transaction) -> tuple[int, int, int]:
        new_id = tx.insert("Vehicle", {"VIN": "VIN9", "Make": "Ford"})
        tx.delete("Vehicle", ids[0])
        return (
            len(tx.find("Vehicle", VIN="VIN9")),
            len(tx.find("Vehicle", Make="Tesla")),
            len(tx.find("Vehicle", {"Make": "Ford", "VIN": "VIN9"})) + (new_id == ""),
        )

    assert ledger.execute_lambda(own_writes) == (1, 2, 1)
    # PartiQL's `=`: numbers compare by value across int, decimal and float; text by text.
    assert len(ledger.execute_lambda(lambda tx: tx.find("Vehicle", Year=2021.0))) == 1
    assert ledger.execute_lambda(lambda tx: tx.find("Vehicle", Year="2021")) == []


def test_index_created_after_documents_covers_them(ledger: Ledger) -> None:
    _setup_cars(ledger)
    ledger.execute_lambda(lambda tx: tx.create_index("Vehicle", "Year"))
    assert len(ledger.execute_lambda(lambda tx: tx.find("Vehicle", Year=2021))) == 1


def test_catalog_is_journaled_and_survives_reopen(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l") as ledger:
        ids = _setup_cars(ledger)
        digest = ledger.get_digest()
    with Ledger.open(tmp_path / "l") as ledger:
        assert ledger.list_tables() == ["Vehicle"]
        assert ledger.get_digest() == digest
        assert len(ledger.execute_lambda(lambda tx: tx.find("Vehicle", VIN="VIN1"))) == 1
        assert ledger.execute_lambda(lambda tx: tx.get("Vehicle", ids[0]))["VIN"] == "VIN0"
        assert ledger.verify_journal().ok


def test_history_versions_deletes_and_inclusive_bounds(
    memory_ledger: Ledger, clock: FakeClock
) -> None:
    ledger = memory_ledger
    ledger.execute_lambda(lambda tx: tx.create_table("T"))
    clock.advance(1000)
    doc_id = ledger.execute_lambda(lambda tx: tx.insert("T", {"v": 0}))
    t0 = clock.now_ms
    clock.advance(1000)
    ledger.execute_lambda(lambda tx: tx.update("T", doc_id, {"v": 1}))
    t1 = clock.now_ms
    clock.advance(1000)
    ledger.execute_lambda(lambda tx: tx.delete("T", doc_id))
    t2 = clock.now_ms
    revisions = ledger.history("T", doc_id)
    assert [r["metadata"]["version"] for r in revisions] == [0, 1, 2]
    assert [r.get("data") for r in revisions] == [{"v": 0}, {"v": 1}, None]
    assert "data" not in revisions[2]

    def at(ms: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)

    # version 0 was active in [t0, t1): a range ending exactly at t0 includes it (inclusive)
    assert [r["metadata"]["version"] for r in ledger.history("T", None, at(t0 - 500), at(t0))] == [
        0
    ]
    assert [r["metadata"]["version"] for r in ledger.history("T", None, at(t1), at(t1))] == [1]
    assert [r["metadata"]["version"] for r in ledger.history("T", None, at(t1 + 1))] == [1, 2]
    assert [r["metadata"]["version"] for r in ledger.history("T", None, at(t2 + 9))] == [2]
    with pytest.raises(TableNotFoundError):
        ledger.history("Nope")


def test_typed_errors_change_nothing(ledger: Ledger) -> None:
    ids = _setup_cars(ledger)
    before = ledger.get_digest()
    cases: list[tuple[type[Exception], Any]] = [
        (TableNotFoundError, lambda tx: tx.insert("Nope", {"a": 1})),
        (InvalidDocumentError, lambda tx: tx.insert("Vehicle", [1, 2])),
        (InvalidDocumentError, lambda tx: tx.insert("Vehicle", {"a": object()})),
        (InvalidDocumentError, lambda tx: tx.insert("Vehicle", {1: "a"})),
        (InvalidArgumentError, lambda tx: tx.get("Vehicle", "not-an-id")),
        (TableExistsError, lambda tx: tx.create_table("Vehicle")),
        (InvalidArgumentError, lambda tx: tx.create_table("1bad name")),
        (IndexExistsError, lambda tx: tx.create_index("Vehicle", "VIN")),
        (DocumentNotFoundError, lambda tx: tx.delete("Vehicle", "A" * 22)),
    ]
    for error, fn in cases:

        def run(tx: Transaction, fn: Any = fn) -> None:
            tx.insert("Vehicle", {"VIN": "should not land"})
            fn(tx)

        with pytest.raises(error):
            ledger.execute_lambda(run)
    assert ledger.get_digest() == before
    assert ledger.execute_lambda(lambda tx: tx.find("Vehicle", VIN="should not land")) == []
    assert ledger.execute_lambda(lambda tx: tx.get("Vehicle", ids[0])) is not None


def test_limits(memory_ledger: Ledger, clock: FakeClock) -> None:
    ledger = memory_ledger
    ledger.execute_lambda(lambda tx: tx.create_table("T"))
    with pytest.raises(LimitExceededError, match="40"):
        ledger.execute_lambda(lambda tx: [tx.insert("T", {"i": i}) for i in range(41)])
    ledger.execute_lambda(lambda tx: [tx.insert("T", {"i": i}) for i in range(40)])
    with pytest.raises(LimitExceededError, match="131072"):
        ledger.execute_lambda(lambda tx: tx.insert("T", {"blob": b"x" * (128 * 1024)}))
    ledger.execute_lambda(lambda tx: tx.insert("T", {"blob": b"x" * (127 * 1024)}))
    big = {"blob": b"x" * (125 * 1024)}  # 4 MB per transaction: 32 of these fit, 33 do not
    before = ledger.get_digest()
    with pytest.raises(LimitExceededError, match="4194304"):
        ledger.execute_lambda(lambda tx: [tx.insert("T", big) for _ in range(33)])
    assert ledger.get_digest() == before
    ledger.execute_lambda(lambda tx: [tx.insert("T", big) for _ in range(32)])
    for field in "abcde":
        ledger.execute_lambda(lambda tx, f=field: tx.create_index("T", f))
    with pytest.raises(LimitExceededError, match="5 indexes"):
        ledger.execute_lambda(lambda tx: tx.create_index("T", "f"))
    for i in range(19):
        ledger.execute_lambda(lambda tx, i=i: tx.create_table(f"T{i}"))
    with pytest.raises(LimitExceededError, match="20 active tables"):
        ledger.execute_lambda(lambda tx: tx.create_table("OneTooMany"))

    def slow(tx: Transaction) -> None:
        tx.insert("T", {"slow": True})
        clock.advance(30_001)

    before = ledger.get_digest()
    with pytest.raises(TransactionExpiredError):
        ledger.execute_lambda(slow)
    assert ledger.get_digest() == before


def test_ledger_dir_is_locked_against_a_second_open(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Ledger.open(tmp_path / "ledger")


def test_concurrent_threads_share_a_ledger(ledger: Ledger) -> None:
    ledger.execute_lambda(lambda tx: tx.create_table("Log"))
    acknowledged: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(40):
            doc_id = ledger.execute_lambda(lambda tx, i=i: tx.insert("Log", {"w": n, "i": i}))
            with lock:
                acknowledged.append(doc_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(acknowledged) == 320
    journaled = [r["metadata"]["id"] for r in ledger.history("Log")]
    assert sorted(journaled) == sorted(acknowledged)  # each acknowledged insert exactly once
    assert ledger.get_digest()["digestTipAddress"]["sequenceNo"] == 1 + 320
    assert ledger.verify_journal().ok


def test_in_memory_and_leveldb_give_the_same_hashes(tmp_path: Path) -> None:
    def build(ledger: Ledger) -> dict[str, Any]:
        _setup_cars(ledger)
        return ledger.get_digest()

    from tests.conftest import counting_bytes

    clock = FakeClock()
    a = Ledger(MemoryStorage(), clock_ms=clock, random_bytes=counting_bytes(1))  # type: ignore[arg-type]
    from core.storage import LevelDBStorage

    b = Ledger(LevelDBStorage(tmp_path / "db"), clock_ms=clock, random_bytes=counting_bytes(1))  # type: ignore[arg-type]
    assert build(a) == build(b)
    a.close()
    b.close()


def test_a_refused_write_leaves_the_transaction_unchanged(memory_ledger: Ledger) -> None:
    ledger = memory_ledger
    ledger.execute_lambda(lambda tx: tx.create_table("T"))

    def fill_then_overflow(tx: Transaction) -> str:
        ids = [tx.insert("T", {"i": i}) for i in range(40)]
        with pytest.raises(LimitExceededError):
            tx.insert("T", {"i": 40})
        with pytest.raises(InvalidDocumentError):
            tx.update("T", ids[0], {"bad": {1, 2}})
        return ids[0]

    doc_id = ledger.execute_lambda(fill_then_overflow)
    revision = ledger.history("T", doc_id)[0]
    block = ledger.get_block(revision["blockAddress"])["block"]
    assert len(block["transactionInfo"]["statements"]) == 40
    assert len(block["revisions"]) == 40
    assert revision["data"] == {"i": 0}


def test_a_document_inserted_and_deleted_in_one_transaction_commits_as_nothing(
    memory_ledger: Ledger,
) -> None:
    ledger = memory_ledger
    ledger.execute_lambda(lambda tx: tx.create_table("T"))

    def insert_then_delete(tx: Transaction) -> str:
        doc_id = tx.insert("T", {"a": 1})
        tx.delete("T", doc_id)
        return doc_id

    doc_id = ledger.execute_lambda(insert_then_delete)  # no OCC conflict, no retries
    assert ledger.execute_lambda(lambda tx: tx.get("T", doc_id)) is None
    assert ledger.history("T", doc_id) == []
    assert ledger.verify_journal().ok


def test_an_interactive_transaction_on_the_embedded_ledger(ledger: Ledger) -> None:
    ledger.execute_statement("CREATE TABLE Car")
    tx = ledger.begin_transaction()
    [row] = tx.execute_statement("INSERT INTO Car ?", {"VIN": "1"})
    result = tx.commit()
    assert result.block_address is not None
    assert ledger.execute_statement("SELECT VALUE c.VIN FROM Car AS c") == ["1"]
    wrong = ledger.begin_transaction()
    wrong.execute_statement("DELETE FROM Car AS c WHERE c.VIN = '1'")
    with pytest.raises(InvalidArgumentError):
        wrong.commit(b"\x00" * 32)
    aborted = ledger.begin_transaction()
    aborted.execute_statement("DELETE FROM Car AS c BY id WHERE id = ?", row["documentId"])
    aborted.abort()
    assert ledger.execute_statement("SELECT VALUE c.VIN FROM Car AS c") == ["1"]

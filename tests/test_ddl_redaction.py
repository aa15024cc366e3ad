"""DROP/UNDROP TABLE, DROP INDEX, redaction and the commit digest, through the native API.

The PartiQL forms of the same operations are tested in tests/test_partiql_ledger.py; these
tests pin the engine's behaviour underneath them: what is journaled, what is purged, what
conflicts, and that a redacted revision still verifies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core import Ledger, keys
from core.errors import (
    IndexNotFoundError,
    InvalidArgumentError,
    LimitExceededError,
    OccConflictError,
    TableExistsError,
    TableNotFoundError,
)
from core.ionhash import dot, ion_hash
from core.storage import MemoryStorage
from core.transaction import Transaction
from core.verification import verify_revision


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStorage())


def _cars(ledger: Ledger) -> tuple[str, list[str]]:
    def fn(tx: Transaction) -> tuple[str, list[str]]:
        table_id = tx.create_table("Vehicle")
        tx.create_index("Vehicle", "VIN")
        return table_id, [
            tx.insert("Vehicle", {"VIN": f"V{i}", "Year": 2020 + i}) for i in range(3)
        ]

    return ledger.execute_lambda(fn)


def test_drop_and_undrop_table(ledger: Ledger) -> None:
    table_id, ids = _cars(ledger)
    assert ledger.execute_lambda(lambda tx: tx.drop_table("Vehicle")) == table_id
    assert ledger.list_tables() == []
    with pytest.raises(TableNotFoundError):
        ledger.execute_lambda(lambda tx: tx.insert("Vehicle", {"VIN": "x"}))
    assert len(ledger.history("Vehicle")) == 3  # history of a dropped table stays
    # a new table may take the name; then the old one cannot come back under it
    new_id = ledger.execute_lambda(lambda tx: tx.create_table("Vehicle"))
    assert new_id != table_id
    with pytest.raises(TableExistsError):
        ledger.execute_lambda(lambda tx: tx.undrop_table(table_id))
    ledger.execute_lambda(lambda tx: tx.drop_table("Vehicle"))
    assert ledger.execute_lambda(lambda tx: tx.undrop_table(table_id)) == table_id
    found = ledger.execute_lambda(lambda tx: tx.find("Vehicle", VIN="V1"))
    assert [d for d, _ in found] == [ids[1]]
    with pytest.raises(TableNotFoundError):
        ledger.execute_lambda(lambda tx: tx.undrop_table("A" * 22))
    with pytest.raises(InvalidArgumentError):
        ledger.execute_lambda(lambda tx: tx.undrop_table("nope"))


def test_a_table_dropped_in_the_transaction_is_gone_for_it(ledger: Ledger) -> None:
    _cars(ledger)

    def fn(tx: Transaction) -> None:
        tx.drop_table("Vehicle")
        tx.insert("Vehicle", {"VIN": "late"})

    with pytest.raises(TableNotFoundError):
        ledger.execute_lambda(fn)
    assert ledger.list_tables() == ["Vehicle"]  # nothing changed


def test_drop_index_purges_entries_and_voids_index_readers(ledger: Ledger) -> None:
    _, ids = _cars(ledger)
    table = ledger.engine.catalog.by_name("Vehicle")
    index_id = table.indexes[0].index_id
    prefix = keys.index_prefix(index_id)
    assert len(list(ledger.engine.storage.scan(prefix, keys.prefix_end(prefix)))) == 3

    reader = ledger.engine.begin(0, lambda: 0)
    assert [d for d, _ in reader.find("Vehicle", VIN="V9")] == []  # a narrow index read
    reader.insert("Vehicle", {"VIN": "V10"})

    ledger.execute_lambda(lambda tx: tx.drop_index("Vehicle", index_id))
    assert list(ledger.engine.storage.scan(prefix, keys.prefix_end(prefix))) == []
    assert ledger.engine.catalog.by_name("Vehicle").indexes == ()
    with pytest.raises(IndexNotFoundError):
        ledger.execute_lambda(lambda tx: tx.drop_index("Vehicle", index_id))
    [outcome] = ledger.engine.commit([reader], 1)
    assert isinstance(outcome, OccConflictError)
    found = ledger.execute_lambda(lambda tx: tx.find("Vehicle", VIN="V2"))
    assert [d for d, _ in found] == [ids[2]]  # a scan now


def _redactable(ledger: Ledger) -> tuple[str, str, dict[str, object]]:
    table_id, ids = _cars(ledger)
    first = ledger.history("Vehicle", ids[0])[0]
    ledger.execute_lambda(lambda tx: tx.update("Vehicle", ids[0], {"VIN": "V0", "Year": 1999}))
    return table_id, ids[0], first["blockAddress"]


def test_redacted_revision_keeps_its_hash_and_verifies(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l") as ledger:
        table_id, doc_id, address = _redactable(ledger)
        before = ledger.get_revision(address, doc_id)["revision"]
        out = ledger.execute_lambda(lambda tx: tx.redact_revision(address, table_id, doc_id))
        assert out == {
            "blockAddress": address,
            "tableId": table_id,
            "documentId": doc_id,
            "version": 0,
        }
    with Ledger.open(tmp_path / "l") as ledger:  # the redaction is durable
        got = ledger.get_revision(address, doc_id)
        revision = got["revision"]
        assert "data" not in revision
        assert revision["dataHash"] == ion_hash(before["data"])
        assert revision["hash"] == before["hash"]
        assert verify_revision(revision, got["proof"], ledger.get_digest()["digest"])
        assert ledger.verify_journal().ok
        history = ledger.history("Vehicle", doc_id)
        assert "data" not in history[0]
        assert history[1]["data"]["Year"] == 1999


def test_redaction_refusals_change_nothing(ledger: Ledger) -> None:
    table_id, doc_id, address = _redactable(ledger)
    latest = ledger.history("Vehicle", doc_id)[-1]["blockAddress"]
    tip = ledger.engine.durable_seq
    with pytest.raises(InvalidArgumentError, match="latest"):
        ledger.execute_lambda(lambda tx: tx.redact_revision(latest, table_id, doc_id))
    with pytest.raises(TableNotFoundError):
        ledger.execute_lambda(lambda tx: tx.redact_revision(address, "B" * 22, doc_id))
    with pytest.raises(InvalidArgumentError):
        ledger.execute_lambda(lambda tx: tx.redact_revision({"sequenceNo": 1}, table_id, doc_id))

    def twice(tx: Transaction) -> None:
        tx.redact_revision(address, table_id, doc_id)
        tx.redact_revision(address, table_id, doc_id)

    with pytest.raises(LimitExceededError):
        ledger.execute_lambda(twice)
    assert ledger.engine.durable_seq == tip
    assert "data" in ledger.get_revision(address, doc_id)["revision"]


def test_commit_digest_is_qldbs(ledger: Ledger) -> None:
    def fn(tx: Transaction) -> str:
        tx.create_table("T")
        return tx.insert("T", {"a": 1})

    result = ledger.execute_transaction(fn)
    block = ledger.get_block(result.block_address)["block"]
    expected = ion_hash(result.transaction_id)
    for statement in block["transactionInfo"]["statements"]:
        expected = dot(expected, statement["statementDigest"])
    assert result.commit_digest == expected
    insert = block["transactionInfo"]["statements"][1]
    assert insert["statementDigest"] == dot(ion_hash(insert["statement"]), ion_hash({"a": 1}))
    read_only = ledger.execute_transaction(lambda tx: tx.find("T"))
    assert read_only.block_address is None
    assert len(read_only.value) == 1

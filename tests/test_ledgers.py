"""EmbeddedLedgers: the gateway's many embedded ledgers under one data directory.

Covers create/describe/list/update/tag/untag/delete, metadata that survives a reopen (and a
crash in the middle of create or delete), deletion protection, the name rule, the tag and
ledger-count limits, one cached handle per ledger, and concurrent callers.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from cluster.ledgers import (
    MAX_TAGS_PER_LEDGER,
    METADATA_FILE,
    DeletionProtectedError,
    EmbeddedLedgers,
    InvalidLedgerParameterError,
    LedgerExistsError,
    LedgerInUseError,
    LedgerLimitError,
    LedgerNotFoundError,
)
from core.errors import LedgerClosedError
from core.ledger import Ledger


def _insert(ledger: Ledger, value: int) -> str:
    if "T" not in ledger.list_tables():
        ledger.execute_lambda(lambda tx: tx.create_table("T"))
    doc_id: str = ledger.execute_lambda(lambda tx: tx.insert("T", {"v": value}))
    return doc_id


def test_create_describe_list_update_delete(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        info = ledgers.create("b-ledger", permissions_mode="STANDARD")
        assert info.state == "ACTIVE"
        assert info.deletion_protection is True  # QLDB's default
        assert info.kms_key is None
        ledgers.create(
            "a1", permissions_mode="ALLOW_ALL", deletion_protection=False, tags={"k": "v"}
        )
        assert ledgers.names() == ["a1", "b-ledger"]
        described = ledgers.describe("a1")
        assert described.permissions_mode == "ALLOW_ALL"
        assert described.tags == {"k": "v"}
        assert described.creation_time.tzinfo is not None

        updated = ledgers.update("b-ledger", deletion_protection=False, kms_key="arn:key/1")
        assert (updated.deletion_protection, updated.kms_key) == (False, "arn:key/1")
        assert ledgers.update("b-ledger", kms_key="AWS_OWNED_KMS_KEY").kms_key is None
        assert ledgers.update("b-ledger", permissions_mode="ALLOW_ALL").permissions_mode == (
            "ALLOW_ALL"
        )

        with pytest.raises(LedgerExistsError):
            ledgers.create("a1", permissions_mode="STANDARD")
        with pytest.raises(LedgerNotFoundError):
            ledgers.describe("nope")
        with pytest.raises(LedgerNotFoundError):
            ledgers.open("nope")
        with pytest.raises(LedgerNotFoundError):
            ledgers.delete("nope")

        ledgers.delete("a1")
        assert ledgers.names() == ["b-ledger"]
        assert not (tmp_path / "a1").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_open_caches_one_handle_and_delete_closes_it(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        ledgers.create("one", permissions_mode="STANDARD", deletion_protection=False)
        handle = ledgers.open("one")
        assert ledgers.open("one") is handle
        doc_id = _insert(handle, 1)
        assert len(handle.history("T", doc_id)) == 1
        ledgers.delete("one")
        with pytest.raises(LedgerClosedError):
            handle.get_digest()
        # the name may be used again, and the new ledger starts empty
        ledgers.create("one", permissions_mode="STANDARD")
        assert ledgers.open("one").list_tables() == []


def test_metadata_and_data_survive_reopen(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        created = ledgers.create(
            "keep", permissions_mode="ALLOW_ALL", kms_key="arn:aws:kms:k", tags={"a": "1"}
        )
        ledgers.tag("keep", {"b": "2"})
        ledgers.untag("keep", ["a"])
        ledgers.update("keep", deletion_protection=False)
        doc_id = _insert(ledgers.open("keep"), 7)
        digest = ledgers.open("keep").get_digest()
    with EmbeddedLedgers(tmp_path) as again:
        info = again.describe("keep")
        assert info.creation_time == created.creation_time
        assert info.tags == {"b": "2"}
        assert (info.permissions_mode, info.kms_key) == ("ALLOW_ALL", "arn:aws:kms:k")
        assert info.deletion_protection is False
        assert info.state == "ACTIVE"
        handle = again.open("keep")
        assert handle.get_digest() == digest
        assert handle.history("T", doc_id)[0]["data"] == {"v": 7}


def test_deletion_protection_refuses_delete(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        ledgers.create("guarded", permissions_mode="STANDARD")
        _insert(ledgers.open("guarded"), 1)
        with pytest.raises(DeletionProtectedError):
            ledgers.delete("guarded")
        assert ledgers.names() == ["guarded"]
        assert ledgers.open("guarded").get_digest()["digestTipAddress"]["sequenceNo"] >= 1
        ledgers.update("guarded", deletion_protection=False)
        ledgers.delete("guarded")
        assert ledgers.names() == []


@pytest.mark.parametrize(
    "name",
    ["", "a" * 33, "123", "-a", "a-", "a--b", "a_b", "a.b", "a/b", "..", "ledgers.json", "é"],
)
def test_bad_names_refused(tmp_path: Path, name: str) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create(name, permissions_mode="STANDARD")
        assert ledgers.names() == []
        assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "A-1", "a" * 32, "1a", "x-y-z"])
def test_good_names_accepted(tmp_path: Path, name: str) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        ledgers.create(name, permissions_mode="STANDARD")
        assert ledgers.names() == [name]


def test_bad_parameters_refused(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="OPEN")
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="STANDARD", kms_key="k" * 1601)
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="STANDARD", tags={"": "v"})
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="STANDARD", tags={"k" * 129: "v"})
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="STANDARD", tags={"k": "v" * 257})
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("x", permissions_mode="STANDARD", tags={"aws:owner": "me"})
        assert ledgers.names() == []
        ledgers.create("x", permissions_mode="STANDARD", tags={"k" * 128: "v" * 256})
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.update("x", permissions_mode="NONE")


def test_tag_count_limit(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        many = {f"k{i}": "v" for i in range(MAX_TAGS_PER_LEDGER)}
        ledgers.create("t", permissions_mode="STANDARD", tags=many)
        ledgers.tag("t", {"k0": "changed"})  # replacing a value adds no tag
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.tag("t", {"one-more": "v"})
        assert len(ledgers.describe("t").tags) == MAX_TAGS_PER_LEDGER
        with pytest.raises(InvalidLedgerParameterError):
            ledgers.create("u", permissions_mode="STANDARD", tags={**many, "extra": "v"})


def test_ledger_count_limit(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path, max_ledgers=2) as ledgers:
        ledgers.create("a", permissions_mode="STANDARD", deletion_protection=False)
        ledgers.create("b", permissions_mode="STANDARD")
        with pytest.raises(LedgerLimitError):
            ledgers.create("c", permissions_mode="STANDARD")
        ledgers.delete("a")
        ledgers.create("c", permissions_mode="STANDARD")


def test_foreign_directory_is_not_adopted(tmp_path: Path) -> None:
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "file").write_text("someone's data")
    with EmbeddedLedgers(tmp_path) as ledgers:
        assert ledgers.names() == []
        with pytest.raises(LedgerInUseError):
            ledgers.create("stray", permissions_mode="STANDARD")
    assert (tmp_path / "stray" / "file").read_text() == "someone's data"


def test_crash_in_create_or_delete_is_finished_at_start(tmp_path: Path) -> None:
    with EmbeddedLedgers(tmp_path) as ledgers:
        ledgers.create("half", permissions_mode="STANDARD")
    # as if the process died after writing CREATING and before the ledger was opened
    path = tmp_path / METADATA_FILE
    raw = json.loads(path.read_text())
    raw["ledgers"]["half"]["state"] = "CREATING"
    path.write_text(json.dumps(raw))
    # and as if a delete died after its rename, before the directory was removed
    (tmp_path / ".deleting-gone-1").mkdir()
    with EmbeddedLedgers(tmp_path) as ledgers:
        assert ledgers.describe("half").state == "ACTIVE"
        ledgers.open("half").get_digest()
    assert not (tmp_path / ".deleting-gone-1").exists()
    assert json.loads(path.read_text())["ledgers"]["half"]["state"] == "ACTIVE"


def test_concurrent_callers(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with EmbeddedLedgers(tmp_path) as ledgers:

        def worker(i: int) -> None:
            try:
                name = f"l{i}"
                ledgers.create(name, permissions_mode="STANDARD", deletion_protection=False)
                for j in range(5):
                    ledgers.tag(name, {f"t{j}": str(i)})
                    assert ledgers.open(name) is ledgers.open(name)
                ledgers.open("shared")
                if i % 2:
                    ledgers.delete(name)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        ledgers.create("shared", permissions_mode="STANDARD")
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert ledgers.names() == sorted(["shared", "l0", "l2", "l4", "l6"])
    with EmbeddedLedgers(tmp_path) as again:
        assert again.describe("l4").tags == {f"t{j}": "4" for j in range(5)}

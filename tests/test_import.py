"""`strand import` (cluster/importer.py, core/importing.py) and the verified migration from a
QLDB export (core/qldb_export.py): rows and rejects, exactly-once resume, batch atomicity,
verification before any write, and the row conversions as properties."""

from __future__ import annotations

import base64
import csv
import decimal
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster import importer
from cluster.importer import Hooks, ImportFailed
from core import Ledger
from core.errors import StrandError
from core.importing import (
    Record,
    RowError,
    batch_transaction_id,
    check_document,
    convert_csv_row,
    convert_json_line,
    plan_batches,
)
from core.limits import MAX_DOCUMENT_BYTES
from core.qldb_export import VerificationFailed, from_json_block
from core.verification import revision_hash
from tests.qldb_export_fixture import ledger_digest, write_export


def rows_of(ledger: Ledger, table: str) -> list[dict[str, Any]]:
    """The table's live documents, read from the engine (no PartiQL in the way)."""
    engine = ledger.engine
    table_id = engine.catalog.by_name(table).table_id
    return [dict(state.data) for _, state in engine.scan_docs(table_id)]


def numbers_in(ledger: Ledger, table: str = "T") -> list[int]:
    return sorted(int(r["n"]) for r in rows_of(ledger, table))


def write_jsonl(path: Path, count: int, bad_every: int = 0) -> Path:
    lines = []
    for n in range(1, count + 1):
        if bad_every and n % bad_every == 0:
            lines.append("{broken")
        lines.append(json.dumps({"n": n, "name": f"row {n}"}))
    path.write_text("\n".join(lines) + "\n")
    return path


class Boom(Exception):
    pass


def boom_at(batch_no: int) -> Callable[[int], None]:
    def hook(number: int) -> None:
        if number == batch_no:
            raise Boom(f"killed after batch {number}")

    return hook


# --- files, rows and rejects ------------------------------------------------------------------


def test_jsonl_import_reports_every_rejected_row(tmp_path: Path, ledger: Ledger) -> None:
    big = json.dumps({"blob": "x" * (MAX_DOCUMENT_BYTES + 10)})
    lines = ['{"n": 1, "price": 2.50}', "not json", "[1, 2]", "", '{"n": 2}', big, '"text"']
    lines += ['{"n": 3, "nested": {"a": [1, null, true]}}', '{"bad": NaN}']
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = importer.import_file(ledger, source, "T")
    assert numbers_in(ledger) == [1, 2, 3]
    rows = {int(r["n"]): r for r in rows_of(ledger, "T")}
    assert rows[1]["price"] == decimal.Decimal("2.50")  # exact decimal, not a float
    assert rows[3]["nested"] == {"a": [1, None, True]}
    rejects = [
        json.loads(line) for line in Path(result.rejects_file or "").read_text().splitlines()
    ]
    reasons = {r["record"]: r["reason"] for r in rejects}
    assert set(reasons) == {2, 3, 6, 7, 9}
    assert reasons[2].startswith("bad JSON")
    assert reasons[3] == "not a struct: a list"
    assert "limit is 131072" in reasons[6]
    assert reasons[7] == "not a struct: str"
    assert "NaN" in reasons[9]
    assert result.totals.documents == 3
    assert result.totals.rejected == 5


def test_csv_import_with_types_and_rejects(tmp_path: Path, ledger: Ledger) -> None:
    source = tmp_path / "people.csv"
    source.write_text(
        "name,age,balance,active,note\n"
        'ann,31,10.50,true,"has, comma"\n'
        "bob,x,1,false,ok\n"  # bad int
        "cy,40,2\n"  # wrong column count
        'dee,,0.1,no,"multi\nline"\n'  # empty typed cell: null; a quoted newline
    )
    types = {"age": "int", "balance": "decimal", "active": "bool"}
    result = importer.import_file(ledger, source, "People", types=types, indexes=["name"])
    rows = {r["name"]: r for r in rows_of(ledger, "People")}
    assert rows["ann"] == {
        "name": "ann",
        "age": 31,
        "balance": decimal.Decimal("10.50"),
        "active": True,
        "note": "has, comma",
    }
    assert rows["dee"]["age"] is None
    assert rows["dee"]["note"] == "multi\nline"
    assert set(rows) == {"ann", "dee"}
    rejects = Path(result.rejects_file or "").read_text().splitlines()
    reasons = [json.loads(line)["reason"] for line in rejects]
    assert reasons == [
        "column 'age': 'x' is not a int",
        "wrong column count: 3 cells, the header has 5",
    ]
    table = ledger.engine.catalog.by_name("People")
    assert table.index_on("name") is not None


def test_ion_import(tmp_path: Path, ledger: Ledger) -> None:
    source = tmp_path / "rows.ion"
    source.write_text(
        "{n: 1, at: 2024-01-02T03:04:05.678Z, tag: sym, amount: 1.50d0} 42 {n: 2, b: {{aGk=}}}"
    )
    result = importer.import_file(ledger, source, "T")
    assert numbers_in(ledger) == [1, 2]
    assert result.totals.rejected == 1
    [reject] = [json.loads(x) for x in Path(result.rejects_file or "").read_text().splitlines()]
    assert reject["record"] == 2
    assert reject["reason"] == "not a struct: IonPyInt"


# --- exactly once -----------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 3])
@pytest.mark.parametrize("hook", ["after_commit", "after_checkpoint"])
def test_resume_after_a_kill_is_exactly_once(
    tmp_path: Path, ledger: Ledger, hook: str, parallel: int
) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 300, bad_every=37)
    with pytest.raises(Boom):
        importer.import_file(
            ledger, source, "T", hooks=Hooks(**{hook: boom_at(3)}), parallel=parallel
        )
    # batches 0-3 (1 at a time) or 0-5 (3 at a time) of 40 committed
    assert numbers_in(ledger) == list(range(1, 161 if parallel == 1 else 241))
    result = importer.import_file(ledger, source, "T", parallel=parallel)
    assert numbers_in(ledger) == list(range(1, 301))  # no duplicate, no gap
    replayed = {"after_commit": 1 if parallel == 1 else 3, "after_checkpoint": 0}[hook]
    assert result.totals.replayed_batches == replayed
    assert result.totals.rejected == 8
    rejects = Path(result.rejects_file or "").read_text().splitlines()
    assert len(rejects) == 8  # each reject reported once across both runs
    again = importer.import_file(ledger, source, "T")
    assert again.already_done
    assert numbers_in(ledger) == list(range(1, 301))


def test_lost_checkpoint_replays_without_duplicates(tmp_path: Path, ledger: Ledger) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 130)
    with pytest.raises(Boom):
        importer.import_file(ledger, source, "T", hooks=Hooks(after_commit=boom_at(1)), parallel=1)
    Path(str(source) + ".strand-import.json").unlink()
    result = importer.import_file(ledger, source, "T")
    assert numbers_in(ledger) == list(range(1, 131))
    assert result.totals.replayed_batches == 2  # batches 0 and 1: the journal had them


def test_changed_input_refuses_the_old_checkpoint(tmp_path: Path, ledger: Ledger) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 50)
    with pytest.raises(Boom):
        importer.import_file(ledger, source, "T", hooks=Hooks(after_checkpoint=boom_at(0)))
    write_jsonl(source, 60)
    with pytest.raises(ImportFailed, match="another import"):
        importer.import_file(ledger, source, "T")


class FailOn:
    """A target whose transaction fails while inserting the document with n == `n`."""

    def __init__(self, ledger: Ledger, n: int) -> None:
        self.ledger, self.n = ledger, n

    def execute_lambda(self, fn: Any, retry_limit: int = 4, *, transaction_id: Any = None) -> Any:
        outer = self

        class Tx:
            def __init__(self, tx: Any) -> None:
                self._tx = tx

            def insert(self, table: str, doc: Any) -> str:
                if doc.get("n") == outer.n:
                    raise StrandError(f"failing on {outer.n}")
                return str(self._tx.insert(table, doc))

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tx, name)

        return self.ledger.execute_lambda(
            lambda tx: fn(Tx(tx)), retry_limit, transaction_id=transaction_id
        )

    def get_digest(self, tip: Any = None) -> Any:
        return self.ledger.get_digest(tip)

    def get_block(self, address: Any, tip: Any = None) -> Any:
        return self.ledger.get_block(address, tip)


def test_a_failed_batch_leaves_nothing(tmp_path: Path, ledger: Ledger) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 200)
    with pytest.raises(ImportFailed, match="batch 2"):
        importer.import_file(FailOn(ledger, 97), source, "T", parallel=2)  # batch 2: 81..120
    # batches 0-1, then the group of 2-3: batch 2 left nothing, its sibling 3 committed
    assert numbers_in(ledger) == [*range(1, 81), *range(121, 161)]
    result = importer.import_file(ledger, source, "T")
    assert numbers_in(ledger) == list(range(1, 201))
    assert result.totals.replayed_batches == 1


# --- migration from a QLDB export -------------------------------------------------------------


def build_source(path: Path) -> tuple[Ledger, dict[str, dict[str, Any]]]:
    """A ledger with two tables, an index, updates and deletes; its live documents by VIN."""
    src = Ledger.open(path)

    def setup(tx: Any) -> None:
        tx.create_table("Vehicle")
        tx.create_index("Vehicle", "VIN")
        tx.create_table("Person")
        tx.create_table("Gone")

    src.execute_lambda(setup)
    ids = src.execute_lambda(
        lambda tx: [
            tx.insert(
                "Vehicle", {"VIN": f"V{i}", "Year": 2000 + i, "Price": decimal.Decimal("1.50")}
            )
            for i in range(25)
        ]
    )
    src.execute_lambda(lambda tx: tx.insert("Person", {"name": "ann", "tags": ["a", "b"]}))
    src.execute_lambda(lambda tx: tx.insert("Gone", {"x": 1}))
    src.execute_lambda(lambda tx: tx.drop_table("Gone"))
    for i in range(3):
        src.execute_lambda(
            lambda tx, i=i: tx.update("Vehicle", ids[i], {"VIN": f"V{i}", "Year": 1})
        )
    src.execute_lambda(lambda tx: tx.delete("Vehicle", ids[5]))
    live = {r["VIN"]: r for r in rows_of(src, "Vehicle")}
    return src, live


@pytest.fixture
def source(tmp_path: Path) -> Any:
    src, live = build_source(tmp_path / "src")
    yield src, live
    src.close()


@pytest.mark.parametrize("fmt", ["ION_TEXT", "ION_BINARY"])
def test_a_verified_export_migrates(tmp_path: Path, source: Any, fmt: str) -> None:
    src, live = source
    write_export(src, tmp_path / "export", fmt=fmt)
    digest = ledger_digest(src)
    with Ledger.open(tmp_path / "target") as target:
        result = importer.migrate_qldb_export(
            target, tmp_path / "export", digest, with_history=(fmt == "ION_TEXT")
        )
        assert {r["VIN"]: r for r in rows_of(target, "Vehicle")} == live  # identical data
        assert "V5" not in live
        assert len(live) == 24
        assert rows_of(target, "Person") == [{"name": "ann", "tags": ["a", "b"]}]
        assert "Gone" not in target.list_tables()  # a dropped table stays dropped
        assert target.engine.catalog.by_name("Vehicle").index_on("VIN") is not None
        [record] = rows_of(target, "strand_migration")
        assert record["qldb"]["digest"] == digest["Digest"]
        assert record["documents"] == 25
        saved = json.loads(Path(result.record_file).read_text())
        assert saved["record"]["qldb"]["digest"] == digest["Digest"]
        after = base64.b64decode(saved["strandDigestWithRecord"]["Digest"])
        assert after == bytes(target.get_digest()["digest"])
        ids = [json.loads(x) for x in Path(result.ids_file).read_text().splitlines()]
        assert len(ids) == 25
        assert len({x["strandId"] for x in ids}) == 25
        if fmt == "ION_TEXT":  # 25 + 3 updates + 1 delete + 1 person revisions
            history = rows_of(target, "Vehicle_history")
            assert len(history) == 29
            assert sum(1 for h in history if "data" not in h) == 1


def test_json_export_refused_unless_unverified_data_is_accepted(
    tmp_path: Path, source: Any
) -> None:
    src, live = source
    write_export(src, tmp_path / "export", fmt="JSON")
    digest = ledger_digest(src)
    with Ledger.open(tmp_path / "target") as target:
        before = target.get_digest()
        with pytest.raises(VerificationFailed, match="JSON lost"):
            importer.migrate_qldb_export(target, tmp_path / "export", digest)
        assert target.get_digest() == before
        result = importer.migrate_qldb_export(
            target, tmp_path / "export", digest, accept_unverified_data=True
        )
        assert not result.verified.data_verified
        assert result.verified.unchecked_revisions == 25  # the decimals' revisions
        assert len(rows_of(target, "Vehicle")) == len(live)


def flip_one_byte(objects: list[Path], needle: bytes, nth: int = 0) -> Path:
    """Flip the low bit of the first byte of the nth object holding `needle`."""
    path = [p for p in objects if needle in p.read_bytes()][nth]
    data = bytearray(path.read_bytes())
    data[data.index(needle)] ^= 0x01
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "damage",
    ["data", "hash", "syntax", "binary", "wrong digest", "missing object", "truncated"],
)
def test_tampering_refuses_before_anything_is_written(
    tmp_path: Path, source: Any, damage: str
) -> None:
    src, _ = source
    fmt = "ION_BINARY" if damage == "binary" else "ION_TEXT"
    objects = write_export(src, tmp_path / "export", fmt=fmt, blocks_per_object=2)
    digest = ledger_digest(src)
    damaged = objects[0]
    if damage == "data":
        damaged = flip_one_byte(objects, b'V7"')  # "V7" -> "W7" inside a revision's data
    elif damage == "hash":
        damaged = flip_one_byte(objects, b"blockHash:{{", 3)
    elif damage == "syntax":
        damaged = flip_one_byte(objects, b'"V9"')  # the quote: no longer Ion text
    elif damage == "binary":
        damaged = flip_one_byte(objects, b"V12")
    elif damage == "wrong digest":
        other = bytearray(base64.b64decode(digest["Digest"]))
        other[0] ^= 1
        digest["Digest"] = base64.b64encode(bytes(other)).decode()
    elif damage == "missing object":
        objects[1].unlink()
    else:
        objects[-1].write_text(objects[-1].read_text().split("\n", 1)[0] + "\n")
    with Ledger.open(tmp_path / "target") as target:
        before = target.get_digest()
        with pytest.raises((VerificationFailed, ImportFailed)) as caught:
            importer.migrate_qldb_export(target, tmp_path / "export", digest)
        assert target.get_digest() == before
        assert target.list_tables() == []
    if damage in ("data", "hash", "syntax", "binary"):
        assert damaged.name in str(caught.value)
        assert ("line" if damage == "syntax" else "block") in str(caught.value)


def test_migration_resumes_exactly_once_and_refuses_a_clash(tmp_path: Path, source: Any) -> None:
    src, live = source
    write_export(src, tmp_path / "export", fmt="ION_TEXT")
    digest = ledger_digest(src)
    with Ledger.open(tmp_path / "target") as target:
        for kill_after in (0, 1):  # batch 0: the live documents; 1: history only
            with pytest.raises(Boom):
                importer.migrate_qldb_export(
                    target,
                    tmp_path / "export",
                    digest,
                    with_history=True,
                    hooks=Hooks(after_commit=boom_at(kill_after)),
                    parallel=1,
                )
        result = importer.migrate_qldb_export(
            target, tmp_path / "export", digest, with_history=True
        )
        assert result.run.replayed_batches == 1  # batch 1; batch 0 was checkpointed
        assert {r["VIN"]: r for r in rows_of(target, "Vehicle")} == live
        assert len(rows_of(target, "Vehicle_history")) == 29
        ids = Path(result.ids_file).read_text().splitlines()
        assert len(ids) == 25  # every id once, a replayed batch's recovered from its block
    with Ledger.open(tmp_path / "other") as other:
        other.execute_lambda(lambda tx: tx.create_table("Person"))
        before = other.get_digest()
        with pytest.raises(ImportFailed, match="already has tables"):
            importer.migrate_qldb_export(
                other, tmp_path / "export", digest, checkpoint_path=tmp_path / "cp2.json"
            )
        assert other.get_digest() == before


def test_real_qldb_revision_survives_the_json_round_trip() -> None:
    """The public real QLDB revision (shared/reference/qldb.md section 1), down-converted to
    JSON as QLDB's JSON exports were, verifies again once from_json_block restores types."""
    revision = {
        "blockAddress": {"strandId": "KLXwBc1ml2A4Yjc8jbFMX3", "sequenceNo": 429},
        "hash": "DrFztoBrWKz+mCV+BnnMfEZRwfJcD+DNLRPLc16SidY=",
        "data": {"_key": "myKey1", "_val": "MyValue1"},
        "metadata": {
            "id": "5vHoYG5m0OZCsqdYCs8XLH",
            "version": 13,
            "txTime": "2021-06-02T07:03:05.226Z",
            "txId": "EVaGjT4dxspC4GUhHi4DDJ",
        },
    }
    restored = from_json_block({"revisions": [revision]})["revisions"][0]
    assert revision_hash(restored) == base64.b64decode(revision["hash"])


def test_against_the_strand_exporter(tmp_path: Path, source: Any) -> None:
    export = pytest.importorskip("cluster.export")
    src, live = source
    try:
        store, prefix = export.open_store(str(tmp_path / "export"))
        export.export_journal(src, store, prefix)
    except Exception as exc:  # the exporter is being written alongside
        pytest.skip(f"cluster.export not usable yet: {exc}")
    with Ledger.open(tmp_path / "target") as target:
        importer.migrate_qldb_export(target, tmp_path / "export", ledger_digest(src))
        assert {r["VIN"]: r for r in rows_of(target, "Vehicle")} == live


# --- properties -------------------------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
_cells = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    header=st.lists(_names, min_size=1, max_size=6, unique=True),
    data=st.data(),
)
def test_csv_rows_round_trip(header: list[str], data: Any) -> None:
    ints = data.draw(
        st.lists(st.integers(-(10**30), 10**30), min_size=len(header), max_size=len(header))
    )
    typed = data.draw(st.sets(st.sampled_from(header)))
    row = [
        str(i) if name in typed else data.draw(_cells) for name, i in zip(header, ints, strict=True)
    ]
    out = io.StringIO()
    csv.writer(out).writerow(row)
    [parsed] = list(csv.reader(io.StringIO(out.getvalue())))
    types = {name: "int" for name in typed}
    doc = convert_csv_row(header, parsed, types)
    assert list(doc) == header
    for name, cell, n in zip(header, row, ints, strict=True):
        assert doc[name] == (n if name in typed else cell)
    with pytest.raises(RowError, match="wrong column count"):
        convert_csv_row(header, [*parsed, "extra"], types)


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _as_decimals(value: Any) -> Any:
    if isinstance(value, float):
        return decimal.Decimal(json.dumps(value))
    if isinstance(value, list):
        return [_as_decimals(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_decimals(v) for k, v in value.items()}
    return value


@settings(max_examples=60, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=6), _json, max_size=6))
def test_json_lines_convert_exactly(doc: dict[str, Any]) -> None:
    value = convert_json_line(json.dumps(doc))
    assert value == _as_decimals(doc)
    stored, size = check_document(value)
    assert stored == value
    assert size > 0


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["doc", "reject", "blank"]), max_size=150),
    size=st.integers(1, 40),
)
def test_batches_keep_order_limits_and_every_row(kinds: list[str], size: int) -> None:
    records = []
    for n, kind in enumerate(kinds, start=1):
        if kind == "doc":
            records.append(Record(n, n * 10, {"n": n}, 8, table="T"))
        elif kind == "reject":
            records.append(Record(n, n * 10, reject=importer.Reject(n, "bad")))
        else:
            records.append(Record(n, n * 10))
    batches = list(plan_batches(records, max_documents=size))
    docs = [d["n"] for b in batches for _, d in b.documents]
    assert docs == [r.record_no for r in records if r.document is not None]
    assert [r.record_no for b in batches for r in b.rejects] == [
        r.record_no for r in records if r.reject is not None
    ]
    assert all(len(b.documents) <= size for b in batches)
    assert [b.number for b in batches] == list(range(len(batches)))
    for before, after in zip(batches, batches[1:], strict=False):
        assert after.first_record == before.next_record
    # resuming from any batch boundary plans the same batches from there
    for b in batches[:-1]:
        rest = list(
            plan_batches(
                records[b.next_record - 1 :],
                first_batch=b.number + 1,
                first_record=b.next_record,
                max_documents=size,
            )
        )
        assert [x.documents for x in rest] == [x.documents for x in batches[b.number + 1 :]]
    assert batch_transaction_id("k", 1) != batch_transaction_id("k", 2)
    assert len(batch_transaction_id("k", 1)) == 22


def test_cli(tmp_path: Path, source: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    rows = write_jsonl(tmp_path / "rows.jsonl", 45, bad_every=20)
    data = tmp_path / "target"
    assert main(["import", str(rows), "--table", "T", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["documents"] == 45
    assert out["rejected"] == 2
    assert out["batches"] == 2
    src, _ = source
    write_export(src, tmp_path / "export")
    digest = tmp_path / "digest.json"
    saved = ledger_digest(src)
    saved["Digest"] = base64.b64encode(bytes(32)).decode()
    digest.write_text(json.dumps(saved))
    args = ["import", "--qldb-export", str(tmp_path / "export"), "--digest", str(digest)]
    assert main([*args, "--data", str(data), "--json"]) == 1
    assert "does NOT verify" in capsys.readouterr().err
    digest.write_text(json.dumps(ledger_digest(src)))
    assert main([*args, "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 25

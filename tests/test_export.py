"""Journal exports (issue 14): QLDB's layout in every format, offline verification against a
saved digest (tampering located), S3 through moto's server, Parquet read by DuckDB, restore
with the same digest, and the JSON down-conversion checked against the Ion cookbook."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyBytes, IonPyList, IonPyNull, IonPySymbol
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster import cli
from cluster import export as ex
from cluster.cli_export import saved_digest_json
from core import Ledger, keys
from core.export_format import ION_BINARY, ION_TEXT, JSON, OUTPUT_FORMATS, to_json
from core.ids import timestamp_from_ms

BLOCKS_PER_OBJECT = 7


class Clock:
    """A clock the test moves: from 2024-05-01T22:30Z, a minute a transaction (the blocks
    cross 23:00, so objects also split at the hour)."""

    def __init__(self) -> None:
        self.ms = 1_714_602_600_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("ledger") / "l"
    from core.storage import LevelDBStorage

    clock = Clock()
    led = Ledger(LevelDBStorage(path, create_if_missing=True), clock_ms=clock)
    led.execute_lambda(lambda tx: (tx.create_table("Car"), tx.create_index("Car", "VIN")))
    ids = []
    for i in range(40):
        doc = {
            "VIN": f"VIN{i}",
            "price": decimal.Decimal(f"{i}.50"),
            "seen": timestamp_from_ms(1_700_000_000_000 + i),
            "photo": bytes([i, 255 - i]),
            "tags": ["a", i, None],
        }
        clock.ms += 60_000
        ids.append(led.execute_lambda(lambda tx, doc=doc: tx.insert("Car", doc)))
    led.execute_lambda(lambda tx: tx.update("Car", ids[0], {"VIN": "VIN0", "price": 1}))
    led.execute_lambda(lambda tx: tx.delete("Car", ids[1]))
    first = led.history("Car", ids[0])[0]
    table_id = led.engine.catalog.by_name("Car").table_id
    led.execute_lambda(lambda tx: tx.redact_revision(first["blockAddress"], table_id, ids[0]))
    yield led
    led.close()


@pytest.fixture(scope="module")
def saved(ledger: Any) -> dict[str, Any]:
    return saved_digest_json(ledger.get_digest())


def _export(ledger: Any, root: Path, fmt: str = ION_TEXT, **kw: Any) -> ex.ExportResult:
    return ex.export_journal(
        ledger, ex.DirectoryStore(root), "", output_format=fmt,
        max_object_blocks=BLOCKS_PER_OBJECT, **kw,
    )  # fmt: skip


def _verify(root: Path, saved: dict[str, Any], prefix: str = "") -> Any:
    return ex.verify_export(ex.DirectoryStore(root), prefix, saved)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_export_layout_and_verify_each_format(
    ledger: Any, saved: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    result = _export(ledger, tmp_path, fmt)
    tip = ledger.get_digest()["digestTipAddress"]["sequenceNo"]
    assert (result.first_seq, result.last_seq) == (0, tip)
    strand = ledger.strand_id
    started = tmp_path / f"{result.export_id}.started.manifest"
    completed = tmp_path / f"{result.export_id}.{strand}.completed.manifest"
    assert started.is_file()
    manifest = simpleion.loads(completed.read_text())
    assert list(manifest["keys"]) == result.keys
    covered = []
    for key in result.keys:  # <exportId>/yyyy/mm/dd/hh/<strandId>.<first>-<last>.ion
        parts = key.split("/")
        assert parts[0] == result.export_id
        assert len(parts) == 6
        first, last = map(int, parts[5].removeprefix(f"{strand}.").removesuffix(".ion").split("-"))
        covered.extend(range(first, last + 1))
    assert covered == list(range(tip + 1))
    assert len(result.keys) > (tip + 1) // BLOCKS_PER_OBJECT  # split at 23:00 too
    if fmt == JSON:  # JSON Lines, one block per line, QLDB's field names
        line = json.loads((tmp_path / result.keys[0]).read_text().splitlines()[1])
        assert list(line)[:4] == ["blockAddress", "transactionId", "blockTimestamp", "blockHash"]
        assert isinstance(line["blockHash"], str)
        assert len(base64.b64decode(line["blockHash"])) == 32
    report = _verify(tmp_path, saved)
    assert report.ok, report.problems
    assert report.blocks_checked == tip + 1
    assert report.root_checked
    if fmt != JSON:
        assert report.unchecked_revisions == 0


def test_block_read_back_equals_ledger_block(ledger: Any, tmp_path: Path) -> None:
    from core.export_format import decode_object

    for fmt in (ION_TEXT, ION_BINARY):
        result = _export(ledger, tmp_path / fmt, fmt, last_seq=6)
        data = (tmp_path / fmt / result.keys[0]).read_bytes()
        blocks = [d.block for d in decode_object(data, fmt)]
        assert len(blocks) == 7
        for seq, block in enumerate(blocks):
            original = ledger.engine.read_block(seq)
            assert simpleion.dumps(block) == simpleion.dumps(original)


def _flip(path: Path, needle: bytes, occurrence: int = 0) -> None:
    data = bytearray(path.read_bytes())
    at = -1
    for _ in range(occurrence + 1):
        at = data.index(needle, at + 1)
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_flipped_byte_is_reported_with_its_location(
    ledger: Any, saved: dict[str, Any], tmp_path: Path
) -> None:
    result = _export(ledger, tmp_path)
    key = result.keys[2]  # blocks 14..20
    _flip(
        tmp_path / key, b'VIN16"'
    )  # the document of block 17's revision: VIN16 -> WIN16 (block 18)
    report = _verify(tmp_path, saved)
    assert not report.ok
    assert [(p.key, p.sequence_no) for p in report.problems] == [(str(tmp_path / key), 18)]
    assert report.problems[0].problem == "block revision 0 does not match its hash"
    assert "the Merkle root" not in str(report.problems)  # block 18's hash itself still fits
    # a byte that breaks the syntax: located at the line and at the block expected there
    lines = (tmp_path / key).read_text().split("\n")
    lines[4] = lines[4].replace("blockAddress:", "blockAddress;", 1)  # ':' ^ 1 == ';'
    (tmp_path / key).write_text("\n".join(lines))
    report = _verify(tmp_path, saved)
    located = [(p.key, p.sequence_no, p.problem.split(":")[0]) for p in report.problems]
    assert (str(tmp_path / key), 18, "line 5") in located, report.problems
    assert not report.ok
    assert not report.root_checked


def test_flipped_byte_in_binary_export_is_located(
    ledger: Any, saved: dict[str, Any], tmp_path: Path
) -> None:
    result = _export(ledger, tmp_path, ION_BINARY)
    key = result.keys[1]
    _flip(tmp_path / key, b"VIN10")
    report = _verify(tmp_path, saved)
    assert not report.ok
    assert any(p.key == str(tmp_path / key) and p.sequence_no == 12 for p in report.problems)


def test_rehashed_block_breaks_the_chain(
    ledger: Any, saved: dict[str, Any], tmp_path: Path
) -> None:
    """A block altered with all its own hashes recomputed: the next block's previousBlockHash
    (the chain) and the Merkle root catch it."""
    from core.journal import build_block

    result = _export(ledger, tmp_path)
    path = tmp_path / result.keys[0]
    lines = path.read_text().splitlines()
    block = simpleion.loads(lines[3])
    forged = build_block(
        strand_id=ledger.strand_id, sequence_no=3, transaction_id=str(block["transactionId"]),
        timestamp=block["blockTimestamp"], previous_block_hash=bytes(block["previousBlockHash"]),
        statements=[], writes=[],
    )  # fmt: skip
    lines[3] = simpleion.dumps(forged, binary=False, omit_version_marker=True)
    path.write_text("\n".join(lines) + "\n")
    report = _verify(tmp_path, saved)
    problems = {(p.sequence_no, p.problem.split(" is ")[0]) for p in report.problems}
    assert (4, "previousBlockHash") in problems
    assert not report.ok


def test_wrong_digest_is_reported(ledger: Any, saved: dict[str, Any], tmp_path: Path) -> None:
    _export(ledger, tmp_path)
    other = dict(saved, Digest=base64.b64encode(bytes(32)).decode())
    report = _verify(tmp_path, other)
    assert not report.ok
    assert [p.sequence_no for p in report.problems] == [ledger.engine.durable_seq]
    assert "Merkle root" in report.problems[0].problem
    # an earlier digest is checked at its own tip; the blocks after it are only chained
    early = saved_digest_json(ledger.get_digest({"strandId": ledger.strand_id, "sequenceNo": 9}))
    report = _verify(tmp_path, early)
    assert report.ok
    assert report.beyond_tip == ledger.engine.durable_seq - 9


def test_partial_exports(ledger: Any, saved: dict[str, Any], tmp_path: Path) -> None:
    """An export from block 12 verifies through its manifest's Merkle frontier (a wrong one
    is caught); a time range selects blocks as QLDB did: start inclusive, end exclusive."""
    result = _export(ledger, tmp_path, first_seq=12)
    assert result.first_seq == 12
    assert _verify(tmp_path, saved).ok
    manifest = tmp_path / result.manifest_keys[1]
    value = json.loads(manifest.read_text())
    value["strandMerkleFrontier"][0] = base64.b64encode(bytes(32)).decode()
    manifest.write_text(json.dumps(value))
    report = _verify(tmp_path, saved)
    assert not report.ok
    assert "Merkle root" in report.problems[0].problem
    stamp = ledger.engine.read_block(20)["blockTimestamp"]
    end = ledger.engine.read_block(25)["blockTimestamp"]
    ranged = _export(ledger, tmp_path / "range", start_time=stamp, end_time=end)
    assert (ranged.first_seq, ranged.last_seq) == (20, 24)
    early = saved_digest_json(ledger.get_digest({"strandId": ledger.strand_id, "sequenceNo": 22}))
    assert _verify(tmp_path / "range", early).ok
    short = _verify(tmp_path / "range", saved)  # ends before the digest's tip
    assert not short.ok
    assert "before the digest's tip" in short.problems[-1].problem


def test_restore_reproduces_the_digest_block_for_block(
    ledger: Any, saved: dict[str, Any], tmp_path: Path
) -> None:
    _export(ledger, tmp_path / "e", ION_BINARY)
    result = ex.restore_export(
        ex.DirectoryStore(tmp_path / "e"), "", tmp_path / "restored", saved_digest=saved
    )
    assert result.verified_against_saved_digest
    with Ledger.open(tmp_path / "restored", create_if_missing=False) as restored:
        assert restored.get_digest() == ledger.get_digest()
        storage = ledger.engine.storage
        for seq in range(ledger.engine.durable_seq + 1):
            key = keys.block_key(seq)
            assert restored.engine.storage.get(key) == storage.get(key), seq
        assert restored.verify_journal().ok
        assert restored.history("Car") == ledger.history("Car")
        restored.execute_lambda(lambda tx: tx.insert("Car", {"VIN": "new"}))  # a live ledger
    # a tampered export is refused and leaves nothing behind
    result2 = _export(ledger, tmp_path / "t")
    _flip(tmp_path / "t" / result2.keys[1], b"VIN9")
    with pytest.raises(ex.RestoreError):
        ex.restore_export(ex.DirectoryStore(tmp_path / "t"), "", tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    assert not (tmp_path / "r2.partial").exists()


def test_parquet_of_revisions_reads_in_duckdb_and_pyarrow(ledger: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    result = _export(ledger, tmp_path, JSON, parquet=True)
    assert result.parquet_key is not None
    path = tmp_path / result.parquet_key
    revisions = sum(
        len(ledger.engine.read_block(s)["revisions"]) for s in range(ledger.engine.durable_seq + 1)
    )
    assert pq.read_table(path).num_rows == revisions
    duckdb = pytest.importorskip("duckdb")
    count, deleted, redacted = duckdb.sql(
        f"SELECT count(*), count(*) FILTER (deleted), count(*) FILTER (redacted) "
        f"FROM read_parquet('{path}')"
    ).fetchall()[0]
    assert (count, deleted, redacted) == (revisions, 1, 1)
    vins = duckdb.sql(
        f"SELECT json_extract_string(data, '$.VIN') FROM read_parquet('{path}') "
        "WHERE tableName = 'Car' AND documentId IS NOT NULL AND version = 0 AND NOT redacted "
        "ORDER BY blockSequenceNo LIMIT 1"
    ).fetchall()[0]
    assert vins == ("VIN1",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_export_to_s3_and_verify_there(
    ledger: Any, saved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,  # found by boto3 itself
        }.items():
            monkeypatch.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket="exports")
        store, prefix = ex.open_store("s3://exports/journal/")
        result = ex.export_journal(ledger, store, prefix, output_format=ION_BINARY)
        listed = boto3.client("s3").list_objects_v2(Bucket="exports")["Contents"]
        assert {o["Key"] for o in listed} == set(result.keys + result.manifest_keys)
        assert all(k.startswith("journal/") for k in result.keys)
        assert ex.verify_export(store, prefix, saved).ok
        # the same through the command line, with a flipped byte in one object
        data = bytearray(store.get(result.keys[0]))
        data[data.index(b"VIN3")] ^= 1
        store.put(result.keys[0], bytes(data))
        report = ex.verify_export(store, prefix, saved)
        assert not report.ok
        assert report.problems[0].key == f"s3://exports/{result.keys[0]}"
    finally:
        server.stop()


def test_command_line(ledger: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """strand digest / export / verify export / verify block / restore, with --json."""
    source = tmp_path / "copy"
    _export(ledger, tmp_path / "seed", ION_BINARY)
    ex.restore_export(ex.DirectoryStore(tmp_path / "seed"), "", source)  # a ledger to open
    digest = tmp_path / "digest.json"
    assert cli.main(["digest", "--ledger", str(source), "--out", str(digest)]) == 0
    assert cli.main(["export", "--ledger", str(source), str(tmp_path / "x"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["firstSequenceNo"] == 0
    assert out["keys"]
    assert cli.main(["verify", "export", str(tmp_path / "x"), "--digest", str(digest)]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    _flip(tmp_path / "x" / out["keys"][-1], b"VIN2")
    code = cli.main(["verify", "export", str(tmp_path / "x"), "--digest", str(digest), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert not report["ok"]
    assert report["problems"][0]["sequenceNo"] is not None
    with Ledger.open(source, create_if_missing=False) as copy:
        got = copy.get_block({"strandId": copy.strand_id, "sequenceNo": 5})
        tip = copy.get_digest()
    answer = {
        "Block": {"IonText": simpleion.dumps(got["block"], binary=False)},
        "Proof": {"IonText": simpleion.dumps(got["proof"], binary=False)},
    }
    (tmp_path / "block.json").write_text(json.dumps(answer))
    args = ["verify", "block", str(tmp_path / "block.json"), "--digest", str(digest)]
    assert tip["digest"]
    assert cli.main(args) == 0
    answer["Block"]["IonText"] = answer["Block"]["IonText"].replace("Car", "Cat")
    (tmp_path / "block.json").write_text(json.dumps(answer))
    assert cli.main(args) == 1
    restored = tmp_path / "restored"
    assert cli.main(["restore", str(tmp_path / "seed"), str(restored), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["blocks"] > 40


# --- the JSON down-conversion ------------------------------------------------------------------

_texts = st.text(max_size=8)
_timestamps = st.builds(
    lambda ms, frac, precision: Timestamp(
        *datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).timetuple()[:6],
        frac * 1000, tzinfo=datetime.UTC, precision=precision,
        fractional_precision=6 if precision == TimestampPrecision.SECOND else None,
    ),
    st.integers(0, 4_000_000_000_000), st.integers(0, 999),
    st.sampled_from([TimestampPrecision.DAY, TimestampPrecision.MINUTE, TimestampPrecision.SECOND]),
)  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.just(IonPyNull.from_value(IonType.INT, None)),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    _texts,
    _texts.map(lambda t: IonPySymbol.from_value(IonType.SYMBOL, t)),
    st.binary(max_size=8),
    st.binary(max_size=8).map(lambda b: IonPyBytes.from_value(IonType.CLOB, b)),
    _timestamps,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(lambda v: IonPyList.from_value(IonType.SEXP, v)),
        st.dictionaries(_texts, inner, max_size=4),
        st.lists(inner, max_size=3).map(
            lambda v: IonPyList.from_value(IonType.LIST, v, annotations=("ann",))
        ),
    ),
    max_leaves=12,
)


class _IonTextOf:
    """Equal to a string that is Ion text of this very timestamp (precision included)."""

    def __init__(self, value: datetime.datetime) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return False
        got = simpleion.loads(other)
        same = simpleion.dumps(got) == simpleion.dumps(self.value)
        return isinstance(got, datetime.datetime) and same

    def __repr__(self) -> str:
        return f"IonTextOf({self.value!r})"


def _cookbook(value: Any) -> Any:
    """What the Ion cookbook's down-conversion gives, as the JSON value json.loads reads."""
    if value is None or isinstance(value, IonPyNull):
        return None
    if isinstance(value, bool) or getattr(value, "ion_type", None) is IonType.BOOL:
        return bool(value)
    if isinstance(value, IonPySymbol):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):  # the timestamp's Ion text
        return _IonTextOf(value)
    if isinstance(value, IonPyBytes) and value.ion_type is IonType.CLOB:
        return bytes(value).decode("latin-1")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _cookbook(v) for k, v in value.items()}
    return [_cookbook(v) for v in value]  # lists and s-expressions; annotations dropped


@settings(max_examples=300, deadline=None)
@given(_values)
def test_json_down_conversion_is_the_cookbooks(value: Any) -> None:
    text = to_json(value)
    assert "\n" not in text
    got = json.loads(text, parse_float=float)
    assert got == _cookbook(value)
    if isinstance(value, decimal.Decimal):  # exact digits, not a float's
        assert decimal.Decimal(text) == value

"""Journal exports to a directory or S3, their offline verification, backup and restore.

`export_journal(source, store, prefix, ...)` writes a ledger's journal (a time range, inclusive
start and exclusive end as QLDB, or a sequence range) in QLDB's layout and formats
(`core.export_format`): the started manifest first, then the data objects, the completed
manifest last (an export without it is unfinished). Optionally a Parquet file of its
revisions, `<prefix><exportId>.revisions.parquet`, for analytics (DuckDB, pyarrow).

Sources (`BlockSource`): the embedded `Ledger` (reads its storage) and the `LedgerCluster`
client (`raw_blocks` reads through the leader, 256 blocks a round trip). Every block is
decoded and its hashes recomputed (`core.journal.check_block`) before it is written.

Stores (`ObjectStore`): `DirectoryStore` (object keys are relative paths; files written to a
temporary name, fsynced, renamed) and `S3Store` (boto3, the standard credential chain and
endpoint resolution: `AWS_ENDPOINT_URL_S3`, or an explicit endpoint URL). `open_store` takes
`s3://bucket/prefix` or a directory path.

`verify_export` reads an export back and checks it against a saved digest with
`core.export_verification` (no ledger needed). `restore_export` re-creates an embedded ledger
from an export that starts at block 0: each block is applied as followers apply replicated
blocks (`Engine.apply_blocks`: hashes and chain checked, state derived, never re-executed),
so the restored journal holds the same blocks and has the same digest. It is built in
`<target>.partial` and renamed into place only when complete and, given a digest, verified.

Invariants: an export never holds a block whose hashes did not recompute; a restore never
leaves a ledger at the target path unless every block applied and the digest matched.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack

from core import codec, export_format, keys
from core.engine import Engine, Genesis, decode_block
from core.errors import CorruptLedgerError, InvalidArgumentError
from core.export_format import (
    ION_BINARY,
    ION_TEXT,
    JSON,
    OUTPUT_FORMATS,
    ExportFormatError,
)
from core.export_verification import ExportReport, ExportVerifier, parse_digest
from core.ids import IdSource, base62_id, ms_from_timestamp
from core.journal import Block
from core.merkle import range_nodes
from core.storage import LevelDBStorage

__all__ = [
    "BlockSource",
    "DirectoryStore",
    "ExportResult",
    "ObjectStore",
    "RestoreResult",
    "S3Store",
    "sse_put_args",
    "export_journal",
    "open_source",
    "open_store",
    "restore_export",
    "verify_export",
]

Progress = Callable[[int, int], None]  # (blocks done, blocks in all)
MAX_OBJECT_BYTES = 16 << 20  # a data object ends past this many bytes (or at an hour's end)
MAX_OBJECT_BLOCKS = 10_000
READ_CHUNK = 256  # blocks per read from the source (the cluster's raw_blocks limit)


def _nothing(done: int, total: int) -> None:
    return None


# --- object stores ----------------------------------------------------------------------------


class ObjectStore(Protocol):
    """Where an export's objects live: keys are '/'-separated names."""

    bucket: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...


class DirectoryStore:
    """Objects as files under `root` (keys are relative paths). `strip_prefix`: keys that
    start with it are read without it (an export downloaded from `s3://bucket/<prefix>` into
    `root`: its manifest lists full keys, the files sit below `root` without the prefix)."""

    def __init__(self, root: str | os.PathLike[str], *, strip_prefix: str = "") -> None:
        self.root = Path(root)
        self.bucket = str(self.root)
        self.strip_prefix = strip_prefix

    def _path(self, key: str) -> Path:
        if self.strip_prefix and key.startswith(self.strip_prefix):
            key = key[len(self.strip_prefix) :]
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidArgumentError(f"object key {key!r} leaves the directory")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                found.append(key)
        return sorted(found)

    def location(self, key: str) -> str:
        return str(self.root / key)


class S3Store:
    """Objects in an S3 bucket (any S3-compatible endpoint) through boto3."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        put_args: dict[str, str] | None = None,
    ) -> None:
        """`put_args`: extra PutObject parameters (server-side encryption: `sse_put_args`)."""
        import boto3

        self.bucket = bucket
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url)
        self.put_args = dict(put_args or {})

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self.put_args)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def list(self, prefix: str) -> list[str]:
        keys_found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys_found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys_found)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def sse_put_args(encryption: str, kms_key_arn: str | None = None) -> dict[str, str]:
    """PutObject's server-side encryption parameters for QLDB's ObjectEncryptionType."""
    if encryption == "SSE_KMS":
        args = {"ServerSideEncryption": "aws:kms"}
        if kms_key_arn:
            args["SSEKMSKeyId"] = kms_key_arn
        return args
    if encryption == "SSE_S3":
        return {"ServerSideEncryption": "AES256"}
    return {}


def open_store(url: str, *, endpoint_url: str | None = None) -> tuple[ObjectStore, str]:
    """(store, prefix) of `s3://bucket/prefix` or of a directory (prefix "")."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise InvalidArgumentError(f"no bucket in {url!r}")
        return S3Store(bucket, endpoint_url=endpoint_url), prefix
    return DirectoryStore(url), ""


def open_export_directory(
    directory: str | os.PathLike[str], export_id: str | None = None
) -> tuple[DirectoryStore, str]:
    """(store, prefix) to read an export found anywhere under `directory`: written there by
    `strand export`, or by QLDB (or Strand) to S3 and downloaded, the S3 prefix kept as
    folders or not. The completed manifest's folder is the store's root; the S3 prefix its
    keys carry before `<exportId>/` is stripped (`DirectoryStore.strip_prefix`)."""
    root = Path(directory)
    found = sorted(root.rglob("*.completed.manifest"))
    if export_id is not None:
        found = [p for p in found if p.name.startswith(f"{export_id}.")]
    if not found:
        raise InvalidArgumentError(f"no completed export manifest under {root}")
    folders = {p.parent for p in found}
    if len(folders) > 1:
        raise InvalidArgumentError(f"exports in several folders under {root}: name one")
    manifest = found[0]
    listed = export_format.parse_manifest(manifest.read_bytes(), str(manifest)).get("keys")
    strip = ""
    first_id = manifest.name.split(".")[0]
    if isinstance(listed, list) and listed and f"{first_id}/" in str(listed[0]):
        strip = str(listed[0])[: str(listed[0]).index(f"{first_id}/")]
    return DirectoryStore(manifest.parent, strip_prefix=strip), ""


def open_export(
    url: str, *, endpoint_url: str | None = None, export_id: str | None = None
) -> tuple[ObjectStore, str]:
    """(store, prefix) to read an export at `s3://bucket/prefix` or under a directory."""
    if url.startswith("s3://"):
        return open_store(url, endpoint_url=endpoint_url)
    return open_export_directory(url, export_id)


def _location(store: ObjectStore, key: str) -> str:
    locate = getattr(store, "location", None)
    return str(locate(key)) if locate is not None else key


# --- block sources ----------------------------------------------------------------------------


class BlockSource(Protocol):
    """A ledger's journal as an export reads it."""

    @property
    def strand_id(self) -> str: ...

    def get_digest(self) -> dict[str, Any]: ...

    def raw_blocks(self, first: int, last: int) -> list[bytes]: ...


class EmbeddedSource:
    """An embedded `Ledger` (or a bare `Engine`): blocks read from its storage."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.engine: Engine = ledger if isinstance(ledger, Engine) else ledger.engine

    @property
    def strand_id(self) -> str:
        return self.engine.strand_id

    def get_digest(self) -> dict[str, Any]:
        from core import queries

        return queries.get_digest(self.engine)

    def raw_blocks(self, first: int, last: int) -> list[bytes]:
        out = []
        for seq in range(first, last + 1):
            raw = self.engine.storage.get(keys.block_key(seq))
            if raw is None:
                raise CorruptLedgerError(f"block {seq} is missing")
            out.append(raw)
        return out


class ClusterSource:
    """A `LedgerCluster`: blocks read from the leader, `READ_CHUNK` a round trip."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._strand_id: str | None = None

    @property
    def strand_id(self) -> str:
        if self._strand_id is None:
            self._strand_id = str(self.get_digest()["digestTipAddress"]["strandId"])
        return self._strand_id

    def get_digest(self) -> dict[str, Any]:
        return self.cluster.get_digest()  # type: ignore[no-any-return]

    def raw_blocks(self, first: int, last: int) -> list[bytes]:
        out: list[bytes] = []
        for start in range(first, last + 1, READ_CHUNK):
            seqs = list(range(start, min(last, start + READ_CHUNK - 1) + 1))
            got, _ = self.cluster.query("raw_blocks", seqs)
            by_seq = dict(got)
            for seq in seqs:
                if seq not in by_seq:
                    raise CorruptLedgerError(f"the cluster did not return block {seq}")
                out.append(bytes(by_seq[seq]))
        return out


def open_source(ledger: Any) -> BlockSource:
    """The source for an embedded `Ledger`/`Engine` or a `LedgerCluster`."""
    if isinstance(ledger, Engine) or hasattr(ledger, "engine"):
        return EmbeddedSource(ledger)
    return ClusterSource(ledger)


def _blocks(source: BlockSource, first: int, last: int) -> Iterator[Block]:
    for start in range(first, last + 1, READ_CHUNK):
        end = min(last, start + READ_CHUNK - 1)
        for offset, raw in enumerate(source.raw_blocks(start, end)):
            yield decode_block(raw, start + offset)


def _timestamp_of(source: BlockSource, seq: int) -> datetime.datetime:
    stamp: datetime.datetime = decode_block(source.raw_blocks(seq, seq)[0], seq)["blockTimestamp"]
    return stamp


def _first_at_or_after(source: BlockSource, tip: int, when: datetime.datetime) -> int:
    """The first block whose timestamp is >= `when` (tip + 1 if none): block times never go
    back (core/engine.py), so a binary search reads O(log n) blocks."""
    lo, hi = 0, tip + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _timestamp_of(source, mid) < when:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


# --- export -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ExportResult:
    export_id: str
    first_seq: int
    last_seq: int  # first - 1 when the range holds no block
    keys: list[str] = field(default_factory=list)
    manifest_keys: list[str] = field(default_factory=list)
    parquet_key: str | None = None
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def blocks(self) -> int:
        return self.last_seq - self.first_seq + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "exportId": self.export_id,
            "firstSequenceNo": self.first_seq,
            "lastSequenceNo": self.last_seq,
            "blocks": self.blocks,
            "keys": self.keys,
            "manifests": self.manifest_keys,
            "parquet": self.parquet_key,
            "bytes": self.bytes_written,
            "seconds": round(self.seconds, 3),
        }


def export_journal(
    ledger: Any,
    store: ObjectStore,
    prefix: str = "",
    *,
    start_time: datetime.datetime | None = None,
    end_time: datetime.datetime | None = None,
    first_seq: int | None = None,
    last_seq: int | None = None,
    output_format: str = ION_TEXT,
    parquet: bool = False,
    export_id: str | None = None,
    ledger_name: str = "ledger",
    encryption: str = "SSE_S3",
    max_object_blocks: int = MAX_OBJECT_BLOCKS,
    max_object_bytes: int = MAX_OBJECT_BYTES,
    progress: Progress = _nothing,
) -> ExportResult:
    """Export blocks [start_time, end_time) (QLDB's bounds) or [first_seq, last_seq] (both
    inclusive; default: the whole journal up to the current tip) of `ledger` (an embedded
    `Ledger`, `Engine`, `LedgerCluster` or a `BlockSource`) to `store` under `prefix`.
    `encryption` is the objectEncryptionType the started manifest records (the store
    applies it: `S3Store(put_args=sse_put_args(...))`)."""
    if output_format not in OUTPUT_FORMATS:
        raise InvalidArgumentError(f"output format is one of {OUTPUT_FORMATS}")
    began = time.monotonic()
    source = ledger if hasattr(ledger, "raw_blocks") else open_source(ledger)
    strand_id = source.strand_id
    tip = int(source.get_digest()["digestTipAddress"]["sequenceNo"])
    first = 0 if first_seq is None else first_seq
    last = tip if last_seq is None else min(last_seq, tip)
    if start_time is not None:
        first = max(first, _first_at_or_after(source, tip, _utc(start_time)))
    if end_time is not None:
        last = min(last, _first_at_or_after(source, tip, _utc(end_time)) - 1)
    if first < 0:
        raise InvalidArgumentError("the first sequence number must be >= 0")
    last = max(last, first - 1)
    export_id = export_id or base62_id(os.urandom(16))
    result = ExportResult(export_id, first, last)
    start_stamp = _utc(start_time) if start_time else _timestamp_of(source, min(first, tip))
    end_stamp = _utc(end_time) if end_time else datetime.datetime.now(datetime.UTC)
    started = export_format.started_manifest(
        ledger_name=ledger_name,
        export_id=export_id,
        start_time=start_stamp,
        end_time=end_stamp,
        bucket=store.bucket,
        prefix=prefix,
        output_format=output_format,
        encryption=encryption,
    )
    key = export_format.started_manifest_key(prefix, export_id)
    store.put(key, started)
    result.manifest_keys.append(key)
    result.bytes_written += len(started)
    frontier: list[bytes] = []
    if first > 0:  # the Merkle nodes of blocks 0..first-1, for offline checks (Strand's own)
        frontier = _prior_frontier(source, first)
    rows = _RevisionRows() if parquet else None
    pending: list[Block] = []
    pending_bytes = 0
    pending_hour: tuple[int, int, int, int] | None = None
    total = result.blocks

    def flush() -> None:
        nonlocal pending, pending_bytes
        if not pending:
            return
        data = export_format.encode_blocks(pending, output_format)
        stamp = _utc(pending[0]["blockTimestamp"])
        key = export_format.data_object_key(
            prefix,
            export_id,
            strand_id,
            pending[0]["blockAddress"]["sequenceNo"],
            pending[-1]["blockAddress"]["sequenceNo"],
            stamp,
        )
        store.put(key, data)
        result.keys.append(key)
        result.bytes_written += len(data)
        pending, pending_bytes = [], 0

    for done, block in enumerate(_blocks(source, first, last) if total > 0 else iter(()), 1):
        stamp = _utc(block["blockTimestamp"]).astimezone(datetime.UTC)
        hour = (stamp.year, stamp.month, stamp.day, stamp.hour)
        if pending and (
            hour != pending_hour
            or len(pending) >= max_object_blocks
            or pending_bytes >= max_object_bytes
        ):
            flush()
        pending_hour = hour
        pending.append(block)
        pending_bytes += _approximate_size(block)
        if rows is not None:
            rows.add(block)
        if done % 64 == 0 or done == total:
            progress(done, total)
    flush()
    if rows is not None:
        result.parquet_key = f"{prefix}{export_id}.revisions.parquet"
        data = rows.parquet()
        store.put(result.parquet_key, data)
        result.bytes_written += len(data)
    completed = export_format.completed_manifest(result.keys, frontier)
    key = export_format.completed_manifest_key(prefix, export_id, strand_id)
    store.put(key, completed)
    result.manifest_keys.append(key)
    result.bytes_written += len(completed)
    result.seconds = time.monotonic() - began
    progress(total, total)
    return result


def _prior_frontier(source: BlockSource, first: int) -> list[bytes]:
    """Hashes of the complete Merkle nodes of blocks 0..first-1 (`range_nodes(0, first)`)."""
    getter = getattr(source, "engine", None)
    if getter is not None:
        return [getter.get_node(lv, ix) for lv, ix in range_nodes(0, first)]
    # A cluster: the nodes from a proof-free source are the block hashes, folded here.
    from core.merkle import Frontier

    tree = Frontier()
    for block in _blocks(source, 0, first - 1):
        tree.append(block["blockHash"])
    return [h for _, _, h in tree.nodes()]


def _approximate_size(block: Block) -> int:
    return 512 + sum(len(codec.pack(r.get("data"), check_names=False)) for r in block["revisions"])


# --- Parquet ----------------------------------------------------------------------------------


class _RevisionRows:
    """The revisions of exported blocks as columns (one row per revision)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "strandId",
                "blockSequenceNo",
                "blockTimestamp",
                "transactionId",
                "tableName",
                "tableId",
                "documentId",
                "version",
                "revisionHash",
                "deleted",
                "redacted",
                "data",
            )
        }

    def add(self, block: Block) -> None:
        documents = block["transactionInfo"]["documents"]
        stamp = _utc(block["blockTimestamp"]).astimezone(datetime.UTC)
        plain = datetime.datetime(
            stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second,
            stamp.microsecond, tzinfo=datetime.UTC,
        )  # fmt: skip
        for revision in block["revisions"]:
            metadata = revision["metadata"]
            document = documents.get(metadata["id"], {})
            c = self.columns
            c["strandId"].append(block["blockAddress"]["strandId"])
            c["blockSequenceNo"].append(block["blockAddress"]["sequenceNo"])
            c["blockTimestamp"].append(plain)
            c["transactionId"].append(block["transactionId"])
            c["tableName"].append(document.get("tableName"))
            c["tableId"].append(document.get("tableId"))
            c["documentId"].append(metadata["id"])
            c["version"].append(metadata["version"])
            c["revisionHash"].append(bytes(revision["hash"]))
            c["deleted"].append("data" not in revision and "dataHash" not in revision)
            c["redacted"].append("dataHash" in revision)
            c["data"].append(
                export_format.to_json(revision["data"]) if "data" in revision else None
            )

    def parquet(self) -> bytes:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        schema = pa.schema(
            [
                ("strandId", pa.string()),
                ("blockSequenceNo", pa.int64()),
                ("blockTimestamp", pa.timestamp("us", tz="UTC")),
                ("transactionId", pa.string()),
                ("tableName", pa.string()),
                ("tableId", pa.string()),
                ("documentId", pa.string()),
                ("version", pa.int64()),
                ("revisionHash", pa.binary()),
                ("deleted", pa.bool_()),
                ("redacted", pa.bool_()),
                ("data", pa.string()),  # the document as JSON (the cookbook's down-conversion)
            ]
        )
        table = pa.table(self.columns, schema=schema)
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd")
        return out.getvalue()


# --- reading an export back -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportListing:
    export_id: str
    strand_id: str
    output_format: str
    keys: list[str]
    frontier: list[bytes]
    completed_key: str


def find_export(
    store: ObjectStore,
    prefix: str = "",
    export_id: str | None = None,
    output_format: str | None = None,
) -> ExportListing:
    """The completed export under `prefix` (the only one, or `export_id`'s). Its format:
    `output_format`, else the started manifest's, else what its first object looks like."""
    completed = [
        k
        for k in store.list(prefix)
        if k.endswith(".completed.manifest") and "/" not in k[len(prefix) :]
    ]
    if export_id is not None:
        completed = [k for k in completed if k[len(prefix) :].startswith(f"{export_id}.")]
    if not completed:
        raise InvalidArgumentError(
            f"no completed export manifest under {_location(store, prefix)!r}"
            + (f" for export {export_id}" if export_id else "")
        )
    if len(completed) > 1:
        ids = sorted({k[len(prefix) :].split(".")[0] for k in completed})
        raise InvalidArgumentError(f"several exports here, name one (--export-id): {ids}")
    key = completed[0]
    export_id, strand_id = key[len(prefix) :].split(".")[:2]
    manifest = export_format.parse_manifest(store.get(key), _location(store, key))
    keys_listed = manifest.get("keys")
    if not isinstance(keys_listed, list) or not all(isinstance(k, str) for k in keys_listed):
        raise ExportFormatError(f"{_location(store, key)}: keys is not a list of object keys")
    frontier = export_format.manifest_frontier(manifest, _location(store, key))
    started_key = export_format.started_manifest_key(prefix, export_id)
    with contextlib.suppress(Exception):  # a missing or unreadable started manifest
        started = export_format.parse_manifest(store.get(started_key), started_key)
        output_format = output_format or started.get("outputFormat")
    if not output_format and keys_listed:
        with contextlib.suppress(Exception):
            output_format = JSON if store.get(str(keys_listed[0]))[:2] == b'{"' else None
    output_format = str(output_format or ION_TEXT)
    if output_format not in OUTPUT_FORMATS:
        raise ExportFormatError(f"{_location(store, key)}: unknown output format {output_format!r}")
    return ExportListing(
        export_id, strand_id, output_format, [str(k) for k in keys_listed], frontier, key
    )


# Reading Ion fast and safely. amazon-ion's C extension reads Ion text ~50x faster than its
# pure-Python reader (~50 us per character), but it hangs for ever on some malformed binary
# and has crashed the process on values it could not convert (cluster/gateway/session.py).
# An export under verification is untrusted input, so the C reader runs in a child process
# with a time limit; when the child dies or runs out of time, that object is read again with
# the pure-Python reader (core.export_format.decode_object), which locates what is wrong.
DECODE_SECONDS_PER_MB = 30.0
_FRAME = struct.Struct(">BQ")


class _Reader:
    """A child process (`python -m cluster.export`) that reads Ion with the C extension.

    One request at a time: the parent sends (binary flag, length, bytes); the child answers
    (0, length, msgpack list of [position, codec-encoded value or nil, error or nil])."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cluster.export"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def decode(self, data: bytes, binary: bool, timeout_s: float) -> list[Any]:
        process = self.process
        assert process.stdin is not None
        assert process.stdout is not None
        stdout = process.stdout
        answer: list[Any] = []

        def read() -> None:
            header = stdout.read(_FRAME.size)
            if len(header) == _FRAME.size:
                _, length = _FRAME.unpack(header)
                body = stdout.read(length)
                if len(body) == length:
                    answer.append(msgpack.unpackb(body))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        process.stdin.write(_FRAME.pack(1 if binary else 0, len(data)) + data)
        process.stdin.flush()
        reader.join(timeout_s)
        if not answer:
            raise TimeoutError("the Ion reader died or ran out of time")
        return list(answer[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()


def _child_main() -> None:
    """The child's loop (see `_Reader`)."""
    from amazon.ion import simpleion

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return
        binary, length = _FRAME.unpack(header)
        data = stdin.read(length)
        out: list[Any] = []
        if binary:
            try:
                values = simpleion.loads(data, single_value=False)
                out = [[i, codec.encode(v, check_names=False), None] for i, v in enumerate(values)]
            except Exception as exc:
                out = [[0, None, f"not an Ion binary stream: {exc or type(exc).__name__}"]]
        else:
            for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), start=1):
                if not line.strip():
                    continue
                try:
                    value = codec.encode(simpleion.loads(line), check_names=False)
                except Exception as exc:
                    out.append([number, None, f"unreadable line: {exc or type(exc).__name__}"])
                    continue
                out.append([number, value, None])
        body = msgpack.packb(out)
        stdout.write(_FRAME.pack(0, len(body)) + body)
        stdout.flush()


def _decode(
    data: bytes, output_format: str, readers: list[_Reader]
) -> Iterator[export_format.DecodedBlock]:
    """The blocks of one object: the C reader in a child process (kept in `readers`), the
    pure-Python reader when the child dies or hangs, and for text that is not UTF-8."""
    binary = output_format == ION_BINARY or data.startswith(b"\xe0\x01\x00\xea")
    if output_format == JSON or not binary and not _is_utf8(data):
        yield from export_format.decode_object(data, output_format)
        return
    try:
        if not readers:
            readers.append(_Reader())
        results = readers[0].decode(data, binary, 10 + DECODE_SECONDS_PER_MB * len(data) / 1e6)
    except (OSError, TimeoutError, ValueError):
        while readers:
            readers.pop().close()
        yield from export_format.decode_object(data, output_format)
        return
    for position, payload, error in results:
        if payload is None:
            yield export_format.DecodedBlock(position, None, error)
            continue
        value = codec.decode(payload)
        block = value if isinstance(value, dict) else None
        yield export_format.DecodedBlock(position, block, None if block else "not a struct")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_export_blocks(
    store: ObjectStore, listing: ExportListing, verifier: ExportVerifier | None
) -> Iterator[tuple[str, Block]]:
    """Every block of the export in order, with the location of its object (problems
    reading go to the verifier; without one they raise ExportFormatError). The one reader
    of exports: verify, restore and the QLDB migration (cluster/importer.py) use it."""
    readers: list[_Reader] = []
    try:
        yield from _read_listed(store, listing, verifier, readers)
    finally:
        for reader in readers:
            reader.close()


def _read_listed(
    store: ObjectStore,
    listing: ExportListing,
    verifier: ExportVerifier | None,
    readers: list[_Reader],
) -> Iterator[tuple[str, Block]]:
    for key in listing.keys:
        where = _location(store, key)
        if verifier is not None:
            verifier.start_object(where, export_format.object_range(key))
        try:
            data = store.get(key)
        except Exception as exc:  # a missing file or object, whatever the store
            if verifier is None:
                raise ExportFormatError(f"{where}: cannot be read: {exc}") from exc
            verifier.add_problem(where, None, f"cannot be read: {exc}")
            continue
        for decoded in _decode(data, listing.output_format, readers):
            if decoded.block is None:
                what = "line" if listing.output_format != ION_BINARY else "value"
                position = f"{what} {decoded.position}"
                if verifier is None:
                    raise ExportFormatError(f"{where}: {position}: {decoded.error}")
                verifier.add_unreadable(where, position, str(decoded.error))
                continue
            yield where, decoded.block


def verify_export(
    store: ObjectStore,
    prefix: str,
    saved_digest: dict[str, Any],
    *,
    export_id: str | None = None,
    progress: Progress = _nothing,
) -> ExportReport:
    """Check the export under `prefix` against a saved digest (`core.export_verification`)."""
    digest, strand_id, tip = parse_digest(saved_digest)
    listing = find_export(store, prefix, export_id)
    verifier = ExportVerifier(digest, strand_id, tip, listing.frontier)
    lossy = listing.output_format == JSON
    total = _claimed_blocks(listing.keys)
    for done, (_, block) in enumerate(read_export_blocks(store, listing, verifier), 1):
        verifier.add_block(block, lossy=lossy)
        if done % 64 == 0:
            progress(done, total)
    progress(total, total)
    return verifier.finish()


def _claimed_blocks(keys_listed: Sequence[str]) -> int:
    total = 0
    for key in keys_listed:
        claimed = export_format.object_range(key)
        if claimed is not None:
            total += max(0, claimed[1] - claimed[0] + 1)
    return total


# --- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestoreResult:
    path: str
    blocks: int
    digest: bytes
    tip_seq: int
    strand_id: str
    verified_against_saved_digest: bool

    def as_json(self) -> dict[str, Any]:
        import base64

        return {
            "path": self.path,
            "blocks": self.blocks,
            "strandId": self.strand_id,
            "tipSequenceNo": self.tip_seq,
            "digest": base64.b64encode(self.digest).decode(),
            "verifiedAgainstSavedDigest": self.verified_against_saved_digest,
        }


class RestoreError(InvalidArgumentError):
    """The export cannot be restored (the message says why); nothing is left at the target."""


def restore_export(
    store: ObjectStore,
    prefix: str,
    target: str | os.PathLike[str],
    *,
    saved_digest: dict[str, Any] | None = None,
    export_id: str | None = None,
    batch_blocks: int = 256,
    progress: Progress = _nothing,
) -> RestoreResult:
    """Re-create an embedded ledger at `target` (which must not exist) from a whole-journal
    export in an Ion format; with `saved_digest`, the export is verified against it as it is
    applied, and nothing is left at `target` unless it verifies."""
    from core import queries

    target_path = Path(target)
    if target_path.exists():
        raise RestoreError(f"{target_path} exists: restore into a new directory")
    listing = find_export(store, prefix, export_id)
    if listing.output_format == JSON:
        raise RestoreError("a JSON export loses Ion types: restore from ION_TEXT or ION_BINARY")
    verifier = None
    if saved_digest is not None:
        digest, strand_id, tip = parse_digest(saved_digest)
        verifier = ExportVerifier(digest, strand_id, tip, listing.frontier)
    partial = target_path.with_name(target_path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    storage = LevelDBStorage(partial, create_if_missing=True)
    total = _claimed_blocks(listing.keys)
    engine: Engine | None = None
    done = 0
    try:
        pending: list[Block] = []
        for where, block in read_export_blocks(store, listing, verifier):
            if verifier is not None:
                verifier.add_block(block)
            plain = _plain_block(block, where)
            if engine is None:
                engine = _genesis_engine(storage, plain, where)
            else:
                pending.append(plain)
                if len(pending) >= batch_blocks:
                    _apply(engine, pending, where)
                    pending = []
            done += 1
            if done % 64 == 0:
                progress(done, total)
        if engine is None:
            raise RestoreError("the export holds no block")
        if pending:
            _apply(engine, pending, "the last object")
        if verifier is not None:
            report = verifier.finish()
            if not report.ok:
                raise RestoreError(
                    "the export does not verify against the saved digest: "
                    + "; ".join(str(p) for p in report.problems[:5])
                )
        got = queries.get_digest(engine)
        if saved_digest is not None:
            tip_address = {"strandId": strand_id, "sequenceNo": tip}
            if queries.get_digest(engine, tip_address)["digest"] != digest:
                raise RestoreError("the restored ledger's digest differs from the saved one")
        result = RestoreResult(
            str(target_path),
            engine.durable_seq + 1,
            got["digest"],
            engine.durable_seq,
            engine.strand_id,
            saved_digest is not None,
        )
    except BaseException:
        storage.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    storage.close()
    os.replace(partial, target_path)
    progress(total, total)
    return result


def _plain_block(block: Block, where: str) -> Block:
    """The block with the values the engine stores (codec's canonical form)."""
    try:
        plain: Block = codec.unpack(codec.pack(block, check_names=False))
    except (codec.CodecError, ValueError, TypeError) as exc:
        raise RestoreError(f"{where}: a block the ledger cannot store: {exc}") from exc
    return plain


def _genesis_engine(storage: LevelDBStorage, block: Block, where: str) -> Engine:
    address = block["blockAddress"]
    if address["sequenceNo"] != 0:
        raise RestoreError(
            f"{where}: the export starts at block {address['sequenceNo']}; a restore needs "
            "the whole journal from block 0"
        )
    genesis = Genesis(
        address["strandId"], block["transactionId"], ms_from_timestamp(block["blockTimestamp"])
    )
    engine = Engine(storage, IdSource(os.urandom), genesis.created_ms, genesis=genesis)
    mine = engine.read_block(0)
    if codec.pack(mine, check_names=False) != codec.pack(block, check_names=False):
        raise RestoreError(f"{where}: block 0 is not a genesis block Strand re-creates")
    return engine


def _apply(engine: Engine, blocks: list[Block], where: str) -> None:
    try:
        batch = engine.apply_blocks(blocks)
    except CorruptLedgerError as exc:
        raise RestoreError(f"{where}: {exc}") from exc
    engine.write(batch)
    engine.publish(batch)


__all__ += [
    "ExportListing",
    "RestoreError",
    "find_export",
    "open_export",
    "open_export_directory",
    "read_export_blocks",
    "ION_BINARY",
]

if __name__ == "__main__":
    _child_main()

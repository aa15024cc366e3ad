"""Journal exports in QLDB's layout and formats: object names, manifests, block encodings.

Pure functions, no I/O: `cluster/export.py` writes what they produce to a directory or to S3,
and reads it back for verification and restore.

Layout (QLDB's ExportJournalToS3, shared/reference/qldb-wire.md), under a caller's prefix used
as given (QLDB did not add a slash):

    <prefix><exportId>.started.manifest                       `started_manifest`
    <prefix><exportId>/yyyy/mm/dd/hh/<strandId>.<first>-<last>.ion   a run of whole blocks
    <prefix><exportId>.<strandId>.completed.manifest          `{keys: [data objects, in order]}`

A data object holds consecutive blocks of one UTC hour (its path names the hour of its
blocks' timestamps), first to last inclusive. The manifests are Ion text for the Ion formats
and JSON for JSON (the completed manifest's text is the same in both: JSON is Ion text).

Formats:
- ION_TEXT: one block per line, Ion text, no version marker (a reader sees a stream of
  top-level structs; a damaged line is located by its line number);
- ION_BINARY: one Ion binary stream (version marker, one symbol table) of block structs;
- JSON: JSON Lines, one block per line, down-converted as the Ion cookbook says (`to_json`):
  blobs base64, clobs as strings of their bytes (Latin-1), timestamps and symbols as their
  Ion text, decimals as JSON numbers, s-expressions as arrays, annotations dropped, typed
  nulls as null, nan and infinities as null. The down-conversion loses Ion types; reading a
  JSON export back (`decode_object`, `from_json_block`) restores the types of every field
  QLDB defines (hashes, timestamps, statement digests), but not those of the documents'
  data (numbers with a fraction or exponent are read as decimals, exact as written).

Reading: `decode_object` is the one reader of data objects (Strand's exports and QLDB's,
for `strand verify export`, `strand restore` and `strand import --qldb-export`), and
`parse_manifest` / `manifest_frontier` the one reader of manifests.

Strand extension: an export that does not start at block 0 lists in its completed manifest
`strandMerkleFrontier`, the hashes of the complete Merkle nodes of blocks 0..first-1
(`core.merkle.range_nodes`), so that the export can be checked against a digest offline. They
need no trust: a wrong one makes the Merkle root differ from the digest.

Invariants: `decode_object(encode_blocks(blocks, f), f)` gives back the blocks (exactly, for
the Ion formats); `to_json` never raises for an Ion value.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyBytes, IonPyDict, IonPyList, IonPyNull, IonPySymbol
from amazon.ion.symbols import SymbolToken
from amazon.ion.writer_text import _bytes_datetime

__all__ = [
    "ION_BINARY",
    "ION_TEXT",
    "JSON",
    "OUTPUT_FORMATS",
    "DecodedBlock",
    "ExportFormatError",
    "completed_manifest",
    "completed_manifest_key",
    "data_object_key",
    "decode_object",
    "encode_blocks",
    "from_json_block",
    "manifest_frontier",
    "object_range",
    "parse_manifest",
    "started_manifest",
    "started_manifest_key",
    "timestamp_text",
    "to_json",
]

ION_TEXT = "ION_TEXT"
ION_BINARY = "ION_BINARY"
JSON = "JSON"
OUTPUT_FORMATS = (ION_TEXT, ION_BINARY, JSON)
_ION_BVM = b"\xe0\x01\x00\xea"


class ExportFormatError(ValueError):
    """An export object or manifest that cannot be read (the message says where and why)."""


# --- names --------------------------------------------------------------------------------


def started_manifest_key(prefix: str, export_id: str) -> str:
    return f"{prefix}{export_id}.started.manifest"


def completed_manifest_key(prefix: str, export_id: str, strand_id: str) -> str:
    return f"{prefix}{export_id}.{strand_id}.completed.manifest"


def data_object_key(
    prefix: str,
    export_id: str,
    strand_id: str,
    first_seq: int,
    last_seq: int,
    hour: datetime.datetime,
) -> str:
    """`<prefix><exportId>/yyyy/mm/dd/hh/<strandId>.<first>-<last>.ion`, `hour` in UTC."""
    utc = hour.astimezone(datetime.UTC) if hour.tzinfo else hour
    return (
        f"{prefix}{export_id}/{utc.year:04d}/{utc.month:02d}/{utc.day:02d}/{utc.hour:02d}/"
        f"{strand_id}.{first_seq}-{last_seq}.ion"
    )


def object_range(key: str) -> tuple[int, int] | None:
    """The (first, last) sequence numbers a data object's name claims, else None."""
    name = key.rsplit("/", 1)[-1]
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != "ion":
        return None
    first, _, last = parts[1].partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return int(first), int(last)


# --- manifests ------------------------------------------------------------------------------


def started_manifest(
    *,
    ledger_name: str,
    export_id: str,
    start_time: datetime.datetime,
    end_time: datetime.datetime,
    bucket: str,
    prefix: str,
    output_format: str,
    encryption: str = "SSE_S3",
) -> bytes:
    """The started manifest's bytes (Ion text, or JSON for the JSON format)."""
    value = {
        "ledgerName": ledger_name,
        "exportId": export_id,
        "inclusiveStartTime": start_time,
        "exclusiveEndTime": end_time,
        "bucket": bucket,
        "prefix": prefix,
        "objectEncryptionType": encryption,
        "outputFormat": output_format,
    }
    if output_format == JSON:
        return (to_json(value) + "\n").encode()
    return _ion_text(value).encode() + b"\n"


def completed_manifest(keys: Sequence[str], frontier: Sequence[bytes] = ()) -> bytes:
    """`{keys: [...]}` (+ `strandMerkleFrontier` when the export starts after block 0).

    The text is JSON, which is also Ion text; hashes are base64 strings in it."""
    value: dict[str, Any] = {"keys": list(keys)}
    if frontier:
        value["strandMerkleFrontier"] = [base64.b64encode(h).decode() for h in frontier]
    return (json.dumps(value) + "\n").encode()


def parse_manifest(data: bytes, what: str) -> dict[str, Any]:
    """A manifest's fields (Ion text or JSON), timestamps as Ion timestamps."""
    try:
        value = simpleion.load_python(io.BytesIO(data))
    except Exception as exc:  # amazon-ion raises many types for bad input
        raise ExportFormatError(f"{what} is not Ion text or JSON: {exc}") from None
    if not isinstance(value, dict | IonPyDict):
        raise ExportFormatError(f"{what} is not a struct")
    return {str(k): v for k, v in value.items()}


def manifest_frontier(manifest: Mapping[str, Any], what: str) -> list[bytes]:
    """The `strandMerkleFrontier` hashes of a completed manifest ([] when absent)."""
    raw = manifest.get("strandMerkleFrontier") or []
    try:
        return [base64.b64decode(str(h), validate=True) for h in raw]
    except (ValueError, TypeError):
        raise ExportFormatError(f"{what}: strandMerkleFrontier is not base64 hashes") from None


# --- encodings ------------------------------------------------------------------------------


def _ion_text(value: object) -> str:
    text = simpleion.dumps(value, binary=False, omit_version_marker=True)
    return str(text)


def encode_blocks(blocks: Sequence[Mapping[str, Any]], output_format: str) -> bytes:
    """The bytes of one data object holding `blocks` in `output_format`."""
    if output_format == ION_TEXT:
        return "".join(_ion_text(b) + "\n" for b in blocks).encode()
    if output_format == ION_BINARY:
        return bytes(simpleion.dumps(list(blocks), binary=True, sequence_as_stream=True))
    if output_format == JSON:
        return "".join(to_json(b) + "\n" for b in blocks).encode()
    raise ValueError(f"output format is one of {OUTPUT_FORMATS}, not {output_format!r}")


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """One block read back from a data object: `position` is its line (text formats, from
    1) or its index in the stream (binary, from 0); `block` is None when it could not be
    read, and `error` says why."""

    position: int
    block: dict[str, Any] | None
    error: str | None = None


def _load_pure(data: bytes | str, single_value: bool) -> Any:
    """amazon-ion's pure-Python reader: an export may be hostile input (core/iontext.py)."""
    stream: io.BytesIO | io.StringIO
    stream = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    return simpleion.load_python(stream, single_value=single_value)


def _as_block(value: object) -> dict[str, Any] | None:
    if isinstance(value, dict | IonPyDict):
        return value  # type: ignore[return-value]
    return None


def decode_object(data: bytes, output_format: str) -> Iterator[DecodedBlock]:
    """The blocks of one data object, each located; never raises for damaged content."""
    if output_format == ION_BINARY or data.startswith(_ION_BVM):
        try:
            values = _load_pure(data, single_value=False)
        except Exception as exc:
            yield DecodedBlock(0, None, f"not an Ion binary stream: {exc or type(exc).__name__}")
            return
        for position, value in enumerate(values):
            block = _as_block(value)
            yield DecodedBlock(position, block, None if block else "not a struct")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield DecodedBlock(0, None, f"not UTF-8 text: {exc}")
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            if output_format == JSON:
                block = _as_block(from_json_block(json.loads(line, parse_float=decimal.Decimal)))
            else:
                block = _as_block(_load_pure(line, single_value=True))
        except Exception as exc:
            yield DecodedBlock(number, None, f"unreadable line: {exc or type(exc).__name__}")
            continue
        yield DecodedBlock(number, block, None if block else "not a struct")


# --- JSON -------------------------------------------------------------------------------------


def timestamp_text(value: datetime.datetime) -> str:
    """The Ion text of a timestamp, with its precision (amazon-ion's own writer)."""
    return str(_bytes_datetime(value))


def _json_number(value: decimal.Decimal) -> str:
    text = str(value)  # sign, digits, exponent: always a valid JSON number for finite values
    return text if not text.startswith(".") else "0" + text


def to_json(value: object) -> str:
    """The Ion cookbook's down-conversion of an Ion value to JSON text (see module doc)."""
    out: list[str] = []
    _write_json(value, out)
    return "".join(out)


def _write_json(value: object, out: list[str]) -> None:
    if value is None or isinstance(value, IonPyNull):
        out.append("null")
    elif isinstance(value, bool) or getattr(value, "ion_type", None) is IonType.BOOL:
        out.append("true" if value else "false")  # IonPyBool is an int subclass
    elif isinstance(value, IonPySymbol | SymbolToken):
        out.append(json.dumps(getattr(value, "text", None) or ""))
    elif isinstance(value, str):
        out.append(json.dumps(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(repr(float(value)) if math.isfinite(value) else "null")
    elif isinstance(value, decimal.Decimal):
        out.append(_json_number(value))
    elif isinstance(value, datetime.datetime):
        out.append(json.dumps(timestamp_text(value)))
    elif isinstance(value, IonPyBytes) and value.ion_type == IonType.CLOB:
        out.append(json.dumps(bytes(value).decode("latin-1")))
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(json.dumps(base64.b64encode(bytes(value)).decode()))
    elif isinstance(value, dict | IonPyDict):
        out.append("{")
        for i, (name, item) in enumerate(value.items()):
            if i:
                out.append(",")
            text = getattr(name, "text", name)
            out.append(json.dumps("" if text is None else str(text)))
            out.append(":")
            _write_json(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | IonPyList):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write_json(item, out)
        out.append("]")
    else:  # not an Ion value: its text, rather than raising in the middle of an export
        out.append(json.dumps(str(value)))


def _unb64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value
    return value


def _untimestamp(value: object) -> object:
    if isinstance(value, str):
        try:
            parsed = _load_pure(value, single_value=True)
        except Exception:
            return value
        if isinstance(parsed, datetime.datetime):
            return parsed
    return value


def from_json_block(value: object) -> object:
    """A block read from JSON with the Ion types of QLDB's own fields restored (hashes as
    bytes, timestamps as Ion timestamps); documents' data stays as JSON gave it."""
    if not isinstance(value, dict):
        return value
    block = dict(value)
    for name in ("blockHash", "entriesHash", "previousBlockHash"):
        if name in block:
            block[name] = _unb64(block[name])
    if isinstance(block.get("entriesHashList"), list):
        block["entriesHashList"] = [_unb64(h) for h in block["entriesHashList"]]
    if "blockTimestamp" in block:
        block["blockTimestamp"] = _untimestamp(block["blockTimestamp"])
    info = block.get("transactionInfo")
    if isinstance(info, dict) and isinstance(info.get("statements"), list):
        statements = []
        for statement in info["statements"]:
            if isinstance(statement, dict):
                statement = dict(statement)
                if "startTime" in statement:
                    statement["startTime"] = _untimestamp(statement["startTime"])
                if "statementDigest" in statement:
                    statement["statementDigest"] = _unb64(statement["statementDigest"])
            statements.append(statement)
        block["transactionInfo"] = {**info, "statements": statements}
    if isinstance(block.get("revisions"), list):
        revisions = []
        for revision in block["revisions"]:
            if isinstance(revision, dict):
                revision = dict(revision)
                for name in ("hash", "dataHash"):
                    if name in revision:
                        revision[name] = _unb64(revision[name])
                metadata = revision.get("metadata")
                if isinstance(metadata, dict) and "txTime" in metadata:
                    revision["metadata"] = {
                        **metadata,
                        "txTime": _untimestamp(metadata["txTime"]),
                    }
            revisions.append(revision)
        block["revisions"] = revisions
    return block

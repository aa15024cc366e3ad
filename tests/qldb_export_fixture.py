"""A QLDB-layout journal export written from an embedded ledger's blocks, for the tests of
the migration from QLDB (tests/test_import.py).

Strand's journal hashes exactly as QLDB's did, so a Strand ledger's blocks are QLDB-shaped
blocks: written in QLDB's export layout (started manifest, data objects
`<exportId>/yyyy/mm/dd/hh/<strandId>.<first>-<last>.ion`, completed manifest listing them)
they are what a QLDB export of that ledger would be. Independent of cluster/export.py on
purpose (a second writer keeps the reader honest). Formats: ION_TEXT, ION_BINARY, JSON (the
Ion cookbook's down-conversion: blobs base64, timestamps and symbols as their text).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from pathlib import Path
from typing import Any

from amazon.ion import simpleion
from amazon.ion.simple_types import IonPyNull

from core import Ledger


def _timestamp_text(value: datetime.datetime) -> str:
    return simpleion.dumps(value, binary=False).split("\n")[-1].strip().removeprefix("$ion_1_0 ")


def to_json(value: Any) -> Any:
    if isinstance(value, IonPyNull) or value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime.datetime):
        return _timestamp_text(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, int | float | str):
        return value if not isinstance(value, str) else str(value)
    return str(value)


def ledger_digest(ledger: Ledger) -> dict[str, Any]:
    """The ledger's digest as QLDB's GetDigest answered it (what a user saved)."""
    digest = ledger.get_digest()
    tip = digest["digestTipAddress"]
    return {
        "Digest": base64.b64encode(bytes(digest["digest"])).decode(),
        "DigestTipAddress": {
            "IonText": f'{{strandId:"{tip["strandId"]}",sequenceNo:{tip["sequenceNo"]}}}'
        },
    }


def write_export(
    ledger: Ledger,
    directory: Path,
    *,
    fmt: str = "ION_TEXT",
    blocks_per_object: int = 5,
    export_id: str = "ExPoRtId0000000000000A",
    prefix: str = "exports/",
) -> list[Path]:
    """Write blocks 0..tip of `ledger` as a QLDB export under `directory`; the data objects."""
    tip = ledger.get_digest()["digestTipAddress"]
    strand, last = tip["strandId"], tip["sequenceNo"]
    blocks = [ledger.engine.read_block(seq) for seq in range(last + 1)]
    base = directory / prefix
    base.mkdir(parents=True, exist_ok=True)
    started = {
        "ledgerName": "test",
        "exportId": export_id,
        "bucket": "bucket",
        "prefix": prefix,
        "objectEncryptionType": "SSE_S3",
        "outputFormat": fmt,
    }
    (base / f"{export_id}.started.manifest").write_text(json.dumps(started))
    keys, paths = [], []
    for first in range(0, len(blocks), blocks_per_object):
        chunk = blocks[first : first + blocks_per_object]
        end = first + len(chunk) - 1
        rel = f"{export_id}/2024/01/02/03/{strand}.{first}-{end}.ion"
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "ION_TEXT":
            path.write_text("\n".join(simpleion.dumps(b, binary=False) for b in chunk) + "\n")
        elif fmt == "ION_BINARY":
            path.write_bytes(simpleion.dumps(chunk, binary=True, sequence_as_stream=True))
        else:
            path.write_text("".join(json.dumps(to_json(b)) + "\n" for b in chunk))
        keys.append(prefix + rel)
        paths.append(path)
    manifest = base / f"{export_id}.{strand}.completed.manifest"
    manifest.write_text(json.dumps({"keys": keys}))
    return paths

"""A QLDB journal export, checked against a saved digest, and what it holds (pure).

Used by the migration from QLDB (`strand import --qldb-export DIR --digest FILE`,
cluster/importer.py reads the files). Trust base, as for `core.verification`: hashlib,
amazon-ion, `core.ionhash`, `core.merkle`, `core.verification`; nothing here imports the
engine, msgpack or LevelDB, and nothing does I/O.

`ChainVerifier` takes the export's blocks in journal order and checks, for each one:
every hash it carries (`core.verification.check_block`: entriesHash is the Merkle root of
entriesHashList, blockHash = dot(entriesHash, previousBlockHash), H(transactionInfo) and the
root of the revision hashes are in entriesHashList, every revision matches its hash), its
address (the digest's strand, sequence numbers 0, 1, 2, ... with no gap), and its chain
(previousBlockHash = the blockHash before it). `finish()` then checks that the export ends
at the digest's tip and that the Merkle root over every blockHash (core.merkle.Frontier)
equals the digest. A digest covers blocks 0..tip: an export that starts later, stops
earlier or goes further cannot be checked against it and is refused.

Formats. ION_TEXT and ION_BINARY keep every Ion type: everything is verified. JSON (QLDB's
down-conversion: blobs as base64, timestamps as strings) loses types. `from_json_block`
restores the types of the fields whose schema QLDB fixed (hashes, timestamps, statement
digests), so every block hash, the chain, transactionInfo and revision metadata still verify;
a revision's user `data` verifies only when its JSON form hashes the same as the original
(strings, integers, booleans, null, lists and structs of them). A revision whose data does
not is counted as unverified (`ChainReport.unverified_revisions`), its hash entering the
revision root as claimed: the block around it still verifies, but its data is not bound to
it. The migration refuses such an export unless the user accepts it explicitly.

`ExportContents` follows the same blocks and keeps the latest revision of every document,
the tables (from the system table `information_schema.user_tables`, whose revisions carry
{tableId, name, status, indexes}; in QLDB's own exports, which carry system revisions as
hashes only, tables come from transactionInfo.documents and indexes from the `CREATE INDEX`
statements), and optionally every revision for a history table. `live_documents()` lists
the latest revision of every document that is not deleted, of every active user table,
sorted by table name and document id (a deterministic order the batch planner relies on).

Invariants: a `VerificationFailed` names the data object and block where the check failed;
`ChainVerifier` never accepts an export it has not checked to the last block.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.ionhash import IonHashTypeError
from core.iontext import IonTextError, load_text
from core.merkle import Frontier
from core.verification import VerificationError, check_block, revision_hash

__all__ = [
    "SYSTEM_TABLE_NAMES",
    "ChainReport",
    "ChainVerifier",
    "ExportContents",
    "TableInfo",
    "VerificationFailed",
    "from_json_block",
    "parse_digest",
]

SYSTEM_TABLE_NAMES = ("information_schema.user_tables", "information_schema.redactions")
_CREATE_INDEX = re.compile(
    r'^\s*CREATE\s+INDEX\s+ON\s+"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\(\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\)',
    re.IGNORECASE,
)


class VerificationFailed(ValueError):
    """The export does not verify against the digest; `where` locates the problem."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.reason = message


# --- the saved digest -------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    raise VerificationFailed(f"the digest file has no {names[0]}")


def parse_digest(saved: Mapping[str, Any]) -> tuple[bytes, str, int]:
    """(digest, strandId, tip sequence number) of a saved GetDigest answer:
    ``{"Digest": "<base64>", "DigestTipAddress": {"IonText": "{strandId:\\"…\\",sequenceNo:N}"}}``
    (QLDB's, and what `strand digest` writes); lower-case names are accepted too."""
    raw = _field(saved, "Digest", "digest")
    if isinstance(raw, str):
        try:
            digest = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("the digest is not base64") from None
    elif isinstance(raw, bytes | bytearray):
        digest = bytes(raw)
    else:
        raise VerificationFailed("the digest is neither base64 text nor bytes")
    if len(digest) != 32:
        raise VerificationFailed(f"a digest is 32 bytes, this one {len(digest)}")
    tip = _field(saved, "DigestTipAddress", "digestTipAddress")
    if isinstance(tip, Mapping) and "IonText" in tip:
        tip = tip["IonText"]
    if isinstance(tip, str):
        try:
            tip = load_text(tip)
        except IonTextError as exc:
            raise VerificationFailed(f"the digest tip address is not Ion text: {exc}") from None
    if not isinstance(tip, Mapping):
        raise VerificationFailed("the digest tip address is not a struct")
    strand, seq = tip.get("strandId"), tip.get("sequenceNo")
    if not isinstance(strand, str) or not isinstance(seq, int) or seq < 0:
        raise VerificationFailed("the digest tip address needs strandId and sequenceNo")
    return digest, str(strand), int(seq)


# --- JSON exports -----------------------------------------------------------------------------


def _blob(value: Any, what: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed(f"{what} is not base64") from None
    raise VerificationFailed(f"{what} is not a hash")


def _timestamp(value: Any, what: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = load_text(value)  # Ion's timestamp text, precision included
    except IonTextError:
        raise VerificationFailed(f"{what} is not an Ion timestamp") from None
    return parsed


def from_json_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block of a JSON export with the Ion types QLDB's schema fixes put back: hashes as
    blobs, timestamps as timestamps. User data is left as JSON gave it."""
    out = dict(block)
    for name in ("blockHash", "entriesHash", "previousBlockHash"):
        if out.get(name) is not None:
            out[name] = _blob(out[name], name)
    if isinstance(out.get("entriesHashList"), list):
        out["entriesHashList"] = [_blob(h, "entriesHashList") for h in out["entriesHashList"]]
    if "blockTimestamp" in out:
        out["blockTimestamp"] = _timestamp(out["blockTimestamp"], "blockTimestamp")
    info = out.get("transactionInfo")
    if isinstance(info, Mapping):
        info = dict(info)
        statements = []
        for statement in info.get("statements") or []:
            statement = dict(statement)
            if "startTime" in statement:
                statement["startTime"] = _timestamp(statement["startTime"], "startTime")
            if "statementDigest" in statement:
                statement["statementDigest"] = _blob(statement["statementDigest"], "digest")
            statements.append(statement)
        if "statements" in info:
            info["statements"] = statements
        out["transactionInfo"] = info
    revisions = []
    for revision in out.get("revisions") or []:
        revision = dict(revision)
        for name in ("hash", "dataHash"):
            if name in revision:
                revision[name] = _blob(revision[name], f"revision {name}")
        metadata = revision.get("metadata")
        if isinstance(metadata, Mapping) and "txTime" in metadata:
            revision["metadata"] = {
                **metadata,
                "txTime": _timestamp(metadata["txTime"], "txTime"),
            }
        revisions.append(revision)
    if "revisions" in out:
        out["revisions"] = revisions
    return out


# --- the chain --------------------------------------------------------------------------------


@dataclass(slots=True)
class ChainReport:
    """What a verified export held."""

    strand_id: str
    blocks: int = 0
    revisions: int = 0
    unverified_revisions: int = 0  # JSON only: data whose types JSON lost
    data_verified: bool = True


def _address(block: Mapping[str, Any], where: str) -> tuple[str, int]:
    address = block.get("blockAddress")
    if not isinstance(address, Mapping):
        raise VerificationFailed("the block has no blockAddress", where)
    strand, seq = address.get("strandId"), address.get("sequenceNo")
    if not isinstance(strand, str) or not isinstance(seq, int):
        raise VerificationFailed("the block address is malformed", where)
    return str(strand), int(seq)


class ChainVerifier:
    """Checks an export's blocks, fed in order, against a digest (see the module docstring)."""

    def __init__(self, digest: bytes, strand_id: str, tip_seq: int, *, json_data: bool = False):
        self.digest = digest
        self.strand_id = strand_id
        self.tip_seq = tip_seq
        self.json_data = json_data
        self.report = ChainReport(strand_id, data_verified=True)
        self._frontier = Frontier()
        self._previous = b""

    def feed(self, block: Mapping[str, Any], where: str = "") -> None:
        """Check one block (the next in the journal); VerificationFailed if it does not."""
        strand, seq = _address(block, where)
        where = f"{where} block {seq}".strip()
        expected = self._frontier.size
        if strand != self.strand_id:
            raise VerificationFailed(
                f"the block belongs to strand {strand}, the digest to {self.strand_id}", where
            )
        if seq != expected:
            what = "starts at" if expected == 0 else "has a gap or disorder before"
            raise VerificationFailed(f"the export {what} block {seq}, expected {expected}", where)
        if seq > self.tip_seq:
            raise VerificationFailed(
                f"the export goes beyond the digest's tip (block {self.tip_seq}); save a "
                "digest that covers the whole export",
                where,
            )
        checked = self._revisions_to_check(block, where)
        try:
            block_hash = _block_hash(checked)
            check_block(checked, [], block_hash)  # an empty proof leads a hash to itself
        except VerificationError as exc:
            raise VerificationFailed(str(exc), where) from None
        previous = checked.get("previousBlockHash") or b""
        if bytes(previous) != self._previous:
            raise VerificationFailed(
                "previousBlockHash is not the blockHash of the block before", where
            )
        self._previous = block_hash
        self._frontier.append(block_hash)
        self.report.blocks += 1

    def _revisions_to_check(self, block: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        """The block itself; for JSON, revisions whose data no longer hashes as it did are
        replaced by their claimed hash (and counted): only their data is left unverified."""
        revisions = block.get("revisions")
        if not isinstance(revisions, list):
            return block
        self.report.revisions += len(revisions)
        if not self.json_data:
            return block
        kept = []
        for revision in revisions:
            if isinstance(revision, Mapping) and "data" in revision and "hash" in revision:
                try:
                    same = revision_hash(revision) == bytes(revision["hash"])
                except (VerificationError, IonHashTypeError, TypeError):
                    same = False
                if not same:
                    self.report.unverified_revisions += 1
                    self.report.data_verified = False
                    kept.append({"hash": revision["hash"]})
                    continue
            kept.append(revision)
        return {**block, "revisions": kept}

    def finish(self) -> ChainReport:
        """Check that the export reached the digest's tip and that its Merkle root is the
        digest; the report, or VerificationFailed."""
        size = self._frontier.size
        if size != self.tip_seq + 1:
            raise VerificationFailed(
                f"the export ends at block {size - 1}, the digest's tip is block {self.tip_seq}"
            )
        if self._frontier.root() != self.digest:
            raise VerificationFailed(
                "the Merkle root over the export's blocks is not the digest (the export or "
                "the digest was altered, or they come from different ledgers)"
            )
        return self.report


def _block_hash(block: Mapping[str, Any]) -> bytes:
    value = block.get("blockHash")
    if not isinstance(value, bytes | bytearray):
        raise VerificationError("the block has no blockHash")
    return bytes(value)


# --- contents ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TableInfo:
    """A table as the export describes it."""

    table_id: str
    name: str
    active: bool = True
    indexes: list[str] = field(default_factory=list)  # indexed fields, in creation order


@dataclass(slots=True)
class _Doc:
    table_id: str
    revision: Mapping[str, Any]


class ExportContents:
    """The tables, the latest revision of each document and (when asked) every revision, of
    blocks fed in journal order (verified blocks: feed them to `ChainVerifier` too)."""

    def __init__(self, *, keep_history: bool = False) -> None:
        self.tables: dict[str, TableInfo] = {}
        self.system_table_ids: set[str] = set()
        self._from_system: set[str] = set()  # tables the system table described
        self._docs: dict[str, _Doc] = {}
        self.keep_history = keep_history
        self.history: dict[str, list[Mapping[str, Any]]] = {}  # tableId -> revisions
        self._pending_indexes: list[tuple[str, str]] = []  # (table name, field)

    def feed(self, block: Mapping[str, Any]) -> None:
        info = block.get("transactionInfo") or {}
        documents = info.get("documents") or {}
        for entry in documents.values():
            name, table_id = entry.get("tableName"), entry.get("tableId")
            if not isinstance(name, str) or not isinstance(table_id, str):
                continue
            if name in SYSTEM_TABLE_NAMES or name.startswith("information_schema."):
                self.system_table_ids.add(table_id)
            elif table_id not in self.tables:
                self.tables[table_id] = TableInfo(table_id, name)
        for statement in info.get("statements") or []:
            match = _CREATE_INDEX.match(str(statement.get("statement", "")))
            if match:
                self._pending_indexes.append((match.group(1), match.group(2)))
        for revision in block.get("revisions") or []:
            metadata = revision.get("metadata")
            if not isinstance(metadata, Mapping):
                continue  # a system revision given as its hash only
            doc_id = str(metadata.get("id"))
            entry = documents.get(doc_id)
            if not isinstance(entry, Mapping):
                continue
            table_id = str(entry.get("tableId"))
            if table_id in self.system_table_ids:
                if entry.get("tableName") == "information_schema.user_tables":
                    self._system_revision(revision)
                continue
            self._docs[doc_id] = _Doc(table_id, revision)
            if self.keep_history:
                self.history.setdefault(table_id, []).append(revision)

    def _system_revision(self, revision: Mapping[str, Any]) -> None:
        data = revision.get("data")
        if not isinstance(data, Mapping):
            return
        table_id, name = data.get("tableId"), data.get("name")
        if not isinstance(table_id, str) or not isinstance(name, str):
            return
        indexes = []
        for index in data.get("indexes") or []:
            expr = str(index.get("expr", ""))
            if str(index.get("status", "ONLINE")) != "ONLINE" and index.get("status"):
                continue
            indexes.append(expr[1:-1] if expr.startswith("[") else expr)
        self.tables[table_id] = TableInfo(
            table_id, name, str(data.get("status", "ACTIVE")) == "ACTIVE", indexes
        )
        self._from_system.add(table_id)

    def active_tables(self) -> list[TableInfo]:
        """Active user tables, by name; tables the system table never described get the
        indexes of the `CREATE INDEX` statements that named them."""
        by_name: dict[str, TableInfo] = {}
        for table in self.tables.values():
            if table.active:
                by_name[table.name] = table  # a later table of one name replaces an older
        for name, fld in self._pending_indexes:
            found = by_name.get(name)
            if found is None or found.table_id in self._from_system:
                continue  # the system table's revisions listed its indexes exactly
            if fld not in found.indexes:
                found.indexes.append(fld)
        return [by_name[name] for name in sorted(by_name)]

    def live_documents(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        """(table name, QLDB document id, latest revision) of every live document of an
        active table, sorted by table name and document id."""
        active = {t.table_id: t.name for t in self.active_tables()}
        live = []
        for doc_id, doc in self._docs.items():
            name = active.get(doc.table_id)
            if name is not None and "data" in doc.revision:
                live.append((name, doc_id, doc.revision))
        live.sort(key=lambda item: (item[0], item[1]))
        return live

    def counts(self) -> dict[str, int]:
        deleted = sum(
            1
            for d in self._docs.values()
            if "data" not in d.revision and "dataHash" not in d.revision
        )
        redacted = sum(
            1 for d in self._docs.values() if "dataHash" in d.revision and "data" not in d.revision
        )
        return {"documents": len(self._docs), "deleted": deleted, "redactedLatest": redacted}

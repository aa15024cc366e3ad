"""A replica's Raft log in its Storage, and what a log entry carries.

Entry data (the bytes Raft replicates) is one of:
- `b""`: a new leader's no-op;
- a batch, `encode_batch`: msgpack [first_seq, prev_hash, last_hash, [block...]], each block
  exactly as the journal stores it (`B` keys: `codec.encode(block)`), one group commit;
- a record, `encode_record`: msgpack [kind, transaction id, message], a transaction that must
  never run again on any replica or later leader: "crashed" (running it crashed a worker)
  or "resolved" (a client in doubt asked, and it had not committed: now it never will);
- a stream change, `encode_stream_op`: msgpack ["stream", body], a change to a journal
  stream's state (core/streams.py: create, checkpoint, status). Not a block: applied to
  the `S<stream id>` key on every replica, never in the journal.

Storage layout (`L<index>`, framed msgpack):
- `[term, data]`: an entry as it arrived, before it is applied;
- `[term, first_seq, count]`: a batch entry once applied. Its blocks are in the journal
  (`B` keys) and the entry is rebuilt from them when a lagging follower needs it, so each
  block's bytes are stored once per replica and the log shrinks to a few bytes per entry.
`Mraft_format` names the layout (`raft-2`); a directory written before it existed (`raft-1`,
every entry kept whole) is upgraded in place at open (`upgrade_writes`).

Invariants: the log is contiguous from index 1 to `last_index()`; `term(i)` and `entries()`
of a stored index never change except by `writes` (a conflicting suffix replaced); an
applied entry rebuilt from the journal decodes to the blocks it carried (a redacted block
differs only in revision data that its hashes already stand for). Opening costs O(1) reads
whatever the log's length: terms are read on demand and cached in a bounded map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from core import codec, keys
from core.errors import CorruptLedgerError, InvalidArgumentError
from core.journal import Block, check_block
from core.raft import Entry
from core.storage import Storage
from core.streams import StreamOp, op_body, op_from_body

META_RAFT_FORMAT = b"Mraft_format"
RAFT_FORMAT = b"raft-2"
CRASHED, RESOLVED = "crashed", "resolved"
STREAM = "stream"
_TERM_CACHE_MAX = 65_536


@dataclass(frozen=True, slots=True)
class BatchHeader:
    first_seq: int
    prev_hash: bytes
    last_hash: bytes
    count: int


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A transaction that must not run again (`kind`: CRASHED or RESOLVED)."""

    transaction_id: str
    kind: str
    message: str


def encode_batch_raw(
    first_seq: int, prev_hash: bytes, last_hash: bytes, raws: Sequence[bytes]
) -> bytes:
    """A Raft entry's data for consecutive stored blocks (`raws`, as the journal keeps them)."""
    if not raws:
        raise ValueError("a batch holds at least one block")
    return msgpack.packb([first_seq, prev_hash, last_hash, list(raws)], use_bin_type=True)  # type: ignore[no-any-return]


def encode_batch(blocks: Sequence[Block]) -> bytes:
    """A Raft entry's data for a group commit of consecutive blocks."""
    if not blocks:
        raise ValueError("a batch holds at least one block")
    raws = [codec.encode(b, check_names=False) for b in blocks]
    first = blocks[0]
    return encode_batch_raw(
        first["blockAddress"]["sequenceNo"],
        first["previousBlockHash"],
        blocks[-1]["blockHash"],
        raws,
    )


def encode_record(record: FailureRecord) -> bytes:
    if record.kind not in (CRASHED, RESOLVED):
        raise ValueError(f"unknown record kind {record.kind!r}")
    body = [record.kind, record.transaction_id, record.message]
    return msgpack.packb(body)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise CorruptLedgerError(f"undecodable log entry: {exc}") from exc
    if not isinstance(body, list):
        raise CorruptLedgerError("malformed log entry")
    return body


def decode_record(data: bytes) -> FailureRecord | None:
    """The record an entry carries, or None for a no-op or a batch."""
    if not data or data[0] != 0x93:  # a fixarray of 3: batches are arrays of 4
        return None
    body = _unpack(data)
    if (
        len(body) != 3
        or body[0] not in (CRASHED, RESOLVED)
        or not all(type(x) is str for x in body)
    ):
        raise CorruptLedgerError("malformed record entry")
    return FailureRecord(body[1], body[0], body[2])


def encode_stream_op(op: StreamOp) -> bytes:
    """A Raft entry's data for a change to a journal stream's state."""
    return msgpack.packb([STREAM, op_body(op)], use_bin_type=True)  # type: ignore[no-any-return]


def is_stream_op(data: bytes) -> bool:
    return bool(data) and data[0] == 0x92  # a fixarray of 2: records have 3, batches 4


def decode_stream_op(data: bytes) -> StreamOp | None:
    """The stream change an entry carries, or None for any other kind of entry."""
    if not is_stream_op(data):
        return None
    body = _unpack(data)
    if len(body) != 2 or body[0] != STREAM:
        raise CorruptLedgerError("malformed stream entry")
    try:
        return op_from_body(body[1])
    except InvalidArgumentError as exc:
        raise CorruptLedgerError(f"malformed stream entry: {exc}") from exc


def check_entry(data: bytes) -> None:
    """Raise CorruptLedgerError unless `data` is a no-op, a record or a stream change
    (batches are checked block by block with `decode_batch`)."""
    if not data or decode_stream_op(data) is not None:
        return
    if decode_record(data) is None:
        raise CorruptLedgerError("an entry of no known kind")


def _batch_body(data: bytes) -> list[Any]:
    body = _unpack(data)
    if (
        len(body) != 4
        or type(body[0]) is not int
        or not all(type(x) is bytes for x in body[1:3])
        or not isinstance(body[3], list)
        or not body[3]
        or not all(type(x) is bytes for x in body[3])
    ):
        raise CorruptLedgerError("malformed batch")
    return body


def is_batch(data: bytes) -> bool:
    return bool(data) and data[0] == 0x94


def batch_header(data: bytes) -> BatchHeader:
    body = _batch_body(data)
    return BatchHeader(body[0], body[1], body[2], len(body[3]))


def decode_batch(data: bytes, *, check: bool = True) -> tuple[list[Block], list[bytes]]:
    """The blocks of an entry and their stored bytes. With `check`, each block must
    recompute its hashes and chain to the one before it (else CorruptLedgerError)."""
    body = _batch_body(data)
    blocks: list[Block] = []
    seq, tip = body[0] - 1, body[1]
    for raw in body[3]:
        try:
            block = codec.decode(raw)
        except ValueError as exc:
            raise CorruptLedgerError(f"undecodable block: {exc}") from exc
        if check:
            problem = check_block(block)
            if problem is not None:
                raise CorruptLedgerError(problem)
            if block["blockAddress"]["sequenceNo"] != seq + 1 or block["previousBlockHash"] != tip:
                raise CorruptLedgerError(f"block {seq + 1} of the batch does not chain")
        seq, tip = seq + 1, block["blockHash"]
        blocks.append(block)
    if check and tip != body[2]:
        raise CorruptLedgerError("the batch's last hash does not match its last block")
    return blocks, list(body[3])


# (first_seq, count) -> the entry's data rebuilt from the journal
Rebuild = Callable[[int, int], bytes]


class LogStorage:
    """The Raft log in a Storage (see the module docstring); a `core.raft.LogStore`."""

    def __init__(self, storage: Storage, rebuild: Rebuild) -> None:
        self._storage = storage
        self._rebuild = rebuild
        end = keys.prefix_end(keys.LOG_PREFIX)
        last = storage.last_key(keys.LOG_PREFIX, end)
        self._last = 0 if last is None else keys.log_index(last)
        self._terms: dict[int, int] = {0: 0}

    @staticmethod
    def _decode(index: int, raw: bytes) -> list[Any]:
        try:
            body = msgpack.unpackb(codec.unframe(raw), raw=False)
        except Exception as exc:
            raise CorruptLedgerError(f"Raft log entry {index} is corrupted") from exc
        if not isinstance(body, list) or len(body) not in (2, 3) or type(body[0]) is not int:
            raise CorruptLedgerError(f"Raft log entry {index} is malformed")
        return body

    def last_index(self) -> int:
        return self._last

    def term(self, index: int) -> int:
        cached = self._terms.get(index)
        if cached is not None:
            return cached
        raw = self._storage.get(keys.log_key(index))
        if raw is None:
            raise CorruptLedgerError(f"the Raft log has no entry {index}")
        term = int(self._decode(index, raw)[0])
        self._cache(index, term)
        return term

    def _cache(self, index: int, term: int) -> None:
        if len(self._terms) >= _TERM_CACHE_MAX:
            self._terms = {0: 0}
        self._terms[index] = term

    def entries(self, lo: int, hi: int) -> list[Entry]:
        out = []
        for key, raw in self._storage.scan(keys.log_key(lo), keys.log_key(hi)):
            index = keys.log_index(key)
            body = self._decode(index, raw)
            data = bytes(body[1]) if len(body) == 2 else self._rebuild(int(body[1]), int(body[2]))
            out.append(Entry(int(body[0]), index, data))
        if len(out) != max(0, hi - lo):
            raise CorruptLedgerError(f"the Raft log has a gap in [{lo}, {hi})")
        return out

    def data(self, index: int) -> bytes:
        """One stored entry's data (rebuilt from the journal once applied)."""
        [entry] = self.entries(index, index + 1)
        return entry.data

    def writes(self, entries: Sequence[Entry]) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """The puts and deletes that store `entries` (dropping any suffix they replace)."""
        if not entries:
            return [], []
        first = entries[0].index
        deletes = [keys.log_key(i) for i in range(first, self._last + 1)]
        puts = [
            (keys.log_key(e.index), codec.frame(msgpack.packb([e.term, e.data]))) for e in entries
        ]
        return puts, deletes

    @staticmethod
    def applied_write(entry: Entry, header: BatchHeader) -> tuple[bytes, bytes]:
        """The put that shrinks an applied batch entry to a reference into the journal."""
        body = msgpack.packb([entry.term, header.first_seq, header.count])
        return keys.log_key(entry.index), codec.frame(body)

    def stored(self, entries: Sequence[Entry]) -> None:
        """Record that `writes(entries)` reached the storage."""
        if not entries:
            return
        first = entries[0].index
        if first <= self._last:
            self._terms = {i: t for i, t in self._terms.items() if i < first}
        for e in entries:
            self._cache(e.index, e.term)
        self._last = entries[-1].index


def upgrade_writes(storage: Storage, applied: int, batch_size: int = 4096) -> None:
    """Bring a replica directory to `RAFT_FORMAT` in place: every applied batch entry stored
    whole (raft-1) becomes a reference into the journal. Idempotent; each step is atomic,
    and the format marker is written last, so a crash part-way resumes at the next open."""
    stored = storage.get(META_RAFT_FORMAT)
    if stored == RAFT_FORMAT:
        return
    if stored is not None:
        raise CorruptLedgerError(
            f"the Raft log's format is {stored!r}, which this version of Strand "
            f"({RAFT_FORMAT.decode()}) cannot read: run the Strand release that wrote it, or "
            "delete the node's data directory and let it catch up from its peers"
        )
    puts: list[tuple[bytes, bytes]] = []
    for key, raw in storage.scan(keys.log_key(1), keys.log_key(applied + 1)):
        index = keys.log_index(key)
        body = LogStorage._decode(index, raw)
        if len(body) == 2 and is_batch(bytes(body[1])):
            header = batch_header(bytes(body[1]))
            puts.append(LogStorage.applied_write(Entry(int(body[0]), index, b""), header))
        if len(puts) >= batch_size:
            storage.write(puts)
            puts = []
    storage.write(puts + [(META_RAFT_FORMAT, RAFT_FORMAT)])

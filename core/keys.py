"""The LevelDB key layout of one ledger (documented in docs/architecture.md).

Every key starts with a one-byte table tag; numbers are big-endian so that byte order is
numeric order; ids are fixed-width 22-byte ASCII so that prefixes never overlap.

    M<name>                          metadata (strand id, format version)
    B<seq:u64>                       journal block, framed msgpack: the source of truth
    N<level:u8><index:u64>           complete Merkle node over block hashes (32 bytes, framed)
    D<tableId:22><docId:22>          current state of a document (derived from the journal)
    R<tableId:22><docId:22><ver:u32> block sequence number holding that revision (derived)
    X<indexId:22><valueHash:32><docId:22>   index entry (derived)
    T<transactionId:22>              block sequence number of a committed transaction (derived)
    L<index:u64>                     replicated ledgers only: Raft log entry (core/replica.py)
    Mraft_state, Mraft_applied       replicated ledgers only: Raft term/vote/commit, applied index

Everything but M and B is derived state: it is rebuilt deterministically from the blocks.
"""

from __future__ import annotations

import struct

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_NODE = struct.Struct(">BQ")

META_STRAND_ID = b"Mstrand_id"
META_FORMAT = b"Mformat"
FORMAT_VERSION = b"strand-2"  # 2: index keys hash the normal form (PartiQL =)
UPGRADABLE_FORMATS = frozenset({b"strand-1"})  # upgraded in place at open (Engine)

BLOCK_PREFIX = b"B"
NODE_PREFIX = b"N"
DOC_PREFIX = b"D"
REVISION_PREFIX = b"R"
INDEX_PREFIX = b"X"
TX_PREFIX = b"T"
LOG_PREFIX = b"L"


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("prefix has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def block_key(seq: int) -> bytes:
    return BLOCK_PREFIX + _U64.pack(seq)


def block_seq(key: bytes) -> int:
    return int(_U64.unpack(key[1:9])[0])


def node_key(level: int, index: int) -> bytes:
    return NODE_PREFIX + _NODE.pack(level, index)


def doc_key(table_id: str, doc_id: str) -> bytes:
    return DOC_PREFIX + table_id.encode("ascii") + doc_id.encode("ascii")


def doc_prefix(table_id: str) -> bytes:
    return DOC_PREFIX + table_id.encode("ascii")


def revision_key(table_id: str, doc_id: str, version: int) -> bytes:
    return REVISION_PREFIX + table_id.encode("ascii") + doc_id.encode("ascii") + _U32.pack(version)


def revision_prefix(table_id: str, doc_id: str = "") -> bytes:
    return REVISION_PREFIX + table_id.encode("ascii") + doc_id.encode("ascii")


def revision_key_parts(key: bytes) -> tuple[str, str, int]:
    """(table id, document id, version) of an R key."""
    return key[1:23].decode("ascii"), key[23:45].decode("ascii"), int(_U32.unpack(key[45:49])[0])


def index_key(index_id: str, value_hash: bytes, doc_id: str) -> bytes:
    return INDEX_PREFIX + index_id.encode("ascii") + value_hash + doc_id.encode("ascii")


def index_prefix(index_id: str, value_hash: bytes = b"") -> bytes:
    return INDEX_PREFIX + index_id.encode("ascii") + value_hash


def index_key_doc_id(key: bytes) -> str:
    return key[-22:].decode("ascii")


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(data: bytes) -> int:
    return int(_U64.unpack(data)[0])


def tx_key(transaction_id: str) -> bytes:
    return TX_PREFIX + transaction_id.encode("ascii")


def log_key(index: int) -> bytes:
    return LOG_PREFIX + _U64.pack(index)


def log_index(key: bytes) -> int:
    return int(_U64.unpack(key[1:9])[0])

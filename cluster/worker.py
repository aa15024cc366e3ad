"""A worker process: where user code (transaction functions, PartiQL statements) runs.

The leader's node process starts workers (cluster/workers.py) and talks to each over a
private socket pair: length-prefixed msgpack frames, no network, no secret needed. User code
never runs in the node process, so a function that spins for its whole 30 s, or hangs in a
C call holding the GIL, or crashes the interpreter, stops only its worker: the node's
heartbeats, elections and other clients' commits go on (tests/test_cluster.py shows it).

    node -> worker   ["hello", strand_id]
                     ["jobs", [[job_id, transaction_id, start_ms, payload, state,
                                deadline_ms], ...]]
                     ["data", durable_seq, catalog_version, result]    answer to a read
                     ["fail", error]                                   a read that failed
    worker -> node   ["ready"]                     a --warm worker, once its parser is built
                     ["read", method, args]                            see RemoteView
                     ["done", job_id, state, value, error, user_error]

A job runs in a real `core.transaction.Transaction` over `RemoteView`, which reads the node's
committed state through the socket. Every answer carries the node's durable sequence number
(read before the read itself), which becomes the transaction's read mark: marks may be lower
than the state actually read, never higher, so OCC may see a conflict that was not one but
never misses one. The worker returns the transaction's state (core.transaction.encode_state)
and the node commits it. Jobs run one at a time, in the order sent. A PartiQL statement stops
by itself at the job's deadline (TransactionExpiredError, reported like any typed error); a
function that loops in Python is killed there by the pool.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import msgpack

from cluster import userdata
from cluster.clientlink import recv_exactly
from core import codec
from core.catalog import Catalog, TableDef
from core.client_wire import encode_error
from core.engine import decode_doc
from core.errors import CorruptLedgerError, StrandError
from core.ids import IdSource
from core.journal import Block, check_block
from core.transaction import DocState, Transaction, decode_state, encode_state

_LENGTH = struct.Struct(">I")
FRAME_BYTES_MAX = 256 * 1024 * 1024


def send_frame(sock: socket.socket, body: object) -> None:
    data = msgpack.packb(body, use_bin_type=True)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> Any:
    header = recv_exactly(sock, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if length > FRAME_BYTES_MAX:
        raise ConnectionError(f"a frame of {length} bytes")
    return msgpack.unpackb(recv_exactly(sock, length), raw=False)


class RemoteView:
    """`core.transaction.ReadView` over the socket to the node (see the module docstring)."""

    def __init__(self, sock: socket.socket, strand_id: str) -> None:
        self._sock = sock
        self.strand_id = strand_id
        self.durable_seq = 0
        self._catalog_version = -1  # of the catalog held here
        self._seen_catalog = 0  # the node's, as of its last answer
        self._catalog = Catalog.empty()
        self._prefetched: dict[tuple[str, str], DocState | None] = {}

    def _read(self, method: str, *args: Any) -> Any:
        send_frame(self._sock, ["read", method, list(args)])
        reply = recv_frame(self._sock)
        if reply[0] == "fail":
            raise _error(reply[1])
        _, durable_seq, catalog_version, result = reply
        self.durable_seq = durable_seq
        self._seen_catalog = catalog_version
        return result

    def refresh(self, durable_seq: int, catalog_version: int) -> None:
        self.durable_seq = durable_seq
        self._seen_catalog = catalog_version
        self._prefetched.clear()

    @property
    def catalog(self) -> Catalog:
        if self._seen_catalog != self._catalog_version:
            documents = self._read("catalog")
            catalog = Catalog.empty()
            for document in documents:
                catalog = catalog.with_table(TableDef.from_document(codec.unpack(document)))
            self._catalog, self._catalog_version = catalog, self._seen_catalog
        return self._catalog

    def read_doc(self, table_id: str, doc_id: str) -> DocState | None:
        key = (table_id, doc_id)
        if key in self._prefetched:
            return self._prefetched.pop(key)
        raw = self._read("doc", table_id, doc_id)
        return None if raw is None else decode_doc(raw)

    def scan_docs(self, table_id: str) -> Iterator[tuple[str, DocState]]:
        for doc_id, raw in self._read("scan", table_id):
            yield doc_id, decode_doc(raw)

    def count_docs(
        self,
        table_id: str,
        excluding: Collection[str] = (),
        charge: Callable[[int], None] | None = None,
    ) -> int:
        """The count, from the same read as a scan (the node sends the table's entries)."""
        rows = self._read("scan", table_id)
        if charge is not None:
            charge(len(rows))
        skip = set(excluding)
        return sum(1 for doc_id, _ in rows if doc_id not in skip)

    def index_doc_ids(self, index_id: str, value_hash: bytes) -> list[str]:
        """The ids, with each document read in the same round trip (served by read_doc)."""
        out = []
        for table_id, doc_id, raw in self._read("index", index_id, value_hash):
            self._prefetched[(table_id, doc_id)] = None if raw is None else decode_doc(raw)
            out.append(doc_id)
        return out

    def read_block(self, seq: int) -> Block:
        block: Block = codec.decode(self._read("block", seq))
        if check_block(block) is not None or block["blockAddress"]["sequenceNo"] != seq:
            raise CorruptLedgerError(f"block {seq} does not match its hashes")
        return block

    def table_history(
        self,
        table_id: str,
        document_id: str | None,
        start: datetime.datetime | None,
        end: datetime.datetime | None,
    ) -> list[dict[str, Any]]:
        args = codec.pack([table_id, document_id, start, end], check_names=False)
        return codec.unpack(self._read("history", args))  # type: ignore[no-any-return]


def _error(encoded: Any) -> StrandError:
    from core.client_wire import decode_error

    return decode_error(encoded)


def _clock_ms() -> int:
    return time.time_ns() // 1_000_000


def run_job(view: RemoteView, ids: IdSource, job: list[Any]) -> list[Any]:
    """One job: ["done", job_id, state, value, error, user_error]."""
    job_id, tx_id, start_ms, payload, state, deadline_ms = job
    timeout_ms = deadline_ms - start_ms  # a PartiQL statement stops there (TransactionExpired)
    try:
        kind, content = userdata.decode_payload(payload)
        if state is None:
            tx = Transaction(view, tx_id, start_ms, _clock_ms, ids.new_id, timeout_ms)
        else:
            tx = decode_state(state, view, _clock_ms, ids.new_id, timeout_ms)
    except StrandError as exc:
        return ["done", job_id, None, None, encode_error(exc), None]
    try:
        if kind == userdata.FUNCTION:
            value = content(tx)
        elif kind == userdata.STATEMENTS:
            value = [list(tx.execute_statement(text, *params)) for text, params in content]
        else:
            value = list(tx.execute_statement(content[0], *content[1]))
        encoded = userdata.encode_value(value)
    except StrandError as exc:
        kept = encode_state(tx) if state is not None else None  # a statement's reads stay
        return ["done", job_id, kept, None, encode_error(exc), None]
    except Exception as exc:  # user code raised: the caller gets it back as it was
        return ["done", job_id, None, None, None, userdata.encode_user_error(exc)]
    return ["done", job_id, encode_state(tx), encoded, None, None]


def _warm_up() -> None:
    """Build the PartiQL parser now (~1 s of CPU), before the first job: the workers a node
    starts when it begins to lead (`--warm`, cluster/workers.py) do it while the election
    completes, instead of delaying the first statements after a failover."""
    from core.partiql.parser import parse

    with contextlib.suppress(Exception):  # a head start only: else the first job builds it
        parse("SELECT * FROM t WHERE a = 1")


def main(fd: int, warm: bool = False) -> int:
    sock = socket.socket(fileno=fd)
    hello = recv_frame(sock)
    if warm:
        _warm_up()
        send_frame(sock, ["ready"])
    view = RemoteView(sock, hello[1])
    ids = IdSource(os.urandom)
    while True:
        try:
            message = recv_frame(sock)
        except ConnectionError:
            return 0
        _, durable_seq, catalog_version, jobs = message
        for job in jobs:
            view.refresh(durable_seq, catalog_version)
            send_frame(sock, run_job(view, ids, job))


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), warm="--warm" in sys.argv[2:]))

"""The client side of the data plane: blocking connections to nodes, and calls over them.

`NodeConnection` is one authenticated connection (cluster/clientlink.py) to one node's client
port with a receiving thread. `Calls` multiplexes concurrent callers over the connections of
one handle: `send(node, request)` queues the request's bytes; a caller that finds nobody
sending to that node becomes its sender and writes everything queued for it as ONE frame,
again until the queue is empty (so a handle batches every caller waiting at the moment it
sends, with no thread hand-off; a node that does not answer, even to a connection attempt,
holds up only the callers sending to it). Replies come back one by one, each to its own
caller, as the node decides them (one slow transaction never holds up the others). A caller
waits with `wait(call, timeout_s)`; `abandon(node)` wakes every caller waiting on a node the
handle gave up on (its connection broke, or another node leads a higher term).

Invariants: each call gets at most one outcome; a call whose connection breaks, or that is
abandoned, gets `None` (its outcome is unknown: the caller decides what to do with the same
transaction id); nothing here retries by itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster import clientlink
from cluster.transport import AuthError
from core import client_wire
from core.requests import Outcome, Read, Request
from core.wire import WireError

log = logging.getLogger("strand.client")
CONNECT_TIMEOUT_S = 5.0


class NodeConnection:
    """One connection to one node (see the module docstring)."""

    def __init__(
        self,
        node: str,
        address: tuple[str, int],
        secret: bytes,
        client: str,
        on_messages: Callable[[str, list[bytes]], None],
        on_closed: Callable[[NodeConnection], None],
    ) -> None:
        self.node = node
        self.sock, self._sealer, self._opener = clientlink.connect(
            address, secret, node, client, CONNECT_TIMEOUT_S
        )
        self._on_messages = on_messages
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(
            target=self._receive, name=f"strand-recv-{node}", daemon=True
        )
        self._thread.start()

    def send(self, messages: list[bytes]) -> bool:
        with self._lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(self._sealer.seal(clientlink.pack_messages(messages)))
            except OSError:
                self._close()
                return False
        return True

    def _receive(self) -> None:
        try:
            while True:
                body, mac = clientlink.recv_frame(self.sock, clientlink.FRAME_BYTES_MAX)
                self._on_messages(
                    self.node, clientlink.unpack_messages(self._opener.open(body, mac))
                )
        except (OSError, ConnectionError, AuthError) as exc:
            if not self.closed:
                log.info("connection to %s ended: %r", self.node, exc)
        with self._lock:
            self._close()
        self._on_closed(self)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    def close(self) -> None:
        with self._lock:
            self._close()


@dataclass(eq=False, slots=True)
class Call:
    request: Request
    node: str
    request_id: int
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


def _leader_bound(call: Call) -> bool:
    return not (isinstance(call.request, Read) and not call.request.linearizable)


class Calls:
    """Requests in flight over a handle's connections (see the module docstring)."""

    def __init__(self, secret: bytes, addresses: Callable[[str], tuple[str, int]]) -> None:
        self._secret = secret
        self._addresses = addresses
        self._name = f"client-{os.getpid()}-{id(self):x}"
        self._lock = threading.Condition()
        self._connections: dict[str, NodeConnection] = {}
        self._pending: dict[int, Call] = {}
        self._outbox: dict[str, list[tuple[Call, bytes]]] = {}
        self._sending: set[str] = set()  # nodes a caller is sending to right now
        self._ids = itertools.count(1)
        self._closed = False

    def send(self, node: str, request: Request, read: bytes = b"") -> Call:
        call = Call(request, node, next(self._ids))
        data = client_wire.encode_request(call.request_id, request, read)
        with self._lock:
            if self._closed:
                call.done.set()
                return call
            self._pending[call.request_id] = call
            self._outbox.setdefault(node, []).append((call, data))
            if node in self._sending:
                return call  # the caller sending to it now takes this one too
            self._sending.add(node)
        self._send_queued(node)
        return call

    def wait(self, call: Call, timeout_s: float) -> Outcome | None:
        """The call's outcome, or None: not known within `timeout_s`, or abandoned."""
        call.done.wait(timeout_s)
        with self._lock:
            self._pending.pop(call.request_id, None)
        return call.outcome

    def pending_nodes(self) -> set[str]:
        """Nodes that callers wait on for something only the leader does (not stale reads,
        which any node serves and which may take long: a whole-journal read, say)."""
        with self._lock:
            return {call.node for call in self._pending.values() if _leader_bound(call)}

    def abandon(self, node: str) -> None:
        """Wake every caller waiting on `node` for something only the leader does (with no
        outcome); close the connection unless stale reads still wait on it."""
        with self._lock:
            calls = [c for c in self._pending.values() if c.node == node and _leader_bound(c)]
            others = any(c.node == node and not _leader_bound(c) for c in self._pending.values())
            connection = None if others else self._connections.pop(node, None)
        for call in calls:
            call.done.set()
        if connection is not None:
            connection.close()

    def _send_queued(self, node: str) -> None:
        """As `node`'s sender: write what is queued for it, until nothing is."""
        while True:
            with self._lock:
                items = self._outbox.pop(node, None)
                if not items:
                    self._sending.discard(node)
                    return
            connection = self._connection(node)
            sent = connection is not None and connection.send([data for _, data in items])
            if not sent:
                for call, _ in items:
                    call.done.set()  # could not even be sent: no outcome

    def _connection(self, node: str) -> NodeConnection | None:
        with self._lock:
            connection = self._connections.get(node)
        if connection is not None and not connection.closed:
            return connection
        try:
            connection = NodeConnection(
                node, self._addresses(node), self._secret, self._name, self._on_messages,
                self._on_closed,
            )  # fmt: skip
        except (OSError, AuthError) as exc:
            log.info("cannot connect to %s: %r", node, exc)
            return None
        with self._lock:
            self._connections[node] = connection
        return connection

    def _on_messages(self, node: str, messages: list[bytes]) -> None:
        for data in messages:
            try:
                request_id, outcome = client_wire.decode_outcome(data)
            except WireError as exc:
                log.warning("a malformed reply from %s: %s", node, exc)
                continue
            with self._lock:
                call = self._pending.get(request_id)
            if call is not None and call.outcome is None:
                call.outcome = outcome
                call.done.set()

    def _on_closed(self, connection: NodeConnection) -> None:
        with self._lock:
            if self._connections.get(connection.node) is connection:
                del self._connections[connection.node]
            calls = [c for c in self._pending.values() if c.node == connection.node]
        for call in calls:
            call.done.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
            calls = list(self._pending.values())
            self._lock.notify_all()
        for connection in connections:
            connection.close()
        for call in calls:
            call.done.set()

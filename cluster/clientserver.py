"""A node's client port: authenticated client connections on the node's asyncio loop.

Each accepted connection first completes the challenge and response of
cluster/clientlink.py (within `handshake_timeout_ms`), then every frame it sends carries a
batch of requests, handed to `on_messages(connection, [bytes...])` on the loop's thread;
`send(connection, [bytes...])` seals replies into one frame. A connection that fails
authentication, sends a frame over `max_frame_bytes` or malformed bytes, or lets more than
`max_buffered_bytes` of replies pile up unread, is closed; `on_gone(connection)` is called
once for every connection that had completed its handshake.

Connections still in their handshake (accepted, proof not yet checked) are capped: at most
`max_unauthenticated_count` in all and `max_unauthenticated_per_source_count` per source IP
address (256 and 32 by default, more than a peer listener's 64 and 8: many clients may
share one host); one beyond either cap is closed as soon as it is accepted
(`stats["handshakes_refused"]`). Auth failures and refusals are logged on "strand.clients"
at most once per source per `auth_log_interval_ms` (the rest counted in
`stats["auth_log_suppressed"]`); see `HandshakeGate` and `SourceLimitedLog` in
cluster/transport.py.

Invariants: nothing reaches `on_messages` from a connection that has not proved it holds the
cluster secret for this connection's fresh challenge, and every frame it sent authenticated;
before that, all that is done with a client's bytes is framing, HMAC checks and msgpack
decoding of the proof after its MAC checked (nothing is unpickled or run: transaction
functions travel inside the messages handed to `on_messages`); at most
`max_unauthenticated_count` connections are in their handshake; after `close()` no task or
socket of the server is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from cluster import clientlink
from cluster.transport import (
    AuthError,
    FrameOpener,
    FrameSealer,
    HandshakeGate,
    SourceLimitedLog,
    read_frame,
    within,
)

log = logging.getLogger("strand.clients")

OnMessages = Callable[[int, list[bytes]], None]
OnGone = Callable[[int], None]


class ClientServer:
    def __init__(
        self,
        node: str,
        listen: tuple[str, int],
        secret: bytes,
        on_messages: OnMessages,
        on_gone: OnGone,
        *,
        max_frame_bytes: int = clientlink.FRAME_BYTES_MAX,
        max_buffered_bytes: int = 256 * 1024 * 1024,
        handshake_timeout_ms: int = 5_000,
        max_unauthenticated_count: int = 256,
        max_unauthenticated_per_source_count: int = 32,  # many clients may share a host
        auth_log_interval_ms: int = 10_000,
    ) -> None:
        self.node = node
        self._listen = listen
        self._secret = secret
        self._on_messages = on_messages
        self._on_gone = on_gone
        self._max_frame_bytes = max_frame_bytes
        self._max_buffered = max_buffered_bytes
        self._handshake_timeout_s = handshake_timeout_ms / 1000
        self._gate = HandshakeGate(max_unauthenticated_count, max_unauthenticated_per_source_count)
        self._auth_log = SourceLimitedLog(log, auth_log_interval_ms)
        self._server: asyncio.Server | None = None
        self._connections: dict[int, tuple[asyncio.StreamWriter, FrameSealer]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = 0
        self.stats = {
            "accepted": 0,  # handshakes completed
            "auth_failures": 0,
            "handshakes_refused": 0,  # closed when accepted: too many handshakes in progress
            "auth_log_suppressed": 0,  # auth-failure and refusal log lines left out
            "frames_in": 0,
            "frames_out": 0,
        }

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)

    def _warn_auth(self, source: str, message: str, *args: object) -> None:
        if not self._auth_log.warning(source, message, *args):
            self.stats["auth_log_suppressed"] += 1

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        source = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        if not self._gate.admit(source):
            writer.transport.abort()
            self.stats["handshakes_refused"] += 1
            self._warn_auth(
                source,
                "%s: refused a client connection from %s: too many handshakes in progress",
                self.node,
                source,
            )
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str
    ) -> None:
        connection: int | None = None
        in_handshake = True  # counted by the gate
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sealer, opener = await within(
                self._handshake_timeout_s, self._handshake(reader, writer)
            )
            self._gate.release(source)
            in_handshake = False
            self._ids += 1
            connection = self._ids
            self._connections[connection] = (writer, sealer)
            self.stats["accepted"] += 1
            while True:
                body, mac = await read_frame(reader, self._max_frame_bytes)
                messages = clientlink.unpack_messages(opener.open(body, mac))
                self.stats["frames_in"] += 1
                self._on_messages(connection, messages)
        except AuthError as exc:
            self.stats["auth_failures"] += 1
            self._warn_auth(
                source, "%s: dropped a client connection from %s: %s", self.node, source, exc
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if in_handshake:
                self._gate.release(source)
            if connection is not None:
                self._connections.pop(connection, None)
                self._on_gone(connection)
            writer.transport.abort()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[FrameSealer, FrameOpener]:
        node_nonce = os.urandom(clientlink.NONCE_BYTES)
        writer.write(clientlink.seal_challenge(self._secret, self.node, node_nonce))
        body, mac = await read_frame(reader, clientlink.HANDSHAKE_BYTES_MAX)
        client, client_nonce = clientlink.open_proof(self._secret, body, mac, self.node, node_nonce)
        writer.write(clientlink.seal_accept(self._secret, self.node, node_nonce, client_nonce))
        return clientlink.node_sealers(self._secret, node_nonce, client_nonce, client)

    def send(self, connection: int, messages: list[bytes]) -> bool:
        """Seal `messages` into one frame to `connection`; False if it is gone."""
        found = self._connections.get(connection)
        if found is None:
            return False
        writer, sealer = found
        if writer.transport.get_write_buffer_size() > self._max_buffered:
            log.warning("%s: a client does not read its replies; closing it", self.node)
            writer.transport.abort()
            return False
        writer.write(sealer.seal(clientlink.pack_messages(messages)))
        self.stats["frames_out"] += 1
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer, _ in list(self._connections.values()):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._server is not None:
            await self._server.wait_closed()

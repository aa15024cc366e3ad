"""A node's client port: authenticated client connections on the node's asyncio loop.

Each accepted connection first completes the challenge and response of
cluster/clientlink.py (within `handshake_timeout_s`), then every frame it sends carries a
batch of requests, handed to `on_messages(connection, [bytes...])` on the loop's thread;
`send(connection, [bytes...])` seals replies into one frame. A connection that fails
authentication, sends a frame over `max_frame_bytes` or malformed bytes, or lets more than
`max_buffered_bytes` of replies pile up unread, is closed; `on_gone(connection)` is called
once for every connection that had been accepted.

Invariants: nothing reaches `on_messages` from a connection that has not proved it holds the
cluster secret; after `close()` no task or socket of the server is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from cluster import clientlink
from cluster.transport import AuthError, FrameOpener, FrameSealer, read_frame

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
        handshake_timeout_s: float = 5.0,
    ) -> None:
        self.node = node
        self._listen = listen
        self._secret = secret
        self._on_messages = on_messages
        self._on_gone = on_gone
        self._max_frame_bytes = max_frame_bytes
        self._max_buffered = max_buffered_bytes
        self._handshake_timeout_s = handshake_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: dict[int, tuple[asyncio.StreamWriter, FrameSealer]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = 0
        self.stats = {"accepted": 0, "auth_failures": 0, "frames_in": 0, "frames_out": 0}

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection: int | None = None
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(self._handshake_timeout_s):
                sealer, opener = await self._handshake(reader, writer)
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
            log.warning("%s: dropped a client connection: %s", self.node, exc)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
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

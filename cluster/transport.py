"""Node-to-node TCP transport: authenticated, ordered, bounded message links on asyncio.

Theory of operation
-------------------
Each node runs one `Transport`. It listens on its own address and keeps one outbound TCP
connection per peer (one per directed link): node A sends to B only over the connection A
dialed, and B sends to A only over the connection B dialed. A listener accepts connections
from anyone, but nothing reaches `on_message` before the dialer has proved it holds the
cluster secret. Messages are opaque `bytes` (the caller encodes Raft messages).

`send(peer, payload)` never blocks. When the link is connected and idle (nothing queued,
nothing left to drain, nothing written since the dialer task last ran) it writes the frame
at once, so a message handed over in the middle of a long callback leaves now, not when the
loop next turns (the leader sends its appends before its own disk write this way);
otherwise it appends to that peer's bounded queue and
wakes the peer's dialer task, which drains everything queued (up to about 1 MiB) into ONE
`writer.write` and then awaits `drain()`, so a burst of small messages shares a syscall.
While a link is down, messages wait in its queue; when the queue is full, `send` returns
False and counts a drop. The dialer reconnects with exponential backoff (`backoff_ms_min`
doubling to `backoff_ms_max`, each wait jittered to between half and all of it), reset by
every successful handshake.

Wire format (all integers big-endian), protocol version 2
---------------------------------------------------------
Every frame is `u32 length || body || mac`, `body` being `length` bytes of msgpack and `mac`
32 bytes of HMAC-SHA256. The handshake is a challenge and response, so a recorded
handshake cannot be replayed:

1. listener -> dialer, challenge, as soon as the connection is accepted: body =
   ["strand-challenge", 2, listener_name, listener_nonce (16 fresh random bytes)],
   mac = HMAC(secret, CHALLENGE_TAG || body) (the dialer learns early that it reached a
   holder of the secret, though only the ack proves the listener is live).
2. dialer -> listener, hello: body = ["strand-hello", 2, dialer_name, listener_name,
   dialer_nonce (16 random bytes)], mac = HMAC(secret, HELLO_TAG || listener_nonce || body):
   only a holder of the secret can make it, and only for this connection's challenge.
3. listener -> dialer, ack: body = ["strand-hello-ack", 2, listener_name],
   mac = HMAC(secret, ACK_TAG || dialer_nonce || listener_nonce || body) (so an old ack
   cannot be replayed to the dialer either).
4. both derive key = HMAC(secret, b"strand-link" || dialer_nonce || listener_nonce ||
   dialer_name); then dialer -> listener only, data: body = [counter, payload] with counter
   1, 2, 3, ..., mac = HMAC(key, 0x01 || u64 counter || payload). (0x01 is the direction,
   dialer to listener; the listener sends nothing after its ack.)

The listener drops the connection (and counts an auth failure) on: a bad MAC (a hello made
for another challenge included), a hello for another node or from a name that is not one
of its peers, a counter other than previous + 1 (a replayed, reordered or dropped frame),
a frame longer than `max_frame_bytes` (64 MiB; handshake frames 1 KiB), malformed msgpack,
or a handshake not finished within `handshake_timeout_ms`.

A connection is adopted as its peer's link only when its first data frame has
authenticated under the derived key, never on the hello alone; it then replaces the
peer's older link (nothing more is delivered from the older one, even what it had already
buffered). "Older" is by accept order: a connection accepted before the adopted one is
dropped unused if it ever authenticates a frame (so adoption never goes back in time).

Connections still in their handshake (accepted, hello not yet checked) are capped: at most
`max_unauthenticated_count` in all and `max_unauthenticated_per_source_count` per source
IP address; a connection beyond either cap is closed as soon as it is accepted (counted in
`handshakes_refused`). Auth failures and refusals are logged on the "strand.transport"
logger at most once per source per `auth_log_interval_ms` (the rest counted in
`auth_log_suppressed`, and their number told on the source's next line).

Invariants
----------
- `on_message(peer, payload)` is only ever called with a payload that `peer`'s transport
  passed to `send`, over a connection whose handshake and every frame authenticated.
- Per directed link, payloads are delivered in the order they were sent, each at most
  once: what arrives is a subsequence of what was sent (the dialer uses one connection at
  a time, opens the next only after the last one closed and never resends; the listener
  delivers only from the newest adopted connection and never adopts an older one).
- Only a connection that has authenticated a data frame replaces a peer's link: a replayed,
  forged or idle handshake never tears down a working one.
- Loss is possible: frames being written when a link breaks (counted in
  `frames_lost_on_break`, though some of them may have arrived), frames sent to a peer
  that restarts, and sends refused by a full queue or after `close()`. Raft tolerates it.
- Memory is bounded: at most `max_queue_messages` payloads queued per peer, frames of at
  most `max_frame_bytes`, at most `max_unauthenticated_count` connections in their
  handshake, and the log limiter remembers at most `_LOG_SOURCES_MAX` sources.
- After `close()` returns, no task or socket of the transport is left (it accepts
  connections itself rather than through asyncio.start_server for that reason).

`send` must be called on the event loop's thread (it is not thread-safe). This module
reads the monotonic clock (for the log limiter); it is the I/O edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import msgpack

FRAME_BYTES_MAX = 64 * 1024 * 1024
HELLO_BYTES_MAX = 1024
MAC_BYTES = 32
NONCE_BYTES = 16
PROTOCOL_VERSION = 2
DIALER_TO_LISTENER = b"\x01"
CHALLENGE_TAG = b"strand/challenge/v2\x00"
HELLO_TAG = b"strand/hello/v2\x00"
ACK_TAG = b"strand/hello-ack/v2\x00"
LINK_TAG = b"strand-link"
_LENGTH_BYTES = 4
_COUNTER_LIMIT = 1 << 64
_FRAME_OVERHEAD_BYTES = 16  # msgpack: array header 1, counter <= 9, bin header <= 5
_BATCH_BYTES_MAX = 1 << 20
_BACKLOG = 128
_ACCEPT_PAUSE_S = 1.0  # after accept() fails for lack of file descriptors or memory
_CLOSE_WAIT_S = 1.0  # for a closing connection to flush, before it is aborted
_LOG_SOURCES_MAX = 256  # sources the auth-failure log limiter tells apart


class AuthError(Exception):
    """A handshake or frame failed authentication; its connection must be dropped."""


@dataclass(frozen=True, slots=True)
class Challenge:
    listener: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    dialer: str
    listener: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class HelloAck:
    listener: str


@dataclass(slots=True)
class TransportStats:
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0  # payload bytes
    batches_written: int = 0  # writer.write calls: frames_sent / batches_written per syscall
    bytes_received: int = 0
    auth_failures: int = 0  # connections dropped for failing authentication, either side
    handshakes_refused: int = 0  # closed when accepted: too many handshakes in progress
    auth_log_suppressed: int = 0  # auth-failure and refusal log lines left out (rate limit)
    drops_queue_full: int = 0
    drops_unknown_peer: int = 0
    drops_oversize: int = 0
    drops_closed: int = 0  # sent after close(), or still queued at close()
    frames_lost_on_break: int = 0  # being written when a link broke (some may have arrived)
    inbound_replaced: int = 0  # adopted inbound links replaced by a newer connection
    connects: int = 0  # outbound handshakes completed
    reconnects: int = 0  # ... on a link that had been connected before
    connect_failures: int = 0  # outbound attempts that failed without an auth failure
    callback_errors: int = 0  # on_message raised

    @property
    def drops(self) -> int:
        """Payloads `send` refused or discarded unsent."""
        refused = self.drops_queue_full + self.drops_unknown_peer + self.drops_oversize
        return refused + self.drops_closed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- sans-I/O: frames and the handshake -------------------------------------------------


T = TypeVar("T")


async def within(timeout_s: float, handshake: Awaitable[T]) -> T:
    """A handshake's result, or AuthError if it does not finish within `timeout_s` (or the
    connection breaks first)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await handshake
    except (OSError, asyncio.IncompleteReadError) as exc:  # TimeoutError is an OSError
        raise AuthError(f"handshake not completed ({exc!r})") from exc


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def frame(body: bytes, mac: bytes) -> bytes:
    return len(body).to_bytes(_LENGTH_BYTES, "big") + body + mac


def unpack_body(body: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise AuthError(f"{what}: malformed msgpack ({exc})") from exc


def link_key(secret: bytes, dialer_nonce: bytes, listener_nonce: bytes, dialer: str) -> bytes:
    """The per-connection key both ends derive after the handshake."""
    return hmac_sha256(secret, LINK_TAG + dialer_nonce + listener_nonce + dialer.encode("utf-8"))


def seal_challenge(secret: bytes, challenge: Challenge) -> bytes:
    """The listener's challenge as a wire frame."""
    fields = ["strand-challenge", PROTOCOL_VERSION, challenge.listener, challenge.nonce]
    body = msgpack.packb(fields, use_bin_type=True)
    return frame(body, hmac_sha256(secret, CHALLENGE_TAG + body))


def open_challenge(secret: bytes, body: bytes, mac: bytes) -> Challenge:
    if not hmac.compare_digest(mac, hmac_sha256(secret, CHALLENGE_TAG + body)):
        raise AuthError("challenge: bad MAC (wrong cluster secret?)")
    match unpack_body(body, "challenge"):
        case ["strand-challenge", int(version), str(listener), bytes(nonce)] if (
            version == PROTOCOL_VERSION and len(nonce) == NONCE_BYTES
        ):
            return Challenge(listener=listener, nonce=nonce)
    raise AuthError("challenge: malformed")


def seal_hello(secret: bytes, hello: Hello, listener_nonce: bytes) -> bytes:
    """The dialer's hello, answering a challenge that carried `listener_nonce`, as a frame."""
    fields = ["strand-hello", PROTOCOL_VERSION, hello.dialer, hello.listener, hello.nonce]
    body = msgpack.packb(fields, use_bin_type=True)
    return frame(body, hmac_sha256(secret, HELLO_TAG + listener_nonce + body))


def open_hello(secret: bytes, body: bytes, mac: bytes, listener_nonce: bytes) -> Hello:
    """The hello of a connection whose challenge carried `listener_nonce`."""
    if not hmac.compare_digest(mac, hmac_sha256(secret, HELLO_TAG + listener_nonce + body)):
        raise AuthError("hello: bad MAC (wrong cluster secret, or a replayed handshake?)")
    match unpack_body(body, "hello"):
        case ["strand-hello", int(version), str(dialer), str(listener), bytes(nonce)] if (
            version == PROTOCOL_VERSION and len(nonce) == NONCE_BYTES
        ):
            return Hello(dialer=dialer, listener=listener, nonce=nonce)
    raise AuthError("hello: malformed")


def seal_hello_ack(
    secret: bytes, ack: HelloAck, dialer_nonce: bytes, listener_nonce: bytes
) -> bytes:
    """The listener's answer to a hello carrying `dialer_nonce`, as a wire frame."""
    body = msgpack.packb(["strand-hello-ack", PROTOCOL_VERSION, ack.listener], use_bin_type=True)
    return frame(body, hmac_sha256(secret, ACK_TAG + dialer_nonce + listener_nonce + body))


def open_hello_ack(
    secret: bytes, body: bytes, mac: bytes, dialer_nonce: bytes, listener_nonce: bytes
) -> HelloAck:
    expected = hmac_sha256(secret, ACK_TAG + dialer_nonce + listener_nonce + body)
    if not hmac.compare_digest(mac, expected):
        raise AuthError("hello ack: bad MAC (wrong cluster secret, or a replayed ack?)")
    match unpack_body(body, "hello ack"):
        case ["strand-hello-ack", int(version), str(listener)] if version == PROTOCOL_VERSION:
            return HelloAck(listener=listener)
    raise AuthError("hello ack: malformed")


class FrameSealer:
    """Numbers and MACs the data frames of one connection, in the order they are sealed."""

    def __init__(self, key: bytes, direction: bytes = DIALER_TO_LISTENER) -> None:
        self._mac = hmac.new(key, direction, hashlib.sha256)
        self.counter = 0  # of the last frame sealed

    def seal(self, payload: bytes) -> bytes:
        self.counter += 1
        mac = self._mac.copy()
        mac.update(self.counter.to_bytes(8, "big"))
        mac.update(payload)
        return frame(msgpack.packb([self.counter, payload], use_bin_type=True), mac.digest())


class FrameOpener:
    """Checks the data frames of one connection: MAC, then counter == previous + 1."""

    def __init__(self, key: bytes, direction: bytes = DIALER_TO_LISTENER) -> None:
        self._mac = hmac.new(key, direction, hashlib.sha256)
        self.counter = 0  # of the last frame accepted

    def open(self, body: bytes, mac: bytes) -> bytes:
        match unpack_body(body, "frame"):
            case [int(counter), bytes(payload)] if 0 < counter < _COUNTER_LIMIT:
                pass
            case _:
                raise AuthError("frame: not [counter, payload]")
        expected = self._mac.copy()
        expected.update(counter.to_bytes(8, "big"))
        expected.update(payload)
        if not hmac.compare_digest(mac, expected.digest()):
            raise AuthError(f"frame {counter}: bad MAC")
        if counter != self.counter + 1:
            raise AuthError(
                f"frame counter {counter}, expected {self.counter + 1} (replayed or reordered)"
            )
        self.counter = counter
        return payload


async def read_frame(reader: asyncio.StreamReader, body_bytes_max: int) -> tuple[bytes, bytes]:
    """Read one frame; returns (body, mac). Raises AuthError if it is longer than allowed."""
    length = int.from_bytes(await reader.readexactly(_LENGTH_BYTES), "big")
    if length > body_bytes_max:
        raise AuthError(f"frame of {length} bytes exceeds the limit of {body_bytes_max}")
    data = await reader.readexactly(length + MAC_BYTES)
    return data[:length], data[length:]


# --- caps on handshakes, rate-limited logging (shared with cluster/clientserver.py) ------


class HandshakeGate:
    """Counts connections still in their handshake, in all and per source address.

    `admit(source)` says whether one more may start (and counts it); each admitted one is
    `release`d exactly once, when its handshake ends either way.
    """

    def __init__(self, max_count: int, max_per_source_count: int) -> None:
        if max_count < 1 or max_per_source_count < 1:
            raise ValueError("the handshake caps must be positive")
        self._max_count = max_count
        self._max_per_source_count = max_per_source_count
        self._by_source: dict[str, int] = {}
        self.count = 0  # admitted, not yet released

    def admit(self, source: str) -> bool:
        in_progress = self._by_source.get(source, 0)
        if self.count >= self._max_count or in_progress >= self._max_per_source_count:
            return False
        self._by_source[source] = in_progress + 1
        self.count += 1
        return True

    def release(self, source: str) -> None:
        in_progress = self._by_source[source] - 1
        if in_progress:
            self._by_source[source] = in_progress
        else:
            del self._by_source[source]
        self.count -= 1


class SourceLimitedLog:
    """Logs a warning at most once per source per interval; counts the lines it leaves out.

    The next line logged for a source tells how many of its lines were left out since the
    last one. At most `sources_max` sources are told apart at a time (older entries are
    forgotten once their interval has passed; beyond that, the other sources share one).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_ms: int,
        *,
        sources_max: int = _LOG_SOURCES_MAX,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_ms < 0:
            raise ValueError("the log interval cannot be negative")
        self._log = logger
        self._interval_s = interval_ms / 1000
        self._sources_max = sources_max
        self._clock_s = clock_s
        self._sources: dict[str, list[float]] = {}  # source -> [last logged at, left out]
        self.suppressed = 0

    def warning(self, source: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `source` had a line within the interval; True if logged."""
        now_s = self._clock_s()
        if source not in self._sources and len(self._sources) >= self._sources_max:
            self._sources = {
                key: entry
                for key, entry in self._sources.items()
                if now_s - entry[0] < self._interval_s
            }
            if len(self._sources) >= self._sources_max:
                source = "(other sources)"
        entry = self._sources.get(source)
        if entry is not None and now_s - entry[0] < self._interval_s:
            entry[1] += 1
            self.suppressed += 1
            return False
        left_out = 0 if entry is None else int(entry[1])
        self._sources[source] = [now_s, 0]
        if left_out:
            message += " (%d similar lines from %s left out since the last one)"
            args = (*args, left_out, source)
        self._log.warning(message, *args)
        return True


# --- the asyncio shell ---------------------------------------------------------------------


class _Link:
    """The outbound side of one directed link: its queue and connection state."""

    __slots__ = ("peer", "address", "queue", "wakeup", "broken", "ever_connected", "idle")

    def __init__(self, peer: str, address: tuple[str, int]) -> None:
        self.peer = peer
        self.address = address
        self.queue: deque[bytes] = deque()
        self.wakeup = asyncio.Event()  # set when queued or broken
        self.broken = False  # the current connection was closed by the peer
        self.ever_connected = False
        # while connected with nothing queued or being drained: write `send`s at once
        self.idle: tuple[asyncio.StreamWriter, FrameSealer] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class _Inbound:
    """One accepted connection; `seq` orders connections by when they were accepted."""

    seq: int
    writer: asyncio.StreamWriter


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Transport:
    """One node's authenticated links to its peers (see the module docstring)."""

    def __init__(
        self,
        node_name: str,
        listen: tuple[str, int],
        peers: Mapping[str, tuple[str, int]],
        secret: bytes,
        on_message: Callable[[str, bytes], None],
        *,
        max_queue_messages: int = 10_000,
        max_frame_bytes: int = FRAME_BYTES_MAX,
        backoff_ms_min: int = 20,
        backoff_ms_max: int = 1_000,
        handshake_timeout_ms: int = 5_000,
        drain_timeout_ms: int = 5_000,
        max_unauthenticated_count: int = 64,
        max_unauthenticated_per_source_count: int = 8,
        auth_log_interval_ms: int = 10_000,
        logger: logging.Logger | None = None,
    ) -> None:
        if node_name in peers:
            raise ValueError(f"node {node_name!r} cannot be its own peer")
        if not secret:
            raise ValueError("the cluster secret is empty")
        if max_queue_messages < 1 or max_frame_bytes <= _FRAME_OVERHEAD_BYTES:
            raise ValueError("max_queue_messages and max_frame_bytes must be positive")
        if not 0 < backoff_ms_min <= backoff_ms_max:
            raise ValueError("need 0 < backoff_ms_min <= backoff_ms_max")
        self.node_name = node_name
        self.stats = TransportStats()
        self._listen = listen
        self._links = {peer: _Link(peer, address) for peer, address in peers.items()}
        self._secret = secret
        self._on_message = on_message
        self._max_queue_messages = max_queue_messages
        self._max_frame_bytes = max_frame_bytes
        self._backoff_ms_min = backoff_ms_min
        self._backoff_ms_max = backoff_ms_max
        self._handshake_timeout_s = handshake_timeout_ms / 1000
        self._drain_timeout_s = drain_timeout_ms / 1000
        self._log = logger if logger is not None else logging.getLogger("strand.transport")
        self._gate = HandshakeGate(max_unauthenticated_count, max_unauthenticated_per_source_count)
        self._auth_log = SourceLimitedLog(self._log, auth_log_interval_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._accept_pause: asyncio.TimerHandle | None = None
        self._unclaimed: set[socket.socket] = set()  # accepted, its task not yet started
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbound: dict[str, _Inbound] = {}  # peer -> its adopted connection
        self._accepted = 0  # connections accepted so far: the latest one's `seq`
        self._closed = False

    @property
    def port(self) -> int:
        """The port actually listened on (useful after asking for port 0)."""
        if self._port is None:
            raise RuntimeError("the transport has not been started")
        return self._port

    def set_peer_address(self, peer: str, address: tuple[str, int]) -> None:
        """Dial `peer` at `address` from its next connection attempt on (e.g. after port 0)."""
        self._links[peer].address = address

    def queued(self, peer: str) -> int:
        """How many payloads wait in `peer`'s outbound queue."""
        return len(self._links[peer].queue)

    async def start(self) -> None:
        """Listen on `listen` (port 0 picks a free port) and start dialing every peer."""
        if self._loop is not None or self._closed:
            raise RuntimeError("a transport can be started only once")
        self._loop = asyncio.get_running_loop()
        host, port = self._listen
        family, *_ = (await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
        self._listener = socket.create_server((host, port), family=family, backlog=_BACKLOG)
        self._listener.setblocking(False)
        self._port = self._listener.getsockname()[1]
        self._loop.add_reader(self._listener.fileno(), self._accept_ready)
        for link in self._links.values():
            name = f"strand-dial-{self.node_name}->{link.peer}"
            self._track(asyncio.create_task(self._dial_forever(link), name=name))

    def send(self, peer: str, payload: bytes) -> bool:
        """Queue `payload` for `peer`; False (and a counted drop) if it cannot be queued."""
        link = self._links.get(peer)
        if self._closed:
            self.stats.drops_closed += 1
        elif link is None:
            self.stats.drops_unknown_peer += 1
        elif len(payload) + _FRAME_OVERHEAD_BYTES > self._max_frame_bytes:
            self.stats.drops_oversize += 1
        elif len(link.queue) >= self._max_queue_messages:
            self.stats.drops_queue_full += 1
        elif link.idle is not None and not link.queue:
            writer, sealer = link.idle  # the link is idle: write now, not at the next turn
            writer.write(sealer.seal(payload))
            self.stats.frames_sent += 1
            self.stats.batches_written += 1
            self.stats.bytes_sent += len(payload)
            link.idle = None  # what follows in this turn is queued: one write for all of it
            link.wakeup.set()  # the pump drains what the socket did not take, and re-arms
            return True
        else:
            link.queue.append(payload)
            link.wakeup.set()
            return True
        return False

    async def close(self) -> None:
        """Stop listening and dialing, close every connection; queued payloads are dropped."""
        if self._closed:
            return
        self._closed = True
        self._stop_accepting()
        if self._listener is not None:
            self._listener.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for sock in self._unclaimed:  # their tasks were cancelled before they ever ran
            sock.close()
        self._unclaimed.clear()
        for link in self._links.values():
            self.stats.drops_closed += len(link.queue)
            link.queue.clear()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("%s: task %s failed", self.node_name, task.get_name(), exc_info=exc)

    def _warn_auth(self, source: str, message: str, *args: object) -> None:
        """A warning about an auth failure or a refusal, rate-limited per source."""
        if not self._auth_log.warning(source, message, *args):
            self.stats.auth_log_suppressed += 1

    async def _close_writer(self, writer: asyncio.StreamWriter) -> None:
        if self._closed:
            writer.transport.abort()  # shutting down: do not wait for buffered bytes
        else:
            writer.close()
        try:
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise

    # --- inbound ---------------------------------------------------------------------------

    def _accept_ready(self) -> None:
        """The listening socket is readable: accept what is pending, one task per connection.

        Accepting here rather than with asyncio.start_server lets close() account for every
        accepted socket (asyncio 3.11 leaks one accepted just as its server closes).
        """
        assert self._listener is not None
        for _ in range(_BACKLOG):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of file descriptors or memory: retry in a second
                self._log.error("%s: accept failed, pausing: %r", self.node_name, exc)
                self._stop_accepting()
                assert self._loop is not None
                self._accept_pause = self._loop.call_later(_ACCEPT_PAUSE_S, self._resume_accepting)
                return
            source = str(address[0])
            if not self._gate.admit(source):
                sock.close()
                self.stats.handshakes_refused += 1
                self._warn_auth(
                    source,
                    "%s: refused a connection from %s: too many handshakes in progress",
                    self.node_name,
                    source,
                )
                continue
            sock.setblocking(False)
            self._accepted += 1
            self._unclaimed.add(sock)
            name = f"strand-serve-{self.node_name}"
            self._track(asyncio.create_task(self._serve(sock, source, self._accepted), name=name))

    def _stop_accepting(self) -> None:
        if self._accept_pause is not None:
            self._accept_pause.cancel()
            self._accept_pause = None
        if self._loop is not None and self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())

    def _resume_accepting(self) -> None:
        self._accept_pause = None
        if not self._closed and self._loop is not None and self._listener is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept_ready)

    async def _serve(self, sock: socket.socket, source: str, seq: int) -> None:
        self._unclaimed.discard(sock)  # from here on this task owns the socket
        in_handshake = True  # counted by the gate
        try:
            reader, writer = await asyncio.open_connection(sock=sock)  # on failure, closes sock
            connection = _Inbound(seq, writer)
            peer: str | None = None
            try:
                _set_nodelay(writer)
                name, opener = await within(
                    self._handshake_timeout_s, self._accept_handshake(reader, writer)
                )
                peer = name
                self._gate.release(source)
                in_handshake = False
                await self._receive(name, opener, reader, connection)
            except AuthError as exc:
                self.stats.auth_failures += 1
                self._warn_auth(
                    source,
                    "%s: dropped inbound connection from %s (%s): %s",
                    self.node_name,
                    writer.get_extra_info("peername"),
                    f"peer {peer!r}" if peer else "unauthenticated",
                    exc,
                )
            except OSError as exc:
                self._log.info("%s: inbound link from %r broke: %r", self.node_name, peer, exc)
            finally:
                if peer is not None and self._inbound.get(peer) is connection:
                    del self._inbound[peer]
                await self._close_writer(writer)
        finally:
            if in_handshake:
                self._gate.release(source)

    async def _accept_handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, FrameOpener]:
        listener_nonce = os.urandom(NONCE_BYTES)
        writer.write(seal_challenge(self._secret, Challenge(self.node_name, listener_nonce)))
        body, mac = await read_frame(reader, HELLO_BYTES_MAX)
        hello = open_hello(self._secret, body, mac, listener_nonce)
        if hello.listener != self.node_name:
            raise AuthError(f"hello is for node {hello.listener!r}, this is {self.node_name!r}")
        if hello.dialer not in self._links:
            raise AuthError(f"hello from unknown node {hello.dialer!r}")
        ack = seal_hello_ack(self._secret, HelloAck(self.node_name), hello.nonce, listener_nonce)
        writer.write(ack)
        await writer.drain()
        key = link_key(self._secret, hello.nonce, listener_nonce, hello.dialer)
        return hello.dialer, FrameOpener(key, DIALER_TO_LISTENER)

    def _adopt_inbound(self, peer: str, connection: _Inbound) -> bool:
        """Make `connection` `peer`'s link, unless a newer one already is; True if it is."""
        current = self._inbound.get(peer)
        if current is not None:
            if current.seq > connection.seq:
                return False
            self._log.info("%s: new link from %s replaces the older one", self.node_name, peer)
            self.stats.inbound_replaced += 1
            current.writer.transport.abort()
        self._inbound[peer] = connection
        return True

    async def _receive(
        self,
        peer: str,
        opener: FrameOpener,
        reader: asyncio.StreamReader,
        connection: _Inbound,
    ) -> None:
        """Deliver frames; the first one that authenticates makes this `peer`'s link."""
        adopted = False
        while not adopted or self._inbound.get(peer) is connection:  # until a newer one wins
            try:
                body, mac = await read_frame(reader, self._max_frame_bytes)
            except asyncio.IncompleteReadError:
                self._log.info("%s: inbound link from %s closed", self.node_name, peer)
                return
            payload = opener.open(body, mac)
            if not adopted:
                if not self._adopt_inbound(peer, connection):
                    self._log.info("%s: a stale link from %s was dropped", self.node_name, peer)
                    return
                adopted = True
            elif self._inbound.get(peer) is not connection:
                return
            self.stats.frames_received += 1
            self.stats.bytes_received += len(payload)
            try:
                self._on_message(peer, payload)
            except Exception:
                self.stats.callback_errors += 1
                self._log.exception("%s: on_message failed (from %s)", self.node_name, peer)

    # --- outbound --------------------------------------------------------------------------

    async def _dial_forever(self, link: _Link) -> None:
        backoff_ms = self._backoff_ms_min
        while True:
            session = await self._connect(link)
            if session is not None:
                backoff_ms = self._backoff_ms_min
                reader, writer, sealer = session
                try:
                    await self._pump(link, reader, writer, sealer)
                    self._log.info("%s: link to %s closed by the peer", self.node_name, link.peer)
                except (OSError, TimeoutError) as exc:
                    self._log.info("%s: link to %s broke: %r", self.node_name, link.peer, exc)
                finally:
                    await self._close_writer(writer)
            delay_ms = backoff_ms * (0.5 + random.random() / 2)
            await asyncio.sleep(delay_ms / 1000)
            if session is None:
                backoff_ms = min(backoff_ms * 2, self._backoff_ms_max)

    async def _connect(
        self, link: _Link
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameSealer] | None:
        """Dial and shake hands; None (counted and logged) if that fails."""
        writer: asyncio.StreamWriter | None = None
        connected = False
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                reader, writer = await asyncio.open_connection(*link.address)
                _set_nodelay(writer)
                body, mac = await read_frame(reader, HELLO_BYTES_MAX)
                challenge = open_challenge(self._secret, body, mac)
                if challenge.listener != link.peer:
                    raise AuthError(f"expected node {link.peer!r}, reached {challenge.listener!r}")
                nonce = os.urandom(NONCE_BYTES)
                hello = Hello(self.node_name, link.peer, nonce)
                writer.write(seal_hello(self._secret, hello, challenge.nonce))
                await writer.drain()
                body, mac = await read_frame(reader, HELLO_BYTES_MAX)
                ack = open_hello_ack(self._secret, body, mac, nonce, challenge.nonce)
            if ack.listener != link.peer:
                raise AuthError(f"expected node {link.peer!r}, reached {ack.listener!r}")
            connected = True
        except AuthError as exc:
            self.stats.auth_failures += 1
            self._warn_auth(
                f"dial {link.peer}",
                "%s: handshake with %s failed: %s",
                self.node_name,
                link.peer,
                exc,
            )
            return None
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.stats.connect_failures += 1
            self._log.debug("%s: cannot reach %s: %r", self.node_name, link.peer, exc)
            return None
        finally:
            if not connected and writer is not None:
                await self._close_writer(writer)
        self.stats.connects += 1
        if link.ever_connected:
            self.stats.reconnects += 1
        link.ever_connected = True
        self._log.info("%s: connected to %s at %s", self.node_name, link.peer, link.address)
        key = link_key(self._secret, nonce, challenge.nonce, self.node_name)
        return reader, writer, FrameSealer(key, DIALER_TO_LISTENER)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sealer: FrameSealer,
    ) -> None:
        """Write queued payloads until the peer closes the link (return) or a write fails."""
        link.broken = False
        watcher = asyncio.create_task(self._watch_for_close(link, reader))
        try:
            while True:
                while not link.queue and not link.broken:
                    if writer.transport.get_write_buffer_size():
                        async with asyncio.timeout(self._drain_timeout_s):
                            await writer.drain()  # what `send` wrote directly
                        continue
                    link.idle = (writer, sealer)
                    link.wakeup.clear()
                    await link.wakeup.wait()
                    link.idle = None
                if link.broken:
                    return  # what is still queued waits for the next connection
                frames: list[bytes] = []
                size = 0
                while link.queue and size < _BATCH_BYTES_MAX:
                    payload = link.queue.popleft()
                    frames.append(sealer.seal(payload))
                    size += len(payload)
                try:
                    writer.write(b"".join(frames))
                    async with asyncio.timeout(self._drain_timeout_s):
                        await writer.drain()
                except BaseException:
                    self.stats.frames_lost_on_break += len(frames)
                    raise
                self.stats.frames_sent += len(frames)
                self.stats.batches_written += 1
                self.stats.bytes_sent += size
        finally:
            link.idle = None
            watcher.cancel()
            await asyncio.wait([watcher])

    async def _watch_for_close(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """The listener never writes after its ack: any byte or EOF means the link is over."""
        try:
            if await reader.read(1):
                self._log.warning("%s: %s wrote after its handshake", self.node_name, link.peer)
        except OSError:
            pass
        link.broken = True
        link.wakeup.set()

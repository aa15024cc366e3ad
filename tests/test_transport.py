"""cluster.transport on real sockets (127.0.0.1, ports from the OS) and its sans-I/O frames.

Every wait is bounded (`WAIT_S`) and waits for a condition, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cluster.transport import (
    FRAME_BYTES_MAX,
    NONCE_BYTES,
    AuthError,
    Challenge,
    FrameOpener,
    FrameSealer,
    Hello,
    HelloAck,
    Transport,
    link_key,
    open_challenge,
    open_hello,
    open_hello_ack,
    read_frame,
    seal_challenge,
    seal_hello,
    seal_hello_ack,
)

SECRET = b"transport-test-secret-0123456789"
WAIT_S = 5.0
LOCALHOST = "127.0.0.1"
UNUSED = (LOCALHOST, 1)  # replaced with set_peer_address once the peer's port is known


class Inbox:
    """Collects on_message calls; `wait_for(n)` waits until n messages have arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, peer: str, payload: bytes) -> None:
        self.messages.append((peer, payload))

    def by_peer(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = defaultdict(list)
        for peer, payload in self.messages:
            out[peer].append(payload)
        return out

    async def wait_for(self, count: int) -> None:
        await wait_until(lambda: len(self.messages) >= count)


async def wait_until(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), WAIT_S)


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` in a fresh event loop; fail on any error asyncio reports or any task left."""
    loop_errors: list[dict[str, object]] = []

    async def checked() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        async with asyncio.timeout(4 * WAIT_S):
            await main()
        assert asyncio.all_tasks() == {asyncio.current_task()}  # close() left nothing behind

    asyncio.run(checked())
    assert loop_errors == []


@contextmanager
def refused_port() -> Iterator[int]:
    """A port that is bound but not listening: connections to it are refused."""
    with socket.socket() as holder:
        holder.bind((LOCALHOST, 0))
        yield holder.getsockname()[1]


def make(
    name: str, peers: dict[str, tuple[str, int]], inbox: Inbox, *, port: int = 0, **options: Any
) -> Transport:
    options.setdefault("backoff_ms_max", 100)
    return Transport(name, (LOCALHOST, port), peers, SECRET, inbox, **options)


async def start_mesh(names: str, **options: Any) -> tuple[dict[str, Transport], dict[str, Inbox]]:
    inboxes = {n: Inbox() for n in names}
    nodes = {n: make(n, {p: UNUSED for p in names if p != n}, inboxes[n], **options) for n in names}
    for node in nodes.values():
        await node.start()
    for node in nodes.values():
        for peer in names:
            if peer != node.node_name:
                node.set_peer_address(peer, (LOCALHOST, nodes[peer].port))
    return nodes, inboxes


async def close_all(nodes: dict[str, Transport]) -> None:
    for node in nodes.values():
        await node.close()


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    """The transport dropped this raw connection: EOF (or a reset) arrives."""

    async def drain_to_eof() -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass

    await asyncio.wait_for(drain_to_eof(), WAIT_S)


# --- sans-I/O frames ---------------------------------------------------------------------


def test_frames_round_trip_in_order() -> None:
    key = link_key(SECRET, b"d" * NONCE_BYTES, b"l" * NONCE_BYTES, "b")
    sealer, opener = FrameSealer(key), FrameOpener(key)
    for payload in (b"", b"x", bytes(range(256)) * 300):
        frame = sealer.seal(payload)
        length = int.from_bytes(frame[:4], "big")
        assert opener.open(frame[4 : 4 + length], frame[4 + length :]) == payload
    assert opener.counter == 3


def split(frame: bytes) -> tuple[bytes, bytes]:
    length = int.from_bytes(frame[:4], "big")
    assert len(frame) == 4 + length + 32
    return frame[4 : 4 + length], frame[4 + length :]


def test_frame_checks() -> None:
    key = link_key(SECRET, b"d" * NONCE_BYTES, b"l" * NONCE_BYTES, "b")
    first = split(FrameSealer(key).seal(b"p"))
    sealer = FrameSealer(key)
    one, two = split(sealer.seal(b"one")), split(sealer.seal(b"two"))
    with pytest.raises(AuthError, match="bad MAC"):
        FrameOpener(b"another key").open(*first)
    with pytest.raises(AuthError, match="bad MAC"):
        FrameOpener(key, direction=b"\x02").open(*first)  # a reflected frame
    with pytest.raises(AuthError, match=r"expected 1 \(replayed or reordered\)"):
        FrameOpener(key).open(*two)
    opener = FrameOpener(key)
    assert opener.open(*one) == b"one"
    with pytest.raises(AuthError, match="frame counter 1, expected 2"):
        opener.open(*one)
    with pytest.raises(AuthError, match="malformed msgpack"):
        opener.open(b"\xc1", bytes(32))
    with pytest.raises(AuthError, match="not \\[counter, payload\\]"):
        opener.open(b"\x92\x00\xc4\x00", bytes(32))  # counter 0


def test_challenge_hello_and_ack() -> None:
    listener_nonce, other = b"l" * NONCE_BYTES, b"o" * NONCE_BYTES
    challenge = Challenge("a", listener_nonce)
    assert open_challenge(SECRET, *split(seal_challenge(SECRET, challenge))) == challenge
    with pytest.raises(AuthError, match="wrong cluster secret"):
        open_challenge(b"other secret 0123456789", *split(seal_challenge(SECRET, challenge)))
    nonce = b"n" * NONCE_BYTES
    hello = Hello("b", "a", nonce)
    sealed = split(seal_hello(SECRET, hello, listener_nonce))
    assert open_hello(SECRET, *sealed, listener_nonce) == hello
    with pytest.raises(AuthError, match="wrong cluster secret"):
        open_hello(b"other secret 0123456789", *sealed, listener_nonce)
    with pytest.raises(AuthError, match="replayed handshake"):  # made for another challenge
        open_hello(SECRET, *sealed, other)
    ack = HelloAck("a")
    sealed = split(seal_hello_ack(SECRET, ack, nonce, listener_nonce))
    assert open_hello_ack(SECRET, *sealed, nonce, listener_nonce) == ack
    with pytest.raises(AuthError, match="bad MAC"):  # an ack to another hello
        open_hello_ack(SECRET, *sealed, other, listener_nonce)
    with pytest.raises(AuthError, match="bad MAC"):  # an ack to another challenge
        open_hello_ack(SECRET, *sealed, nonce, other)


# --- real sockets --------------------------------------------------------------------------


def test_three_transports_exchange_thousands_of_messages_in_order() -> None:
    count = 2000

    async def main() -> None:
        nodes, inboxes = await start_mesh("abc")
        try:
            for i in range(count):
                for src, node in nodes.items():
                    for dst in nodes:
                        if dst != src:
                            assert node.send(dst, f"{src}->{dst} {i}".encode())
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let the links write between bursts
            for inbox in inboxes.values():
                await inbox.wait_for(2 * count)
        finally:
            await close_all(nodes)
        for dst, inbox in inboxes.items():
            got = inbox.by_peer()
            assert sorted(got) == sorted(set("abc") - {dst})
            for src, payloads in got.items():
                assert payloads == [f"{src}->{dst} {i}".encode() for i in range(count)]
        for node in nodes.values():
            stats = node.stats
            assert stats.frames_sent == stats.frames_received == 2 * count
            assert stats.auth_failures == stats.drops_queue_full == stats.frames_lost_on_break == 0
            assert stats.connects == 2
            assert stats.batches_written < stats.frames_sent / 10  # writes are batched

    run(main)


def test_wrong_secret_delivers_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="strand.transport")

    async def main() -> None:
        good_inbox, bad_inbox = Inbox(), Inbox()
        good = make("a", {"b": UNUSED}, good_inbox)
        bad = Transport("b", (LOCALHOST, 0), {"a": UNUSED}, b"not-the-cluster-secret!", bad_inbox)
        try:
            await good.start()
            await bad.start()
            good.set_peer_address("b", (LOCALHOST, bad.port))
            bad.set_peer_address("a", (LOCALHOST, good.port))
            for i in range(10):
                assert good.send("b", b"to bad %d" % i)
                assert bad.send("a", b"to good %d" % i)
            # each side rejects the other's hello, repeatedly (the dialers retry)
            await wait_until(lambda: good.stats.auth_failures >= 2 and bad.stats.auth_failures >= 2)
        finally:
            await good.close()
            await bad.close()
        assert good_inbox.messages == bad_inbox.messages == []
        assert good.stats.frames_received == bad.stats.frames_received == 0
        assert good.stats.frames_sent == bad.stats.frames_sent == 0
        assert good.stats.connects == bad.stats.connects == 0

    run(main)
    assert any("wrong cluster secret" in r.getMessage() for r in caplog.records)


async def read_challenge(reader: asyncio.StreamReader) -> Challenge:
    return open_challenge(SECRET, *await asyncio.wait_for(read_frame(reader, 1024), WAIT_S))


async def raw_handshake(
    port: int, *, dialer: str = "b", listener: str = "a", secret: bytes = SECRET
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameSealer]:
    """Shake hands with a transport by hand; returns the connection and its frame sealer."""
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    challenge = await read_challenge(reader)
    assert challenge.listener == listener
    nonce = b"\x07" * NONCE_BYTES
    writer.write(seal_hello(secret, Hello(dialer, listener, nonce), challenge.nonce))
    body, mac = await asyncio.wait_for(read_frame(reader, 1024), WAIT_S)
    assert open_hello_ack(secret, body, mac, nonce, challenge.nonce).listener == listener
    return reader, writer, FrameSealer(link_key(secret, nonce, challenge.nonce, dialer))


def _replay(sealer: FrameSealer) -> bytes:
    first = sealer.seal(b"p1")
    return first + first


def _reorder(sealer: FrameSealer) -> bytes:
    first, _second, third = (sealer.seal(b"p%d" % i) for i in (1, 2, 3))
    return first + third


def _tamper(sealer: FrameSealer) -> bytes:
    first, second = sealer.seal(b"p1"), bytearray(sealer.seal(b"p2"))
    second[-33] ^= 1  # the last payload byte, just before the MAC
    return first + bytes(second)


def _oversize(sealer: FrameSealer) -> bytes:
    return sealer.seal(b"p1") + (FRAME_BYTES_MAX + 1).to_bytes(4, "big") + b"x" * 100


def _malformed(sealer: FrameSealer) -> bytes:
    return sealer.seal(b"p1") + (1).to_bytes(4, "big") + b"\xc1" + bytes(32)


@pytest.mark.parametrize(
    "attack",
    [_replay, _reorder, _tamper, _oversize, _malformed],
    ids=["replay", "reorder", "tamper", "oversize", "malformed"],
)
def test_bad_frame_after_handshake_drops_connection(attack: Callable[[FrameSealer], bytes]) -> None:
    async def main() -> None:
        inbox = Inbox()
        node = make("a", {"b": UNUSED}, inbox)
        await node.start()
        try:
            reader, writer, sealer = await raw_handshake(node.port)
            writer.write(attack(sealer))
            await assert_closed_by_server(reader)
            writer.close()
        finally:
            await node.close()
        assert inbox.messages == [("b", b"p1")]  # the good first frame only
        assert node.stats.auth_failures == 1
        assert node.stats.frames_received == 1

    run(main)


def test_newer_connection_replaces_the_older_at_its_first_frame() -> None:
    async def main() -> None:
        inbox = Inbox()
        node = make("a", {"b": UNUSED}, inbox)
        await node.start()
        try:
            old_reader, old_writer, old_sealer = await raw_handshake(node.port)
            old_writer.write(old_sealer.seal(b"old"))
            await inbox.wait_for(1)
            _reader, new_writer, new_sealer = await raw_handshake(node.port)
            old_writer.write(old_sealer.seal(b"old again"))  # the hello alone replaced nothing
            await inbox.wait_for(2)
            new_writer.write(new_sealer.seal(b"new"))
            await assert_closed_by_server(old_reader)
            await inbox.wait_for(3)
            old_writer.close()
            new_writer.close()
        finally:
            await node.close()
        assert inbox.messages == [("b", b"old"), ("b", b"old again"), ("b", b"new")]
        assert node.stats.auth_failures == 0
        assert node.stats.inbound_replaced == 1

    run(main)


def test_an_older_connection_is_never_adopted_after_a_newer_one() -> None:
    async def main() -> None:
        inbox = Inbox()
        node = make("a", {"b": UNUSED}, inbox)
        await node.start()
        try:
            old_reader, old_writer, old_sealer = await raw_handshake(node.port)
            _reader, new_writer, new_sealer = await raw_handshake(node.port)
            new_writer.write(new_sealer.seal(b"new"))
            await inbox.wait_for(1)
            old_writer.write(old_sealer.seal(b"stale"))  # authenticates, but is older
            await assert_closed_by_server(old_reader)
            new_writer.write(new_sealer.seal(b"new again"))
            await inbox.wait_for(2)
            old_writer.close()
            new_writer.close()
        finally:
            await node.close()
        assert inbox.messages == [("b", b"new"), ("b", b"new again")]
        assert node.stats.inbound_replaced == 0

    run(main)


OTHER_NONCE = b"\x09" * NONCE_BYTES


def _hello(dialer: str = "b", listener: str = "a", nonce: bytes = bytes(NONCE_BYTES)) -> Hello:
    return Hello(dialer, listener, nonce)


# what an unauthenticated dialer sends, given the challenge's nonce; the reason it is dropped
GARBAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "random": (lambda _: b"\x00\x00\x00\x05hello" + bytes(range(32)) * 3, "bad MAC"),
    "huge_hello": (lambda _: (2048).to_bytes(4, "big") + b"x" * 2048, "exceeds the limit"),
    "not_msgpack": (lambda _: (1).to_bytes(4, "big") + b"\xc1" + bytes(32), "bad MAC"),
    "wrong_secret": (lambda n: seal_hello(b"not-the-cluster-secret!", _hello(), n), "bad MAC"),
    "for_another_challenge": (
        lambda _: seal_hello(SECRET, _hello(), OTHER_NONCE),
        "replayed handshake",
    ),
    "unknown_node": (lambda n: seal_hello(SECRET, _hello(dialer="z"), n), "unknown node"),
    "for_other_node": (lambda n: seal_hello(SECRET, _hello(listener="c"), n), "for node 'c'"),
    "short_nonce": (lambda n: seal_hello(SECRET, _hello(nonce=b"short"), n), "malformed"),
    "frame_before_hello": (lambda _: FrameSealer(b"k" * 32).seal(b"p1"), "bad MAC"),
    "eof_mid_hello": (lambda n: seal_hello(SECRET, _hello(), n)[:20], "not completed"),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_unauthenticated_connection_is_dropped(
    garbage: tuple[Callable[[bytes], bytes], str], caplog: pytest.LogCaptureFixture
) -> None:
    make_garbage, reason = garbage
    caplog.set_level(logging.WARNING, logger="strand.transport")

    async def main() -> None:
        inbox = Inbox()
        node = make("a", {"b": UNUSED}, inbox)
        await node.start()
        try:
            reader, writer = await asyncio.open_connection(LOCALHOST, node.port)
            challenge = await read_challenge(reader)
            writer.write(make_garbage(challenge.nonce))
            writer.write_eof()
            await assert_closed_by_server(reader)
            writer.close()
            await wait_until(lambda: node.stats.auth_failures == 1)
        finally:
            await node.close()
        assert inbox.messages == []
        assert node.stats.frames_received == 0

    run(main)
    assert [reason in r.getMessage() for r in caplog.records] == [True]


def test_handshake_timeout_drops_silent_connection() -> None:
    async def main() -> None:
        node = make("a", {"b": UNUSED}, Inbox(), handshake_timeout_ms=100)
        await node.start()
        try:
            reader, writer = await asyncio.open_connection(LOCALHOST, node.port)
            await assert_closed_by_server(reader)  # after 100 ms without a hello
            writer.close()
        finally:
            await node.close()
        assert node.stats.auth_failures == 1

    run(main)


def test_peer_down_at_first_gets_queued_messages_once_up() -> None:
    async def main() -> None:
        inbox_a, inbox_b = Inbox(), Inbox()
        with refused_port() as port_b:
            a = make("a", {"b": (LOCALHOST, port_b)}, inbox_a)
            await a.start()
            for i in range(50):
                assert a.send("b", b"%d" % i)
            await wait_until(lambda: a.stats.connect_failures >= 2)
        assert a.queued("b") == 50
        b = make("b", {"a": (LOCALHOST, a.port)}, inbox_b, port=port_b)
        try:
            await b.start()
            await inbox_b.wait_for(50)
            assert b.send("a", b"hello a")
            await inbox_a.wait_for(1)
        finally:
            await a.close()
            await b.close()
        assert inbox_b.messages == [("a", b"%d" % i) for i in range(50)]
        assert inbox_a.messages == [("b", b"hello a")]
        assert a.stats.connects == 1
        assert a.queued("b") == 0

    run(main)


def test_reconnects_after_peer_restart() -> None:
    async def main() -> None:
        inbox_a, inbox_b = Inbox(), Inbox()
        a = make("a", {"b": UNUSED}, inbox_a)
        b = make("b", {"a": UNUSED}, inbox_b)
        await a.start()
        await b.start()
        a.set_peer_address("b", (LOCALHOST, b.port))
        b.set_peer_address("a", (LOCALHOST, a.port))
        try:
            assert a.send("b", b"before")
            await inbox_b.wait_for(1)
            await b.close()
            restarted_inbox = Inbox()
            b = make("b", {"a": (LOCALHOST, a.port)}, restarted_inbox, port=b.port)
            await b.start()
            await wait_until(lambda: a.stats.reconnects == 1)
            for i in range(100):
                assert a.send("b", b"after %d" % i)
            await restarted_inbox.wait_for(100)
        finally:
            await a.close()
            await b.close()
        assert restarted_inbox.messages == [("a", b"after %d" % i) for i in range(100)]
        assert a.stats.connects == 2

    run(main)


def test_queue_bound_and_refused_sends_are_counted() -> None:
    async def main() -> None:
        with refused_port() as port:
            a = make("a", {"b": (LOCALHOST, port)}, Inbox(), max_queue_messages=10)
            await a.start()
            results = [a.send("b", b"m%d" % i) for i in range(15)]
            assert results == [True] * 10 + [False] * 5
            assert a.queued("b") == 10
            assert a.stats.drops_queue_full == 5
            assert not a.send("nobody", b"x")
            assert a.stats.drops_unknown_peer == 1
            await a.close()
        assert not a.send("b", b"late")
        assert a.stats.drops_closed == 11  # 10 still queued at close, then 1
        assert a.stats.drops == 5 + 1 + 11

    run(main)


def test_oversize_payload_is_refused() -> None:
    async def main() -> None:
        a = make("a", {"b": UNUSED}, Inbox(), max_frame_bytes=1024)
        assert a.send("b", b"x" * 1000)
        assert not a.send("b", b"x" * 1024)
        assert a.stats.drops_oversize == 1
        await a.close()

    run(main)


def test_callback_error_is_counted_and_delivery_goes_on() -> None:
    async def main() -> None:
        received: list[bytes] = []

        def on_message(peer: str, payload: bytes) -> None:
            received.append(payload)
            if payload == b"boom":
                raise RuntimeError("handler bug")

        a = make("a", {"b": UNUSED}, Inbox())
        b = Transport("b", (LOCALHOST, 0), {"a": UNUSED}, SECRET, on_message)
        await a.start()
        await b.start()
        a.set_peer_address("b", (LOCALHOST, b.port))
        try:
            assert a.send("b", b"boom")
            assert a.send("b", b"fine")
            await wait_until(lambda: len(received) == 2)
        finally:
            await a.close()
            await b.close()
        assert received == [b"boom", b"fine"]
        assert b.stats.callback_errors == 1

    run(main)


def test_close_leaves_no_tasks_and_no_listener() -> None:
    async def main() -> None:
        nodes, inboxes = await start_mesh("ab")
        assert nodes["a"].send("b", b"x")
        await inboxes["b"].wait_for(1)
        half_open_reader, half_open = await asyncio.open_connection(LOCALHOST, nodes["a"].port)
        _reader, authenticated, _sealer = await raw_handshake(nodes["a"].port, dialer="b")
        port = nodes["a"].port
        await close_all(nodes)
        await close_all(nodes)  # idempotent
        await assert_closed_by_server(half_open_reader)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOCALHOST, port)
        half_open.close()
        authenticated.close()
        # run() checks that no task is left

    run(main)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="own peer"):
        Transport("a", (LOCALHOST, 0), {"a": UNUSED}, SECRET, Inbox())
    with pytest.raises(ValueError, match="secret"):
        Transport("a", (LOCALHOST, 0), {}, b"", Inbox())
    with pytest.raises(RuntimeError, match="not been started"):
        _ = Transport("a", (LOCALHOST, 0), {}, SECRET, Inbox()).port

"""The peer handshake under attack, on real sockets (127.0.0.1, ports from the OS).

A recorded handshake (captured by a relay between two real transports) replayed on a new
connection is refused; a connection that completes the handshake but never authenticates a
data frame never replaces the live link; idle connections beyond the per-source and total
caps are closed at once while the live links keep delivering; auth failures and refusals
are logged at most once per source per interval. The log limiter itself runs on a fake
clock. Every wait is bounded (`WAIT_S` of tests/test_transport.py).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from cluster.transport import FrameSealer, SourceLimitedLog, Transport
from tests.test_transport import (
    LOCALHOST,
    UNUSED,
    WAIT_S,
    Inbox,
    assert_closed_by_server,
    close_all,
    make,
    raw_handshake,
    read_challenge,
    run,
    start_mesh,
    wait_until,
)


class Relay:
    """A TCP relay on 127.0.0.1 to a target port; records what each client sends through it."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: list[bytearray] = []  # per connection, in order: the client's bytes

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, LOCALHOST, 0)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.sent.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection(LOCALHOST, self._target_port)
        except OSError:
            writer.transport.abort()
            return
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, record), self._pipe(up_reader, writer, None)
            )
        finally:
            up_writer.transport.abort()
            writer.transport.abort()

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray | None
    ) -> None:
        try:
            while data := await source.read(65536):
                if record is not None:
                    record += data
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._server.wait_closed()


async def next_bytes(reader: asyncio.StreamReader) -> bytes:
    """What the other end sends next: b"" if it closes (or resets) the connection."""
    try:
        return await asyncio.wait_for(reader.read(65536), WAIT_S)
    except ConnectionResetError:
        return b""


def warnings_of(caplog: pytest.LogCaptureFixture, node: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "strand.transport"
        and r.levelno >= logging.WARNING
        and r.getMessage().startswith(f"{node}:")
    ]


def test_a_recorded_handshake_replayed_is_refused_and_the_link_keeps_delivering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="strand.transport")

    async def main() -> None:
        inbox_a = Inbox()
        a = make("a", {"b": UNUSED}, inbox_a)
        await a.start()
        relay = Relay(a.port)
        await relay.start()
        b = make("b", {"a": (LOCALHOST, relay.port)}, Inbox())
        await b.start()
        try:
            for i in range(10):
                assert b.send("a", b"m%d" % i)
            await inbox_a.wait_for(10)
            assert len(relay.sent) == 1
            recorded = bytes(relay.sent[0])  # b's hello, then its ten data frames
            reader, writer = await asyncio.open_connection(LOCALHOST, a.port)
            await read_challenge(reader)  # a fresh challenge the recording did not answer
            writer.write(recorded)
            assert await next_bytes(reader) == b""  # dropped without an ack
            writer.close()
            await wait_until(lambda: a.stats.auth_failures == 1)
            for i in range(10, 20):
                assert b.send("a", b"m%d" % i)
            await inbox_a.wait_for(20)
        finally:
            await b.close()
            await relay.close()
            await a.close()
        assert inbox_a.messages == [("b", b"m%d" % i) for i in range(20)]
        assert a.stats.inbound_replaced == 0
        assert b.stats.connects == 1
        assert b.stats.reconnects == 0
        assert b.stats.frames_lost_on_break == 0

    run(main)
    assert any("replayed handshake" in line for line in warnings_of(caplog, "a"))


def test_a_handshake_without_an_authenticated_frame_never_replaces_the_live_link() -> None:
    async def main() -> None:
        nodes, inboxes = await start_mesh("ab")
        a, b = nodes["a"], nodes["b"]
        try:
            assert b.send("a", b"before")
            await inboxes["a"].wait_for(1)
            # a holder of the secret completes the handshake as "b", then sends no frame
            idle_reader, idle_writer, _ = await raw_handshake(a.port, dialer="b")
            for i in range(10):
                assert b.send("a", b"during %d" % i)
            await inboxes["a"].wait_for(11)
            assert a.stats.inbound_replaced == 0
            # then a frame that does not authenticate: dropped, the live link unharmed
            idle_writer.write(FrameSealer(b"not the link key" * 2).seal(b"forged"))
            await assert_closed_by_server(idle_reader)
            idle_writer.close()
            await wait_until(lambda: a.stats.auth_failures == 1)
            assert b.send("a", b"after")
            await inboxes["a"].wait_for(12)
        finally:
            await close_all(nodes)
        expected = [b"before", *(b"during %d" % i for i in range(10)), b"after"]
        assert inboxes["a"].messages == [("b", payload) for payload in expected]
        assert a.stats.inbound_replaced == 0
        assert b.stats.connects == 1
        assert b.stats.reconnects == 0

    run(main)


async def first_frame_or_eof(reader: asyncio.StreamReader) -> bool:
    """True if the transport sent this connection a challenge, False if it closed it."""
    try:
        await read_challenge(reader)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return False
    return True


def test_idle_connections_beyond_the_per_source_cap_are_closed_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="strand.transport")
    cap, extra = 4, 6

    async def main() -> None:
        options = {
            "handshake_timeout_ms": 2_000,
            "max_unauthenticated_per_source_count": cap,
            "auth_log_interval_ms": 60_000,
        }
        nodes, inboxes = await start_mesh("ab", **options)
        a, b = nodes["a"], nodes["b"]
        flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            assert b.send("a", b"before")
            await inboxes["a"].wait_for(1)
            for _ in range(cap + extra):  # from 127.0.0.1, like the peers
                flood.append(await asyncio.open_connection(LOCALHOST, a.port))
            await wait_until(lambda: a.stats.handshakes_refused == extra)
            challenged = await asyncio.gather(*(first_frame_or_eof(r) for r, _ in flood))
            assert sorted(challenged) == [False] * extra + [True] * cap
            # the extras were closed while the others were still within their handshake
            assert not any(
                reader.at_eof() for (reader, _), held in zip(flood, challenged, strict=True) if held
            )
            assert a.stats.auth_failures == 0
            for i in range(100):  # the live links keep delivering meanwhile
                assert b.send("a", b"during %d" % i)
                assert a.send("b", b"during %d" % i)
            await inboxes["a"].wait_for(101)
            await inboxes["b"].wait_for(100)
            # a peer dialing from the flooded source gets in once the idle ones time out
            await b.close()
            inbox_b2 = Inbox()
            nodes["b"] = b2 = make(
                "b", {"a": (LOCALHOST, a.port)}, inbox_b2, port=b.port, **options
            )
            await b2.start()
            assert b2.send("a", b"after")
            await inboxes["a"].wait_for(102)
            await wait_until(lambda: a.stats.auth_failures == cap)  # the idle ones timed out
        finally:
            for _, writer in flood:
                writer.close()
            await close_all(nodes)
        assert inboxes["a"].messages[-1] == ("b", b"after")
        assert b2.stats.connects == 1
        events = a.stats.handshakes_refused + a.stats.auth_failures
        assert a.stats.auth_log_suppressed == events - 1

    run(main)
    lines = warnings_of(caplog, "a")
    assert len(lines) == 1, lines  # one line for all the refusals and failures from 127.0.0.1
    assert "too many handshakes in progress" in lines[0]


def test_connections_beyond_the_total_cap_are_closed_at_once() -> None:
    async def main() -> None:
        node = make(
            "a", {"b": UNUSED}, Inbox(), max_unauthenticated_count=3,
            max_unauthenticated_per_source_count=8,
        )  # fmt: skip
        await node.start()
        flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(5):
                flood.append(await asyncio.open_connection(LOCALHOST, node.port))
            challenged = await asyncio.gather(*(first_frame_or_eof(r) for r, _ in flood))
            assert sorted(challenged) == [False] * 2 + [True] * 3
            assert node.stats.handshakes_refused == 2
            for (_, writer), held in zip(flood, challenged, strict=True):  # freeing the slots...
                if held:
                    writer.close()
            await wait_until(lambda: node.stats.auth_failures == 3)
            _reader, writer, sealer = await raw_handshake(node.port)  # ... lets a peer in
            writer.write(sealer.seal(b"in"))
            await wait_until(lambda: node.stats.frames_received == 1)
            writer.close()
        finally:
            for _, writer in flood:
                writer.close()
            await node.close()
        assert node.stats.handshakes_refused == 2

    run(main)


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="caps"):
        Transport("a", (LOCALHOST, 0), {}, b"s", Inbox(), max_unauthenticated_count=0)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def limited(caplog: pytest.LogCaptureFixture) -> tuple[SourceLimitedLog, FakeClock]:
    caplog.set_level(logging.WARNING, logger="strand.test-limiter")
    clock = FakeClock()
    logger = logging.getLogger("strand.test-limiter")
    return SourceLimitedLog(logger, 1_000, sources_max=2, clock_s=clock), clock


def test_the_log_limiter_logs_once_per_source_per_interval(
    limited: tuple[SourceLimitedLog, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = limited
    assert log.warning("10.0.0.1", "failure %d", 1)
    clock.now_s += 0.5
    assert not log.warning("10.0.0.1", "failure %d", 2)
    assert log.warning("10.0.0.2", "failure %d", 3)  # another source has its own budget
    clock.now_s += 0.4
    assert not log.warning("10.0.0.1", "failure %d", 4)
    clock.now_s += 0.1
    assert log.warning("10.0.0.1", "failure %d", 5)  # a whole interval after the first line
    assert log.suppressed == 2
    assert [r.getMessage() for r in caplog.records] == [
        "failure 1",
        "failure 3",
        "failure 5 (2 similar lines from 10.0.0.1 left out since the last one)",
    ]


def test_the_log_limiter_remembers_a_bounded_number_of_sources(
    limited: tuple[SourceLimitedLog, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = limited
    assert log.warning("s1", "x")
    assert log.warning("s2", "x")
    assert log.warning("s3", "x")  # both remembered ones are recent: s3 shares a budget
    assert not log.warning("s4", "x")  # ... with s4
    clock.now_s += 1.0
    assert log.warning("s4", "x")  # the old entries expired: s4 is told apart again
    assert len(caplog.records) == 4

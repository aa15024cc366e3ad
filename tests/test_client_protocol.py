"""The client data plane: core.client_wire's messages, a transaction's wire state, and the
authenticated link of cluster/clientlink.py on real sockets (cluster/clientserver.py).

Property tests: every message round-trips; garbage gives a typed error; a transaction
shipped as its state (core.transaction.encode_state) commits exactly the block the original
would. Link tests: a handshake made with another secret, a replayed handshake, a forged or
replayed frame are each refused, and nothing reaches the node from them; nothing a client
sends before it has authenticated is ever unpickled (a pickle that would create a file, sent
in every place an unauthenticated client can put bytes, never does); idle connections beyond
the per-source cap are closed at once while an authenticated client keeps exchanging
messages, and the refusals are logged once per source per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import pickle
import random
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster import clientlink
from cluster.clientserver import ClientServer
from cluster.transport import AuthError, FrameSealer
from core import client_wire, codec
from core.engine import Engine, Genesis
from core.errors import (
    NotLeaderError,
    OccConflictError,
    PartiQLSyntaxError,
    StrandError,
    TableNotFoundError,
    TransactionCommittedError,
)
from core.ids import IdSource
from core.requests import Abort, Begin, Commit, Done, Execute, Failed, Read, Resolve, Run
from core.storage import MemoryStorage
from core.transaction import decode_state, encode_state
from core.wire import WireError
from tests.ion_strategies import documents

ids = st.text(alphabet="0123456789abcdefghijABCDEFGHIJ", min_size=22, max_size=22)
blobs = st.binary(max_size=64)
requests = st.one_of(
    st.builds(Run, ids, blobs, st.integers(0, 100)),
    st.builds(Begin),
    st.builds(Execute, ids, blobs),
    st.builds(Commit, ids, st.none() | st.binary(min_size=32, max_size=32)),
    st.builds(Abort, ids),
    st.builds(Resolve, ids),
    st.builds(Read, st.booleans()),
)
errors = st.one_of(
    st.builds(NotLeaderError, st.text(max_size=20), st.none() | st.sampled_from("abc")),
    st.builds(
        TransactionCommittedError, st.text(max_size=20), ids, st.none() | st.integers(0, 2**63)
    ),
    st.builds(OccConflictError, st.text(max_size=20)),
    st.builds(TableNotFoundError, st.text(max_size=20)),
    st.builds(PartiQLSyntaxError, st.text(max_size=20), st.integers(1, 9), st.integers(1, 9)),
)
outcomes = st.one_of(
    st.builds(
        Done,
        st.none() | ids,
        st.none() | blobs,
        st.none() | st.integers(0, 2**63),
        st.none() | blobs,
    ),
    st.builds(Failed, st.none() | errors, st.none() | blobs),
)


@given(st.integers(0, 2**63), requests, blobs)
def test_requests_round_trip(request_id: int, request: Any, read: bytes) -> None:
    data = client_wire.encode_request(request_id, request, read)
    got_id, got, got_read = client_wire.decode_request(data)
    assert (got_id, got) == (request_id, request)
    assert got_read == (read if isinstance(request, Read) else b"")


def _same_error(a: StrandError | None, b: StrandError | None) -> bool:
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and str(a) == str(b) and a.__reduce__() == b.__reduce__()


@given(st.integers(0, 2**63), outcomes)
def test_outcomes_round_trip(request_id: int, outcome: Any) -> None:
    got_id, got = client_wire.decode_outcome(client_wire.encode_outcome(request_id, outcome))
    assert got_id == request_id
    if isinstance(outcome, Done):
        assert got == outcome
    else:
        assert isinstance(got, Failed)
        assert got.user_error == outcome.user_error
        assert _same_error(got.error, outcome.error)


@given(st.binary(max_size=200))
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        client_wire.decode_request(data)
    with contextlib.suppress(WireError):
        client_wire.decode_outcome(data)


def test_an_error_class_that_is_not_strands_is_never_built() -> None:
    forged = msgpack.packb([7, 1, ["SystemExit", "bye", None], None])
    _, outcome = client_wire.decode_outcome(forged)
    assert isinstance(outcome, Failed)
    assert type(outcome.error) is StrandError
    assert "SystemExit" in str(outcome.error)


GENESIS = Genesis("0" * 21 + "A", "0" * 21 + "B", 1_700_000_000_000)


def _engine() -> Engine:
    engine = Engine(MemoryStorage(), IdSource(random.Random(1).randbytes), 0, genesis=GENESIS)
    tx = engine.begin(1_700_000_000_000, lambda: 1_700_000_000_000, "T" * 22)
    tx.create_table("Car")
    tx.create_index("Car", "VIN")
    engine.commit([tx], 1_700_000_000_001)
    return engine


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=4), st.booleans())
def test_a_shipped_transaction_commits_the_block_the_original_would(
    docs: list[dict[str, Any]], with_statement: bool
) -> None:
    local, remote = _engine(), _engine()
    clock = lambda: 1_700_000_000_500  # noqa: E731
    ids = IdSource(random.Random(7).randbytes)
    tx = local.begin(1_700_000_000_400, clock, "U" * 22)
    tx._new_id = ids.new_id  # noqa: SLF001  (the same document ids on both sides)
    for doc in docs:
        tx.insert("Car", doc)
    tx.find("Car", VIN="x")
    if with_statement:
        tx.execute_statement("SELECT * FROM Car AS c WHERE c.VIN = ?", "y")
    shipped = decode_state(encode_state(tx), remote, clock, ids.new_id)
    assert shipped.reads == tx.reads
    assert shipped.commit_digest() == tx.commit_digest()
    a, _ = local.prepare([tx], 1_700_000_000_600)
    b, _ = remote.prepare([shipped], 1_700_000_000_600)
    assert a.raw_blocks == b.raw_blocks


@given(st.binary(max_size=300))
def test_a_state_that_is_not_one_is_refused(data: bytes) -> None:
    with contextlib.suppress(StrandError):
        decode_state(data, _engine(), lambda: 0, lambda: "X" * 22)


# ----------------------------------------------------------------- the link, on sockets

SECRET = b"client-link-test-secret-0123456789"


Got = list[tuple[int, list[bytes]]]


@contextlib.contextmanager
def serving(
    on_messages: Callable[[int, list[bytes]], None] | None = None, **options: Any
) -> Iterator[tuple[ClientServer, Got, asyncio.AbstractEventLoop]]:
    """A ClientServer on its own loop thread; what reaches it is in `got` (unless
    `on_messages` is given, which is then called too)."""
    got: Got = []

    def received(connection: int, messages: list[bytes]) -> None:
        got.append((connection, messages))
        if on_messages is not None:
            on_messages(connection, messages)

    options.setdefault("handshake_timeout_ms", 1_000)
    loop = asyncio.new_event_loop()
    node = ClientServer("a", ("127.0.0.1", 0), SECRET, received, lambda c: None, **options)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(node.start(), loop).result(5)
    try:
        yield node, got, loop
    finally:
        asyncio.run_coroutine_threadsafe(node.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def server() -> Iterator[tuple[ClientServer, Got]]:
    with serving() as (node, got, _loop):
        yield node, got


def _wait(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        threading.Event().wait(0.01)


def test_an_authenticated_client_reaches_the_node(server: Any) -> None:
    node, got = server
    sock, sealer, _ = clientlink.connect(("127.0.0.1", node.port), SECRET, "a", "me", 5)
    sock.sendall(sealer.seal(clientlink.pack_messages([b"hello", b"world"])))
    _wait(lambda: got)
    assert [m for _, m in got] == [[b"hello", b"world"]]
    sock.close()


def test_a_client_without_the_secret_is_refused(server: Any) -> None:
    node, got = server
    wrong = b"another-secret-0123456789"
    with pytest.raises(AuthError):  # the client sees the node does not share its secret
        clientlink.connect(("127.0.0.1", node.port), wrong, "a", "me", 5)
    sock = socket.create_connection(("127.0.0.1", node.port))  # and the node sees it too
    body, _ = clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX)
    nonce = msgpack.unpackb(body)[3]
    sock.sendall(clientlink.seal_proof(wrong, "me", "a", nonce, os.urandom(16)))
    sock.settimeout(2)
    assert sock.recv(100) == b""
    _wait(lambda: node.stats["auth_failures"] == 2)
    assert node.stats["auth_failures"] == 2  # the client that gave up counts too
    assert not got
    sock.close()


def test_a_replayed_handshake_and_forged_frames_are_refused(server: Any) -> None:
    node, got = server
    # a genuine client, and everything it sent, recorded
    sock = socket.create_connection(("127.0.0.1", node.port))
    challenge = clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX)
    nonce = clientlink.open_challenge(SECRET, *challenge, node="a")
    client_nonce = os.urandom(clientlink.NONCE_BYTES)
    proof = clientlink.seal_proof(SECRET, "me", "a", nonce, client_nonce)
    sock.sendall(proof)
    clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX)
    sealer, _ = clientlink.client_sealers(SECRET, nonce, client_nonce, "me")
    frame = sealer.seal(clientlink.pack_messages([b"once"]))
    sock.sendall(frame)
    _wait(lambda: got)
    # the same proof on a new connection answers a challenge it was not made for
    replay = socket.create_connection(("127.0.0.1", node.port))
    clientlink.recv_frame(replay, clientlink.HANDSHAKE_BYTES_MAX)
    replay.sendall(proof)
    replay.settimeout(2)
    assert replay.recv(100) == b""  # dropped: no accept
    # the same frame again on the genuine connection: its counter is stale
    sock.sendall(frame)
    sock.settimeout(2)
    assert sock.recv(100) == b""
    # a frame with a flipped byte, on a fresh genuine connection
    fresh, fresh_sealer, _ = clientlink.connect(("127.0.0.1", node.port), SECRET, "a", "me", 5)
    sealed = fresh_sealer.seal(clientlink.pack_messages([b"twice"]))
    forged = sealed.replace(b"twice", b"twicf")  # well formed, counter right, MAC wrong
    assert forged != sealed
    fresh.sendall(forged)
    fresh.settimeout(2)
    assert fresh.recv(100) == b""
    assert [m for _, m in got] == [[b"once"]]
    assert node.stats["auth_failures"] >= 3
    for s in (sock, replay, fresh):
        s.close()


def test_a_frame_payload_must_be_messages() -> None:
    with pytest.raises(AuthError):
        clientlink.unpack_messages(codec.pack({"not": "a list"}))


class Touch:
    """Unpickling this creates a file: it stands for the code of a transaction function."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[pathlib.Path]]:
        return (pathlib.Path.touch, (self.path,))


def _closed_without_a_reply(sock: socket.socket) -> None:
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""
    sock.close()


def test_nothing_is_unpickled_before_authentication(tmp_path: pathlib.Path) -> None:
    def run_pickles(connection: int, messages: list[bytes]) -> None:
        for message in messages:  # what a node does, in the end, with a transaction function
            pickle.loads(message)

    attack_marker, genuine_marker = tmp_path / "attack", tmp_path / "genuine"
    attack = pickle.dumps(Touch(attack_marker))
    as_frame = clientlink.pack_messages([attack])
    with serving(run_pickles) as (node, got, _loop):
        address = ("127.0.0.1", node.port)

        def challenged() -> tuple[socket.socket, bytes]:
            sock = socket.create_connection(address, timeout=5)
            nonce = clientlink.open_challenge(
                SECRET, *clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX), node="a"
            )
            return sock, nonce

        # a genuine client's pickle runs (so the node would run anything that got through)
        sock, nonce = challenged()
        client_nonce = os.urandom(clientlink.NONCE_BYTES)
        proof = clientlink.seal_proof(SECRET, "me", "a", nonce, client_nonce)
        sock.sendall(proof)
        clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX)
        sealer, _ = clientlink.client_sealers(SECRET, nonce, client_nonce, "me")
        genuine_frame = sealer.seal(clientlink.pack_messages([pickle.dumps(Touch(genuine_marker))]))
        sock.sendall(genuine_frame)
        _wait(genuine_marker.exists)
        assert genuine_marker.exists()
        sock.close()
        genuine_marker.unlink()
        # 1. the pickle itself, first thing
        raw, _ = challenged()
        raw.sendall(attack)
        _closed_without_a_reply(raw)
        # 2. a data frame in place of the proof, sealed with a key of the sender's own
        framed, _ = challenged()
        framed.sendall(
            FrameSealer(b"a key of my own" * 2, clientlink.CLIENT_TO_NODE).seal(as_frame)
        )
        _closed_without_a_reply(framed)
        # 3. a proof made with another secret, then a frame under the key it implies
        wrong, nonce = challenged()
        mine = os.urandom(clientlink.NONCE_BYTES)
        other = b"not-the-cluster-secret-0123"
        wrong.sendall(clientlink.seal_proof(other, "me", "a", nonce, mine))
        wrong.sendall(clientlink.client_sealers(other, nonce, mine, "me")[0].seal(as_frame))
        _closed_without_a_reply(wrong)
        # 4. the genuine client's proof and frame, recorded and replayed
        replay, _ = challenged()
        replay.sendall(proof + genuine_frame)
        _closed_without_a_reply(replay)
        _wait(lambda: node.stats["auth_failures"] == 4)
        assert node.stats["auth_failures"] == 4
    assert not attack_marker.exists()
    assert not genuine_marker.exists()
    assert len(got) == 1  # the genuine client's frame only


def _challenged_or_closed(sock: socket.socket) -> bool:
    """True if the node sent this connection a challenge, False if it closed it."""
    sock.settimeout(5)
    try:
        clientlink.recv_frame(sock, clientlink.HANDSHAKE_BYTES_MAX)
    except OSError:  # ConnectionError: closed; ConnectionResetError: reset
        return False
    return True


def test_idle_clients_beyond_the_per_source_cap_are_closed_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="strand.clients")
    cap, extra = 4, 6
    options: dict[str, Any] = {
        "handshake_timeout_ms": 1_500,
        "max_unauthenticated_per_source_count": cap,
        "auth_log_interval_ms": 60_000,
    }
    with serving(**options) as (node, got, loop):
        address = ("127.0.0.1", node.port)
        live, sealer, opener = clientlink.connect(address, SECRET, "a", "live", 5)
        flood = [socket.create_connection(address, timeout=5) for _ in range(cap + extra)]
        _wait(lambda: node.stats["handshakes_refused"] == extra)
        challenged = [_challenged_or_closed(sock) for sock in flood]
        assert sorted(challenged) == [False] * extra + [True] * cap
        assert node.stats["auth_failures"] == 0  # the others are still in their handshake
        # the live client exchanges messages meanwhile, both ways
        live.sendall(sealer.seal(clientlink.pack_messages([b"ping"])))
        _wait(lambda: got)
        assert got == [(got[0][0], [b"ping"])]
        loop.call_soon_threadsafe(node.send, got[0][0], [b"pong"])
        live.settimeout(5)
        reply = clientlink.recv_frame(live, clientlink.FRAME_BYTES_MAX)
        assert clientlink.unpack_messages(opener.open(*reply)) == [b"pong"]
        # a new client from the flooded source gets in once the idle ones time out
        newcomer = None
        for _ in range(100):
            try:
                newcomer, new_sealer, _ = clientlink.connect(address, SECRET, "a", "new", 5)
                break
            except OSError:  # refused while the idle connections hold the source's slots
                threading.Event().wait(0.05)
        assert newcomer is not None
        newcomer.sendall(new_sealer.seal(clientlink.pack_messages([b"new"])))
        _wait(lambda: len(got) == 2)
        assert got[1][1] == [b"new"]
        _wait(lambda: node.stats["auth_failures"] == cap)
        stats = dict(node.stats)
        for sock in [live, newcomer, *flood]:
            sock.close()
    assert stats["auth_failures"] == cap
    events = stats["handshakes_refused"] + stats["auth_failures"]
    assert stats["auth_log_suppressed"] == events - 1
    lines = [r.getMessage() for r in caplog.records if r.name == "strand.clients"]
    assert len(lines) == 1, lines  # one line for all the refusals and failures from 127.0.0.1
    assert "too many handshakes in progress" in lines[0]

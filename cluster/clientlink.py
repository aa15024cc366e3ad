"""The client data plane's link: an authenticated, two-way TCP stream between a client and a node.

Wire format: every frame is `u32 length || msgpack body || HMAC-SHA256 (32 bytes)` (the
framing of cluster/transport.py). A connection opens with a challenge and response, so a
recorded handshake cannot be replayed:

1. node -> client, challenge: body = ["strand-client-challenge", 1, node, node_nonce],
   mac = HMAC(secret, CHALLENGE_TAG || body) (the client checks it is talking to a node
   that holds the secret before it sends anything);
2. client -> node, proof: body = ["strand-client-proof", 1, client_name, node, client_nonce],
   mac = HMAC(secret, PROOF_TAG || node_nonce || body): only a holder of the secret can make
   it, and only for this connection's fresh node_nonce;
3. node -> client, accept: body = ["strand-client-accept", 1, node],
   mac = HMAC(secret, ACCEPT_TAG || client_nonce || node_nonce || body).
Both ends then derive key = HMAC(secret, "strand-client-link" || node_nonce || client_nonce ||
client_name), and every data frame is sealed with a counter and a direction byte
(`FrameSealer`/`FrameOpener`): 0x01 client to node, 0x02 node to client. A data frame's
payload is a msgpack array of messages (core/client_wire.py), so one frame carries every
request a client had queued, and every reply a node had ready.

Invariants: a node accepts requests, and so transaction functions (code), only after the
proof checked; a client accepts replies only from a node that answered its nonce; frames
are delivered in order, at most once, each checked (a bad MAC, a counter out of order, an
oversized frame or malformed msgpack ends the connection); the sans-I/O parts here are
used by the asyncio server (cluster/clientserver.py) and the blocking client
(cluster/connection.py) alike.
"""

from __future__ import annotations

import hmac
import os
import socket

import msgpack

from cluster.transport import (
    MAC_BYTES,
    AuthError,
    FrameOpener,
    FrameSealer,
    frame,
    hmac_sha256,
    unpack_body,
)

PROTOCOL_VERSION = 1
NONCE_BYTES = 16
HANDSHAKE_BYTES_MAX = 1024
FRAME_BYTES_MAX = 64 * 1024 * 1024
CLIENT_TO_NODE = b"\x01"
NODE_TO_CLIENT = b"\x02"
CHALLENGE_TAG = b"strand/client-challenge/v1\x00"
PROOF_TAG = b"strand/client-proof/v1\x00"
ACCEPT_TAG = b"strand/client-accept/v1\x00"
LINK_TAG = b"strand-client-link"
_LENGTH_BYTES = 4


def link_key(secret: bytes, node_nonce: bytes, client_nonce: bytes, client: str) -> bytes:
    return hmac_sha256(secret, LINK_TAG + node_nonce + client_nonce + client.encode("utf-8"))


def seal_challenge(secret: bytes, node: str, node_nonce: bytes) -> bytes:
    body = msgpack.packb(["strand-client-challenge", PROTOCOL_VERSION, node, node_nonce])
    return frame(body, hmac_sha256(secret, CHALLENGE_TAG + body))


def open_challenge(secret: bytes, body: bytes, mac: bytes, node: str) -> bytes:
    """The node's nonce, once the challenge proves the node holds the secret."""
    if not hmac.compare_digest(mac, hmac_sha256(secret, CHALLENGE_TAG + body)):
        raise AuthError("challenge: bad MAC (wrong cluster secret?)")
    match unpack_body(body, "challenge"):
        case ["strand-client-challenge", 1, str(name), bytes(nonce)] if (
            name == node and len(nonce) == NONCE_BYTES
        ):
            return nonce
    raise AuthError(f"challenge: malformed, or not from node {node!r}")


def seal_proof(
    secret: bytes, client: str, node: str, node_nonce: bytes, client_nonce: bytes
) -> bytes:
    body = msgpack.packb(["strand-client-proof", PROTOCOL_VERSION, client, node, client_nonce])
    return frame(body, hmac_sha256(secret, PROOF_TAG + node_nonce + body))


def open_proof(
    secret: bytes, body: bytes, mac: bytes, node: str, node_nonce: bytes
) -> tuple[str, bytes]:
    """(client name, client nonce) of a proof made for this connection's challenge."""
    if not hmac.compare_digest(mac, hmac_sha256(secret, PROOF_TAG + node_nonce + body)):
        raise AuthError("proof: bad MAC (wrong cluster secret, or a replayed handshake)")
    match unpack_body(body, "proof"):
        case ["strand-client-proof", 1, str(client), str(name), bytes(nonce)] if (
            name == node and len(nonce) == NONCE_BYTES and 0 < len(client) <= 128
        ):
            return client, nonce
    raise AuthError("proof: malformed, or for another node")


def seal_accept(secret: bytes, node: str, node_nonce: bytes, client_nonce: bytes) -> bytes:
    body = msgpack.packb(["strand-client-accept", PROTOCOL_VERSION, node])
    return frame(body, hmac_sha256(secret, ACCEPT_TAG + client_nonce + node_nonce + body))


def open_accept(
    secret: bytes, body: bytes, mac: bytes, node: str, node_nonce: bytes, client_nonce: bytes
) -> None:
    if not hmac.compare_digest(
        mac, hmac_sha256(secret, ACCEPT_TAG + client_nonce + node_nonce + body)
    ):
        raise AuthError("accept: bad MAC")
    match unpack_body(body, "accept"):
        case ["strand-client-accept", 1, str(name)] if name == node:
            return
    raise AuthError("accept: malformed")


def node_sealers(
    secret: bytes, node_nonce: bytes, client_nonce: bytes, client: str
) -> tuple[FrameSealer, FrameOpener]:
    """The node's end: it seals replies and opens requests."""
    key = link_key(secret, node_nonce, client_nonce, client)
    return FrameSealer(key, NODE_TO_CLIENT), FrameOpener(key, CLIENT_TO_NODE)


def client_sealers(
    secret: bytes, node_nonce: bytes, client_nonce: bytes, client: str
) -> tuple[FrameSealer, FrameOpener]:
    """The client's end: it seals requests and opens replies."""
    key = link_key(secret, node_nonce, client_nonce, client)
    return FrameSealer(key, CLIENT_TO_NODE), FrameOpener(key, NODE_TO_CLIENT)


def pack_messages(messages: list[bytes]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_messages(payload: bytes) -> list[bytes]:
    body = unpack_body(payload, "frame payload")
    if not isinstance(body, list) or not all(type(m) is bytes for m in body):
        raise AuthError("frame payload: not an array of messages")
    return body


# ----------------------------------------------------------------- blocking client side


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes from a blocking socket (ConnectionError if it closes first)."""
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the node closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, body_bytes_max: int) -> tuple[bytes, bytes]:
    length = int.from_bytes(recv_exactly(sock, _LENGTH_BYTES), "big")
    if length > body_bytes_max:
        raise AuthError(f"frame of {length} bytes exceeds the limit of {body_bytes_max}")
    data = recv_exactly(sock, length + MAC_BYTES)
    return data[:length], data[length:]


def connect(
    address: tuple[str, int], secret: bytes, node: str, client: str, timeout_s: float
) -> tuple[socket.socket, FrameSealer, FrameOpener]:
    """Dial a node and shake hands (blocking); the socket comes back in blocking mode."""
    sock = socket.create_connection(address, timeout=timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        node_nonce = open_challenge(secret, *recv_frame(sock, HANDSHAKE_BYTES_MAX), node=node)
        client_nonce = os.urandom(NONCE_BYTES)
        sock.sendall(seal_proof(secret, client, node, node_nonce, client_nonce))
        body, mac = recv_frame(sock, HANDSHAKE_BYTES_MAX)
        open_accept(secret, body, mac, node, node_nonce, client_nonce)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    sealer, opener = client_sealers(secret, node_nonce, client_nonce, client)
    return sock, sealer, opener

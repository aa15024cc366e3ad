"""The node-to-node wire format of Raft messages: msgpack arrays, one per message.

    VoteRequest     [1, term, sender, to, last_index, last_term, pre_vote]
    VoteResponse    [2, term, sender, to, granted, pre_vote]
    Append          [3, term, sender, to, prev_index, prev_term, [[term, index, data]...],
                     commit, read_ctx]
    AppendResponse  [4, term, sender, to, success, match_index, reject_hint, read_ctx]

The transport (cluster/transport.py) frames and authenticates these bytes; this module only
maps messages to bytes and back. Invariants: `decode(encode(m)) == m` for every message;
`decode` of anything else raises `WireError` (never another exception, never a half-built
message), so a peer cannot crash a node with a malformed payload.
"""

from __future__ import annotations

from typing import Any

import msgpack

from core.errors import StrandError
from core.raft import Append, AppendResponse, Entry, Message, VoteRequest, VoteResponse

_VOTE, _VOTE_RESPONSE, _APPEND, _APPEND_RESPONSE = 1, 2, 3, 4


class WireError(StrandError):
    """A payload that is not a well-formed Raft message."""


def encode(m: Message) -> bytes:
    body: list[Any]
    if isinstance(m, VoteRequest):
        body = [_VOTE, m.term, m.sender, m.to, m.last_index, m.last_term, m.pre_vote]
    elif isinstance(m, VoteResponse):
        body = [_VOTE_RESPONSE, m.term, m.sender, m.to, m.granted, m.pre_vote]
    elif isinstance(m, Append):
        entries = [[e.term, e.index, e.data] for e in m.entries]
        body = [_APPEND, m.term, m.sender, m.to, m.prev_index, m.prev_term, entries, m.commit]
        body.append(m.read_ctx)
    else:
        body = [_APPEND_RESPONSE, m.term, m.sender, m.to, m.success, m.match_index]
        body += [m.reject_hint, m.read_ctx]
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def _int(value: object) -> int:
    if type(value) is not int or value < 0:
        raise WireError(f"expected a non-negative integer, got {value!r:.40}")
    return value


def _str(value: object) -> str:
    if type(value) is not str:
        raise WireError(f"expected a node name, got {value!r:.40}")
    return value


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise WireError(f"expected a boolean, got {value!r:.40}")
    return value


def _entry(value: object) -> Entry:
    if not isinstance(value, list) or len(value) != 3 or type(value[2]) is not bytes:
        raise WireError("malformed log entry")
    return Entry(_int(value[0]), _int(value[1]), value[2])


def decode(payload: bytes) -> Message:
    try:
        body = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"undecodable message: {exc}") from exc
    if not isinstance(body, list) or not body:
        raise WireError("a message is a non-empty array")
    kind, fields = body[0], body[1:]
    shapes = {_VOTE: 6, _VOTE_RESPONSE: 5, _APPEND: 8, _APPEND_RESPONSE: 7}
    if kind not in shapes or type(kind) is not int or len(fields) != shapes[kind]:
        raise WireError(f"unknown message kind or arity: {kind!r:.20}")
    term, sender, to = _int(fields[0]), _str(fields[1]), _str(fields[2])
    if kind == _VOTE:
        return VoteRequest(term, sender, to, _int(fields[3]), _int(fields[4]), _bool(fields[5]))
    if kind == _VOTE_RESPONSE:
        return VoteResponse(term, sender, to, _bool(fields[3]), _bool(fields[4]))
    if kind == _APPEND:
        if not isinstance(fields[5], list):
            raise WireError("append entries are an array")
        entries = tuple(_entry(e) for e in fields[5])
        return Append(
            term, sender, to, _int(fields[3]), _int(fields[4]), entries,
            _int(fields[6]), _int(fields[7]),
        )  # fmt: skip
    return AppendResponse(
        term, sender, to, _bool(fields[3]), _int(fields[4]), _int(fields[5]), _int(fields[6])
    )

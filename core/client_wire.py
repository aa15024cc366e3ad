"""The client protocol's messages as bytes: requests to a node and the outcomes it sends back.

    request   [request_id, kind, ...fields]
      run       [id, 1, transaction_id, payload, retry_limit]
      begin     [id, 2]
      execute   [id, 3, transaction_id, payload]
      commit    [id, 4, transaction_id, commit_digest or nil]
      abort     [id, 5, transaction_id]
      resolve   [id, 6, transaction_id]
      read      [id, 7, linearizable, payload]          (payload: the read to serve)
      stream    [id, 8, change]                         (core.streams.op_body)
    outcome   [request_id, 0, transaction_id, value, sequence_no, commit_digest]   done
              [request_id, 1, error, user_error]                                     failed
    error     [class name, message, detail] : a core.errors class, rebuilt by name

The transport (cluster/clientlink.py) frames and authenticates these bytes; payloads and
values are opaque here (cluster/userdata.py gives them meaning). Invariants: decoding what
`encode_*` made gives the message back; decoding anything else raises `WireError`, never
another exception; an error class that is not a `StrandError` is never instantiated.
"""

from __future__ import annotations

from typing import Any

import msgpack

from core import errors
from core.errors import (
    InvalidArgumentError,
    NotLeaderError,
    StrandError,
    TransactionCommittedError,
)
from core.requests import (
    Abort,
    Begin,
    Commit,
    Done,
    Execute,
    Failed,
    Outcome,
    Read,
    Request,
    Resolve,
    Run,
    UpdateStream,
)
from core.streams import op_body, op_from_body
from core.wire import WireError

_RUN, _BEGIN, _EXECUTE, _COMMIT, _ABORT, _RESOLVE, _READ, _STREAM = 1, 2, 3, 4, 5, 6, 7, 8
_DONE, _FAILED = 0, 1


def encode_request(request_id: int, request: Request, read_payload: bytes = b"") -> bytes:
    body: list[Any] = [request_id]
    if isinstance(request, Run):
        body += [_RUN, request.transaction_id, request.payload, request.retry_limit]
    elif isinstance(request, Begin):
        body += [_BEGIN]
    elif isinstance(request, Execute):
        body += [_EXECUTE, request.transaction_id, request.payload]
    elif isinstance(request, Commit):
        body += [_COMMIT, request.transaction_id, request.commit_digest]
    elif isinstance(request, Abort):
        body += [_ABORT, request.transaction_id]
    elif isinstance(request, Resolve):
        body += [_RESOLVE, request.transaction_id]
    elif isinstance(request, UpdateStream):
        body += [_STREAM, op_body(request.op)]
    else:
        body += [_READ, request.linearizable, read_payload]
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"undecodable message: {exc}") from exc
    if not isinstance(body, list) or len(body) < 2 or type(body[0]) is not int:
        raise WireError("a message is [request_id, kind, ...]")
    return body


def _str(value: object) -> str:
    if type(value) is not str or len(value) > 64:
        raise WireError(f"expected an id, got {value!r:.40}")
    return value


def _bytes(value: object) -> bytes:
    if type(value) is not bytes:
        raise WireError(f"expected bytes, got {value!r:.40}")
    return value


def _maybe_bytes(value: object) -> bytes | None:
    return None if value is None else _bytes(value)


def _maybe_int(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise WireError(f"expected an integer, got {value!r:.40}")
    return value


def decode_request(data: bytes) -> tuple[int, Request, bytes]:
    """(request id, request, the payload of a read)."""
    body = _unpack(data)
    request_id, kind, fields = body[0], body[1], body[2:]
    shapes = {_RUN: 3, _BEGIN: 0, _EXECUTE: 2, _COMMIT: 2, _ABORT: 1, _RESOLVE: 1, _READ: 2,
              _STREAM: 1}  # fmt: skip
    if type(kind) is not int or shapes.get(kind) != len(fields):
        raise WireError(f"unknown request kind or arity: {kind!r:.20}")
    if kind == _RUN:
        limit = fields[2]
        if type(limit) is not int or not 0 <= limit <= 100:
            raise WireError("a retry limit is an integer in 0..100")
        return request_id, Run(_str(fields[0]), _bytes(fields[1]), limit), b""
    if kind == _BEGIN:
        return request_id, Begin(), b""
    if kind == _EXECUTE:
        return request_id, Execute(_str(fields[0]), _bytes(fields[1])), b""
    if kind == _COMMIT:
        return request_id, Commit(_str(fields[0]), _maybe_bytes(fields[1])), b""
    if kind == _ABORT:
        return request_id, Abort(_str(fields[0])), b""
    if kind == _RESOLVE:
        return request_id, Resolve(_str(fields[0])), b""
    if kind == _STREAM:
        try:
            return request_id, UpdateStream(op_from_body(fields[0])), b""
        except InvalidArgumentError as exc:
            raise WireError(str(exc)) from exc
    if type(fields[0]) is not bool:
        raise WireError("linearizable is a boolean")
    return request_id, Read(fields[0]), _bytes(fields[1])


def encode_error(error: StrandError) -> list[Any]:
    detail: Any = None
    if isinstance(error, NotLeaderError):
        detail = error.leader
    elif isinstance(error, TransactionCommittedError):
        detail = [error.transaction_id, error.sequence_no]
    elif hasattr(error, "line"):  # PartiQLSyntaxError
        detail = [error.line, error.column, list(error.expected)]  # type: ignore[attr-defined]
    return [type(error).__name__, str(error), detail]


def decode_error(value: object) -> StrandError:
    if not isinstance(value, list) or len(value) != 3 or type(value[0]) is not str:
        raise WireError("an error is [class, message, detail]")
    name, message, detail = value
    cls = getattr(errors, name, None)
    if not isinstance(cls, type) or not issubclass(cls, StrandError) or type(message) is not str:
        return StrandError(f"{name}: {message!s:.1000}")
    try:
        if cls is NotLeaderError:
            return NotLeaderError(message, detail if isinstance(detail, str) else None)
        if cls is TransactionCommittedError:
            tx_id, seq = detail
            return TransactionCommittedError(message, str(tx_id), _maybe_int(seq))
        if name == "PartiQLSyntaxError":
            line, column, expected = detail
            return cls(message, int(line), int(column), tuple(map(str, expected)))  # type: ignore[call-arg]
        return cls(message)
    except (TypeError, ValueError, WireError):
        return StrandError(f"{name}: {message:.1000}")


def encode_outcome(request_id: int, outcome: Outcome) -> bytes:
    body: list[Any]
    if isinstance(outcome, Done):
        body = [request_id, _DONE, outcome.transaction_id, outcome.value, outcome.sequence_no,
                outcome.commit_digest]  # fmt: skip
    else:
        error = None if outcome.error is None else encode_error(outcome.error)
        body = [request_id, _FAILED, error, outcome.user_error]
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_outcome(data: bytes) -> tuple[int, Outcome]:
    body = _unpack(data)
    request_id, kind, fields = body[0], body[1], body[2:]
    if kind == _DONE and len(fields) == 4:
        tx_id = None if fields[0] is None else _str(fields[0])
        value, seq, digest = _maybe_bytes(fields[1]), _maybe_int(fields[2]), _maybe_bytes(fields[3])
        return request_id, Done(tx_id, value, seq, digest)
    if kind == _FAILED and len(fields) == 2:
        error = None if fields[0] is None else decode_error(fields[0])
        return request_id, Failed(error, _maybe_bytes(fields[1]))
    raise WireError(f"unknown outcome kind or arity: {kind!r:.20}")

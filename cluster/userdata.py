"""What a client's payloads, return values and exceptions look like on the wire.

The commit machine treats them as opaque bytes (core/requests.py); the client makes them and
the worker process that runs user code takes them apart:

    payload   msgpack ["fn", cloudpickle(function)]            a transaction function
              msgpack ["sql", [[statement, params]...]]        statements, one transaction
              msgpack ["sql1", statement, params]              one statement (interactive)
              (params: core.codec.pack of the parameter list: Ion values stay exact)
    value     msgpack [0, core.codec.pack(value)]              an Ion value (a document, rows)
              msgpack [1, cloudpickle(value)]                  anything else
    error     msgpack [0, cloudpickle(exception)]              what user code raised
              msgpack [1, "Type: message"]                     ... when it does not pickle
    read      msgpack [method, core.codec.pack(args)]          a query served by a node

Invariants: `decode_value(encode_value(v))` equals v; encoding a value that neither Ion nor
pickle can carry raises `InvalidArgumentError` (so that one transaction fails, typed, and
nothing else); functions and values are unpickled only from an authenticated peer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import msgpack

from core import codec, limits
from core.errors import InvalidArgumentError, StrandError

FUNCTION, STATEMENTS, STATEMENT = "fn", "sql", "sql1"


def encode_function(fn: Callable[..., Any]) -> bytes:
    try:
        pickled = cloudpickle.dumps(fn)
    except Exception as exc:
        raise InvalidArgumentError(f"the transaction function cannot be pickled: {exc}") from exc
    return msgpack.packb([FUNCTION, pickled], use_bin_type=True)  # type: ignore[no-any-return]


def _pack_params(params: Sequence[Any]) -> bytes:
    for position, param in enumerate(params, 1):  # the ledger's own bounds, before sending
        limits.check_value(param, f"parameter {position}")
    try:
        return codec.pack(list(params))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"a parameter is not an Ion value: {exc}") from exc


def _check_text(text: str) -> str:
    """Statement text that cannot travel (a lone surrogate) fails here as it would in the
    ledger: a PartiQLSyntaxError at the offending character."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            from core.partiql.parser import parse

            parse(text)  # raises the PartiQLSyntaxError that names the position
            raise
    return text


def encode_statements(statements: Sequence[tuple[str, Sequence[Any]]]) -> bytes:
    body = [[_check_text(text), _pack_params(params)] for text, params in statements]
    return msgpack.packb([STATEMENTS, body], use_bin_type=True)  # type: ignore[no-any-return]


def encode_statement(text: str, params: Sequence[Any]) -> bytes:
    packed = [STATEMENT, _check_text(text), _pack_params(params)]
    return msgpack.packb(packed, use_bin_type=True)  # type: ignore[no-any-return]


def decode_payload(data: bytes) -> tuple[str, Any]:
    """(kind, content): the function, or [(statement, params)...], or (statement, params)."""
    try:
        kind, *rest = msgpack.unpackb(data, raw=False)
        if kind == FUNCTION:
            return kind, cloudpickle.loads(rest[0])
        if kind == STATEMENTS:
            return kind, [(str(text), codec.unpack(params)) for text, params in rest[0]]
        if kind == STATEMENT:
            return kind, (str(rest[0]), codec.unpack(rest[1]))
    except StrandError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"the request's payload cannot be decoded: {exc}") from exc
    raise InvalidArgumentError(f"unknown payload kind {kind!r:.20}")


def encode_value(value: object) -> bytes:
    try:
        return msgpack.packb([0, codec.pack(value, check_names=False)], use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        pickled = cloudpickle.dumps(value)
    except Exception as exc:
        raise InvalidArgumentError(
            f"the transaction's return value cannot be sent back ({type(value).__name__}: "
            f"{exc}); it was not committed"
        ) from exc
    return msgpack.packb([1, pickled], use_bin_type=True)  # type: ignore[no-any-return]


def decode_value(data: bytes) -> Any:
    kind, body = msgpack.unpackb(data, raw=False)
    return codec.unpack(body) if kind == 0 else cloudpickle.loads(body)


def encode_user_error(exc: BaseException) -> bytes:
    try:
        return msgpack.packb([0, cloudpickle.dumps(exc)], use_bin_type=True)  # type: ignore[no-any-return]
    except Exception:
        text = f"{type(exc).__name__}: {exc}"[:10_000]
        return msgpack.packb([1, text], use_bin_type=True)  # type: ignore[no-any-return]


def decode_user_error(data: bytes) -> BaseException:
    try:
        kind, body = msgpack.unpackb(data, raw=False)
        if kind == 0:
            error = cloudpickle.loads(body)
            if isinstance(error, BaseException):
                return error
        return StrandError(f"the transaction function raised {body!s:.10000}")
    except Exception as exc:
        return StrandError(
            f"the transaction function raised an exception that cannot be read: {exc}"
        )


def encode_read(method: str, args: Sequence[Any]) -> bytes:
    return msgpack.packb([method, codec.pack(list(args), check_names=False)], use_bin_type=True)  # type: ignore[no-any-return]


def decode_read(data: bytes) -> tuple[str, list[Any]]:
    try:
        method, args = msgpack.unpackb(data, raw=False)
        unpacked = codec.unpack(args)
    except Exception as exc:
        raise InvalidArgumentError(f"the read cannot be decoded: {exc}") from exc
    if type(method) is not str or not isinstance(unpacked, list):
        raise InvalidArgumentError("a read is [method, args]")
    return method, unpacked

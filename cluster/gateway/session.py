"""QLDB Session commands (`QLDBSession.SendCommand`, AWS JSON 1.0) served over a LedgerSet.

One request body names one command (StartSession, StartTransaction, ExecuteStatement,
FetchPage, CommitTransaction, AbortTransaction, EndSession); `SessionService.handle`
validates it, runs it and answers `(status, json_body)` in QLDB's shapes (reference
qldb-wire.md). The protocol state (sessions, expiry, pages, error mapping) lives in
`core.qldb_session`; this module adds what needs I/O: the ledgers, a thread pool, locks.

A session transaction is the ledger's interactive transaction (`begin_transaction()` ->
`execute_statement`, `commit(commit_digest=...)`, `abort`), so OCC, limits and durability are
those of `execute_lambda`; the TransactionId is the ledger's transaction id, so the client's
commit digest (which hashes it) is checked by the ledger against the statements it ran, and
the server's own digest is answered. Statement parameters arrive as Ion binary (or text) and
are read with amazon-ion's pure-Python reader (never its C extension: user bytes); results go
back as Ion binary, one value each, in pages of at most `PAGE_MAX_VALUES` values and
`PAGE_MAX_BYTES` bytes.

Invariants: every blocking ledger call runs on the executor, never on the event loop; the
commands of one session run one at a time (an asyncio lock per session: pyqldb's read-ahead
fetches pages from another thread), different sessions in parallel; at most `max_inflight`
ledger calls are queued or running, one more is CapacityExceededException (503, retried by
the driver); a malformed command is refused before anything runs and changes nothing; a
transaction the session table lets go of while open is aborted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import io
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from amazon.ion import simpleion

from cluster.ledgers import LedgerNotFoundError
from core import qldb_session as qs
from core.errors import TransactionCommittedError
from core.qldb_session import QldbSessionError, Session, SessionLimits, SessionTable, bad_request

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMANDS = (
    "StartSession",
    "StartTransaction",
    "ExecuteStatement",
    "FetchPage",
    "CommitTransaction",
    "AbortTransaction",
    "EndSession",
)
DEFAULT_MAX_INFLIGHT = 64


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How the session service behaves (see core.qldb_session for the limits' meaning)."""

    limits: SessionLimits = SessionLimits()
    page_max_bytes: int = qs.PAGE_MAX_BYTES
    page_max_values: int = qs.PAGE_MAX_VALUES
    max_inflight: int = DEFAULT_MAX_INFLIGHT


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _token(random_bytes: Callable[[int], bytes]) -> str:
    return base64.urlsafe_b64encode(random_bytes(24)).decode("ascii")


def _b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise bad_request(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not valid base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _string(command: dict[str, Any], key: str, *, min_chars: int = 1, max_chars: int) -> str:
    value = command.get(key)
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
        raise bad_request(f"{key} must be a string of {min_chars} to {max_chars} characters")
    return value


def check_parameter(parameter: object) -> bytes | str:
    """One statement parameter `{IonBinary: base64}` or `{IonText: str}`, checked for shape
    and size (cheap, on the event loop): its Ion bytes or text, not yet read."""
    if not isinstance(parameter, dict) or len(parameter) != 1:
        raise bad_request("a parameter is {IonBinary: ...} or {IonText: ...}")
    [(kind, raw)] = parameter.items()
    if kind == "IonBinary":
        data = _b64decode(raw, "IonBinary")
        if len(data) > qs.ION_BINARY_MAX_BYTES:
            raise bad_request(f"an IonBinary parameter is at most {qs.ION_BINARY_MAX_BYTES} bytes")
        return data
    if kind == "IonText":
        if not isinstance(raw, str) or len(raw.encode("utf-8", "surrogatepass")) > (
            qs.ION_TEXT_MAX_BYTES
        ):
            raise bad_request(
                f"an IonText parameter is a string of at most {qs.ION_TEXT_MAX_BYTES} bytes "
                "(send larger values as IonBinary)"
            )
        return raw
    raise bad_request(f"unknown parameter kind {kind!r}")


def load_parameter(ion: bytes | str) -> Any:
    """The Ion value of a checked parameter (CPU-bound: runs on the executor).

    Bytes from the user are read with amazon-ion's pure-Python reader: its C extension hangs
    for ever on some malformed binary (found by mutating a valid value's bytes) and has
    crashed on values it could not convert. The pure-Python reader costs ~70 us per value
    read (a 128 KB list of small integers: ~4 s), and its text reader grows faster than
    linearly, hence the lower IonText bound.
    """
    stream: io.IOBase = io.BytesIO(ion) if isinstance(ion, bytes) else io.StringIO(ion)
    try:
        return simpleion.load_python(stream)
    except RecursionError:
        raise bad_request("an Ion parameter is nested too deeply") from None
    except Exception as exc:  # amazon-ion raises IonException, ValueError, TypeError, ...
        raise bad_request(f"a parameter is not one Ion value: {exc}"[:500]) from None


def _timing(started_ns: int) -> dict[str, int]:
    return {"ProcessingTimeMilliseconds": (time.monotonic_ns() - started_ns) // 1_000_000}


def _abort_quietly(handle: Any) -> None:
    try:
        handle.abort()
    except Exception:  # the transaction may already be over; nothing to undo
        log.debug("abort of an orphaned transaction failed", exc_info=True)


class SessionService:
    """The QLDB Session commands over a LedgerSet (see the module docstring)."""

    def __init__(
        self,
        ledgers: Any,
        executor: Executor,
        config: SessionConfig = SessionConfig(),
        *,
        clock_ms: Callable[[], int] = _monotonic_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._ledgers = ledgers
        self._executor = executor
        self._config = config
        self._clock_ms = clock_ms
        self._random_bytes = random_bytes
        self._table = SessionTable(config.limits)
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight = 0

    @property
    def session_count(self) -> int:
        return len(self._table)

    # ----------------------------------------------------------------- plumbing
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the executor; CapacityExceededException when too many wait."""
        if self._inflight >= self._config.max_inflight:
            raise qs.capacity_exceeded(
                f"Capacity exceeded: {self._inflight} ledger calls are in flight; retry"
            )
        self._inflight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._inflight -= 1

    async def _abort_now(self, open_tx: qs.OpenTransaction | None) -> None:
        """Abort a detached transaction and wait for it (no capacity check: it frees)."""
        if open_tx is not None and open_tx.handle is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, _abort_quietly, open_tx.handle)

    def _abort_orphans(self) -> None:
        loop = asyncio.get_running_loop()
        for handle in self._table.take_orphans():
            loop.run_in_executor(self._executor, _abort_quietly, handle)
        for token in [t for t in self._locks if t not in self._live_tokens()]:
            if not self._locks[token].locked():
                del self._locks[token]

    def _live_tokens(self) -> set[str]:
        return {session.token for session in self._table.sessions()}

    def sweep(self) -> None:
        """Expire idle sessions and overdue transactions now (the server calls it often)."""
        busy = {token for token, lock in self._locks.items() if lock.locked()}
        self._table.sweep(self._clock_ms(), busy)
        self._abort_orphans()

    async def close(self) -> None:
        """End every session, aborting open transactions (waits for the aborts)."""
        open_handles = [s.transaction.handle for s in self._table.sessions() if s.transaction]
        self._table.clear()
        self._table.take_orphans()
        loop = asyncio.get_running_loop()
        aborts = [
            loop.run_in_executor(self._executor, _abort_quietly, h)
            for h in open_handles
            if h is not None
        ]
        if aborts:
            await asyncio.gather(*aborts, return_exceptions=True)

    # ----------------------------------------------------------------- entry point
    async def handle(self, body: bytes, access_key: str, request_id: str) -> tuple[int, Any]:
        """Serve one SendCommand request: (HTTP status, JSON body)."""
        started_ns = time.monotonic_ns()
        try:
            result = await self._dispatch(body, access_key, request_id, started_ns)
            return 200, result
        except QldbSessionError as exc:
            return exc.status, {"__type": exc.code, "Message": exc.message}
        finally:
            self._abort_orphans()

    async def _dispatch(
        self, body: bytes, access_key: str, request_id: str, started_ns: int
    ) -> dict[str, Any]:
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            raise QldbSessionError(
                "SerializationException", 400, "the body is not a JSON object"
            ) from None
        if not isinstance(request, dict):
            raise QldbSessionError("SerializationException", 400, "the body is not a JSON object")
        unknown = [k for k in request if k not in COMMANDS and k != "SessionToken"]
        if unknown:
            raise bad_request(f"unknown member {unknown[0][:64]!r} in SendCommand")
        named = [k for k in COMMANDS if k in request]
        if len(named) != 1:
            raise bad_request(f"a SendCommand names exactly one of {', '.join(COMMANDS)}")
        [name] = named
        command = request[name]
        if not isinstance(command, dict):
            raise bad_request(f"{name} must be a JSON object")
        if name == "StartSession":
            if "SessionToken" in request:
                raise bad_request("StartSession takes no SessionToken")
            return await self._start_session(command, access_key, request_id, started_ns)
        token = request.get("SessionToken")
        if not isinstance(token, str) or not 4 <= len(token) <= 1024:
            raise bad_request(f"{name} needs a SessionToken")
        session = self._table.lookup(token, access_key, self._clock_ms())
        lock = self._locks.setdefault(token, asyncio.Lock())
        async with lock:
            # it may have ended (EndSession, expiry) while this command waited
            session = self._table.lookup(token, access_key, self._clock_ms())
            try:
                handler = getattr(self, f"_{name}")
                result: dict[str, Any] = await handler(session, command, started_ns)
                return result
            finally:
                self._table.touch(session, self._clock_ms())

    # ----------------------------------------------------------------- commands
    async def _start_session(
        self, command: dict[str, Any], access_key: str, request_id: str, started_ns: int
    ) -> dict[str, Any]:
        name = _string(command, "LedgerName", max_chars=32)
        if set(command) != {"LedgerName"}:
            raise bad_request("StartSession takes only LedgerName")
        if len(self._table) >= self._config.limits.max_sessions:
            self.sweep()  # may free room; add() below decides
        ledger = await self._run(self._open_ledger, name)
        now_ms = self._clock_ms()
        session = Session(
            token=_token(self._random_bytes),
            session_id=request_id,
            ledger_name=name,
            ledger=ledger,
            access_key=access_key,
            created_ms=now_ms,
            last_used_ms=now_ms,
        )
        self._table.add(session, now_ms)
        return {"StartSession": {"SessionToken": session.token, **self._timing_of(started_ns)}}

    def _open_ledger(self, name: str) -> Any:
        try:
            info = self._ledgers.describe(name)
        except LedgerNotFoundError:
            raise bad_request(f"Ledger {name} does not exist") from None
        if info.state != "ACTIVE":
            raise bad_request(f"Ledger {name} is not active (it is {info.state})")
        try:
            return self._ledgers.open(name)
        except LedgerNotFoundError:
            raise bad_request(f"Ledger {name} does not exist") from None
        except Exception as exc:
            raise qs.error_for(exc) from None

    @staticmethod
    def _timing_of(started_ns: int) -> dict[str, Any]:
        return {"TimingInformation": _timing(started_ns)}

    async def _StartTransaction(  # noqa: N802 (QLDB's command names)
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        if command:
            raise bad_request("StartTransaction takes no members")
        self._table.check_lifetime(session, self._clock_ms())
        self._table.drop_transaction(session)  # a new transaction replaces an open one
        handle = await self._ledger_call(session.ledger.begin_transaction)
        transaction_id = handle.transaction_id
        self._table.begin(session, transaction_id, handle, self._clock_ms())
        return {
            "StartTransaction": {"TransactionId": transaction_id, **self._timing_of(started_ns)}
        }

    async def _ledger_call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._run(fn, *args)
        except QldbSessionError:
            raise
        except Exception as exc:
            error = qs.error_for(exc)
            if error.status == 500:
                log.exception("ledger call failed")
            raise error from None

    def _paged(self, session: Session, values: list[bytes]) -> dict[str, Any]:
        """The first page of `values`; the rest kept under NextPageTokens."""
        pages = qs.paginate(values, self._config.page_max_bytes, self._config.page_max_values)
        open_tx = session.transaction
        assert open_tx is not None
        tokens = [_token(self._random_bytes) for _ in pages[1:]]
        for i, page in enumerate(pages[1:]):
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            open_tx.pages[tokens[i]] = (page, following)
        return self._page(pages[0], tokens[0] if tokens else None)

    @staticmethod
    def _page(values: list[bytes], next_token: str | None) -> dict[str, Any]:
        page: dict[str, Any] = {"Values": [{"IonBinary": _b64(v)} for v in values]}
        if next_token is not None:
            page["NextPageToken"] = next_token
        return page

    async def _ExecuteStatement(  # noqa: N802
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        transaction_id = _string(command, "TransactionId", min_chars=22, max_chars=22)
        statement = _string(command, "Statement", max_chars=qs.STATEMENT_MAX_CHARS)
        raw_parameters = command.get("Parameters", [])
        if not isinstance(raw_parameters, list):
            raise bad_request("Parameters must be a list")
        if set(command) - {"TransactionId", "Statement", "Parameters"}:
            raise bad_request("ExecuteStatement takes TransactionId, Statement, Parameters")
        checked = [check_parameter(p) for p in raw_parameters]
        self._table.transaction(session, transaction_id, self._clock_ms())
        parameters = await self._run(_load_parameters, checked)
        open_tx = self._table.transaction(session, transaction_id, self._clock_ms())
        try:
            values = await self._ledger_call(_execute, open_tx.handle, statement, parameters)
        except QldbSessionError as exc:
            # past its timeout, whatever went wrong: say so (pyqldb then does not retry)
            self._table.transaction(session, transaction_id, self._clock_ms())
            if exc.code in ("InvalidSessionException", "OccConflictException"):
                self._table.drop_transaction(session)  # the transaction cannot go on
            raise
        # the statement ran; a transaction that outlived its timeout meanwhile is over
        self._table.transaction(session, transaction_id, self._clock_ms())
        return {
            "ExecuteStatement": {
                "FirstPage": self._paged(session, values),
                **self._timing_of(started_ns),
                "ConsumedIOs": {"ReadIOs": len(values), "WriteIOs": 0},
            }
        }

    async def _FetchPage(  # noqa: N802
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        transaction_id = _string(command, "TransactionId", min_chars=22, max_chars=22)
        token = _string(command, "NextPageToken", min_chars=4, max_chars=1024)
        if set(command) != {"TransactionId", "NextPageToken"}:
            raise bad_request("FetchPage takes TransactionId and NextPageToken")
        open_tx = self._table.transaction(session, transaction_id, self._clock_ms())
        entry = open_tx.pages.pop(token, None)
        if entry is None:
            raise bad_request("no page of this transaction has that NextPageToken")
        values, following = entry
        return {
            "FetchPage": {
                "Page": self._page(values, following),
                **self._timing_of(started_ns),
                "ConsumedIOs": {"ReadIOs": len(values), "WriteIOs": 0},
            }
        }

    async def _CommitTransaction(  # noqa: N802
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        transaction_id = _string(command, "TransactionId", min_chars=22, max_chars=22)
        digest = _b64decode(command.get("CommitDigest"), "CommitDigest")
        if set(command) != {"TransactionId", "CommitDigest"}:
            raise bad_request("CommitTransaction takes TransactionId and CommitDigest")
        open_tx = self._table.transaction(session, transaction_id, self._clock_ms())
        self._table.finish_transaction(session)  # committed or not, it is over
        try:
            server_digest = await self._ledger_call(_commit, open_tx.handle, digest)
        except QldbSessionError:
            self._table.orphan(open_tx.handle)  # refused: make sure it holds nothing
            raise
        return {
            "CommitTransaction": {
                "TransactionId": transaction_id,
                "CommitDigest": _b64(server_digest),
                **self._timing_of(started_ns),
                "ConsumedIOs": {"ReadIOs": 0, "WriteIOs": 0},
            }
        }

    async def _AbortTransaction(  # noqa: N802
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        if command:
            raise bad_request("AbortTransaction takes no members")
        open_tx = self._table.finish_transaction(session)
        await self._abort_now(open_tx)
        return {"AbortTransaction": self._timing_of(started_ns)}

    async def _EndSession(  # noqa: N802
        self, session: Session, command: dict[str, Any], started_ns: int
    ) -> dict[str, Any]:
        if command:
            raise bad_request("EndSession takes no members")
        open_tx = self._table.finish_transaction(session)
        self._table.remove(session)
        await self._abort_now(open_tx)
        return {"EndSession": self._timing_of(started_ns)}


def _load_parameters(checked: list[bytes | str]) -> list[Any]:
    return [load_parameter(ion) for ion in checked]


def _execute(handle: Any, statement: str, parameters: list[Any]) -> list[bytes]:
    """Run the statement in the transaction; its rows as Ion binary (on the executor)."""
    rows = handle.execute_statement(statement, *parameters)
    return [simpleion.dumps(row, binary=True) for row in rows]


def _commit(handle: Any, digest: bytes) -> bytes:
    """Commit with the client's digest checked; the server's digest (on the executor)."""
    try:
        return bytes(handle.commit(commit_digest=digest).commit_digest)
    except TransactionCommittedError:
        # committed exactly once, its answer lost on a leader change: the digest was checked
        return digest

"""QLDB Session protocol bookkeeping with no I/O: sessions, their expiry, result pages, errors.

The HTTP gateway (cluster/gateway/) speaks QLDB's session protocol (AWS JSON 1.0,
`QLDBSession.SendCommand`) in front of a ledger; this module holds the parts of it that are
pure state: the session table (who holds which token, what transaction each session has
open, when sessions and transactions expire), splitting a statement's results into pages by
size, and the mapping from Strand's typed errors to QLDB's error codes and HTTP statuses.
Time is always passed in (`now_ms`, any monotonic millisecond clock) and randomness too
(tokens are made by the caller), so the rules are tested without a clock.

QLDB's rules kept here (reference qldb-wire.md and QLDB's driver-errors page):
- a session is a token bound to one ledger and one access key; it expires after
  `idle_timeout_ms` without a request, and (like QLDB's 13-17 minutes) at the first
  StartTransaction after `max_lifetime_ms` (0: never), so an open transaction is never cut;
  an expired or unknown session is InvalidSessionException (the driver starts a new one);
- a session has at most one open transaction; a transaction older than
  `transaction_timeout_ms` is InvalidSessionException "Transaction <id> has expired"
  (pyqldb does not retry that), and it is over;
- at most `max_sessions` sessions live at once; one more is LimitExceededException, as QLDB
  answered its 3,000 active sessions quota.

Invariants: a token names at most one session; a session removed from the table (ended,
expired) is never found again; every transaction handle the table lets go of while still
open (session expired, transaction expired or replaced) is handed to the caller through
`take_orphans()` exactly once, so the caller aborts it; a page list always has at least one
page, every page but a lone oversized value stays within `max_bytes` and `max_values`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import errors

DEFAULT_IDLE_TIMEOUT_MS = 30 * 60 * 1000
DEFAULT_MAX_LIFETIME_MS = 15 * 60 * 1000  # QLDB: 13 to 17 minutes, with or without traffic
DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000
DEFAULT_MAX_SESSIONS = 3000  # QLDB's fixed quota of concurrent active sessions per ledger
PAGE_MAX_BYTES = 1 << 20  # Ion binary per page; a response stays far under AWS's limits
PAGE_MAX_VALUES = 200
STATEMENT_MAX_CHARS = 100_000
ION_BINARY_MAX_BYTES = 128 * 1024
# QLDB took 1 MB of IonText; amazon-ion's pure-Python text reader (the only safe one for
# user text, core/iontext.py) needs ~2 s for 100 KB and grows faster than linearly, so
# Strand takes less. pyqldb always sends IonBinary.
ION_TEXT_MAX_BYTES = 32 * 1024


class QldbSessionError(Exception):
    """An error answered to the client: QLDB's code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.status, self.message))


def bad_request(message: str) -> QldbSessionError:
    return QldbSessionError("BadRequestException", 400, message)


def invalid_session(message: str) -> QldbSessionError:
    return QldbSessionError("InvalidSessionException", 400, message)


def transaction_expired(transaction_id: str) -> QldbSessionError:
    # pyqldb matches "Transaction .* has expired" and then does not retry
    return invalid_session(f"Transaction {transaction_id} has expired")


def capacity_exceeded(message: str = "Capacity exceeded") -> QldbSessionError:
    return QldbSessionError("CapacityExceededException", 503, message)


def error_for(exc: BaseException) -> QldbSessionError:
    """QLDB's answer to a Strand error raised while serving a command."""
    if isinstance(exc, QldbSessionError):
        return exc
    if isinstance(exc, errors.OccConflictError):  # StaleBatchError too: retry it
        return QldbSessionError("OccConflictException", 400, str(exc) or "OCC conflict")
    if isinstance(exc, errors.TransactionExpiredError):
        return invalid_session(str(exc))
    if isinstance(exc, errors.TransactionNotFoundError):
        # the transaction is gone (its node stopped leading): a new session and a retry
        return invalid_session(f"No such transaction: {exc}")
    if isinstance(exc, errors.CapacityExceededError | errors.UnavailableError):
        return capacity_exceeded(str(exc) or "Capacity exceeded")
    if isinstance(exc, errors.NotLeaderError):
        return capacity_exceeded(f"the ledger is changing leader: {exc}")
    if isinstance(exc, errors.LedgerClosedError):
        # deleted, or stopped after a storage failure: a new session finds out which
        return invalid_session(f"the ledger was closed: {exc}")
    if isinstance(exc, errors.CorruptLedgerError):
        return QldbSessionError("InternalFailure", 500, f"the ledger cannot serve: {exc}")
    if isinstance(exc, errors.StrandError):
        return bad_request(f"{type(exc).__name__}: {exc}")
    return QldbSessionError("InternalFailure", 500, f"internal error: {type(exc).__name__}")


def paginate(
    values: Sequence[bytes], max_bytes: int = PAGE_MAX_BYTES, max_values: int = PAGE_MAX_VALUES
) -> list[list[bytes]]:
    """Split encoded values into pages of at most `max_values` values and `max_bytes` bytes
    (a value larger than `max_bytes` alone on its page); always at least one page."""
    pages: list[list[bytes]] = []
    page: list[bytes] = []
    size = 0
    for value in values:
        if page and (len(page) >= max_values or size + len(value) > max_bytes):
            pages.append(page)
            page, size = [], 0
        page.append(value)
        size += len(value)
    pages.append(page)
    return pages


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The rules a session table applies (milliseconds; 0 max lifetime: none)."""

    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS
    max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS
    transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS
    max_sessions: int = DEFAULT_MAX_SESSIONS


@dataclass(slots=True)
class OpenTransaction:
    """A session's open transaction: the ledger's handle and the pages not yet fetched."""

    transaction_id: str
    handle: Any
    started_ms: int
    # NextPageToken -> (that page's values, the token of the page after it)
    pages: dict[str, tuple[list[bytes], str | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Session:
    """One QLDB session (mutable: the table updates it)."""

    token: str
    session_id: str
    ledger_name: str
    ledger: Any
    access_key: str
    created_ms: int
    last_used_ms: int
    transaction: OpenTransaction | None = None


class SessionTable:
    """Every live session by token (see the module docstring for the rules)."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self._sessions: dict[str, Session] = {}
        self._orphans: list[Any] = []

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def add(self, session: Session, now_ms: int) -> None:
        """Admit a new session; LimitExceededException when the table is full."""
        if session.token in self._sessions:
            raise ValueError("session token already in use")
        if len(self._sessions) >= self.limits.max_sessions:
            self.sweep(now_ms)
        if len(self._sessions) >= self.limits.max_sessions:
            raise QldbSessionError(
                "LimitExceededException",
                400,
                f"this server holds at most {self.limits.max_sessions} active sessions; "
                "end sessions you no longer use",
            )
        self._sessions[session.token] = session

    def lookup(self, token: str, access_key: str, now_ms: int) -> Session:
        """The live session of `token` (used by `access_key`), or InvalidSessionException."""
        session = self._sessions.get(token)
        if session is None or session.access_key != access_key:
            raise invalid_session("No such session")
        if now_ms - session.last_used_ms > self.limits.idle_timeout_ms:
            self.remove(session)
            raise invalid_session(f"Session {session.session_id} has expired")
        return session

    def touch(self, session: Session, now_ms: int) -> None:
        session.last_used_ms = max(session.last_used_ms, now_ms)

    def remove(self, session: Session) -> None:
        """Forget the session; its open transaction (if any) becomes an orphan."""
        if self._sessions.get(session.token) is session:
            del self._sessions[session.token]
        self.drop_transaction(session)

    def check_lifetime(self, session: Session, now_ms: int) -> None:
        """At StartTransaction: a session past its maximum lifetime is over."""
        lifetime = self.limits.max_lifetime_ms
        if lifetime and now_ms - session.created_ms > lifetime:
            self.remove(session)
            raise invalid_session(f"Session {session.session_id} has expired")

    def begin(self, session: Session, transaction_id: str, handle: Any, now_ms: int) -> None:
        """Record a new open transaction (an open one before it becomes an orphan)."""
        self.drop_transaction(session)
        session.transaction = OpenTransaction(transaction_id, handle, now_ms)

    def transaction(self, session: Session, transaction_id: str, now_ms: int) -> OpenTransaction:
        """The session's open transaction named `transaction_id`; BadRequestException if
        there is none of that id, InvalidSessionException if it has expired (it is over)."""
        open_tx = session.transaction
        if open_tx is None or open_tx.transaction_id != transaction_id:
            raise bad_request(f"Transaction {transaction_id} is not open in this session")
        if now_ms - open_tx.started_ms > self.limits.transaction_timeout_ms:
            self.drop_transaction(session)
            raise transaction_expired(transaction_id)
        return open_tx

    def finish_transaction(self, session: Session) -> OpenTransaction | None:
        """Detach the open transaction (committing or aborting it is the caller's job)."""
        open_tx, session.transaction = session.transaction, None
        return open_tx

    def orphan(self, handle: Any) -> None:
        """Hand a transaction handle the caller detached back for aborting."""
        self._orphans.append(handle)

    def drop_transaction(self, session: Session) -> None:
        open_tx = self.finish_transaction(session)
        if open_tx is not None:
            self._orphans.append(open_tx.handle)

    def sweep(self, now_ms: int, busy: Collection[str] = ()) -> None:
        """Expire idle sessions and transactions past their timeout (their handles become
        orphans; the session of an expired transaction stays, as pyqldb keeps it). Sessions
        whose token is in `busy` (a command running) are left to that command."""
        for session in list(self._sessions.values()):
            if session.token in busy:
                continue
            if now_ms - session.last_used_ms > self.limits.idle_timeout_ms:
                self.remove(session)
            elif (
                session.transaction is not None
                and now_ms - session.transaction.started_ms > self.limits.transaction_timeout_ms
            ):
                # keep an empty record so the next command hears "has expired"
                expired = session.transaction
                self._orphans.append(expired.handle)
                session.transaction = OpenTransaction(
                    expired.transaction_id, None, expired.started_ms
                )

    def take_orphans(self) -> list[Any]:
        """Transaction handles let go of while open, once each (None entries skipped)."""
        orphans, self._orphans = self._orphans, []
        return [handle for handle in orphans if handle is not None]

    def clear(self) -> None:
        """Forget every session (server stop); their open transactions become orphans."""
        for session in list(self._sessions.values()):
            self.remove(session)

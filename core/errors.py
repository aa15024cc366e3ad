"""Typed errors of the Strand engine.

Every error a caller can provoke with bad input is a subclass of `StrandError`, carries a
message that names the offending thing, and is raised before anything is changed: a
transaction that raises writes nothing, a ledger that refuses to open is left as it was.
"""

from __future__ import annotations


class StrandError(Exception):
    """Base class of every error Strand raises on purpose."""


class OccConflictError(StrandError):
    """Something the transaction read changed before it committed (QLDB's OccConflictException).

    `execute_lambda` retries the whole transaction function on this error.
    """


OccConflictException = OccConflictError  # the name QLDB's drivers used


class TransactionError(StrandError):
    """The transaction cannot go on: it was committed, aborted, or used from a wrong place."""


class StaleBatchError(OccConflictError):
    """The batch holding the transaction was dropped before it committed (a replicated ledger
    changed leader, or its head was reset). Nothing of it is in the journal; retry it."""


class NotLeaderError(StrandError):
    """This replica does not lead; `leader` names the one it believes leads (or None)."""

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.leader))


class UnavailableError(StrandError):
    """The replicated ledger cannot serve now (no leader, no majority); try again later."""


class TransactionCommittedError(StrandError):
    """The transaction is in the journal, but its function's return value was lost (the
    leader that committed it died before answering, and the retry reached another one).
    It committed exactly once; retrying it under a new id would apply it twice."""

    def __init__(self, message: str, transaction_id: str, sequence_no: int | None) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id
        self.sequence_no = sequence_no

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.transaction_id, self.sequence_no))


class TransactionCrashedError(TransactionError):
    """Running the transaction crashed the process that ran it. The crash is recorded in
    the replicated log: that transaction id is refused from now on, on every node."""


class TransactionAbandonedError(TransactionError):
    """A client in doubt about this transaction id asked whether it committed; it had not,
    and the answer was recorded in the replicated log: it never will."""


class TransactionNotFoundError(TransactionError):
    """No open interactive transaction has that id here (it ended, expired, or was opened
    on a node that no longer leads): start a new transaction."""


class CapacityExceededError(StrandError):
    """The node has more transactions in flight than it accepts; retry with backoff
    (QLDB's CapacityExceededException)."""


class TransactionExpiredError(TransactionError):
    """The transaction ran longer than QLDB's 30 second limit."""


class LimitExceededError(StrandError):
    """A QLDB limit was exceeded (documents per transaction, document size, tables, indexes),
    or one of Strand's own bounds (core/limits.py)."""


class ValueOutOfRangeError(LimitExceededError):
    """A value lies beyond Strand's bounds on values (core/limits.py): an integer or decimal
    too large or too precise, a timestamp fraction too fine, containers nested too deeply, in
    a document, a statement parameter or literal, or the result of an operation on them.
    Nothing was stored or computed with it."""


class TableNotFoundError(StrandError):
    """No active table of that name (or id) exists."""


class TableExistsError(StrandError):
    """An active table of that name already exists."""


class IndexExistsError(StrandError):
    """The table already has an index on that field."""


class IndexNotFoundError(StrandError):
    """The table has no index with that id."""


class DocumentNotFoundError(StrandError):
    """No live document with that id exists in the table."""


class InvalidDocumentError(StrandError):
    """The value is not a document Strand can store (not a struct, unsupported types, ...)."""


class InvalidArgumentError(StrandError):
    """An argument has the wrong shape: a malformed block address, id, field name or bound."""


class BlockNotFoundError(StrandError):
    """No block at that address, or the address lies beyond the requested digest tip."""


class RevisionNotFoundError(StrandError):
    """The block holds no revision of that document."""


class CorruptLedgerError(StrandError):
    """Stored bytes no longer match their checksums or hashes; the ledger refuses to serve them."""


class LedgerClosedError(StrandError):
    """The ledger was closed, or stopped after a storage failure and must be reopened."""


class PartiQLError(StrandError):
    """A PartiQL statement cannot be parsed, compiled or evaluated; nothing was changed."""


class PartiQLSyntaxError(PartiQLError):
    """The statement is not PartiQL: `line` and `column` (1-based) locate the problem and
    `expected` lists what the grammar would have accepted there."""

    def __init__(
        self, message: str, line: int, column: int, expected: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.expected = expected

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.line, self.column, self.expected))


class PartiQLSemanticError(PartiQLError):
    """The statement parses but cannot be compiled: an unknown function, a wrong number of
    arguments to one, an aggregate where none is allowed, a wrong number of parameters."""


class PartiQLEvaluationError(PartiQLError):
    """Evaluation failed in error mode (a type error, division by zero, a bad cast) or a
    statement used a value in a way the ledger does not allow (a field used as a table)."""

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


class TransactionExpiredError(TransactionError):
    """The transaction ran longer than QLDB's 30 second limit."""


class LimitExceededError(StrandError):
    """A QLDB limit was exceeded (documents per transaction, document size, tables, indexes)."""


class TableNotFoundError(StrandError):
    """No active table of that name (or id) exists."""


class TableExistsError(StrandError):
    """An active table of that name already exists."""


class IndexExistsError(StrandError):
    """The table already has an index on that field."""


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

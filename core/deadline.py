"""Deadlines checked while work runs: QLDB's 30 s per transaction, enforced inside a statement.

Theory of operation. A `Deadline` is made per PartiQL statement by its transaction
(`Transaction.deadline`) with the transaction's expiry (`start_ms + timeout_ms`) and the
transaction's clock; evaluation charges it work units (`charge(units)`) in every loop whose
trip count the user controls (rows scanned and joined, group and sort steps, LIKE's text
scanned, collection elements), and it reads the clock only once per `_every` units. Reading
the clock on every row would cost more than the row; counting units costs one subtraction
and one comparison.

`_every` adapts to the work: it starts small, doubles (up to `MAX_UNITS`) while a period of
units takes under a millisecond, and shrinks in proportion when a period takes longer than
`TARGET_MS`, so the clock is read about every `TARGET_MS` whatever one unit costs. A single
charge of many units (a LIKE scanning a window of text) checks at once.

core/ stays free of clocks: the caller passes `clock_ms` (the engine's clock, a worker's,
a test's fake one) and this module never reads time itself.

Invariants: once `check` finds the clock past `expires_ms` it raises
`TransactionExpiredError` (every later check raises too); a deadline without a clock
(`unlimited`) never raises and never reads time; between two clock reads at most `_every`
units are charged, unless one charge carries more.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import TransactionExpiredError

TRANSACTION_TIMEOUT_MS = 30_000  # QLDB: a transaction must commit within 30 s of its start
TARGET_MS = 10  # read the clock about this often
START_UNITS = 16
MAX_UNITS = 1024


class Deadline:
    """A work-unit counter that reads the clock every `_every` units; one per statement,
    used by one thread."""

    __slots__ = ("_clock_ms", "_every", "_last_ms", "_left", "_message", "expires_ms")

    def __init__(
        self,
        clock_ms: Callable[[], int] | None,
        expires_ms: int,
        message: Callable[[], str],
        *,
        now_ms: int = 0,
    ) -> None:
        """`clock_ms` None: unlimited. `message`: the expiry error's text (made only when it
        is raised). `now_ms`: the time the caller read last (the start of the first period)."""
        self._clock_ms = clock_ms
        self.expires_ms = expires_ms
        self._message = message
        self._every = START_UNITS
        self._left = START_UNITS
        self._last_ms = now_ms

    @classmethod
    def unlimited(cls) -> Deadline:
        """A deadline that never passes (evaluation outside any transaction)."""
        return cls(None, 0, str)

    def charge(self, units: int = 1) -> None:
        """Account for `units` of work; checks the clock when the period's units are used."""
        left = self._left - units
        self._left = left
        if left <= 0:
            self.check()

    def check(self) -> None:
        """Read the clock now: raise TransactionExpiredError if the deadline has passed, else
        start a new period (its length adapted to how long the last one took)."""
        clock = self._clock_ms
        if clock is None:
            self._left = MAX_UNITS
            return
        now = clock()
        if now > self.expires_ms:
            self._left = 0  # every later charge checks (and raises) again
            raise TransactionExpiredError(self._message())
        elapsed = now - self._last_ms
        self._last_ms = now
        every = self._every
        if elapsed < 1:
            every = min(every * 2, MAX_UNITS)
        elif elapsed > TARGET_MS:
            every = max(1, every * TARGET_MS // elapsed)
        self._every = self._left = every

"""A disk that loses what was not synced: MemoryStorage with power cuts.

`PowerCutStorage` behaves as `core.storage.MemoryStorage` while the power is on. Each
`write` is remembered as unsynced until a `write(..., sync=True)` makes it, and every write
before it, durable (LevelDB's single write-ahead log behaves so: a synced write flushes the
log up to itself). `power_cut(keep)` then puts the store back to its durable content plus
the first `keep` unsynced writes (a crash keeps a prefix of the log, possibly none of it).
The simulator (chaos/ledger_sim.py) and the durability tests run real Replicas and the
embedded Ledger over it, so a write the protocol needs synced but did not sync is lost at
the next simulated crash, and the checkers see the consequence.

Invariants: after `power_cut(k)`, the store holds exactly what the synced writes and the
first k unsynced ones (in order) made of it; nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.storage import MemoryStorage

Write = tuple[list[tuple[bytes, bytes]], list[bytes]]


class PowerCutStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self._durable = MemoryStorage()
        self._unsynced: list[Write] = []
        self.synced_writes = 0
        self.unsynced_writes = 0

    def write(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        super().write(puts, deletes)  # checks the batch first: a bad one changes nothing
        self._unsynced.append((list(puts), list(deletes)))
        if sync:
            self.synced_writes += 1
            for pending_puts, pending_deletes in self._unsynced:
                self._durable.write(pending_puts, pending_deletes)
            self._unsynced.clear()
        else:
            self.unsynced_writes += 1

    @property
    def unsynced(self) -> int:
        """Writes a power cut now would lose."""
        return len(self._unsynced)

    def power_cut(self, keep: int = 0) -> None:
        """Lose every unsynced write but the first `keep`."""
        for pending_puts, pending_deletes in self._unsynced[:keep]:
            self._durable.write(pending_puts, pending_deletes)
        self._unsynced.clear()
        with self._lock:
            self._keys = list(self._durable._keys)
            self._values = dict(self._durable._values)

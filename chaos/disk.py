"""A disk that loses what was not synced: MemoryStorage with power cuts.

`PowerCutStorage` behaves as `core.storage.MemoryStorage` while the power is on. Each
`write` is remembered as unsynced until a `write(..., sync=True)` makes it, and every write
before it, durable (LevelDB's single write-ahead log behaves so: a synced write flushes the
log up to itself). `power_cut(keep)` then puts the store back to its durable content plus
the first `keep` unsynced writes (a crash keeps a prefix of the log, possibly none of it).
The simulator (chaos/ledger_sim.py) and the durability tests run real Replicas and the
embedded Ledger over it, so a write the protocol needs synced but did not sync is lost at
the next simulated crash, and the checkers see the consequence.

`LevelDBPowerCutStorage(path)` is the same disk for a real node process: reads are served
from memory, and only a synced write (with every unsynced write before it) reaches the
LevelDB directory, synced. A node killed with SIGKILL then comes back with exactly what a
power cut would have left it (a real LevelDB keeps unsynced writes in the page cache, which
survives the death of a process, so a missing fsync would otherwise never show). A node
runs on it when started with STRAND_TEST_STORAGE=power-cut (cluster/node.py), for the chaos
tests only: the whole store lives in memory.

Invariants: after `power_cut(k)`, the store holds exactly what the synced writes and the
first k unsynced ones (in order) made of it; nothing else. The LevelDB directory under a
`LevelDBPowerCutStorage` only ever holds a state some synced write left.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from core.storage import LevelDBStorage, MemoryStorage, merge_writes

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
            writes, self._unsynced = self._unsynced, []
            self._synced(writes)
        else:
            self.unsynced_writes += 1

    def _synced(self, writes: list[Write]) -> None:
        """Make `writes` durable: every write since the last synced one, in order, the
        last of them the synced write itself."""
        for pending_puts, pending_deletes in writes:
            self._durable.write(pending_puts, pending_deletes)

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


STORAGE_ENV = "STRAND_TEST_STORAGE"
POWER_CUT = "power-cut"


class LevelDBPowerCutStorage(PowerCutStorage):
    """A node's store that persists only synced writes (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._level = LevelDBStorage(path)
        pairs = list(self._level.scan(b"", b"\xff" * 64))
        for store in (self, self._durable):
            store._keys = [key for key, _ in pairs]  # sorted: LevelDB's order
            store._values = dict(pairs)

    def _synced(self, writes: list[Write]) -> None:
        super()._synced(writes)
        puts, deletes = merge_writes(writes)  # they all become durable: one synced write
        self._level.write(puts, deletes, sync=True)

    def close(self) -> None:
        super().close()
        self._level.close()

"""The simulated network shared by chaos/sim.py and chaos/ledger_sim.py.

Messages are queued with a random delivery time (so they reorder), dropped or duplicated
at the configured rates, and a partition splits the nodes in two groups that cannot talk
(a name in neither group, such as a client, talks to both).
All randomness comes from the `random.Random` the simulation passes in, drawn in a fixed
order (drop, duplicate, then one latency per copy), so a seed replays exactly.

`blocked` holds directed links that drop everything (a one-way partition: a -> b cut
while b -> a works).

Invariants: a message is delivered at most twice, never before its send time; nothing
crosses a partition or a blocked link, neither when it is sent nor when it is due.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SimNetwork(Generic[T]):
    def __init__(
        self,
        rng: random.Random,
        *,
        drop_rate: float,
        duplicate_rate: float,
        latency_ms: tuple[int, int],
    ) -> None:
        self.rng = rng
        self.drop_rate = drop_rate
        self.duplicate_rate = duplicate_rate
        self.latency_ms = latency_ms
        self.partition: list[Collection[str]] | None = None
        self.blocked: set[tuple[str, str]] = set()  # directed (sender, to) pairs cut
        self.dropped = 0
        self._queue: list[tuple[int, int, str, str, T]] = []  # (due, order, sender, to, item)
        self._order = 0

    def cut(self, a: str, b: str) -> bool:
        """True when a partition separates `a` from `b`, or the link a -> b is blocked."""
        if (a, b) in self.blocked:
            return True
        if self.partition is None:
            return False
        side_a = next((i for i, side in enumerate(self.partition) if a in side), None)
        side_b = next((i for i, side in enumerate(self.partition) if b in side), None)
        return side_a is not None and side_b is not None and side_a != side_b

    def send(self, now_ms: int, sender: str, to: str, item: T) -> None:
        rng = self.rng
        if self.cut(sender, to) or rng.random() < self.drop_rate:
            self.dropped += 1
            return
        copies = 2 if rng.random() < self.duplicate_rate else 1
        for _ in range(copies):
            self._order += 1
            due = now_ms + rng.randint(*self.latency_ms)
            heapq.heappush(self._queue, (due, self._order, sender, to, item))

    def due(self, now_ms: int) -> Iterator[tuple[str, T]]:
        """Pop every message due by `now_ms` that no partition stops: (to, item)."""
        while self._queue and self._queue[0][0] <= now_ms:
            _, _, sender, to, item = heapq.heappop(self._queue)
            if self.cut(sender, to):
                self.dropped += 1
                continue
            yield to, item

    def flip_partition(self, names: Sequence[str], partition_rate: float, heal_rate: float) -> None:
        """Maybe split the nodes in two random groups, or heal the current split."""
        rng = self.rng
        if self.partition is None and rng.random() < partition_rate:
            shuffled = list(names)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(shuffled) - 1)
            self.partition = [set(shuffled[:cut]), set(shuffled[cut:])]
        elif self.partition is not None and rng.random() < heal_rate:
            self.partition = None

"""A node's scrubber: when to check its stored state, and what to do about damage.

All checking and mending is core's (core/scrub.py); this module decides when it happens and
fetches what only a peer has. On a thread of its own, `Scrubber` runs a pass soon after the
node starts, then `interval_ms` after each pass ends, or at once when asked (`request`, e.g.
after a read met a corrupt entry). A pass reads in steps of `step_blocks`, yielding between
steps, so it never holds up the node's loop for long; a routine pass also sleeps between
steps so that it takes at most `paced_share` (10%) of a core, while one that was asked for
runs at full speed.

When a pass finds damage the node:
1. reports itself "damaged" (status `health`, with the findings) and gives up leadership:
   its replica is made not promotable, so it steps down and does not campaign;
2. fetches every damaged block from a peer (the leader first, then the others), as the
   peer stores it, and has core write each one that hashes to what the journal expects;
3. mends the derived entries (Merkle nodes, pointers, documents, index entries) on the
   node's loop, between two writes, against the state current then;
4. checks again; once a pass is clean, it reports "ok" and may lead again.
A node that cannot be mended (no peer holds a copy that verifies) stays "damaged" and keeps
trying at each pass; `LedgerCluster.rebuild` replaces it.

Invariants: nothing is written unless core verified it; the replica is touched only on the
node's loop (through `run_on_loop`); a damaged node never leads.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from core import scrub
from core.engine import Engine
from core.errors import StrandError

log = logging.getLogger("strand.scrub")
FetchBlocks = Callable[[list[int]], dict[int, bytes]]
RunOnLoop = Callable[[Callable[[], Any]], Any]  # runs fn on the node's loop, returns its value


class Scrubber:
    """One node's scrub thread; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval_ms: int,
        fetch_blocks: FetchBlocks,
        run_on_loop: RunOnLoop,
        set_promotable: Callable[[bool], None],
        first_delay_ms: int = 1000,
        step_blocks: int = 1024,
        paced_share: float = 0.1,
    ) -> None:
        self.engine = engine
        self.interval_ms = interval_ms
        self.fetch_blocks = fetch_blocks
        self.run_on_loop = run_on_loop
        self.set_promotable = set_promotable
        self.step_blocks = step_blocks
        self.paced_share = paced_share
        self._paced = False
        self.health = "ok"
        self.findings: list[str] = []  # the last pass's, as text (status)
        self.stats = {"passes": 0, "findings_total": 0, "blocks_repaired": 0, "entries_mended": 0}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._first_delay_ms = first_delay_ms
        self._passes = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="strand-scrub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def request(self) -> int:
        """Run a pass now (or right after the one running); returns the number the pass
        that covers this request will have (`passes` reaches it when it ends)."""
        with self._passes:
            target = self.stats["passes"] + (2 if self._busy else 1)
        self._wake.set()
        return target

    def status(self) -> dict[str, Any]:
        return {"health": self.health, "findings": list(self.findings[:20]), **self.stats}

    def _run(self) -> None:
        wait_ms: int | None = self._first_delay_ms if self.interval_ms else None
        while not self._stop.is_set():
            requested = self._wake.wait(None if wait_ms is None else wait_ms / 1000)
            self._wake.clear()
            self._paced = not requested and self.health == "ok"
            if self._stop.is_set():
                return
            with self._passes:
                self._busy = True
            try:
                self._pass()
            except StrandError as exc:  # a read that failed outright: try again next pass
                log.error("scrub of %s failed: %s", self.engine.strand_id, exc)
            finally:
                self._busy = False
                with self._passes:
                    self.stats["passes"] += 1
                    self._passes.notify_all()
            wait_ms = self.interval_ms or None

    def _check(self) -> list[scrub.Finding] | None:
        """One check of everything. A routine pass takes at most `paced_share` of a core
        (it sleeps between steps); one that was asked for, or that follows damage, runs
        at full speed (still yielding the GIL between steps)."""
        check = scrub.Scrub(self.engine)
        while not check.blocks_done:
            if self._stop.is_set():
                return None  # stopped part-way: what was not read cannot be judged
            started = time.perf_counter()
            check.step(self.step_blocks)
            busy_s = time.perf_counter() - started
            pause_s = busy_s * (1 / self.paced_share - 1) if self._paced else 0.0
            self._stop.wait(max(0.001, pause_s))
        return check.finish()

    def _pass(self) -> None:
        findings = self._check()
        if findings is None:
            return
        self.findings = [f.problem for f in findings]
        if not findings:
            if self.health != "ok":
                log.warning("node storage is whole again; it may lead")
                self.run_on_loop(lambda: self.set_promotable(True))
            self.health = "ok"
            return
        self.stats["findings_total"] += len(findings)
        if self.health == "ok":
            log.error("scrub found %d damaged entries: %s", len(findings), self.findings[:5])
            self.health = "damaged"
            self.run_on_loop(lambda: self.set_promotable(False))
        for _ in range(3):  # repair blocks, then mend what derives from them, then recheck
            blocks = scrub.damaged_blocks(findings)
            if blocks:
                fetched = self.fetch_blocks(blocks)
                written = self.run_on_loop(
                    functools.partial(scrub.repair_blocks, self.engine, fetched)
                )
                self.stats["blocks_repaired"] += len(written)
                if not written:
                    return  # no copy that verifies: stay damaged, try again next pass
            else:
                mended = self.run_on_loop(functools.partial(scrub.mend, self.engine, findings))
                self.stats["entries_mended"] += mended
            again = self._check()
            if again is None:
                return
            findings = again
            self.findings = [f.problem for f in findings]
            self.stats["findings_total"] += len(findings)
            if not findings:
                log.warning("scrub mended the node's storage; it may lead again")
                self.health = "ok"
                self.run_on_loop(lambda: self.set_promotable(True))
                return

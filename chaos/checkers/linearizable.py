"""Linearizability of single-key registers: a Wing & Gong search with memoization.

`check_register(ops)` splits a history by key (keys are independent registers, initial value
None) and, for each key, looks for a total order of its operations that respects real time (an
operation that returned before another was invoked comes first) and the sequential spec: a read
returns the current value; a write sets it; a cas succeeds iff the current value equals its
expected value, and then sets the new one.

The search is Porcupine's `checkSingle`: call and return events sorted by time (at equal times
calls first, so touching intervals count as concurrent) in a doubly linked list. The calls
before the list's first return form the window: the ops that may be linearized next. One is
linearized (stepping the model), lifted out of the list with its return, and the search goes
on; when nothing in the window can go, the search backs up a step (an explicit stack, no
recursion). A cache of (set of linearized ops, register value) prunes every configuration seen
before; the set is a bitset of ops indexed by invocation, stored shifted past its all-ones
prefix. Sound refinements keep realistic histories near linear time:
- the model sees values through the ops that test them (reads, cas expectations): every value
  none tests is one value to it, so configurations differing only in such values merge;
- forced moves: a read that matches the value now is linearized with no alternative (a read
  changes nothing, so taking it early loses nothing), and so is a write of an untested value
  while the value is untested;
- the window is tried deadline first: the op whose return comes first, or the ops setting the
  value it needs;
- a step that would leave a pending op needing a value that no pending op can set any more
  (a stale read's value once its writer is linearized and overwritten) is not taken.

Outcomes: failed reads, writes and cas are dropped (no information, no effect); an ok cas
succeeded; an "unknown" write or cas may take effect at any point after its invocation (its
return is at +infinity; an unknown cas whose expectation does not hold is a no-op, which is
no loss: not taking effect is the same as taking effect last) and unknown reads are dropped.
An unknown write or cas whose new value nobody observed (no ok read returned it, no cas expected
it) is dropped too: leaving it out of any linearization keeps the linearization valid.

Invariants: deterministic (keys sorted, no clock, no randomness); a verdict of False comes with
the longest linearizable prefix found and the operation that could not be placed; the search
gives up with ok=None after entering `max_states` configurations of one key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.checkers.history import Op

DEFAULT_MAX_STATES = 2_000_000

_READ, _WRITE, _CAS, _CAS_MAYBE = range(4)
_UNTESTED = object()  # stands for every value that no read or cas tests


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """The verdict on one key: ok is None when the search was too large to finish."""

    key: str
    ok: bool | None
    ops: int  # operations searched (after dropping failed and uninformative ones)
    states: int  # configurations the search entered
    prefix: tuple[Op, ...] = ()  # on failure: the longest linearizable prefix, in order
    stuck: Op | None = None  # on failure: the operation that could not be placed after it
    value: Any = None  # on failure: the register's value after the prefix
    explanation: str = ""
    stranded: Op | None = None  # an op that placing `stuck` would leave no value to see


@dataclass(frozen=True, slots=True)
class LinearizabilityResult:
    """ok: True when every key is linearizable, False when one is not, None when no key
    failed but some search gave up. key and explanation name the first key that failed."""

    ok: bool | None
    keys: Mapping[str, KeyVerdict]
    key: str | None = None
    explanation: str = ""


def check_register(
    ops: Sequence[Op], *, max_states: int = DEFAULT_MAX_STATES
) -> LinearizabilityResult:
    """Check a history of register operations, each key independently."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    verdicts = {key: check_key(key, by_key[key], max_states) for key in sorted(by_key)}
    for verdict in verdicts.values():
        if verdict.ok is False:
            return LinearizabilityResult(False, verdicts, verdict.key, verdict.explanation)
    for verdict in verdicts.values():
        if verdict.ok is None:
            return LinearizabilityResult(None, verdicts, verdict.key, verdict.explanation)
    return LinearizabilityResult(True, verdicts)


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a value (lists, dicts and sets from a JSON-ish workload)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((_freeze(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, set):
        return frozenset(_freeze(v) for v in value)
    return value


def _observed(ops: Sequence[Op]) -> set[Any]:
    """The values some operation tests: results of ok reads, expectations of cas."""
    observed: set[Any] = set()
    for op in ops:
        if op.kind == "read" and op.outcome == "ok":
            observed.add(_freeze(op.result))
        elif op.kind == "cas" and op.outcome != "fail":
            observed.add(_freeze(op.value[0]))
    return observed


def _relevant(ops: Sequence[Op], observed: set[Any]) -> list[Op]:
    """The operations that constrain the search, per the module docstring."""
    kept = []
    for op in ops:
        if op.outcome == "fail" or (op.kind == "read" and op.outcome != "ok"):
            continue
        if op.outcome == "unknown":
            new = op.value if op.kind == "write" else op.value[1]
            if _freeze(new) not in observed:
                continue
        kept.append(op)
    return kept


def _impossible(ops: Sequence[Op]) -> Op | None:
    """An ok read or cas needing a value that no write or cas could have set, if any."""
    written: set[Any] = {None}
    for op in ops:
        if op.kind == "write":
            written.add(_freeze(op.value))
        elif op.kind == "cas":
            written.add(_freeze(op.value[1]))
    for op in ops:
        if op.outcome != "ok":
            continue
        if op.kind == "read" and _freeze(op.result) not in written:
            return op
        if op.kind == "cas" and _freeze(op.value[0]) not in written:
            return op
    return None


def check_key(key: str, history: Sequence[Op], max_states: int = DEFAULT_MAX_STATES) -> KeyVerdict:
    """Search for a linearization of one key's operations (all of `history` is on `key`)."""
    observed = _observed(history)
    ops = _relevant(history, observed)
    bad = _impossible(ops)
    if bad is not None:
        needed = bad.result if bad.kind == "read" else bad.value[0]
        why = f"key {key!r}: {bad.describe()} needs the value {needed!r}, which nothing wrote"
        return KeyVerdict(key, False, len(ops), 0, (), bad, None, why)
    # Events sorted by time, calls before returns at equal times; unknown returns last.
    events: list[tuple[int, int, int, int]] = []  # (after_all, time, is_return, op)
    for i, op in enumerate(ops):
        events.append((0, op.invoke_ns, 0, i))
        if op.outcome == "ok":
            assert op.complete_ns is not None
            events.append((0, op.complete_ns, 1, i))
        else:
            events.append((1, 0, 1, i))
    events.sort()
    order = [i for _, _, is_return, i in events if not is_return]  # ops by invocation
    ops = [ops[i] for i in order]
    rank = {old: new for new, old in enumerate(order)}
    n = len(ops)
    # Event ids: the call of op i is i, its return n + i, the list head 2n; -1 ends the list.
    sequence = [rank[i] + (n if is_return else 0) for _, _, is_return, i in events]
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    previous = head
    for event in sequence:
        nxt[previous] = event
        prv[event] = previous
        previous = event
    # The model, over interned values. Values no operation tests are all alike to the model,
    # so they share one id (0), which is also the initial value's unless something reads None.
    interned: dict[Any, int] = {_UNTESTED: 0}

    def intern(value: Any) -> int:
        frozen = _freeze(value)
        if frozen not in observed:
            return 0
        return interned.setdefault(frozen, len(interned))

    search = _Search(n, nxt, prv, intern(None))
    for i, op in enumerate(ops):
        if op.kind == "read":
            search.code[i], search.arg[i] = _READ, intern(op.result)
        elif op.kind == "write":
            search.code[i], search.new[i] = _WRITE, intern(op.value)
        else:
            search.code[i] = _CAS if op.outcome == "ok" else _CAS_MAYBE
            search.arg[i], search.new[i] = intern(op.value[0]), intern(op.value[1])
    ok = search.run(len(interned), max_states)
    states = search.states
    if ok is None:
        why = f"key {key!r}: unknown: search too large (more than {max_states} states, {n} ops)"
        return KeyVerdict(key, None, n, states, explanation=why)
    if ok:
        return KeyVerdict(key, True, n, states)
    prefix = tuple(ops[i] for i in search.best)
    stuck = ops[search.stuck]
    value = _replay(prefix)
    tail = "; ".join(op.describe() for op in prefix[-3:]) or "nothing"
    j = search.stranded()
    stranded = ops[j] if j >= 0 else None
    if stranded is not None:
        wanted = stranded.result if stranded.kind == "read" else stranded.value[0]
        because = f": {stranded.describe()} could then never see {wanted!r}"
    elif stuck.kind != "write":
        because = f" on the value {value!r}"
    else:
        because = ""
    why = (
        f"key {key!r}: not linearizable; the longest linearizable prefix has {len(prefix)} of"
        f" {n} ops (ending: {tail}), leaving the value {value!r}; then {stuck.describe()}"
        f" could not be placed{because}"
    )
    return KeyVerdict(key, False, n, states, prefix, stuck, value, why, stranded)


class _Search:
    """The depth-first search over one key's event list (see the module docstring).

    Event ids: the call of op i is i, its return n + i, the list head 2n; -1 ends the list.
    The window of a configuration is the run of calls before the list's first return (the
    ops that may go next); that return's op is the deadline (it must go before any other).
    """

    def __init__(self, n: int, nxt: list[int], prv: list[int], initial: int) -> None:
        self.n, self.nxt, self.prv, self.initial = n, nxt, prv, initial
        self.code = [0] * n
        self.arg = [0] * n  # read: the value read; cas: the expected value
        self.new = [0] * n  # write, cas: the value set
        self.cache: set[int] = set()
        self.states = 0  # configurations entered
        self.needs: list[int] = []  # by value: pending ops that need it (reads, ok cas)
        self.sets: list[int] = []  # by value: pending ops that may set it
        self.best: list[int] = []  # the longest linearizable prefix found
        self.stuck = -1  # the deadline op where it got stuck

    def after(self, i: int, state: int) -> int:
        """The value after op i from `state`, or -1 if op i cannot step from it."""
        c = self.code[i]
        if c == _WRITE:
            return self.new[i]
        if c == _READ:
            return state if self.arg[i] == state else -1
        if c == _CAS:
            return self.new[i] if self.arg[i] == state else -1
        return self.new[i] if self.arg[i] == state else state  # _CAS_MAYBE

    def candidates(self, state: int) -> list[int]:
        """The window's ops that can step from `state`, the first to try last in the list.

        A read that can step is the only candidate: taking it now loses nothing (it does not
        change the value, and every op that must precede it already has). So is a write of an
        untested value while the value is untested (0): in a linearization placing it later,
        nothing tests the register between it and the next write (reads and ok cas test only
        tested values; an unknown cas there was a no-op and may as well go last), so moving it
        here changes no other op's view.
        Otherwise the ops that make the deadline possible come first: the deadline itself, or
        those that set the value it needs; then the rest in invocation order."""
        n, nxt, arg = self.n, self.nxt, self.arg
        steps: list[int] = []
        e = nxt[2 * n]
        while 0 <= e < n:
            value = self.after(e, state)
            if value >= 0:
                if self.code[e] == _READ or (value == state == 0 and self.code[e] == _WRITE):
                    return [e]
                steps.append(e)
            e = nxt[e]
        if e < 0:  # nothing left: the search is over
            return []
        deadline = e - n
        need = arg[deadline] if self.code[deadline] in (_READ, _CAS) else -1
        if need == state:
            need = -1
        first = [e for e in steps if e == deadline or self.after(e, state) == need]
        rest = [e for e in steps if e != deadline and self.after(e, state) != need]
        return [*reversed(rest), *reversed(first)]

    def count(self, i: int, delta: int) -> None:
        """Add delta to the pending uses of op i's values (needs: reads and cas; sets)."""
        c = self.code[i]
        if c in (_READ, _CAS):
            self.needs[self.arg[i]] += delta
        if c != _READ:
            self.sets[self.new[i]] += delta

    def strands(self, i: int, state: int, after: int) -> bool:
        """Whether taking op i (already uncounted) from `state` leaves some pending op needing
        a value that nothing pending can set any more: then no linearization follows."""
        needs, sets = self.needs, self.sets
        if after != state and needs[state] and not sets[state]:
            return True
        v = self.new[i]
        return self.code[i] != _READ and after != v and needs[v] > 0 and not sets[v]

    def stranded(self) -> int:
        """After a failed run: an op pending after the best prefix that placing the stuck op
        next would strand (see `strands`), or -1."""
        done = set(self.best)
        state = self.initial
        for i in self.best:
            state = self.after(i, state)
        d = self.stuck
        after = self.after(d, state)
        if after < 0:
            return -1
        pending = [i for i in range(self.n) if i not in done and i != d]
        for value in (state, self.new[d]):
            if value == after:
                continue
            if any(self.code[i] != _READ and self.new[i] == value for i in pending):
                continue
            for i in pending:
                if self.code[i] in (_READ, _CAS) and self.arg[i] == value:
                    return i
        return -1

    def run(self, values: int, max_states: int) -> bool | None:
        """True: linearizable; False: not (see best, stuck); None: gave up at max_states."""
        n, nxt, prv, cache = self.n, self.nxt, self.prv, self.cache
        head = 2 * n
        path: list[tuple[int, int]] = []  # (op linearized, value before it)
        state = self.initial
        linearized = 0  # bit i: op i is linearized; every op below `low` is
        low = 0
        self.needs, self.sets = [0] * values, [0] * values
        for i in range(n):
            self.count(i, 1)
        frames = [self.candidates(state)]
        while nxt[head] != -1:
            tries = frames[-1]
            while tries:
                i = tries.pop()
                after = self.after(i, state)
                self.count(i, -1)
                if self.strands(i, state, after):
                    self.count(i, 1)
                    continue
                grown = linearized | (1 << i)
                grown_low = ((grown + 1) & ~grown).bit_length() - 1 if i == low else low
                memo = ((grown >> grown_low) * values + after) * (n + 1) + grown_low
                if memo in cache:
                    self.count(i, 1)
                    continue
                if self.states >= max_states:
                    return None
                self.states += 1
                cache.add(memo)
                path.append((i, state))
                state, linearized, low = after, grown, grown_low
                ret = i + n  # lift the call and its return out of the list
                nxt[prv[i]] = nxt[i]
                prv[nxt[i]] = prv[i]
                nxt[prv[ret]] = nxt[ret]
                if nxt[ret] != -1:
                    prv[nxt[ret]] = prv[ret]
                frames.append(self.candidates(state))
                break
            else:  # every way on from here fails: back up one step
                if len(path) > len(self.best) or self.stuck < 0:
                    e = nxt[head]
                    while 0 <= e < n:
                        e = nxt[e]
                    self.best, self.stuck = [j for j, _ in path], e - n
                frames.pop()
                if not path:
                    return False
                i, state = path.pop()
                self.count(i, 1)
                linearized &= ~(1 << i)
                low = min(low, i)
                ret = i + n  # unlift: the return first, then the call
                nxt[prv[ret]] = ret
                if nxt[ret] != -1:
                    prv[nxt[ret]] = ret
                nxt[prv[i]] = i
                prv[nxt[i]] = i
        return True


def _replay(prefix: Sequence[Op]) -> Any:
    """The register's value after applying `prefix` in order (for reports)."""
    value: Any = None
    for op in prefix:
        if op.kind == "write":
            value = op.value
        elif op.kind == "cas" and (op.outcome == "ok" or _freeze(value) == _freeze(op.value[0])):
            value = op.value[1]
    return value

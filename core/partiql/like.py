"""PartiQL's LIKE: `value LIKE pattern [ESCAPE escape]`, in time linear in the text for a
pattern of literals and `%`, and O(len(text) * len(pattern)) at worst, with its work charged.

Theory of operation. A pattern is tokenised once (cached): a literal character (the escape
character makes the next one literal), `_` (any one character) and `%` (any run, runs of %
folded). Split at `%`, it is a list of segments of fixed length. Without `%` the one segment
must match the whole text. Otherwise the first segment must match a prefix, the last one a
suffix that does not overlap it, and the middle segments must occur in order, without
overlapping, between the two; placing each middle segment at its leftmost occurrence is
optimal (any match can be shifted left to it), so nothing is ever tried twice: no
backtracking, unlike a regex of the whole pattern or a greedy matcher that returns to the
last `%` (O(n * m) Python steps on `'%' + 'a' * m + 'b%'`).

A segment of literals is found with `str.find`; a short segment with `_` with a compiled
regex of literals and `.` (DOTALL) with no quantifier, which tries each start position for at
most the segment's length k (O(n * k), k <= SHIFT_AND_LENGTH); a longer one by shift-and
over Python ints (one step per text character on k-bit masks). Every search runs in windows
of at most `WINDOW_STEPS` steps, each charged to the caller's `charge` before it runs (unless
it is smaller than SMALL_STEPS: the row the LIKE is evaluated for pays for that), so a
deadline (core.deadline) stops a long match between two windows.

Invariants: the result is exactly the PartiQL semantics of the greedy matcher it replaces
(tests/test_deadlines.py checks it against Python's `re.fullmatch` of the translated
pattern): `_` is one character (a code point, newlines included), `%` any run; an escape that
is not one character, or a pattern ending with its escape character, is an error in every
mode; a known operand that is not text fails(mode); then MISSING gives MISSING, null null.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import PartiQLEvaluationError
from core.partiql.data import MISSING
from core.partiql.values import TEXT, fail, is_null, is_unknown, text_of, type_name

WINDOW_STEPS = 1 << 16  # the most character steps one search call makes between charges
SMALL_STEPS = 256  # less work than this rides on the unit of the row the LIKE is done for
SHIFT_AND_LENGTH = 32  # a longer segment with `_` is searched by shift-and, not by regex

Charge = Callable[[int], None]


def _free(units: int) -> None:
    """The charge of a LIKE evaluated outside any deadline."""


class _NoEscape:
    """The `escape` of a LIKE without ESCAPE (a null escape is `ESCAPE NULL`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ESCAPE"


NO_ESCAPE: Any = _NoEscape()

_ANY_ONE: Any = object()  # `_` in a LIKE pattern
_ANY_MANY: Any = object()  # `%`


def tokens(pattern: str, escape: str | None) -> list[Any]:
    """A LIKE pattern as literal characters, _ANY_ONE and _ANY_MANY (runs of % folded)."""
    out: list[Any] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape:
            i += 1
            if i == len(pattern):
                raise PartiQLEvaluationError("LIKE pattern ends with its escape character")
            out.append(pattern[i])
        elif c == "%":
            if not out or out[-1] is not _ANY_MANY:
                out.append(_ANY_MANY)
        elif c == "_":
            out.append(_ANY_ONE)
        else:
            out.append(c)
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class _Segment:
    """A run of pattern tokens without `%`: `literal` when it has no `_`, else `regex`; a
    long one with `_` also has the bit masks of a shift-and search (`masks` by character,
    `other` for any other character: the `_` positions)."""

    length: int
    literal: str | None
    regex: re.Pattern[str] | None
    masks: dict[str, int] | None = None
    other: int = 0

    @property
    def step_cost(self) -> int:
        """Steps one text position may take: a regex compares up to every character of the
        segment, a shift-and step works on `length` bits."""
        if self.regex is None:
            return 1
        return self.length if self.masks is None else 1 + self.length // 32

    def at(self, text: str, pos: int) -> bool:
        """Whether the segment matches text[pos : pos + length] (the caller checked that
        those characters exist)."""
        if self.regex is None:
            return text.startswith(self.literal or "", pos)
        return self.regex.match(text, pos) is not None

    def find(self, text: str, start: int, end: int, charge: Charge) -> int:
        """The leftmost position p in [start, end - length] where the segment matches, or -1;
        window by window, each charged before it runs."""
        k = self.length
        last = end - k
        if k == 0:
            return start if start <= last else -1
        if self.masks is not None:
            return self._shift_and(text, start, end, charge)
        per = self.step_cost
        window = max(1, WINDOW_STEPS // per)
        pos = start
        while pos <= last:
            stop = min(last, pos + window - 1)  # start positions pos..stop
            steps = (stop - pos + 1) * per
            if steps > SMALL_STEPS:
                charge(steps)
            if self.regex is None:
                found = text.find(self.literal or "", pos, stop + k)
            else:
                hit = self.regex.search(text, pos, stop + k)
                found = -1 if hit is None else hit.start()
            if found >= 0:
                return found
            pos = stop + 1
        return -1

    def _shift_and(self, text: str, start: int, end: int, charge: Charge) -> int:
        """`find` for a long segment with `_`: bit i of `state` is set while the text read so
        far ends with the segment's first i + 1 tokens; O(len(text) * length / 30) machine
        steps however the text repeats (a regex could compare `length` characters at every
        position)."""
        masks, other = self.masks or {}, self.other
        high = 1 << (self.length - 1)
        per = self.step_cost
        window = max(1, WINDOW_STEPS // per)
        state = 0
        pos = start
        while pos < end:
            stop = min(end, pos + window)
            steps = (stop - pos) * per
            if steps > SMALL_STEPS:
                charge(steps)
            for i in range(pos, stop):
                state = ((state << 1) | 1) & masks.get(text[i], other)
                if state & high:
                    return i - self.length + 1
            pos = stop
        return -1


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled LIKE pattern: its segments between `%`s; `open` when it has a `%`."""

    segments: tuple[_Segment, ...]
    open: bool

    def match(self, text: str, charge: Charge = _free) -> bool:
        """Whether the whole of `text` matches (see the module docstring)."""
        segments, n = self.segments, len(text)
        first, last = segments[0], segments[-1]
        if first.length + last.length > SMALL_STEPS:
            charge(first.length + last.length)
        if not self.open:
            return n == first.length and first.at(text, 0)
        if first.length + last.length > n:
            return False
        if not first.at(text, 0) or not last.at(text, n - last.length):
            return False
        pos, end = first.length, n - last.length
        for segment in segments[1:-1]:
            found = segment.find(text, pos, end, charge)
            if found < 0:
                return False
            pos = found + segment.length
        return True


def _segment(items: list[Any]) -> _Segment:
    if all(t is not _ANY_ONE for t in items):
        return _Segment(len(items), "".join(items), None)
    source = "".join("." if t is _ANY_ONE else re.escape(t) for t in items)
    regex = re.compile(source, re.DOTALL)
    if len(items) <= SHIFT_AND_LENGTH:
        return _Segment(len(items), None, regex)
    other = sum(1 << i for i, t in enumerate(items) if t is _ANY_ONE)
    masks: dict[str, int] = {}
    for i, t in enumerate(items):
        if t is not _ANY_ONE:
            masks[t] = masks.get(t, other) | (1 << i)
    return _Segment(len(items), None, regex, masks, other)


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str, escape: str | None) -> Pattern:
    """The pattern's segments (cached); raises PartiQLEvaluationError for a pattern ending
    with its escape character."""
    runs: list[list[Any]] = [[]]
    for token in tokens(pattern, escape):
        if token is _ANY_MANY:
            runs.append([])
        else:
            runs[-1].append(token)
    if len(runs) == 1:
        return Pattern((_segment(runs[0]),), False)
    middle = [_segment(run) for run in runs[1:-1] if run]
    return Pattern((_segment(runs[0]), *middle, _segment(runs[-1])), True)


def like(value: Any, pattern: Any, escape: Any, mode: str, charge: Charge = _free) -> Any:
    """`value LIKE pattern [ESCAPE escape]` (escape NO_ESCAPE when absent; null or MISSING
    propagate like any operand). An escape that is not a single character is an error in
    every mode. `charge` is given the work done, in character steps, as it goes."""
    operands = (value, pattern) if escape is NO_ESCAPE else (value, pattern, escape)
    for v in operands:
        if not is_unknown(v) and type_name(v) not in TEXT:
            return fail(mode, f"LIKE needs strings, not {type_name(v)}")
    if any(v is MISSING for v in operands):
        return MISSING
    if any(is_null(v) for v in operands):
        return None
    esc = None if escape is NO_ESCAPE else text_of(escape)
    if esc is not None and len(esc) != 1:
        raise PartiQLEvaluationError("a LIKE escape must be a single character")
    return compile_pattern(text_of(pattern), esc).match(text_of(value), charge)

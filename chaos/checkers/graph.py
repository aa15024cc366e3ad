"""Dependency graphs between transactions, their cycles, and Elle's names for them.

Edges are typed: "ww" (write-write: the later version's writer depends on the earlier one's),
"wr" (write-read: a reader depends on the writer of what it read), "rw" (read-write, an
anti-dependency: a reader precedes the writer of the next version) and "rt" (real time: one
transaction completed before the other was invoked). Each edge remembers the key it came from.

`find_cycles` takes every strongly connected component (iterative Tarjan) and reports one cycle
in each, the most telling one, searched in Elle's order: a cycle of ww edges only (G0), then of
ww and wr (G1c), then with exactly one rw (G-single), then any (G2). Real-time edges are tried
only when no cycle of data edges exists in the component; a cycle using one is named with a
"-realtime" suffix. Invariants: no self-loops; deterministic output (nodes visited in ascending
order, successors in insertion order); no recursion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PREFERENCE = ("ww", "wr", "rt", "rw")  # which label to print when an edge has several
MAX_SINGLE_RW_SEARCHES = 500  # breadth-first searches per component for a G-single cycle


@dataclass(frozen=True, slots=True)
class Cycle:
    """nodes[i] -> nodes[i + 1] (wrapping) through an edge labelled edges[i] on keys[i]."""

    kind: str
    nodes: tuple[int, ...]
    edges: tuple[str, ...]
    keys: tuple[str, ...]

    def describe(self) -> str:
        steps = [
            f"T{a} -{e}({k})->" if k else f"T{a} -{e}->"
            for a, e, k in zip(self.nodes, self.edges, self.keys, strict=True)
        ]
        return " ".join(steps) + f" T{self.nodes[0]}"


class DependencyGraph:
    """succ[a][b] maps each edge kind from a to b to the first key that produced it."""

    def __init__(self) -> None:
        self.succ: dict[int, dict[int, dict[str, str]]] = {}

    def add(self, a: int, b: int, kind: str, key: str = "") -> None:
        if a != b:
            self.succ.setdefault(a, {}).setdefault(b, {}).setdefault(kind, key)

    def edges(self) -> int:
        return sum(len(kinds) for out in self.succ.values() for kinds in out.values())


def components(nodes: Iterable[int], succ: Mapping[int, Sequence[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components with more than one node, each sorted."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[list[int]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(succ.get(root, ())))]
        while work:
            v, successors = work[-1]
            for w in successors:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _path(succ: Mapping[int, Sequence[int]], start: int, goal: int) -> list[int] | None:
    """The shortest path start .. goal (nodes, both ends included), breadth first."""
    parent: dict[int, int] = {start: start}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in succ.get(v, ()):
            if w == goal:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), goal] if goal != start else list(reversed(path))
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return None


def _restrict(graph: DependencyGraph, nodes: set[int], allowed: set[str]) -> dict[int, list[int]]:
    return {
        a: [
            b for b, kinds in graph.succ.get(a, {}).items() if b in nodes and kinds.keys() & allowed
        ]
        for a in sorted(nodes)
    }


def _any_cycle(graph: DependencyGraph, nodes: set[int], allowed: set[str]) -> list[int] | None:
    sub = _restrict(graph, nodes, allowed)
    for component in components(sorted(nodes), sub):
        inside = set(component)
        local = {a: [b for b in sub[a] if b in inside] for a in component}
        return _path(local, component[0], component[0])
    return None


def _single_rw_cycle(graph: DependencyGraph, nodes: set[int], extra: set[str]) -> list[int] | None:
    """A cycle with exactly one rw edge (a -> b) closed by a path b .. a of other edges."""
    sub = _restrict(graph, nodes, {"ww", "wr"} | extra)
    searches = 0
    for a in sorted(nodes):
        for b, kinds in graph.succ.get(a, {}).items():
            if b not in nodes or "rw" not in kinds:
                continue
            if searches >= MAX_SINGLE_RW_SEARCHES:
                return None
            searches += 1
            back = _path(sub, b, a)
            if back is not None:
                return [a, *back[:-1]]
    return None


def _label(graph: DependencyGraph, cycle: list[int], allowed: set[str]) -> Cycle:
    edges: list[str] = []
    keys: list[str] = []
    for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        kinds = graph.succ[a][b]
        kind = next(k for k in PREFERENCE if k in kinds and k in allowed)
        edges.append(kind)
        keys.append(kinds[kind])
    rw = edges.count("rw")
    if rw == 0:
        name = "G0" if all(e in ("ww", "rt") for e in edges) else "G1c"
    else:
        name = "G-single" if rw == 1 else "G2"
    if "rt" in edges:
        name += "-realtime"
    return Cycle(name, tuple(cycle), tuple(edges), tuple(keys))


def _rotate(cycle: list[int]) -> list[int]:
    """Rotate a cycle to open at its smallest node (stable reports)."""
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _classified_cycle(graph: DependencyGraph, inside: set[int]) -> Cycle | None:
    for extra in (set(), {"rt"}):
        data = {"ww", "wr"} | extra
        for allowed in ({"ww"} | extra, data):
            cycle = _any_cycle(graph, inside, allowed)
            if cycle is not None:
                return _label(graph, _rotate(cycle), allowed)
        cycle = _single_rw_cycle(graph, inside, extra)
        if cycle is None:
            cycle = _any_cycle(graph, inside, data | {"rw"})
        if cycle is not None:
            return _label(graph, _rotate(cycle), data | {"rw"})
    return None


def find_cycles(graph: DependencyGraph) -> list[Cycle]:
    """One cycle per strongly connected component, classified as in the module docstring."""
    nodes = sorted(set(graph.succ) | {b for out in graph.succ.values() for b in out})
    full = {a: list(graph.succ.get(a, {})) for a in nodes}
    found = []
    for component in components(nodes, full):
        cycle = _classified_cycle(graph, set(component))
        if cycle is not None:  # always, for a component of two nodes or more
            found.append(cycle)
    return found

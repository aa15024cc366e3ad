"""Serializability of list-append histories, in the manner of Elle (Kingsbury & Alvaro).

Each key holds a list; transactions append elements (unique per key across the history) and
read whole lists. Because a read shows every element in order, reads reveal the version order
of each key: the longest read of a key is taken as its order, and every other read must be a
prefix of it. `check_append(txns)` infers those orders from the reads of ok transactions and
reports, each as an `Anomaly` naming the transactions (indices into `txns`) involved:

- "incompatible-order": a read that is not a prefix of the key's longest read, or an order
  splitting a transaction's appends to the key or changing their order;
- "duplicate-elements": a read showing an element twice;
- "phantom": a read showing an element no transaction appended;
- "G1a" (aborted read): a read showing an element appended by a failed transaction;
- "G1b" (intermediate read): a read ending at an element another transaction appended to the
  key but then followed with another append of its own;
- "internal": within one transaction, a read that disagrees with its own earlier read of the
  key and its own appends since (or, with no earlier read, does not end with those appends),
  or that shows an element the transaction appends only later;
- cycles in the dependency graph (chaos.checkers.graph), one per strongly connected
  component: "G0" (ww edges only), "G1c" (ww and wr), "G-single" (exactly one rw), "G2"
  (more rw); with `realtime=True` real-time edges are added (strict serializability) and a
  cycle that needs one is suffixed "-realtime" (e.g. a read going backwards in time).

Graph nodes are the ok transactions, plus the unknown ones an ok read proves committed (one of
their appends was seen). Edges: ww (T1 appended x_i, T2 appended x_i+1), wr (T2 read a list
whose last element T1 appended), rw (T1 read a list ending at x_i, or the empty list, and T2
appended x_i+1; or T2, committed, appended an element that no read of the key shows: it came
after every read). wr uses a transaction's external reads only (a key's reads before its own
append to that key); rw uses only reads that fit the version order (any of them: a read after
the reader's own appends still shows all that came before). Appends that no read shows get no
ww edges (their order is unknown). Elements must be hashable.

Invariants: pure and deterministic (no clock, no randomness, output ordered by input); sound:
every anomaly reported is a real violation of (strict, with realtime) serializability, given
unique appends. Not complete: a violation that no read reveals goes unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.checkers.graph import DependencyGraph, find_cycles
from chaos.checkers.history import Txn


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly: for a cycle, txns[i] -> txns[i + 1] (wrapping) is an edge edges[i]."""

    kind: str
    txns: tuple[int, ...]
    key: str | None
    explanation: str
    edges: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    """ok is True iff no anomaly was found."""

    ok: bool
    anomalies: tuple[Anomaly, ...]
    orders: Mapping[str, tuple[Any, ...]]  # the inferred version order of each key
    nodes: int  # transactions in the dependency graph
    edges: int  # typed edges in it

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(a.kind for a in self.anomalies)


@dataclass(frozen=True, slots=True)
class _Read:
    txn: int
    key: str
    value: tuple[Any, ...]
    external: bool  # before any append of its own transaction to the key


def check_append(txns: Sequence[Txn], *, realtime: bool = False) -> AppendResult:
    """Check a list-append history for serializability (strict with realtime=True)."""
    appender: dict[tuple[str, Any], int] = {}
    appends: dict[tuple[int, str], list[Any]] = {}  # each transaction's appends to a key
    for i, txn in enumerate(txns):
        for m in txn.ops:
            if m.kind == "append":
                if (m.key, m.value) in appender:
                    raise ValueError(f"element {m.value!r} appended to {m.key!r} twice")
                appender[(m.key, m.value)] = i
                appends.setdefault((i, m.key), []).append(m.value)
    anomalies: list[Anomaly] = []
    reads: list[_Read] = []
    for i, txn in enumerate(txns):
        if txn.outcome == "ok":
            anomalies.extend(_internal(i, txn))
            reads.extend(_reads(i, txn))
    clean = []
    for r in reads:
        if len(set(r.value)) != len(r.value):
            why = f"T{r.txn} read {r.key!r} = {_show(r.value)}, with an element twice"
            anomalies.append(Anomaly("duplicate-elements", (r.txn,), r.key, why))
        else:
            clean.append(r)
    orders: dict[str, tuple[Any, ...]] = {}
    longest_reader: dict[str, int] = {}
    for r in clean:
        if len(r.value) > len(orders.get(r.key, ())) or r.key not in orders:
            orders[r.key], longest_reader[r.key] = r.value, r.txn
    fits = [r.value == orders[r.key][: len(r.value)] for r in clean]
    misfits: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
    for r, fit in zip(clean, fits, strict=True):
        if not fit:
            misfits.setdefault((r.key, r.value), []).append(r.txn)
    for (key, value), readers in misfits.items():
        order = orders[key]
        at = next(i for i, (x, y) in enumerate(zip(value, order, strict=False)) if x != y)
        why = (
            f"{_ts(readers)} read {key!r} = {_show(value)}, which has {value[at]!r} at index"
            f" {at} where {_show(order)} read by T{longest_reader[key]} has {order[at]!r}"
        )
        txns_involved = (*_unique(readers), longest_reader[key])
        anomalies.append(Anomaly("incompatible-order", txns_involved, key, why))
    # Every element any read shows: the orders, and the reads that do not fit them.
    shown = [(key, e) for key, order in orders.items() for e in order]
    shown += [(key, e) for key, value in misfits for e in value]
    readers_of = _Readers(clean, fits, orders)
    anomalies.extend(_bad_elements(txns, dict.fromkeys(shown), readers_of, appender))
    anomalies.extend(_intermediate(txns, clean, appender, appends))
    anomalies.extend(_split_appends(orders, longest_reader, appender, appends))

    nodes = {i for i, txn in enumerate(txns) if txn.outcome == "ok"}
    for key, e in shown:
        writer = appender.get((key, e))
        if writer is not None and txns[writer].outcome == "unknown":
            nodes.add(writer)

    graph = _dependencies(clean, fits, orders, appender, nodes)
    if realtime:
        _realtime(graph, txns, nodes)
    for cycle in find_cycles(graph):
        why = f"{cycle.kind}: {cycle.describe()}"
        anomalies.append(Anomaly(cycle.kind, cycle.nodes, None, why, cycle.edges))
    return AppendResult(not anomalies, tuple(anomalies), orders, len(nodes), graph.edges())


def _dependencies(
    reads: Sequence[_Read],
    fits: Sequence[bool],
    orders: Mapping[str, tuple[Any, ...]],
    appender: Mapping[tuple[str, Any], int],
    nodes: set[int],
) -> DependencyGraph:
    """The ww, wr and rw edges between `nodes`, as the module docstring defines them."""

    def node_of(key: str, element: Any) -> int | None:
        writer = appender.get((key, element))
        return writer if writer in nodes else None

    graph = DependencyGraph()
    for key, order in orders.items():
        for earlier, later in zip(order, order[1:], strict=False):
            a, b = node_of(key, earlier), node_of(key, later)
            if a is not None and b is not None:
                graph.add(a, b, "ww", key)
    unseen: dict[str, dict[int, None]] = {}  # key: committed appenders of elements no read has
    in_order = {key: set(order) for key, order in orders.items()}
    for (key, element), writer in appender.items():
        if writer in nodes and key in orders and element not in in_order[key]:
            unseen.setdefault(key, {})[writer] = None
    for r, fit in zip(reads, fits, strict=True):
        source = node_of(r.key, r.value[-1]) if r.value and r.external else None
        if source is not None:
            graph.add(source, r.txn, "wr", r.key)
        if not fit:
            continue
        order = orders[r.key]
        successor = node_of(r.key, order[len(r.value)]) if len(order) > len(r.value) else None
        if successor is not None:
            graph.add(r.txn, successor, "rw", r.key)
        for successor in unseen.get(r.key, {}):
            graph.add(r.txn, successor, "rw", r.key)
    return graph


def _ts(indices: Sequence[int]) -> str:
    shown = ", ".join(f"T{i}" for i in _unique(indices)[:5])
    return shown + (", ..." if len(_unique(indices)) > 5 else "")


def _unique(indices: Sequence[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(indices))


def _show(values: tuple[Any, ...]) -> str:
    """A list for a message: in full when short, else its ends and its length."""
    if len(values) <= 8:
        return repr(values)
    head = ", ".join(repr(v) for v in values[:3])
    tail = ", ".join(repr(v) for v in values[-3:])
    return f"({head}, ..., {tail}) ({len(values)} elements)"


def _reads(i: int, txn: Txn) -> list[_Read]:
    appended: set[str] = set()
    found = []
    for m in txn.ops:
        if m.kind == "append":
            appended.add(m.key)
        elif m.value is not None:
            found.append(_Read(i, m.key, m.value, m.key not in appended))
    return found


def _internal(i: int, txn: Txn) -> list[Anomaly]:
    """Reads of an ok transaction that contradict what it read and appended before, or show
    what it appends only later."""
    known: dict[str, tuple[Any, ...]] = {}
    own: dict[str, list[Any]] = {}
    later: dict[str, set[Any]] = {}
    for m in txn.ops:
        if m.kind == "append":
            later.setdefault(m.key, set()).add(m.value)
    found = []
    for m in txn.ops:
        if m.kind == "append":
            own.setdefault(m.key, []).append(m.value)
            later[m.key].discard(m.value)
            continue
        if m.value is None:
            known.pop(m.key, None)
            continue
        mine = tuple(own.pop(m.key, []))
        early = [e for e in m.value if e in later[m.key]] if later.get(m.key) else []
        if early:
            why = f"T{i} read {m.key!r} = {m.value!r}, with {early[0]!r}, which it appends later"
            found.append(Anomaly("internal", (i,), m.key, why))
        elif m.key in known and m.value != known[m.key] + mine:
            why = f"T{i} read {m.key!r} = {m.value!r}, expected {known[m.key] + mine!r}"
            found.append(Anomaly("internal", (i,), m.key, why))
        elif m.key not in known and mine and m.value[len(m.value) - len(mine) :] != mine:
            why = f"T{i} read {m.key!r} = {m.value!r}, not ending with its own appends {mine!r}"
            found.append(Anomaly("internal", (i,), m.key, why))
        known[m.key] = m.value
    return found


class _Readers:
    """The ok transactions whose reads show a given element, found on demand."""

    def __init__(
        self, reads: Sequence[_Read], fits: Sequence[bool], orders: Mapping[str, tuple[Any, ...]]
    ) -> None:
        self.orders = orders
        self.fitting: dict[str, list[tuple[int, int]]] = {}  # key: (txn, length), in order
        self.misfits: list[_Read] = []
        for r, fit in zip(reads, fits, strict=True):
            if fit:
                self.fitting.setdefault(r.key, []).append((r.txn, len(r.value)))
            else:
                self.misfits.append(r)

    def __call__(self, key: str, element: Any) -> tuple[int, ...]:
        order = self.orders[key]
        at = order.index(element) if element in order else len(order)
        found = [t for t, length in self.fitting.get(key, []) if length > at]
        found += [r.txn for r in self.misfits if r.key == key and element in r.value]
        return _unique(sorted(found))


def _bad_elements(
    txns: Sequence[Txn],
    shown: Mapping[tuple[str, Any], None],
    readers_of: _Readers,
    appender: Mapping[tuple[str, Any], int],
) -> list[Anomaly]:
    """Phantom elements (nobody appended them) and aborted reads (G1a)."""
    found = []
    for key, element in shown:
        writer = appender.get((key, element))
        if writer is not None and txns[writer].outcome != "fail":
            continue
        readers = readers_of(key, element)
        if writer is None:
            why = f"{_ts(readers)} read {element!r} in {key!r}, which no transaction appended"
            found.append(Anomaly("phantom", readers, key, why))
        else:
            why = f"{_ts(readers)} read {element!r} in {key!r}, appended by T{writer}, which failed"
            found.append(Anomaly("G1a", (writer, *readers), key, why))
    return found


def _intermediate(
    txns: Sequence[Txn],
    reads: Sequence[_Read],
    appender: Mapping[tuple[str, Any], int],
    appends: Mapping[tuple[int, str], list[Any]],
) -> list[Anomaly]:
    """Reads ending at an element that its writer followed with another append (G1b)."""
    intermediate: dict[tuple[str, Any], list[int]] = {}
    for r in reads:
        if not r.value:
            continue
        writer = appender.get((r.key, r.value[-1]))
        if (
            writer is not None
            and writer != r.txn
            and txns[writer].outcome != "fail"
            and appends[(writer, r.key)][-1] != r.value[-1]
        ):
            intermediate.setdefault((r.key, r.value[-1]), []).append(r.txn)
    found = []
    for (key, element), readers in intermediate.items():
        writer = appender[(key, element)]
        why = (
            f"{_ts(readers)} read {key!r} ending at {element!r}, an intermediate append of"
            f" T{writer} (its last was {appends[(writer, key)][-1]!r})"
        )
        found.append(Anomaly("G1b", (writer, *_unique(readers)), key, why))
    return found


def _split_appends(
    orders: Mapping[str, tuple[Any, ...]],
    longest_reader: Mapping[str, int],
    appender: Mapping[tuple[str, Any], int],
    appends: Mapping[tuple[int, str], list[Any]],
) -> list[Anomaly]:
    """Orders in which a transaction's appends to the key are not one run, in its own order
    (all of them, or a first part at the very end of the order): "incompatible-order"."""
    found = []
    for key, order in orders.items():
        runs: list[tuple[int | None, list[Any]]] = []
        for element in order:
            writer = appender.get((key, element))
            if runs and runs[-1][0] == writer:
                runs[-1][1].append(element)
            else:
                runs.append((writer, [element]))
        seen: set[int] = set()
        for n, (writer, run) in enumerate(runs):
            if writer is None:
                continue
            mine = appends[(writer, key)]
            whole = run == mine or (n == len(runs) - 1 and run == mine[: len(run)])
            if writer in seen or not whole:
                why = (
                    f"T{writer} appended {tuple(mine)!r} to {key!r}, but the order"
                    f" {_show(order)} read by T{longest_reader[key]} has {tuple(run)!r}"
                    f" from it at index {sum(len(r) for _, r in runs[:n])}"
                )
                found.append(Anomaly("incompatible-order", (writer, longest_reader[key]), key, why))
                break
            seen.add(writer)
    return found


def _realtime(graph: DependencyGraph, txns: Sequence[Txn], nodes: set[int]) -> None:
    """rt edges T1 -> T2 when T1 completed before T2 was invoked, transitively reduced: each
    invocation links only from the completed transactions no later completion covers."""
    events: list[tuple[int, int, int]] = []
    for i in sorted(nodes):
        txn = txns[i]
        events.append((txn.invoke_ns, 0, i))
        if txn.outcome == "ok":
            assert txn.complete_ns is not None
            events.append((txn.complete_ns, 1, i))
    events.sort()  # at equal times invocations first: touching intervals are concurrent
    frontier: dict[int, None] = {}
    preds: dict[int, tuple[int, ...]] = {}
    for _, is_completion, i in events:
        if not is_completion:
            preds[i] = tuple(frontier)
            for p in preds[i]:
                graph.add(p, i, "rt")
        else:
            for p in preds[i]:
                frontier.pop(p, None)
            frontier[i] = None

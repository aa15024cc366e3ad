"""Chaos experiments as data: the TOML files under configs/chaos/, parsed and checked.

An experiment has exactly two parts:

    [workload]
    kind = "bank"          # bank | register | append
    clients = 4
    accounts = 20          # bank; `keys` for register and append
    duration_s = 30
    seed = 1

    [[faults]]
    kind = "partition-leader"
    at_s = 5               # after the workload started
    duration_s = 5         # how long it lasts (not for kills and restarts)
    # parameters, units last: latency_ms, jitter_ms, rate_kbytes_per_s, toxicity, delay_ms,
    # timeout_ms, skew_ms, node ("a"), link ("a->b")

Every kind, its parameters and whether it lasts are in `FAULT_KINDS`. Unknown kinds, keys or
nodes, a missing duration, or a fault past the end of the workload are `ExperimentError`s,
raised before anything starts.

Invariants: a parsed `Experiment` is immutable and valid against the node names it was
checked with; parsing has no side effects.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKLOAD_KINDS = ("bank", "register", "append")
_WORKLOAD_KEYS = {"kind", "clients", "accounts", "keys", "duration_s", "seed"}
_FAULT_BASE_KEYS = {"kind", "at_s", "duration_s"}


@dataclass(frozen=True, slots=True)
class FaultKind:
    lasts: bool  # True: needs duration_s; False: a one-off (kills, restarts)
    params: frozenset[str]
    about: str


_LINK = frozenset({"link"})
_NODE = frozenset({"node"})
FAULT_KINDS: dict[str, FaultKind] = {
    "partition-leader": FaultKind(True, frozenset(), "cut the current leader from both peers"),
    "isolate-follower": FaultKind(True, _NODE, "cut one follower from both peers"),
    "partition-random": FaultKind(True, frozenset(), "a random minority/majority split"),
    "one-way": FaultKind(
        True, _LINK, "a link drops what one side sends (default: into the leader)"
    ),
    "bridge": FaultKind(True, _NODE, "two nodes cut from each other; `node` sees both"),
    "latency": FaultKind(True, _LINK | {"latency_ms", "jitter_ms"}, "delay on links"),
    "bandwidth": FaultKind(True, _LINK | {"rate_kbytes_per_s"}, "a bandwidth cap on links"),
    "slow-close": FaultKind(True, _LINK | {"delay_ms"}, "connections close late"),
    "reset-peer": FaultKind(True, _LINK | {"timeout_ms", "toxicity"}, "connections reset"),
    "stall": FaultKind(True, _LINK | {"timeout_ms"}, "links stop carrying data (timeout toxic)"),
    "kill-leader": FaultKind(False, frozenset(), "the leader's actor killed; Ray restarts it"),
    "kill-follower": FaultKind(False, _NODE, "a follower's actor killed; Ray restarts it"),
    "kill-node-process": FaultKind(False, _NODE, "SIGKILL of a node's OS process"),
    "power-cut": FaultKind(False, frozenset(), "SIGKILL of every node's process at once"),
    "pause-node": FaultKind(True, _NODE, "SIGSTOP, then SIGCONT (default: the leader)"),
    "restart-node": FaultKind(False, _NODE, "a node stopped and started again"),
    "disk-full": FaultKind(True, _NODE, "the node's tmpfs filled (default: the leader)"),
    "clock-skew": FaultKind(True, _NODE | {"skew_ms"}, "a node's clock moved (default leader)"),
}


class ExperimentError(ValueError):
    """The experiment file is not valid; nothing was started."""


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str
    clients: int
    size: int  # accounts (bank) or keys (register, append)
    duration_s: float
    seed: int


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float | None
    params: tuple[tuple[str, Any], ...]

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    @property
    def end_s(self) -> float:
        return self.at_s + (self.duration_s or 0.0)


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    workload: Workload
    faults: tuple[Fault, ...]


def load_experiment(path: str | Path, node_names: tuple[str, ...]) -> Experiment:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExperimentError(f"{path}: {exc}") from exc
    return parse_experiment(data, node_names, name=path.stem)


def _number(table: dict[str, Any], key: str, where: str, *, minimum: float = 0) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ExperimentError(f"{where}.{key}: must be a number >= {minimum}, got {value!r}")
    return float(value)


def parse_experiment(data: dict[str, Any], node_names: tuple[str, ...], name: str) -> Experiment:
    extra = set(data) - {"workload", "faults"}
    if extra:
        raise ExperimentError(f"unknown sections {sorted(extra)}: only [workload], [[faults]]")
    table = data.get("workload")
    if not isinstance(table, dict):
        raise ExperimentError("[workload] is required")
    unknown = set(table) - _WORKLOAD_KEYS
    if unknown:
        raise ExperimentError(f"workload: unknown keys {sorted(unknown)}")
    kind = table.get("kind")
    if kind not in WORKLOAD_KINDS:
        raise ExperimentError(f"workload.kind: one of {WORKLOAD_KINDS}, got {kind!r}")
    size_key = "accounts" if kind == "bank" else "keys"
    if ("keys" if kind == "bank" else "accounts") in table:
        raise ExperimentError(f"workload: a {kind} workload takes `{size_key}`")
    workload = Workload(
        kind=kind,
        clients=int(_number(table, "clients", "workload", minimum=1)),
        size=int(_number(table, size_key, "workload", minimum=2)),
        duration_s=_number(table, "duration_s", "workload", minimum=1),
        seed=int(_number(table, "seed", "workload")),
    )
    faults = []
    for i, raw in enumerate(data.get("faults", [])):
        faults.append(_parse_fault(raw, f"faults[{i}]", node_names, workload.duration_s))
    return Experiment(name, workload, tuple(sorted(faults, key=lambda f: f.at_s)))


def _parse_fault(raw: object, where: str, node_names: tuple[str, ...], duration_s: float) -> Fault:
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: must be a table")
    kind = raw.get("kind")
    spec = FAULT_KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ExperimentError(f"{where}.kind: unknown fault {kind!r}; see `python -m chaos list`")
    unknown = set(raw) - _FAULT_BASE_KEYS - spec.params
    if unknown:
        raise ExperimentError(f"{where}: {kind} takes no {sorted(unknown)}")
    at_s = _number(raw, "at_s", where)
    lasting = None
    if spec.lasts:
        lasting = _number(raw, "duration_s", where, minimum=0.1)
    elif "duration_s" in raw:
        raise ExperimentError(f"{where}: {kind} does not last; drop duration_s")
    if at_s + (lasting or 0) > duration_s:
        raise ExperimentError(f"{where}: ends after the workload's {duration_s} s")
    params = {k: v for k, v in raw.items() if k not in _FAULT_BASE_KEYS}
    if "node" in params and params["node"] not in node_names:
        raise ExperimentError(f"{where}.node: no node {params['node']!r} in the cluster")
    if "link" in params:
        src, sep, dst = str(params["link"]).partition("->")
        if not sep or src not in node_names or dst not in node_names or src == dst:
            raise ExperimentError(f"{where}.link: 'src->dst' of two nodes, got {params['link']!r}")
    for key in params:
        if key.endswith(("_ms", "_s")) or key in ("rate_kbytes_per_s", "toxicity"):
            _number(params, key, where, minimum=-1e12 if key == "skew_ms" else 0)
    return Fault(str(kind), at_s, lasting, tuple(sorted(params.items())))

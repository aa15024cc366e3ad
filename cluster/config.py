"""The cluster's configuration: nodes, the links between them, the shared secret and timing.

A cluster is described by one TOML file (`configs/local-3az.toml` is the shipped example)
and loaded with `load_config(path)`; `parse_config(data, base_dir)` does the same for an
already-parsed dict (tests, generated configs). Everything is checked before a
`ClusterConfig` is returned: a bad file raises `ConfigError` whose message starts with the
offending field (`nodes[1].port: must be an integer in 1..65535, got 'x'`). Node indexes
in messages count from 0, in file order.

Schema (top level; unknown keys are rejected at every level):

    cluster_name            str, required
    secret                  str: the cluster secret, at least 16 bytes; UTF-8 text, or hex
                            digits after a "hex:" prefix ("hex:00ff..."); or instead
    secret_env              str: the name of an environment variable holding the secret
                            (same "hex:" rule). Exactly one of the two is required.
    tick_ms                 int >= 1, default 10: the length of one Raft tick
    heartbeat_ticks         int >= 1, default 5
    election_ticks          int > heartbeat_ticks, default 50
    max_batch_transactions  int >= 1, default 256: transactions per proposed batch
    max_entries_per_message int >= 1, default 64: Raft entries per append message
    transaction_timeout_ms  int >= 100, default 30000: how long a transaction may run (QLDB's
                            30 s; tests lower it); a worker still running one then is killed
    scrub_interval_ms       int >= 0, default 21600000 (6 h): a node re-checks every stored
                            entry (cluster/scrub.py) this long after its last check ended, and
                            once soon after it starts; 0: only when asked (`scrub`)
    client_port_base        int, optional: node i (file order) serves clients on base + i
    [[nodes]]               an odd number of them (1, 3, 5, ...), each with
        name                unique; letters, digits, "_", ".", "-"
        az                  the Ray custom resource that pins the node, e.g. "az-a"
        host, port          where the node listens for its peers (port unique per host)
        data_dir            the node's LevelDB directory (unique); a relative path is
                            resolved against `base_dir`: for `load_config`, the config
                            file's parent's parent (the repository root for a file in
                            configs/), never the current working directory
    [links]                 optional overrides, "src->dst" = "host:port" or
                            { host = "...", port = ... }: the address src dials to reach
                            dst (e.g. a toxiproxy listener). Links not listed go straight
                            to dst's own host and port.
    [client_links]          optional overrides, "node" = "host:port" or { host, port }: the
                            address clients dial to reach that node's client port (e.g. a
                            toxiproxy listener); otherwise the node's host and its client
                            port (or what the node advertised in its status).

The resulting `ClusterConfig.links` holds one `LinkConfig` for every directed pair of
distinct nodes, in node order.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TICK_MS = 10
DEFAULT_HEARTBEAT_TICKS = 5
DEFAULT_ELECTION_TICKS = 50
DEFAULT_MAX_BATCH_TRANSACTIONS = 256
DEFAULT_MAX_ENTRIES_PER_MESSAGE = 64
DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000
DEFAULT_SCRUB_INTERVAL_MS = 6 * 3600 * 1000
SECRET_BYTES_MIN = 16
HEX_PREFIX = "hex:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOP_LEVEL_KEYS = frozenset(
    {
        "cluster_name",
        "secret",
        "secret_env",
        "tick_ms",
        "heartbeat_ticks",
        "election_ticks",
        "max_batch_transactions",
        "max_entries_per_message",
        "transaction_timeout_ms",
        "scrub_interval_ms",
        "client_port_base",
        "nodes",
        "links",
        "client_links",
    }
)
_NODE_KEYS = frozenset({"name", "az", "host", "port", "data_dir"})
_LINK_KEYS = frozenset({"host", "port"})


class ConfigError(ValueError):
    """The cluster configuration is invalid; the message starts with the offending field."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    az: str  # the Ray custom resource name of the node's availability zone, e.g. "az-a"
    host: str
    port: int
    data_dir: str  # absolute


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """The address `src` dials to reach `dst` (dst's own, or a proxy in between)."""

    src: str
    dst: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster_name: str
    secret: bytes = field(repr=False)
    nodes: tuple[NodeConfig, ...]
    links: tuple[LinkConfig, ...]  # every directed pair of distinct nodes, in node order
    tick_ms: int
    election_ticks: int
    heartbeat_ticks: int
    max_batch_transactions: int
    max_entries_per_message: int
    client_port_base: int | None = None
    transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS
    scrub_interval_ms: int = DEFAULT_SCRUB_INTERVAL_MS
    client_links: tuple[tuple[str, str, int], ...] = ()  # (node, host, port) overrides

    @property
    def election_timeout_ms(self) -> int:
        return self.election_ticks * self.tick_ms

    @property
    def heartbeat_interval_ms(self) -> int:
        return self.heartbeat_ticks * self.tick_ms

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> NodeConfig:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} in cluster {self.cluster_name!r}")

    def link(self, src: str, dst: str) -> tuple[str, int]:
        """The (host, port) that `src` dials to reach `dst`."""
        for link in self.links:
            if link.src == src and link.dst == dst:
                return (link.host, link.port)
        raise KeyError(f"no link {src}->{dst} in cluster {self.cluster_name!r}")

    def peer_addresses(self, src: str) -> dict[str, tuple[str, int]]:
        """Every other node's name -> the address `src` dials (a `Transport`'s `peers`)."""
        self.node(src)
        return {link.dst: (link.host, link.port) for link in self.links if link.src == src}

    def client_link(self, name: str) -> tuple[str, int] | None:
        """The address clients dial to reach node `name`, if the config overrides it."""
        self.node(name)
        for node, host, port in self.client_links:
            if node == name:
                return (host, port)
        return None

    def client_port(self, name: str) -> int | None:
        """The port node `name` serves clients on, or None without `client_port_base`."""
        if self.client_port_base is None:
            return None
        return self.client_port_base + self.node_names.index(self.node(name).name)


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and check a cluster TOML file.

    Relative data_dirs resolve against the file's parent's parent (the repository root for a
    file in configs/), whatever the current working directory.
    """
    file = Path(path).resolve()
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from exc
    return parse_config(data, file.parent.parent)


def parse_config(data: Mapping[str, Any], base_dir: str | os.PathLike[str]) -> ClusterConfig:
    """Check a parsed config; relative data_dirs resolve against `base_dir` (made absolute)."""
    _reject_unknown_keys(data, _TOP_LEVEL_KEYS, "")
    tick_ms = _int_field(data, "tick_ms", DEFAULT_TICK_MS, minimum=1)
    heartbeat_ticks = _int_field(data, "heartbeat_ticks", DEFAULT_HEARTBEAT_TICKS, minimum=1)
    election_ticks = _int_field(data, "election_ticks", DEFAULT_ELECTION_TICKS, minimum=1)
    if election_ticks <= heartbeat_ticks:
        raise ConfigError(
            f"election_ticks: must be > heartbeat_ticks ({heartbeat_ticks}), got {election_ticks}"
        )
    nodes = _parse_nodes(data.get("nodes"), Path(os.path.abspath(base_dir)))
    return ClusterConfig(
        cluster_name=_name_field(data.get("cluster_name"), "cluster_name"),
        secret=_parse_secret(data),
        nodes=nodes,
        links=_parse_links(data.get("links", {}), nodes),
        client_links=_parse_client_links(data.get("client_links", {}), nodes),
        tick_ms=tick_ms,
        election_ticks=election_ticks,
        heartbeat_ticks=heartbeat_ticks,
        max_batch_transactions=_int_field(
            data, "max_batch_transactions", DEFAULT_MAX_BATCH_TRANSACTIONS, minimum=1
        ),
        max_entries_per_message=_int_field(
            data, "max_entries_per_message", DEFAULT_MAX_ENTRIES_PER_MESSAGE, minimum=1
        ),
        client_port_base=_parse_client_port_base(data.get("client_port_base"), nodes),
        transaction_timeout_ms=_int_field(
            data, "transaction_timeout_ms", DEFAULT_TRANSACTION_TIMEOUT_MS, minimum=100
        ),
        scrub_interval_ms=_int_field(
            data, "scrub_interval_ms", DEFAULT_SCRUB_INTERVAL_MS, minimum=0
        ),
    )


def _reject_unknown_keys(table: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{prefix}{key}: unknown key (expected one of {', '.join(sorted(allowed))})"
            )


def _int_field(data: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    return value


def _name_field(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(
            f"{where}: must be 1 to 64 letters, digits, '_', '.' or '-' "
            f"(not starting with a punctuation mark), got {value!r}"
        )
    return value


def _host_field(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(f"{where}: must be a non-empty host name or address, got {value!r}")
    return value


def _port_field(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: must be an integer in 1..65535, got {value!r}")
    return value


def _parse_secret(data: Mapping[str, Any]) -> bytes:
    if "secret" in data and "secret_env" in data:
        raise ConfigError("secret: give either secret or secret_env, not both")
    if "secret" in data:
        return _decode_secret(data["secret"], "secret")
    if "secret_env" not in data:
        raise ConfigError("secret: missing (give secret or secret_env)")
    variable = data["secret_env"]
    if not isinstance(variable, str) or not variable:
        raise ConfigError(f"secret_env: must be an environment variable name, got {variable!r}")
    value = os.environ.get(variable)
    if value is None:
        raise ConfigError(f"secret_env: environment variable {variable} is not set")
    return _decode_secret(value, f"secret_env ({variable})")


def _decode_secret(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {type(value).__name__}")
    if value.startswith(HEX_PREFIX):
        try:
            secret = bytes.fromhex(value[len(HEX_PREFIX) :])
        except ValueError as exc:
            raise ConfigError(f"{where}: invalid hex after {HEX_PREFIX!r}: {exc}") from exc
    else:
        secret = value.encode("utf-8")
    if len(secret) < SECRET_BYTES_MIN:
        raise ConfigError(f"{where}: must be at least {SECRET_BYTES_MIN} bytes, got {len(secret)}")
    return secret


def _parse_nodes(value: object, base_dir: Path) -> tuple[NodeConfig, ...]:
    if not isinstance(value, list) or len(value) % 2 == 0:
        count = len(value) if isinstance(value, list) else value
        raise ConfigError(f"nodes: need an odd number of [[nodes]] (1, 3, 5, ...), got {count!r}")
    nodes: list[NodeConfig] = []
    for i, table in enumerate(value):
        node = _parse_node(table, f"nodes[{i}]", base_dir)
        for other in nodes:
            if other.name == node.name:
                raise ConfigError(f"nodes[{i}].name: {node.name!r} is already used")
            if (other.host, other.port) == (node.host, node.port):
                raise ConfigError(
                    f"nodes[{i}].port: {node.port} on {node.host} is already used by "
                    f"node {other.name!r}"
                )
            if other.data_dir == node.data_dir:
                raise ConfigError(
                    f"nodes[{i}].data_dir: {node.data_dir} is already used by node {other.name!r}"
                )
        nodes.append(node)
    return tuple(nodes)


def _parse_node(table: object, where: str, base_dir: Path) -> NodeConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table, got {table!r}")
    _reject_unknown_keys(table, _NODE_KEYS, f"{where}.")
    data_dir = table.get("data_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError(f"{where}.data_dir: must be a non-empty path, got {data_dir!r}")
    return NodeConfig(
        name=_name_field(table.get("name"), f"{where}.name"),
        az=_name_field(table.get("az"), f"{where}.az"),
        host=_host_field(table.get("host"), f"{where}.host"),
        port=_port_field(table.get("port"), f"{where}.port"),
        data_dir=os.path.normpath(base_dir / Path(data_dir).expanduser()),
    )


def _parse_links(value: object, nodes: tuple[NodeConfig, ...]) -> tuple[LinkConfig, ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"links: must be a table of 'src->dst' = address, got {value!r}")
    names = {node.name for node in nodes}
    overrides: dict[tuple[str, str], tuple[str, int]] = {}
    for key, address in value.items():
        where = f"links.{key}"
        src, sep, dst = key.partition("->")
        if not sep:
            raise ConfigError(f"{where}: key must be 'src->dst' (two node names)")
        for name in (src, dst):
            if name not in names:
                raise ConfigError(f"{where}: unknown node {name!r}")
        if src == dst:
            raise ConfigError(f"{where}: a link joins two distinct nodes")
        overrides[(src, dst)] = _parse_address(address, where)
    links = []
    for src in nodes:
        for dst in nodes:
            if src.name != dst.name:
                host, port = overrides.get((src.name, dst.name), (dst.host, dst.port))
                links.append(LinkConfig(src=src.name, dst=dst.name, host=host, port=port))
    return tuple(links)


def _parse_client_links(
    value: object, nodes: tuple[NodeConfig, ...]
) -> tuple[tuple[str, str, int], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"client_links: must be a table of node = address, got {value!r}")
    names = [node.name for node in nodes]
    out = []
    for name, address in value.items():
        if name not in names:
            raise ConfigError(f"client_links.{name}: unknown node {name!r}")
        out.append((name, *_parse_address(address, f"client_links.{name}")))
    return tuple(sorted(out, key=lambda link: names.index(link[0])))


def _parse_address(value: object, where: str) -> tuple[str, int]:
    if isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ConfigError(f"{where}: must be 'host:port', got {value!r}")
        return _host_field(host, f"{where}.host"), _port_field(int(port_text), f"{where}.port")
    if isinstance(value, dict):
        _reject_unknown_keys(value, _LINK_KEYS, f"{where}.")
        return (
            _host_field(value.get("host"), f"{where}.host"),
            _port_field(value.get("port"), f"{where}.port"),
        )
    raise ConfigError(
        f"{where}: must be 'host:port' or {{ host = ..., port = ... }}, got {value!r}"
    )


def _parse_client_port_base(value: object, nodes: tuple[NodeConfig, ...]) -> int | None:
    if value is None:
        return None
    base = _port_field(value, "client_port_base")
    if base + len(nodes) - 1 > 65535:
        raise ConfigError(f"client_port_base: {base} + {len(nodes) - 1} nodes exceeds 65535")
    for i, node in enumerate(nodes):
        for other in nodes:
            if other.host == node.host and other.port == base + i:
                raise ConfigError(
                    f"client_port_base: client port {base + i} of node {node.name!r} is "
                    f"node {other.name!r}'s peer port"
                )
    return base

"""Toxiproxy on every link of a real cluster: the server's lifecycle and network faults.

`ToxiproxyServer` starts a toxiproxy server (a Go program: found on PATH as
`toxiproxy-server`, or named by `STRAND_TOXIPROXY_SERVER`) on 127.0.0.1 on a free port, points
`toxiproxy-python` at it (the client keeps the server's address in class attributes, so one
server per process), and stops it by PID. `ProxiedNetwork.install(config)` puts a proxy on
every directed node-to-node link (node `src` dials `dst` through proxy `src_to_dst`: the
config's `[links]` overrides) and one in front of every node's client port (proxy
`client_to_n`: the `[client_links]` overrides), and returns the config to start the cluster
with. Its faults act on those proxies:

- `cut(src, dst)`: the proxy `src_to_dst` stops listening and closes its connections, so what
  `src` sends to `dst` is lost (a one-way fault: `dst` still reaches `src` over `dst_to_src`);
- `isolate(node)`: every peer link to and from `node` cut (its clients still reach it);
- `partition(side)`: every peer link between `side` and the other nodes cut;
- `latency(latency_ms, jitter_ms, links)`: a latency toxic on the links' data (all peer links
  by default);
- `heal()`: every proxy listening again, every toxic gone (toxiproxy's reset).

Invariants: only proxies on 127.0.0.1; only the server this process started is stopped;
after `heal()` every link carries traffic again as if no fault had been.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from toxiproxy.api import APIConsumer  # type: ignore[import-untyped]
from toxiproxy.server import Toxiproxy  # type: ignore[import-untyped]

from cluster.config import ClusterConfig, LinkConfig

SERVER_ENV = "STRAND_TOXIPROXY_SERVER"
HOW_TO_INSTALL = (
    "no toxiproxy-server: install it from https://github.com/Shopify/toxiproxy/releases "
    f"(put it on PATH) or name the binary in {SERVER_ENV}"
)


def find_server() -> str | None:
    """The toxiproxy server binary: $STRAND_TOXIPROXY_SERVER, else on PATH, else None."""
    named = os.environ.get(SERVER_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("toxiproxy-server")


def _name(src: str, dst: str) -> str:
    return f"{src}_to_{dst}"  # a proxy's name goes into URL paths: no "->"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ToxiproxyServer:
    """A toxiproxy server of this process's own on 127.0.0.1 (see the module docstring)."""

    def __init__(self, binary: str, *, start_timeout_s: float = 10.0) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [binary, "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        APIConsumer.host, APIConsumer.port = "127.0.0.1", self.port
        self.client = Toxiproxy()
        deadline = time.monotonic() + start_timeout_s
        while not self.client.running():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"toxiproxy-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class ProxiedNetwork:
    """Proxies on every link of one cluster, and the faults on them."""

    def __init__(self, server: ToxiproxyServer) -> None:
        self.server = server
        self.proxies: dict[str, Any] = {}  # name ("a_to_b", "client_to_a") -> its Proxy
        self.nodes: tuple[str, ...] = ()

    def _proxy(self, name: str, upstream: tuple[str, int]) -> tuple[str, int]:
        proxy = self.server.client.create(upstream=f"{upstream[0]}:{upstream[1]}", name=name)
        self.proxies[name] = proxy
        host, _, port = proxy.listen.rpartition(":")
        return host, int(port)

    def install(self, config: ClusterConfig) -> ClusterConfig:
        """Create the proxies; returns `config` with every link going through one."""
        self.nodes = config.node_names
        links = []
        for link in config.links:
            dst = config.node(link.dst)
            host, port = self._proxy(_name(link.src, link.dst), (dst.host, dst.port))
            links.append(LinkConfig(link.src, link.dst, host, port))
        client_links = []
        for name in config.node_names:
            client_port = config.client_port(name)
            if client_port is None:
                raise ValueError("the cluster config needs client_port_base to proxy clients")
            upstream = (config.node(name).host, client_port)
            client_links.append((name, *self._proxy(f"client_to_{name}", upstream)))
        return dataclasses.replace(config, links=tuple(links), client_links=tuple(client_links))

    # ----------------------------------------------------------------- faults
    def cut(self, src: str, dst: str) -> None:
        self.proxies[_name(src, dst)].disable()

    def _peer_links(self) -> list[tuple[str, str]]:
        return [(a, b) for a in self.nodes for b in self.nodes if a != b]

    def isolate(self, node: str) -> None:
        self.partition([node])

    def partition(self, side: Iterable[str]) -> None:
        inside = set(side)
        for src, dst in self._peer_links():
            if (src in inside) != (dst in inside):
                self.cut(src, dst)

    def restore(self, src: str, dst: str) -> None:
        self.proxies[_name(src, dst)].enable()

    def peer_links(self) -> list[tuple[str, str]]:
        return self._peer_links()

    def toxic(
        self,
        kind: str,
        attributes: dict[str, int],
        links: Iterable[tuple[str, str]] | None = None,
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> list[tuple[str, str]]:
        """Add a toxic (toxiproxy's `latency`, `bandwidth`, `slow_close`, `reset_peer`,
        `timeout`, ...) to the data the links carry (all peer links by default); returns
        the links, for `remove_toxic`."""
        chosen = self._peer_links() if links is None else list(links)
        for src, dst in chosen:
            self.proxies[_name(src, dst)].add_toxic(
                type=kind, stream="upstream", name=name or kind, toxicity=toxicity,
                attributes=attributes,
            )  # fmt: skip
        return chosen

    def remove_toxic(self, links: Iterable[tuple[str, str]], name: str) -> None:
        for src, dst in links:
            self.proxies[_name(src, dst)].destroy_toxic(name)

    def latency(
        self, latency_ms: int, jitter_ms: int = 0, links: Iterable[tuple[str, str]] | None = None
    ) -> None:
        self.toxic("latency", {"latency": latency_ms, "jitter": jitter_ms}, links)

    def heal(self) -> None:
        self.server.client.reset()

    def destroy(self) -> None:
        for proxy in self.proxies.values():
            proxy.destroy()
        self.proxies.clear()

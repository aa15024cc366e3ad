"""A real multi-node Ray cluster on this one machine, for tests and chaos experiments.

Strand runs one ``StorageNode`` actor per availability zone, pinned by the Ray custom
resources ``az-a``, ``az-b`` and ``az-c``.  ``ray.init()`` in a test gives a single
node, so "lose a zone" cannot be tried there.  :class:`RayCluster` starts three real
Ray nodes with ``ray start`` -- a head node holding ``az-a`` and two worker nodes
holding ``az-b`` and ``az-c`` -- as if they were three machines, and can SIGKILL one
node (its raylet, its agents, its workers and so the actors on it) and bring it back::

    with RayCluster() as cluster:  # start(): three nodes, all alive
        subprocess.run([sys.executable, "driver.py"], env={**os.environ, **cluster.env})
        cluster.kill_node("az-b")  # SIGKILL that node's processes, nothing else
        cluster.wait_dead("az-b")  # the GCS has marked it DEAD
        cluster.restart_node("az-b")  # a fresh node with the same resources
    # stop(): every process it started is killed, its temporary directory removed

A driver is a separate process: ``ray.init(address=cluster.address)``, or plain
``ray.init()`` with :attr:`RayCluster.env` in its environment (it sets ``RAY_ADDRESS``
and the token).  Never ``ray.init`` the cluster from a process that already has (or may
get) a Ray of its own, such as a pytest worker: Ray allows one per process, and the
token loader is a per-process singleton.

What it keeps true:

* Only its own processes are touched.  Each node is started by ``ray start`` in a new
  session (``setsid``); every process of that node -- gcs_server, raylet, agents, log
  monitor, and the workers the raylet forks (they change process group, never
  session) -- stays in that session.  A node's processes are those whose session id
  is that ``ray start``'s PID and that started after it, plus their descendants; those
  PIDs, and no others, get SIGKILL.  ``ray stop`` (which kills every Ray on the
  machine) is never used.
* Ports are free ones, chosen at each start: every listening port is given explicitly
  (GCS, dashboard, node manager, object manager, agents, metrics), picked at random
  below the kernel's ephemeral range (so no outgoing connection can take one between
  the choice and its use) after checking that it can be bound; worker ports are 0, so
  the kernel gives each worker a free one.  Another Ray on the machine is not disturbed.
* Everything is on the loopback interface: the nodes advertise 127.0.0.2, 127.0.0.3
  and 127.0.0.4 (one address per "machine"), and all Ray traffic goes to those.  Not
  127.0.0.1: ``ray start`` replaces the literal ``127.0.0.1``/``localhost`` with the
  machine's outward address, while other loopback addresses are kept as given.  Ray's
  gRPC servers still listen on all interfaces (Ray has no switch for that).
* Token authentication is on (``RAY_AUTH_MODE=token``) with a fresh random token per
  cluster, kept in a file in its directory; ``~/.ray/auth_token`` is neither read nor
  written.
* Everything Ray writes (sessions, logs, sockets, spill files, ``ray_current_cluster``)
  goes under one temporary directory (``--temp-dir`` per node, ``TMPDIR`` for its
  processes), removed by :meth:`RayCluster.stop`.  ``/tmp/ray`` is not used.
* A dead node is noticed fast: the head gets ``--system-config`` with a short GCS
  health check (see :data:`FAST_HEALTH_CHECK`), so a killed node is marked DEAD two or
  three seconds after the kill instead of about fifteen.

Every wait is a bounded poll and raises :class:`RayClusterError` when it runs out.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

DEFAULT_ZONES: Mapping[str, str] = {
    "az-a": "127.0.0.2",
    "az-b": "127.0.0.3",
    "az-c": "127.0.0.4",
}
"""Zone -> loopback address of its node; the first zone is the head's."""

FAST_HEALTH_CHECK: Mapping[str, int] = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 4,
}
"""GCS health-check settings given to the head (``--system-config``).

The GCS declares a node dead after ``failure_threshold`` failed checks in a row, one
every ``period_ms`` (a killed node refuses at once; a hung one fails after
``timeout_ms``).  With Ray's defaults (3000 ms, 5 failures) a SIGKILLed node was marked
DEAD about 14 s after the kill here; with these about 2-3 s.  Not lower: a node that
misses checks for that long under load would be declared dead (and shot) although alive.
The same keys work as ``RAY_health_check_period_ms`` etc. in the head's environment.
"""

_ANY_V4 = ""  # bind address meaning all IPv4 interfaces, like Ray's gRPC servers
_PORT_FLOOR = 20000  # above `ray start`'s default worker ports (10002-19999)
_NODE_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)
_HEAD_PORT_FLAGS = ("--port", "--dashboard-port")

# Run in a child interpreter with the cluster's environment: reads the GCS node table
# (no driver, no job), polling until every wanted node id is in the wanted state.
_PROBE = r"""
import json, sys, time
from ray._raylet import GcsClient

args = json.loads(sys.argv[1])
deadline = time.monotonic() + args["timeout"]
client = GcsClient(address=args["address"])
while True:
    try:
        infos = client.get_all_node_info(timeout=max(1.0, args["interval"] * 4))
        error = None
    except Exception as exc:
        infos, error = {}, repr(exc)
    nodes = [
        {
            "node_id": node_id.hex(),
            "alive": info.state == 0,
            "ip": info.node_manager_address,
            "is_head": bool(info.is_head_node),
            "resources": dict(info.resources_total),
        }
        for node_id, info in infos.items()
    ]
    state = {n["node_id"]: n["alive"] for n in nodes}
    done = error is None and all(
        state.get(node_id) is alive for node_id, alive in args["want"].items()
    )
    if done or time.monotonic() >= deadline:
        print(json.dumps({"done": done, "nodes": nodes, "error": error}))
        break
    time.sleep(args["interval"])
"""


class RayClusterError(RuntimeError):
    """A node did not start, die or come back in time, or a process would not die."""


@dataclass(frozen=True)
class NodeInfo:
    """One row of the GCS node table."""

    node_id: str
    alive: bool
    ip: str
    is_head: bool
    resources: Mapping[str, float]

    @property
    def zone(self) -> str | None:
        """The ``az-*`` resource this node holds, if any."""
        zones = sorted(name for name in self.resources if name.startswith("az-"))
        return zones[0] if zones else None


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    sid: int
    start: int  # clock ticks after boot
    zombie: bool


@dataclass(frozen=True)
class _Launch:
    """One ``ray start`` of a node, and so one session of processes."""

    sid: int  # PID of that `ray start`, session id of all the node's processes
    start: int  # its start time, in clock ticks after boot
    log: Path
    node_id: str = ""


@dataclass
class _Node:
    zone: str
    ip: str
    head: bool
    temp_dir: Path
    launches: list[_Launch] = field(default_factory=list)

    @property
    def current(self) -> _Launch | None:
        return self.launches[-1] if self.launches else None


def _read_proc(pid: int) -> _Proc | None:
    """One process from /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime(22nd) ..."; comm may hold spaces
    # and parentheses, so split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return _Proc(
            pid=pid,
            ppid=int(rest[1]),
            sid=int(rest[3]),
            start=int(rest[19]),
            zombie=rest[0] in ("Z", "X"),
        )
    except (IndexError, ValueError):
        return None


def _proc_table() -> dict[int, _Proc]:
    """Every process visible in /proc (those exiting meanwhile are skipped)."""
    procs = (_read_proc(int(entry)) for entry in os.listdir("/proc") if entry.isdigit())
    return {proc.pid: proc for proc in procs if proc is not None}


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_ANY_V4, port))
        except OSError:
            return False
    return True


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class RayCluster:
    """A head node (``az-a``) and two worker nodes (``az-b``, ``az-c``) on loopback.

    Use it as a context manager, or call :meth:`start` and :meth:`stop` yourself.
    ``zones`` maps each zone to the loopback address its node advertises; the first
    is the head.  ``num_cpus`` and ``object_store_memory`` are per node (kept small:
    three nodes share two cores here).  ``system_config`` is merged over
    :data:`FAST_HEALTH_CHECK` and given to the head.
    """

    def __init__(
        self,
        *,
        zones: Mapping[str, str] = DEFAULT_ZONES,
        num_cpus: int = 1,
        object_store_memory: int = 128 * 1024 * 1024,
        system_config: Mapping[str, object] | None = None,
        ray_executable: str | os.PathLike[str] | None = None,
        python_executable: str | os.PathLike[str] | None = None,
        start_timeout: float = 90.0,
        wait_timeout: float = 60.0,
        base_temp_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if len(zones) < 1:
            raise ValueError("need at least the head node's zone")
        bin_dir = Path(sys.executable).parent
        self._ray = str(ray_executable or bin_dir / "ray")
        self._python = str(python_executable or sys.executable)
        self._zones = dict(zones)
        self._num_cpus = num_cpus
        self._object_store_memory = object_store_memory
        self._system_config: dict[str, object] = {**FAST_HEALTH_CHECK, **(system_config or {})}
        self._start_timeout = start_timeout
        self._wait_timeout = wait_timeout
        self._base_temp_dir = None if base_temp_dir is None else str(base_temp_dir)
        self._root: Path | None = None
        self._token = ""
        self._port = 0
        self._nodes: dict[str, _Node] = {}
        self._used_ports: set[int] = set()
        self._rng = random.SystemRandom()
        self._clk_tck = os.sysconf("SC_CLK_TCK")

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the head, then the other nodes; return once all are ALIVE in the GCS."""
        if self._root is not None:
            raise RayClusterError("cluster already started")
        # Short root: Unix socket paths (.../session_<date>_<pid>/sockets/plasma_store)
        # must stay under 108 bytes.
        self._root = Path(tempfile.mkdtemp(prefix="strand-ray-", dir=self._base_temp_dir))
        atexit.register(self.stop)
        try:
            (self._root / "tmp").mkdir()
            (self._root / "logs").mkdir()
            self._token = secrets.token_hex(32)
            token_file = self._root / "auth_token"
            token_file.touch(mode=0o600)
            token_file.write_text(self._token)
            for index, (zone, ip) in enumerate(self._zones.items()):
                temp_dir = self._root / zone
                temp_dir.mkdir()
                self._nodes[zone] = _Node(zone=zone, ip=ip, head=index == 0, temp_dir=temp_dir)
            head, *others = self._nodes.values()
            self._launch([head])
            if others:
                self._launch(others)  # side by side: they only need the GCS
            self.wait_alive()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGKILL every process this cluster started, then remove its directory.

        Safe to call twice, and after a failed start.
        """
        root = self._root
        if root is None:
            return
        try:
            self._kill([launch for node in self._nodes.values() for launch in node.launches])
        finally:
            self._root = None
            self._port = 0
            self._nodes = {}
            atexit.unregister(self.stop)
            shutil.rmtree(root, ignore_errors=True)

    # --------------------------------------------------------------- properties

    @property
    def address(self) -> str:
        """The GCS address, what ``ray.init(address=...)`` takes (``127.0.0.2:PORT``)."""
        self._require_started()
        return f"{self._zones[self.head_zone]}:{self._port}"

    @property
    def env(self) -> dict[str, str]:
        """Variables a driver subprocess needs; use ``{**os.environ, **cluster.env}``.

        ``RAY_ADDRESS`` lets a plain ``ray.init()`` attach.  The token is given both
        inline (``RAY_AUTH_TOKEN``, which wins over any token file) and as a file.
        """
        self._require_started()
        root = self._require_root()
        return {
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self._token,
            "RAY_AUTH_TOKEN_PATH": str(root / "auth_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    @property
    def head_zone(self) -> str:
        return next(iter(self._zones))

    @property
    def zones(self) -> list[str]:
        return list(self._zones)

    @property
    def temp_dir(self) -> Path:
        """The directory holding everything of this cluster (removed by :meth:`stop`)."""
        return self._require_root()

    def node_id(self, zone: str) -> str:
        """The Ray node id (hex) of the zone's current (or last) node."""
        launch = self._node(zone).current
        if launch is None or not launch.node_id:
            raise RayClusterError(f"{zone}: no node started")
        return launch.node_id

    # ---------------------------------------------------------------- processes

    def node_pids(self, zone: str) -> list[int]:
        """PIDs of the living processes of the zone's node (all of its launches)."""
        return sorted(self._pids(self._node(zone).launches, _proc_table()))

    def raylet_pid(self, zone: str) -> int | None:
        """PID of the zone's raylet, or None if it is not running."""
        for pid in self.node_pids(zone):
            argv = _cmdline(pid)
            if argv and argv[0].endswith("/raylet"):
                return pid
        return None

    def kill_node(self, zone: str) -> list[int]:
        """SIGKILL every process of the zone's node (only those); return their PIDs.

        Killing the head zone takes the GCS down and so the whole cluster, which cannot
        be restarted (Ray has no GCS fault tolerance without Redis).
        """
        self._require_started()
        return self._kill(self._node(zone).launches)

    def restart_node(self, zone: str) -> str:
        """Start the zone's node again (same resources, new ports); return its node id.

        Kills what is left of the old one first.  Returns once the GCS lists the new
        node ALIVE.  Actors with ``max_restarts`` that lived on the old node are
        rescheduled onto it only after the GCS has marked the old one DEAD.
        """
        node = self._node(zone)
        if node.head:
            raise RayClusterError("the head node (GCS) cannot be restarted")
        self._require_started()
        self._kill(node.launches)
        (launch,) = self._launch([node])
        self.wait_alive([zone])
        return launch.node_id

    # ------------------------------------------------------------- node states

    def nodes(self) -> list[NodeInfo]:
        """The GCS node table, live and dead nodes (one probe, about 0.5 s)."""
        return self._probe({}, timeout=0.0)

    def wait_alive(
        self, zones: Iterable[str] | None = None, timeout: float | None = None
    ) -> list[NodeInfo]:
        """Wait until each zone's current node is ALIVE in the GCS."""
        want = {self.node_id(zone): True for zone in (self.zones if zones is None else zones)}
        return self._probe(want, timeout=self._wait_timeout if timeout is None else timeout)

    def wait_dead(self, zone: str, timeout: float | None = None) -> float:
        """Wait until the GCS marks the zone's last node DEAD; return seconds waited."""
        started = time.monotonic()
        self._probe(
            {self.node_id(zone): False},
            timeout=self._wait_timeout if timeout is None else timeout,
        )
        return time.monotonic() - started

    # ------------------------------------------------------------------ helpers

    def _require_root(self) -> Path:
        if self._root is None:
            raise RayClusterError("cluster not started")
        return self._root

    def _require_started(self) -> None:
        self._require_root()
        if not self._port:
            raise RayClusterError("cluster not started")

    def _node(self, zone: str) -> _Node:
        self._require_root()
        try:
            return self._nodes[zone]
        except KeyError:
            raise KeyError(f"unknown zone {zone!r}; zones are {self.zones}") from None

    def _free_ports(self, count: int) -> list[int]:
        """Ports that can be bound now on all interfaces, not yet used by this cluster.

        Drawn below the ephemeral range where there is room, so that no outgoing
        connection gets one by chance before Ray binds it; else from the kernel.
        """
        ports: list[int] = []
        floor, ceiling = _PORT_FLOOR, _ephemeral_floor()
        tries = 0
        while len(ports) < count and ceiling - floor >= 1000 and tries < 5000:
            tries += 1
            port = self._rng.randrange(floor, ceiling)
            if port not in self._used_ports and port not in ports and _port_is_free(port):
                ports.append(port)
        while len(ports) < count:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((_ANY_V4, 0))
                port = int(sock.getsockname()[1])
            if port not in self._used_ports and port not in ports:
                ports.append(port)
        self._used_ports.update(ports)
        return ports

    def _start_env(self) -> dict[str, str]:
        root = self._require_root()
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        }
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(root / "auth_token"),
            RAY_USAGE_STATS_ENABLED="0",
            TMPDIR=str(root / "tmp"),
        )
        return env

    def _command(self, node: _Node) -> list[str]:
        cmd = [
            self._ray,
            "start",
            f"--node-ip-address={node.ip}",
            f"--resources={json.dumps({node.zone: 1})}",
            f"--temp-dir={node.temp_dir}",
            f"--num-cpus={self._num_cpus}",
            f"--object-store-memory={self._object_store_memory}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            "--log-style=record",
            "--log-color=false",
        ]
        flags = list(_NODE_PORT_FLAGS)
        if node.head:
            flags += _HEAD_PORT_FLAGS
        ports = dict(zip(flags, self._free_ports(len(flags)), strict=True))
        cmd += [f"{flag}={port}" for flag, port in ports.items()]
        if node.head:
            self._port = ports["--port"]
            cmd += [
                "--head",
                "--include-dashboard=false",
                f"--system-config={json.dumps(self._system_config)}",
            ]
            if importlib.util.find_spec("grpc") is not None:
                # With ray[client] installed the head would take port 10001.
                cmd.append(f"--ray-client-server-port={self._free_ports(1)[0]}")
        else:
            cmd.append(f"--address={self.address}")
        return cmd

    def _launch(self, nodes: Sequence[_Node]) -> list[_Launch]:
        """Run ``ray start`` for the nodes at once, each in a new session; wait for all.

        Each launch is recorded before anything is waited for, so that :meth:`stop` finds
        its processes whatever happens next.
        """
        root = self._require_root()
        started: list[tuple[_Node, subprocess.Popen[bytes], _Launch]] = []
        for node in nodes:
            log = root / "logs" / f"{node.zone}-{len(node.launches) + 1}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    self._command(node),
                    env=self._start_env(),
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            # Not waited for yet, so its /proc entry (a zombie at worst) is still there.
            me = _read_proc(proc.pid)
            start = me.start if me is not None else self._now_ticks() - self._clk_tck
            launch = _Launch(sid=proc.pid, start=start, log=log)
            node.launches.append(launch)
            started.append((node, proc, launch))
        deadline = time.monotonic() + self._start_timeout
        failures: list[str] = []
        for node, proc, launch in started:
            try:
                code: int | None = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
                self._kill([launch])
                proc.wait()
            node_id = self._raylet_node_id(launch) if code == 0 else None
            if node_id is None:
                self._kill([launch])
                if code is None:
                    why = f"still running after {self._start_timeout}s"
                elif code:
                    why = f"exited with {code}"
                else:
                    why = "left no raylet"
                failures.append(
                    f"{node.zone}: `ray start` {why}; {launch.log}:\n{_tail(launch.log)}"
                )
                continue
            node.launches[-1] = _Launch(launch.sid, launch.start, launch.log, node_id)
        if failures:
            raise RayClusterError("\n".join(failures))
        return [node.launches[-1] for node, _, _ in started]

    def _now_ticks(self) -> int:
        with open("/proc/uptime") as f:
            return int(float(f.read().split()[0]) * self._clk_tck)

    def _raylet_node_id(self, launch: _Launch) -> str | None:
        for pid in self._pids([launch], _proc_table()):
            argv = _cmdline(pid)
            if argv and argv[0].endswith("/raylet"):
                for arg in argv:
                    if arg.startswith("--node_id="):
                        return arg.split("=", 1)[1]
        return None

    @staticmethod
    def _pids(launches: Sequence[_Launch], table: Mapping[int, _Proc]) -> set[int]:
        """Living processes of these launches: their sessions, and descendants."""
        mine = {
            proc.pid
            for proc in table.values()
            for launch in launches
            if proc.sid == launch.sid and proc.start >= launch.start
        }
        # Anything a node process forked into a session of its own.
        children: dict[int, list[int]] = {}
        for proc in table.values():
            children.setdefault(proc.ppid, []).append(proc.pid)
        todo = list(mine)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in mine:
                    mine.add(child)
                    todo.append(child)
        return {pid for pid in mine if not table[pid].zombie}

    def _kill(self, launches: Sequence[_Launch], timeout: float = 10.0) -> list[int]:
        """SIGKILL the launches' processes until none is left; return the PIDs killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            pids = self._pids(launches, _proc_table())
            if not pids:
                return sorted(killed)
            if time.monotonic() >= deadline:
                raise RayClusterError(f"processes {sorted(pids)} still alive after SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= pids
            time.sleep(0.05)

    def _probe(self, want: Mapping[str, bool], timeout: float) -> list[NodeInfo]:
        args = {"address": self.address, "want": dict(want), "timeout": timeout, "interval": 0.1}
        env = {**os.environ, **self.env}
        try:
            result = subprocess.run(
                [self._python, "-c", _PROBE, json.dumps(args)],
                env=env,
                cwd=self._require_root(),
                capture_output=True,
                text=True,
                timeout=timeout + 30.0,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RayClusterError(f"GCS probe hung: {exc}") from None
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise RayClusterError(
                f"GCS probe failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        reply = json.loads(lines[-1])
        nodes = [
            NodeInfo(
                node_id=n["node_id"],
                alive=n["alive"],
                ip=n["ip"],
                is_head=n["is_head"],
                resources=n["resources"],
            )
            for n in reply["nodes"]
        ]
        if not reply["done"]:
            states = {n.node_id[:8]: "ALIVE" if n.alive else "DEAD" for n in nodes}
            wanted = {k[:8]: "ALIVE" if v else "DEAD" for k, v in want.items()}
            raise RayClusterError(
                f"after {timeout}s the GCS lists {states}, wanted {wanted}"
                + (f" ({reply['error']})" if reply["error"] else "")
            )
        return nodes

"""A real three-node Ray cluster on this machine (chaos.raycluster): lose a zone, get it back.

One driver process (never this pytest process, which may hold a local Ray of its own)
places one actor per zone and answers commands on stdin. The test checks the actors sit
on three different nodes, SIGKILLs the az-b node, sees the az-b actor's method fail and
the GCS mark the node DEAD, restarts the node and sees the same actor handle answer from
the new node, while az-a and az-c were never touched. A `sleep` of our own stands for
"someone else's process" and must survive. Every wait is bounded. 14-27 s here
(two cores, and the machine shared with other test runs).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.raycluster import RayCluster

DRIVER = r"""
import json, os, sys
import ray

ray.init(log_to_driver=False, logging_level="error")  # RAY_ADDRESS and the token: env

def say(**fields):
    print("@@ " + json.dumps(fields), flush=True)

@ray.remote(max_restarts=-1, max_task_retries=0)
class Zone:
    def where(self):
        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

actors = {
    zone: Zone.options(resources={zone: 0.5}).remote() for zone in ("az-a", "az-b", "az-c")
}
say(driver_node=ray.get_runtime_context().get_node_id(),
    placed={zone: ray.get(a.where.remote(), timeout=60) for zone, a in actors.items()})
for line in sys.stdin:
    zone, timeout = line.split()
    try:
        say(ok=True, **ray.get(actors[zone].where.remote(), timeout=float(timeout)))
    except Exception as exc:
        say(ok=False, error=type(exc).__name__, message=str(exc)[:500])
"""


class Driver:
    """The driver subprocess, spoken to line by line; every read has a deadline."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                self.replies.put(json.loads(line[3:]))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            tail = "".join(self.stderr[-40:])
            pytest.fail(f"driver silent for {timeout}s (exit {self.proc.poll()}):\n{tail}")

    def call(self, zone: str, timeout: float) -> dict[str, Any]:
        """Call the zone actor's method; ray.get waits `timeout`, we a bit longer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{zone} {timeout}\n")
        self.proc.stdin.flush()
        return self.reply(timeout + 30)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not the cluster's: nothing the cluster does may kill it."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_lose_a_zone_and_get_it_back(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    timings: dict[str, float] = {}
    began = time.monotonic()
    cluster = RayCluster()
    cluster.start()
    root = cluster.temp_dir
    launched: set[int] = set()
    try:
        timings["start"] = time.monotonic() - began
        nodes = {n.zone: n for n in cluster.nodes()}
        assert sorted(z for z in nodes if z) == ["az-a", "az-b", "az-c"]
        assert all(n.alive for n in nodes.values())
        assert nodes["az-a"].is_head
        assert len({n.ip for n in nodes.values()}) == 3
        assert all(n.ip.startswith("127.") for n in nodes.values())
        assert cluster.address.startswith(nodes["az-a"].ip + ":")
        before = {zone: cluster.node_pids(zone) for zone in cluster.zones}
        launched = {pid for pids in before.values() for pid in pids}
        assert all(before.values())
        assert cluster.raylet_pid("az-b") in before["az-b"]

        script = tmp_path / "driver.py"
        script.write_text(DRIVER)
        t = time.monotonic()
        driver = Driver(script, {**os.environ, **cluster.env})
        try:
            hello = driver.reply(timeout=120)
            timings["driver up, actors placed"] = time.monotonic() - t
            placed = hello["placed"]
            assert hello["driver_node"] == cluster.node_id("az-a")  # attached to the head
            assert len({placed[zone]["node"] for zone in placed}) == 3
            for zone in cluster.zones:
                assert placed[zone]["node"] == cluster.node_id(zone)
                assert placed[zone]["pid"] in cluster.node_pids(zone)
            old_b = cluster.node_id("az-b")

            t_kill = time.monotonic()
            killed = cluster.kill_node("az-b")
            timings["kill az-b"] = time.monotonic() - t_kill
            assert set(before["az-b"]) | {placed["az-b"]["pid"]} <= set(killed)
            assert not set(killed) & (set(before["az-a"]) | set(before["az-c"]))
            assert cluster.node_pids("az-b") == []
            assert not any(_alive(pid) for pid in killed)
            assert all(_alive(pid) for pid in before["az-a"] + before["az-c"])
            assert _alive(bystander.pid)

            failed = driver.call("az-b", timeout=10)
            assert not failed["ok"], failed
            assert failed["error"] in ("ActorUnavailableError", "RayActorError", "ActorDiedError")
            cluster.wait_dead("az-b", timeout=60)
            timings["kill until az-b DEAD in the GCS"] = time.monotonic() - t_kill
            assert {n.node_id: n.alive for n in cluster.nodes()}[old_b] is False
            other = driver.call("az-c", timeout=30)
            assert other["ok"], other
            assert other["pid"] == placed["az-c"]["pid"]

            t = time.monotonic()
            new_b = cluster.restart_node("az-b")
            timings["restart az-b (ALIVE)"] = time.monotonic() - t
            assert new_b != old_b
            launched |= set(cluster.node_pids("az-b"))
            back = driver.call("az-b", timeout=60)
            timings["restart az-b until the actor answers"] = time.monotonic() - t
            assert back["ok"], back
            assert back["node"] == new_b
            assert back["pid"] != placed["az-b"]["pid"]
            for zone in ("az-a", "az-c"):
                same = driver.call(zone, timeout=30)
                assert same["ok"], same
                assert same["pid"] == placed[zone]["pid"]
        finally:
            driver.close()
        launched |= {pid for zone in cluster.zones for pid in cluster.node_pids(zone)}
    finally:
        t = time.monotonic()
        cluster.stop()
        timings["stop"] = time.monotonic() - t
    assert not any(_alive(pid) for pid in launched)
    assert not root.exists()
    assert _alive(bystander.pid)
    cluster.stop()  # idempotent
    timings["total"] = time.monotonic() - began
    print("\nRayCluster timings (s): " + json.dumps({k: round(v, 2) for k, v in timings.items()}))

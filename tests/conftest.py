"""Shared fixtures: ledgers on real LevelDB in a temporary directory, and a fake clock."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import Ledger
from core.storage import MemoryStorage


class FakeClock:
    """A clock the test moves by hand (milliseconds since the epoch)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, delta_ms: int) -> None:
        self.now_ms += delta_ms


def counting_bytes(seed: int = 0) -> object:
    """A deterministic source of 'random' bytes for reproducible ids."""
    counter = itertools.count(seed * 1_000_000)

    def random_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return random_bytes


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger") as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_ledger(clock: FakeClock) -> Iterator[Ledger]:
    with Ledger(MemoryStorage(), clock_ms=clock) as opened:
        yield opened


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One local Ray for the whole session, with one custom resource per simulated AZ."""
    import ray

    ray.init(
        namespace="strand",
        resources={"az-a": 1.0, "az-b": 1.0, "az-c": 1.0},
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Poll `condition` every 0.1 s until it holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def private_cluster_config(root: Path, name: str, port_shift: int, **extra: int) -> Path:
    """configs/test-3az.toml as a cluster of its own: cluster name `name`, every port moved
    by `port_shift` (a multiple of 10), each node's LevelDB in `root/<node>/db`, `extra`
    top-level settings added; written to `root/<name>.toml`, whose path is returned. Modules
    that start their own cluster use it: no two clusters share a name, port or directory."""
    text = (Path(__file__).resolve().parent.parent / "configs" / "test-3az.toml").read_text()
    replacements = [
        ('"strand-test"', f'"{name}"'),
        (
            "transaction_timeout_ms",
            "".join(f"{key} = {value}\n" for key, value in extra.items())
            + "transaction_timeout_ms",
        ),
    ]
    for port in ("4711", "4721"):  # node ports 4711x, client ports 4721x
        replacements.append((f"= {port}", f"= {int(port) + port_shift // 10}"))
    replacements += [(f'"data/test-cluster/{n}"', f'"{root}/{n}/db"') for n in "abc"]
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = root / f"{name}.toml"
    path.write_text(text)
    return path

"""core.storage: MemoryStorage and LevelDBStorage behave alike, and LevelDB survives SIGKILL.

Every behavioural test runs on both implementations; a stateful Hypothesis test drives both
and a plain dict (the naive reference) with the same random operations and compares every
answer. The crash test kills a child process that writes synced batches and checks that
reopening shows every acknowledged batch whole and no batch in part.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.storage import (
    LevelDBStorage,
    MemoryStorage,
    Storage,
    StorageClosedError,
    StorageError,
    StorageLockedError,
    StorageNotFoundError,
)

REPO = Path(__file__).resolve().parents[1]
KEYS = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\x7f", b"\x80", b"\xff"]


@pytest.fixture(params=["memory", "leveldb"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store: Storage
    store = MemoryStorage() if request.param == "memory" else LevelDBStorage(tmp_path / "db")
    yield store
    store.close()


def everything(store: Storage) -> list[tuple[bytes, bytes]]:
    return list(store.scan(b"", b"\xff" * 8))


# ---------------------------------------------------------------------------------------------
# Shared behaviour
# ---------------------------------------------------------------------------------------------


def test_get_put_overwrite_delete(storage: Storage) -> None:
    assert storage.get(b"k") is None
    storage.write([(b"k", b"1")])
    assert storage.get(b"k") == b"1"
    storage.write([(b"k", b"2")])
    assert storage.get(b"k") == b"2"
    storage.write([], [b"k", b"never-there"])
    assert storage.get(b"k") is None
    storage.write([(b"", b"empty key"), (b"v", b"")])
    assert storage.get(b"") == b"empty key"
    assert storage.get(b"v") == b""


def test_scan_is_bytewise_ordered_half_open_and_reversible(storage: Storage) -> None:
    storage.write([(key, b"v" + key) for key in reversed(KEYS)])
    ordered = sorted(KEYS)
    assert [key for key, _ in everything(storage)] == ordered
    assert all(value == b"v" + key for key, value in everything(storage))
    assert [k for k, _ in storage.scan(b"a", b"b")] == [b"a", b"a\x00", b"ab", b"a\xff"]
    assert [k for k, _ in storage.scan(b"a", b"b", reverse=True)] == [
        b"a\xff", b"ab", b"a\x00", b"a",
    ]  # fmt: skip
    assert [k for k, _ in storage.scan(b"a\x00", b"a\xff")] == [b"a\x00", b"ab"]
    assert [k for k, _ in storage.scan(b"\x00", b"\x00\x01")] == [b"\x00", b"\x00\x00"]
    assert list(storage.scan(b"b", b"b")) == []
    assert list(storage.scan(b"c", b"a")) == []
    assert list(storage.scan(b"c", b"a", reverse=True)) == []
    assert [k for k, _ in storage.scan(b"", b"\x00")] == [b""]


def test_last_key(storage: Storage) -> None:
    assert storage.last_key(b"", b"\xff") is None
    storage.write([(key, b"") for key in KEYS])
    assert storage.last_key(b"a", b"b") == b"a\xff"
    assert storage.last_key(b"a", b"a\xff") == b"ab"
    assert storage.last_key(b"a", b"ab") == b"a\x00"
    assert storage.last_key(b"a", b"a\x00") == b"a"
    assert storage.last_key(b"a", b"a") is None
    assert storage.last_key(b"b\x00", b"c") is None
    assert storage.last_key(b"", b"\xff\x00") == b"\xff"


def test_a_batch_applies_deletes_then_puts(storage: Storage) -> None:
    storage.write([(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    storage.write([(b"b", b"2"), (b"d", b"2"), (b"d", b"3")], [b"a", b"b"])
    assert everything(storage) == [(b"b", b"2"), (b"c", b"1"), (b"d", b"3")]


def test_a_batch_with_a_bad_item_writes_nothing(storage: Storage) -> None:
    storage.write([(b"a", b"1")])
    bad_batches: list[tuple[list[tuple[bytes, bytes]], list[bytes]]] = [
        ([(b"b", b"2"), (b"c", "text")], []),  # type: ignore[list-item]
        ([(b"b", b"2"), (bytearray(b"c"), b"2")], []),  # type: ignore[list-item]
        ([(b"b", b"2")], [b"a", 7]),  # type: ignore[list-item]
    ]
    for puts, deletes in bad_batches:
        with pytest.raises(TypeError):
            storage.write(puts, deletes)
    assert everything(storage) == [(b"a", b"1")]


def test_a_scan_sees_the_store_as_it_was_when_called(storage: Storage) -> None:
    storage.write([(b"k%03d" % i, b"old") for i in range(600)])
    scan = storage.scan(b"k", b"l")
    reverse = storage.scan(b"k", b"l", reverse=True)
    first = next(scan)
    storage.write([(b"k%03d" % i, b"new") for i in range(0, 600, 2)] + [(b"k999", b"new")],
                  [b"k%03d" % i for i in range(1, 600, 2)])  # fmt: skip
    rest = [first, *scan]
    assert rest == [(b"k%03d" % i, b"old") for i in range(600)]
    assert list(reverse) == rest[::-1]
    assert len(list(storage.scan(b"k", b"l"))) == 301


def test_close_is_idempotent_and_later_calls_raise(storage: Storage) -> None:
    storage.write([(b"k%03d" % i, b"v") for i in range(10)])
    scan = storage.scan(b"k", b"l")
    assert next(scan) == (b"k000", b"v")
    storage.close()
    storage.close()
    with pytest.raises(StorageClosedError):
        next(scan)
    for call in (
        lambda: storage.get(b"k000"),
        lambda: storage.write([(b"x", b"y")]),
        lambda: storage.scan(b"", b"z"),
        lambda: storage.last_key(b"", b"z"),
    ):
        with pytest.raises(StorageClosedError):
            call()
    assert issubclass(StorageClosedError, StorageError)


def test_readers_never_see_part_of_a_batch(storage: Storage) -> None:
    """One writer rewrites 8 keys per batch; concurrent scans and gets see whole batches."""
    keys = [b"w%d" % i for i in range(8)]
    storage.write([(key, b"0") for key in keys])
    done = threading.Event()
    torn: list[object] = []

    def reader() -> None:
        while not done.is_set():
            values = {value for _, value in storage.scan(b"w", b"x")}
            if len(values) != 1:
                torn.append(values)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for batch in range(1, 60):
            storage.write([(key, b"%d" % batch) for key in keys])
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert torn == []
    assert {value for _, value in storage.scan(b"w", b"x")} == {b"59"}


def test_close_waits_for_calls_in_flight_and_stops_later_ones(storage: Storage) -> None:
    """Closing while another thread writes and reads ends that thread with StorageClosedError."""
    outcome: list[BaseException] = []
    started = threading.Event()

    def worker() -> None:
        try:
            for n in range(100_000):
                storage.write([(b"n", b"%d" % n), (b"m%d" % (n % 50), b"x")])
                assert storage.get(b"n") == b"%d" % n
                assert len(list(storage.scan(b"m", b"n"))) <= 50
                started.set()
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(timeout=30)
    storage.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageClosedError)


# ---------------------------------------------------------------------------------------------
# LevelDB only
# ---------------------------------------------------------------------------------------------


def test_leveldb_data_survives_reopening(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "db") as store:
        store.write([(b"a", b"1"), (b"b", b"2")])
        store.write([], [b"a"])
    with LevelDBStorage(str(tmp_path / "db"), create_if_missing=False) as store:
        assert everything(store) == [(b"b", b"2")]


def test_leveldb_refuses_a_second_open_of_one_directory(tmp_path: Path) -> None:
    with LevelDBStorage(tmp_path / "db"), pytest.raises(StorageLockedError):
        LevelDBStorage(tmp_path / "db")
    with LevelDBStorage(tmp_path / "db"):  # the lock went with the close
        pass


def test_leveldb_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageNotFoundError):
        LevelDBStorage(tmp_path / "nope", create_if_missing=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageNotFoundError):
        LevelDBStorage(tmp_path / "empty", create_if_missing=False)
    assert not (tmp_path / "nope").exists()


CHILD = r"""
import sys
from core.storage import LevelDBStorage

KEYS_PER_BATCH = 8
store = LevelDBStorage(sys.argv[1])
head = store.get(b"head")
first = 0 if head is None else int(head) + 1
print("ready", first, flush=True)
for n in range(first, first + 1_000_000):
    puts = [(b"batch/%08d/%02d" % (n, k), bytes([k]) * 700) for k in range(KEYS_PER_BATCH)]
    puts += [(b"head", b"%d" % n), (b"marker/%08d" % n, b"")]
    store.write(puts, [b"marker/%08d" % (n - 1)])
    print(n, flush=True)
"""


def _run_child_and_kill(path: Path, lines_wanted: int) -> tuple[int, int]:
    """Start the writer, check its lock, SIGKILL it after `lines_wanted` acks; (first, last)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        ready, first = child.stdout.readline().split()
        assert ready == "ready"
        with pytest.raises(StorageLockedError):  # held by another process
            LevelDBStorage(path)
        last = int(first) - 1
        deadline = time.monotonic() + 60
        while last - int(first) + 1 < lines_wanted and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the writer died on its own"
            last = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert last - int(first) + 1 == lines_wanted
    return int(first), last


def test_leveldb_sigkill_keeps_every_acknowledged_batch_whole(tmp_path: Path) -> None:
    path = tmp_path / "db"
    acknowledged = -1
    for lines_wanted in (3, 40):  # the second run recovers from the first crash, then crashes
        first, last = _run_child_and_kill(path, lines_wanted)
        assert first == acknowledged + 1
        acknowledged = last
        with LevelDBStorage(path, create_if_missing=False) as store:
            batches: dict[int, int] = {}
            for key, value in store.scan(b"batch/", b"batch0"):
                n = int(key.split(b"/")[1])
                batches[n] = batches.get(n, 0) + 1
                assert value == bytes([int(key.split(b"/")[2])]) * 700
            head = int(store.get(b"head") or b"-1")
            assert head >= acknowledged, "an acknowledged batch is missing"
            assert batches == dict.fromkeys(range(head + 1), 8), "a batch is partly present"
            markers = [key for key, _ in store.scan(b"marker/", b"marker0")]
            assert markers == [b"marker/%08d" % head]
        acknowledged = head


# ---------------------------------------------------------------------------------------------
# Both implementations against a naive reference, on random operations
# ---------------------------------------------------------------------------------------------

_keys = st.sampled_from(KEYS) | st.binary(max_size=3)
_values = st.binary(max_size=8)


class StoresAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="strand-storage-")
        self.leveldb = LevelDBStorage(self.directory)
        self.memory = MemoryStorage()
        self.model: dict[bytes, bytes] = {}

    def stores(self) -> tuple[Storage, Storage]:
        return self.memory, self.leveldb

    @rule(
        puts=st.lists(st.tuples(_keys, _values), max_size=6),
        deletes=st.lists(_keys, max_size=4),
        sync=st.booleans(),
    )
    def write(self, puts: list[tuple[bytes, bytes]], deletes: list[bytes], sync: bool) -> None:
        for store in self.stores():
            store.write(puts, deletes, sync=sync)  # unsynced: same atomicity, same view
        for key in deletes:
            self.model.pop(key, None)
        self.model.update(puts)

    @rule(key=_keys)
    def get(self, key: bytes) -> None:
        for store in self.stores():
            assert store.get(key) == self.model.get(key)

    @rule(start=_keys, stop=_keys, reverse=st.booleans())
    def scan(self, start: bytes, stop: bytes, reverse: bool) -> None:
        expected = sorted((k, v) for k, v in self.model.items() if start <= k < stop)
        if reverse:
            expected.reverse()
        for store in self.stores():
            assert list(store.scan(start, stop, reverse=reverse)) == expected

    @rule(start=_keys, stop=_keys)
    def last_key(self, start: bytes, stop: bytes) -> None:
        inside = [k for k in self.model if start <= k < stop]
        for store in self.stores():
            assert store.last_key(start, stop) == (max(inside) if inside else None)

    @rule()
    def reopen_leveldb(self) -> None:
        self.leveldb.close()
        self.leveldb = LevelDBStorage(self.directory, create_if_missing=False)

    @invariant()
    def same_contents(self) -> None:
        expected = sorted(self.model.items())
        for store in self.stores():
            assert list(store.scan(b"", b"\xff" * 4)) == expected

    def teardown(self) -> None:
        self.leveldb.close()
        self.memory.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)

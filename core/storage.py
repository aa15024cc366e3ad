"""The ordered key-value store under a ledger: the `Storage` protocol and its two implementations.

`LevelDBStorage` keeps a ledger on disk with plyvel; `MemoryStorage` is a sorted in-memory
twin for tests and the simulator. Both behave alike, which tests/test_storage.py checks on
random operation sequences:

- Keys and values are `bytes`; keys sort bytewise. `scan(start, stop)` yields the pairs with
  `start <= key < stop` in ascending order (descending with `reverse=True`). A scan sees the
  store as it was when `scan()` was called (LevelDB's implicit snapshot), whatever is
  written while it is being consumed. `key_chunks(start, stop)` yields the same keys without
  their values (what counting a table reads) in chunks, under the same snapshot rule.
- `write(puts, deletes)` is ONE atomic batch: the deletes are applied, then the puts (so a
  key in both ends up put; a key put twice keeps the last value). Concurrent readers see
  all of a batch or none of it, and after a crash the store holds all of it or none of it.
  `LevelDBStorage.write` is durable (fsynced) when it returns, unless the store was opened
  with `sync=False` (for data that can be rebuilt, such as the journals benchmarks and scale
  tests build: a process crash loses nothing, a machine crash may lose the latest batches).
  A batch with a non-`bytes` key or value raises TypeError and writes nothing.
  `merge_writes` folds consecutive batches into one with the same effect.
- Safe for concurrent readers plus writers from several threads. `close()` is idempotent,
  waits for operations in flight, and afterwards every call raises `StorageClosedError`
  (a half-consumed scan too, at its next item).

Errors are typed: `StorageLockedError` (the directory is open in this or another process),
`StorageNotFoundError` (no database there and `create_if_missing=False`),
`StorageCorruptionError` (LevelDB found a checksum mismatch), `StorageClosedError`, and
`StorageError` for any other failure of the store; all subclass `StorageError`.

This module does no I/O other than through plyvel (plus one check that CURRENT exists when
opening with create_if_missing=False, since LevelDB would first create the directory), starts
no threads and reads no clock.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Protocol, Self

import plyvel

from core.errors import StrandError

__all__ = [
    "LEVELDB_OPTIONS",
    "LevelDBStorage",
    "MemoryStorage",
    "Storage",
    "StorageClosedError",
    "StorageCorruptionError",
    "StorageError",
    "StorageLockedError",
    "StorageNotFoundError",
    "merge_writes",
]


class StorageError(StrandError):
    """The store failed; base class of the storage errors."""


class StorageLockedError(StorageError):
    """The database directory is already open (LevelDB's LOCK), in this or another process."""


class StorageNotFoundError(StorageError):
    """No database at that path, and it was opened with create_if_missing=False."""


class StorageCorruptionError(StorageError):
    """LevelDB found stored bytes that fail its own checksums."""


class StorageClosedError(StorageError):
    """The store was closed."""


class Storage(Protocol):
    """An ordered byte-key store with atomic, durable batch writes (see the module docstring)."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""
        ...

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """The (key, value) pairs with start <= key < stop, sorted bytewise (or reversed)."""
        ...

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        """The greatest key with start <= key < stop, or None."""
        ...

    def key_chunks(self, start: bytes, stop: bytes) -> Iterator[list[bytes]]:
        """The keys with start <= key < stop, ascending, in lists of a few thousand, without
        their values (what a count reads); the same snapshot rule as `scan`."""
        ...

    def write(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        """Apply the deletes, then the puts, as one atomic batch, durable when this returns.

        `sync=False`: atomic but not yet durable (a later synced write makes it durable; a
        machine crash before that may lose it, never half of it)."""
        ...

    def close(self) -> None:
        """Release the store; idempotent."""
        ...


def _check_batch(puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes]) -> None:
    for key in deletes:
        if type(key) is not bytes:
            raise TypeError(f"storage keys are bytes, got {type(key).__qualname__}")
    for key, value in puts:
        if type(key) is not bytes or type(value) is not bytes:
            bad = key if type(key) is not bytes else value
            raise TypeError(f"storage keys and values are bytes, got {type(bad).__qualname__}")


def merge_writes(
    writes: Iterable[tuple[Iterable[tuple[bytes, bytes]], Iterable[bytes]]],
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """The (puts, deletes) of consecutive batches, in order, as one batch with the same
    effect: each batch's deletes, then its puts, a later batch winning; no key in both."""
    puts: dict[bytes, bytes] = {}
    deletes: set[bytes] = set()
    for batch_puts, batch_deletes in writes:
        for key in batch_deletes:
            puts.pop(key, None)
            deletes.add(key)
        for key, value in batch_puts:
            deletes.discard(key)
            puts[key] = value
    return list(puts.items()), list(deletes)


def _check_bounds(start: bytes, stop: bytes) -> None:
    if type(start) is not bytes or type(stop) is not bytes:
        raise TypeError("scan bounds are bytes")


_SCAN_CHUNK: Final = 256  # pairs read per guarded step of a LevelDB scan
_KEY_CHUNK: Final = 1024  # keys read per guarded step of a LevelDB key scan


# ---------------------------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------------------------


class MemoryStorage:
    """A sorted in-memory Storage: a bisect-ordered key list plus a dict, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[bytes] = []
        self._values: dict[bytes, bytes] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError("the storage is closed")

    def get(self, key: bytes) -> bytes | None:
        if type(key) is not bytes:
            raise TypeError(f"storage keys are bytes, got {type(key).__qualname__}")
        with self._lock:
            self._check_open()
            return self._values.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        _check_bounds(start, stop)
        with self._lock:
            self._check_open()
            lo = bisect.bisect_left(self._keys, start)
            hi = bisect.bisect_left(self._keys, stop, lo) if start < stop else lo
            keys = self._keys[lo:hi]
            values = self._values
            pairs = [(key, values[key]) for key in keys]  # the snapshot, taken now
        if reverse:
            pairs.reverse()
        return self._iterate(pairs)

    def _iterate(self, pairs: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for pair in pairs:
            self._check_open()
            yield pair

    def key_chunks(self, start: bytes, stop: bytes) -> Iterator[list[bytes]]:
        _check_bounds(start, stop)
        with self._lock:
            self._check_open()
            lo = bisect.bisect_left(self._keys, start)
            hi = bisect.bisect_left(self._keys, stop, lo) if start < stop else lo
            keys = self._keys[lo:hi]  # the snapshot, taken now
        return self._iterate_keys(keys)

    def _iterate_keys(self, keys: list[bytes]) -> Iterator[list[bytes]]:
        for lo in range(0, len(keys), _KEY_CHUNK):
            self._check_open()
            yield keys[lo : lo + _KEY_CHUNK]

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        _check_bounds(start, stop)
        with self._lock:
            self._check_open()
            if start >= stop:
                return None
            hi = bisect.bisect_left(self._keys, stop)
            if hi == 0 or self._keys[hi - 1] < start:
                return None
            return self._keys[hi - 1]

    def write(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        del sync  # memory is as durable as it gets
        _check_batch(puts, deletes)  # before any change: all or nothing
        with self._lock:
            self._check_open()
            keys, values = self._keys, self._values
            for key in deletes:
                if values.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            for key, value in puts:
                if key not in values:
                    bisect.insort(keys, key)
                values[key] = value

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._keys = []
            self._values = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# LevelDB
# ---------------------------------------------------------------------------------------------

LEVELDB_OPTIONS: Final[dict[str, Any]] = {
    # Refuse to open a database whose files fail their checksums (a torn tail of the write-ahead
    # log after a crash is not an error: LevelDB drops it, and it was never acknowledged).
    "paranoid_checks": True,
    # Memtable size: larger means fewer level-0 files and compactions; the log replayed on
    # open is at most this big.
    "write_buffer_size": 8 * 1024 * 1024,
    # Uncompressed block cache shared by all reads.
    "lru_cache_size": 32 * 1024 * 1024,
    "block_size": 4096,
    # 10 bits per key: about 1% false positives, so a lookup of an absent key seldom reads disk.
    "bloom_filter_bits": 10,
    "max_open_files": 256,
    # Snappy skips incompressible blocks (hashes) cheaply and shrinks msgpack text.
    "compression": "snappy",
}


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _storage_error(exc: BaseException, doing: str) -> StorageError:
    message = _message(exc)
    if isinstance(exc, plyvel.CorruptionError):
        return StorageCorruptionError(f"{doing}: {message}")
    if isinstance(exc, RuntimeError):  # plyvel: "Database is closed"
        return StorageClosedError(f"{doing}: {message}")
    return StorageError(f"{doing}: {message}")


class LevelDBStorage:
    """A Storage on a LevelDB directory (plyvel). Writes are synced batches.

    Every call holds an in-flight count so that `close()` waits for calls running in other
    threads instead of freeing the database under them (plyvel releases the GIL inside
    LevelDB).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create_if_missing: bool = True, sync: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self._sync = sync
        if not create_if_missing and not os.path.isfile(os.path.join(self.path, "CURRENT")):
            # Checked here because LevelDB would first create the directory and its LOCK file.
            raise StorageNotFoundError(f"no database at {self.path}")
        try:
            db = plyvel.DB(self.path, create_if_missing=create_if_missing, **LEVELDB_OPTIONS)
        except plyvel.Error as exc:
            message = _message(exc)
            if message.startswith("IO error: lock "):
                raise StorageLockedError(f"{self.path} is already open: {message}") from exc
            if not create_if_missing and "does not exist" in message:
                raise StorageNotFoundError(f"no database at {self.path}: {message}") from exc
            raise _storage_error(exc, f"cannot open {self.path}") from exc
        self._db: Any = db
        self._lock = threading.Lock()  # guards _db and _in_flight
        self._idle = threading.Condition(self._lock)  # close() waits on it for _in_flight == 0
        self._in_flight = 0

    def _enter(self) -> Any:
        with self._lock:
            db = self._db
            if db is None:
                raise StorageClosedError(f"the storage at {self.path} is closed")
            self._in_flight += 1
            return db

    def _exit(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._db is None and self._in_flight == 0:  # close() is waiting
                self._idle.notify_all()

    def get(self, key: bytes) -> bytes | None:
        if type(key) is not bytes:
            raise TypeError(f"storage keys are bytes, got {type(key).__qualname__}")
        with self._lock:  # _enter() inlined: get is the hottest call
            db = self._db
            if db is None:
                raise StorageClosedError(f"the storage at {self.path} is closed")
            self._in_flight += 1
        try:
            value: bytes | None = db.get(key, verify_checksums=True)
            return value
        except (plyvel.Error, RuntimeError) as exc:
            raise _storage_error(exc, "get") from exc
        finally:
            self._exit()

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        _check_bounds(start, stop)
        db = self._enter()
        try:  # the iterator (and so its snapshot) is made now, not at the first next()
            if reverse:
                # plyvel 1.5 yields nothing in reverse when the range holds only its `start`
                # key, so the lower bound of a reverse scan is checked here instead.
                iterator = db.iterator(stop=stop, reverse=True, verify_checksums=True)
            else:
                iterator = db.iterator(start=start, stop=stop, verify_checksums=True)
        except (plyvel.Error, RuntimeError) as exc:
            raise _storage_error(exc, "scan") from exc
        finally:
            self._exit()
        return self._iterate(iterator, start if reverse else None)

    def key_chunks(self, start: bytes, stop: bytes) -> Iterator[list[bytes]]:
        _check_bounds(start, stop)
        db = self._enter()
        try:  # the iterator (and so its snapshot) is made now, not at the first next()
            iterator = db.iterator(
                start=start, stop=stop, include_value=False, verify_checksums=True
            )
        except (plyvel.Error, RuntimeError) as exc:
            raise _storage_error(exc, "scan") from exc
        finally:
            self._exit()
        return self._iterate_keys(iterator)

    def _iterate_keys(self, iterator: Any) -> Iterator[list[bytes]]:
        try:
            while True:
                self._enter()
                try:
                    chunk: list[bytes] = list(itertools.islice(iterator, _KEY_CHUNK))
                except (plyvel.Error, RuntimeError) as exc:
                    raise _storage_error(exc, "scan") from exc
                finally:
                    self._exit()
                if self._db is None:
                    raise StorageClosedError(f"the storage at {self.path} is closed")
                if chunk:
                    yield chunk
                if len(chunk) < _KEY_CHUNK:
                    return
        finally:
            self._close_iterator(iterator)

    def _iterate(self, iterator: Any, lower: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        try:
            while True:
                self._enter()
                try:
                    chunk: list[tuple[bytes, bytes]] = list(itertools.islice(iterator, _SCAN_CHUNK))
                except (plyvel.Error, RuntimeError) as exc:
                    raise _storage_error(exc, "scan") from exc
                finally:
                    self._exit()
                for pair in chunk:
                    if lower is not None and pair[0] < lower:
                        return
                    if self._db is None:
                        raise StorageClosedError(f"the storage at {self.path} is closed")
                    yield pair
                if len(chunk) < _SCAN_CHUNK:
                    return
        finally:
            self._close_iterator(iterator)

    def _close_iterator(self, iterator: Any) -> None:
        try:
            self._enter()
        except StorageClosedError:
            return  # closing the database closed its iterators
        try:
            iterator.close()
        finally:
            self._exit()

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        _check_bounds(start, stop)
        db = self._enter()
        try:
            # Lower bound checked here: see the plyvel bug noted in scan().
            iterator = db.iterator(
                stop=stop, reverse=True, include_value=False, verify_checksums=True
            )
            try:
                key: bytes | None = next(iterator, None)
                return key if key is not None and key >= start else None
            finally:
                iterator.close()
        except (plyvel.Error, RuntimeError) as exc:
            raise _storage_error(exc, "last_key") from exc
        finally:
            self._exit()

    def write(
        self,
        puts: Sequence[tuple[bytes, bytes]],
        deletes: Sequence[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        _check_batch(puts, deletes)
        db = self._enter()
        try:
            with db.write_batch(transaction=True, sync=self._sync and sync) as batch:
                for key in deletes:
                    batch.delete(key)
                for key, value in puts:
                    batch.put(key, value)
        except (plyvel.Error, RuntimeError) as exc:
            raise _storage_error(exc, "write") from exc
        finally:
            self._exit()

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None  # new calls now fail; wait for the ones in flight
            while self._in_flight:
                self._idle.wait()
            if db is not None:
                db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

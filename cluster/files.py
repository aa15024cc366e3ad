"""Small files replaced atomically: metadata, checkpoints, job registries.

`write_atomically(path, data)` writes `data` to a temporary file beside `path` (removed if
anything fails), fsyncs it, renames it over `path` and fsyncs the directory. Invariants: a
crash at any point leaves `path` with its old content or the new, never a mix; once the call
returns, the new content survives a machine crash. `fsync_dir(path)` is the last step alone,
for a caller that renamed something itself.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, directory fsync."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the directory `path`'s entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

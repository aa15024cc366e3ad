"""A separate virtual environment holding QLDB's real client libraries, for the gateway tests.

pyqldb 3.2.4 pins `amazon.ion<=0.9.3` and cannot import next to the project's amazon-ion;
botocore 1.40.60 is the last release that ships the `qldb` and `qldb-session` service models.
So the tests run real driver code in a subprocess of this environment, against a server the
test started. The environment is built once per set of pins and cached under
`$STRAND_CACHE_DIR` (default `~/.cache/strand`), so clean clones reuse it; a lock makes
concurrent builders wait for one another; a half-built environment is never used (the
`.complete` marker is written last).

Invariants: `qldb_python()` returns a Python whose `import pyqldb, boto3` works with exactly
the pinned versions, or raises RuntimeError saying what failed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PINS = ("pyqldb==3.2.4", "boto3==1.40.60", "botocore==1.40.60")
BUILD_TIMEOUT_S = 600


def cache_dir() -> Path:
    root = os.environ.get("STRAND_CACHE_DIR") or os.path.join(Path.home(), ".cache", "strand")
    return Path(root)


def qldb_python() -> Path:
    """The Python of the cached environment with PINS installed (built on first use)."""
    key = hashlib.sha256("\n".join(PINS).encode()).hexdigest()[:12]
    home = cache_dir() / f"qldb-venv-{key}"
    python = home / "bin" / "python"
    marker = home / ".complete"
    if marker.exists():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"qldb-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return python
        shutil.rmtree(home, ignore_errors=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(home)],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT_S,
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", *PINS],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT_S,
            )
            subprocess.run(
                [str(python), "-c", "import pyqldb, boto3, botocore"],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
            raise RuntimeError(f"building the pyqldb environment failed: {detail}") from exc
        marker.write_text("\n".join(PINS) + "\n")
    return python

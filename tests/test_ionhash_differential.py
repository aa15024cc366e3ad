"""core.ionhash against AWS's reference implementation (ionhash 1.2.1) on generated values.

AWS's `ionhash` package needs amazon.ion < 0.10, so it runs in its own throwaway virtual
environment, created once under ``<repo>/.venv-ionhash-ref`` (or the directory named by
``STRAND_IONHASH_REF_VENV``) with ``pip install amazon.ion==0.9.3 ionhash==1.2.1`` and reused
while it works. One long-lived reference process per session answers line-delimited
requests: a JSON list of Ion texts in, a JSON list of hex SHA-256 Ion hashes out.

Values cross as Ion text, so both sides hash the same parsed value: the reference hashes its
own amazon.ion 0.9.3 reading of the text, we hash our amazon-ion 0.15 reading of it. Creating
the environment needs PyPI once; without it the test fails (it never skips).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from amazon.ion import simpleion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ionhash import ion_hash
from tests.ion_strategies import documents, ion_values

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".venv-ionhash-ref"
REFERENCE_PACKAGES = ("amazon.ion==0.9.3", "ionhash==1.2.1")
BATCH = 20

SERVER = """
import json, sys
from amazon.ion import simpleion
import ionhash  # adds .ion_hash() to simpleion values
for line in sys.stdin:
    out = []
    for text in json.loads(line):
        try:
            out.append(simpleion.loads(text).ion_hash("sha256").hex())
        except Exception as exc:
            out.append("error: %s: %s" % (type(exc).__name__, exc))
    sys.stdout.write(json.dumps(out) + "\\n")
    sys.stdout.flush()
"""

PROBE = "import ionhash, amazon.ion, importlib.metadata as m; print(m.version('amazon.ion'))"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(venv: Path) -> bool:
    python = _python(venv)
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    return probe.returncode == 0 and probe.stdout.strip() == "0.9.3"


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"could not {what} for the Ion Hash reference ({' '.join(command)}):\n"
            f"{(done.stdout + done.stderr)[-2000:]}\n"
            "The differential test installs AWS's ionhash from PyPI once; it needs network "
            "access to the package index the first time it runs.",
            pytrace=False,
        )


def _reference_venv() -> Path:
    override = os.environ.get("STRAND_IONHASH_REF_VENV")
    venv = Path(override) if override else DEFAULT_VENV
    if _works(venv):
        return venv
    if override and venv.exists():
        pytest.fail(f"STRAND_IONHASH_REF_VENV={venv} has no working ionhash", pytrace=False)
    if venv.exists():
        shutil.rmtree(venv)  # a half-built environment from an interrupted run
    _run([sys.executable, "-m", "venv", str(venv)], "create a virtual environment")
    _run(
        [
            str(_python(venv)),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *REFERENCE_PACKAGES,
        ],
        f"pip install {' '.join(REFERENCE_PACKAGES)}",
    )
    if not _works(venv):
        pytest.fail(f"{venv} was built but cannot import ionhash", pytrace=False)
    return venv


class Reference:
    """The long-lived reference process."""

    def __init__(self, python: Path) -> None:
        self._stderr: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._process = subprocess.Popen(
            [str(python), "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )

    def hashes(self, texts: list[str]) -> list[str]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(texts) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            self._stderr.seek(0)
            pytest.fail(f"the reference process died:\n{self._stderr.read()[-2000:]}")
        answer: list[str] = json.loads(line)
        assert len(answer) == len(texts)
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()


@pytest.fixture(scope="session")
def reference() -> Iterator[Reference]:
    process = Reference(_python(_reference_venv()))
    yield process
    process.close()


def _compare(reference: Reference, values: list[Any]) -> None:
    texts = [simpleion.dumps(value, binary=False) for value in values]
    ours = [ion_hash(simpleion.loads(text)).hex() for text in texts]
    theirs = reference.hashes(texts)
    for text, mine, aws in zip(texts, ours, theirs, strict=True):
        assert mine == aws, f"Ion Hash differs from AWS's ionhash for {text!r}"


KNOWN = [
    '"hello world"',
    '{id:"5vHoYG5m0OZCsqdYCs8XLH",version:13,txTime:2021-06-02T07:03:05.226Z,'
    'txId:"EVaGjT4dxspC4GUhHi4DDJ"}',
    '{_key:"myKey1",_val:"MyValue1"}',
    "2021-06-02T07:03:05.226000Z",
    "2001-02-03T04:05:06.123456789-12:34",
    "2020T",
    "2020-01-02",
    "2020-01-02T03:04-00:00",
    "-0d0",
    "0d-3",
    "123.4500",
    "-0e0",
    "nan",
    "-inf",
    "null.timestamp",
    "a::b::null.struct",
    "{a:1, a:2, $0:3}",
    '($0 a \'b c\' "d" {{"e"}} {{ZQ==}})',
    "{'\\x0b\\x0c\\x0e':[1,-1,0x0b0c0e]}",
]


@pytest.mark.differential
def test_reference_agrees_on_known_values(reference: Reference) -> None:
    ours = [ion_hash(simpleion.loads(text)).hex() for text in KNOWN]
    assert reference.hashes(KNOWN) == ours
    assert ours[0] == "82c4010bfc9cace7f645c0a951243b9b122cb5ba21b60b3f71ea79c513c39342"


def _examples(count: int) -> Any:
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.differential
@_examples(30)
@given(values=st.lists(ion_values(), min_size=BATCH, max_size=BATCH))
def test_matches_aws_ionhash_on_generated_values(reference: Reference, values: list[Any]) -> None:
    _compare(reference, values)


@pytest.mark.differential
@_examples(15)
@given(values=st.lists(documents(), min_size=5, max_size=5))
def test_matches_aws_ionhash_on_documents(reference: Reference, values: list[Any]) -> None:
    _compare(reference, values)


@pytest.mark.slow
@pytest.mark.differential
@_examples(1000)
@given(values=st.lists(ion_values(), min_size=BATCH, max_size=BATCH))
def test_matches_aws_ionhash_on_many_generated_values(
    reference: Reference, values: list[Any]
) -> None:
    _compare(reference, values)


@pytest.mark.slow
@pytest.mark.differential
@_examples(500)
@given(values=st.lists(documents(), min_size=5, max_size=5))
def test_matches_aws_ionhash_on_many_documents(reference: Reference, values: list[Any]) -> None:
    _compare(reference, values)

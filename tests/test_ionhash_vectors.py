"""core.ionhash against the official Ion Hash conformance suite (amazon-ion/ion-hash-test).

The suite is vendored in ``tests/vectors/ion_hash_tests.ion`` (a copy of ../shared/vectors).
Each of its 167 top-level structs is one case: the value under test (``ion``, or Ion
binary bytes under ``'10n'``) and its expectations: ``identity`` lists the bytes fed to an
identity hash, whose last ``digest::``/``final_digest::`` is the full serialization;
``md5`` lists MD5 digests, the last one being the value's. Every case must pass; none is
skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.symbols import SymbolTableCatalog

from core.ionhash import ion_hash

VECTORS = Path(__file__).resolve().parent / "vectors" / "ion_hash_tests.ion"
CASE_COUNT = 167
IVM = bytes((0xE0, 0x01, 0x00, 0xEA))


def _load_cases() -> list[Any]:
    if not VECTORS.is_file():
        raise FileNotFoundError(
            f"Ion Hash conformance suite not found at {VECTORS}: "
            "it is part of the repository (tests/vectors/)"
        )
    # amazon-ion's C extension refuses this file (IERR_TOO_MANY_ANNOTATIONS); passing a
    # catalog selects the pure-Python reader, which parses every case.
    text = VECTORS.read_text(encoding="utf-8")
    return list(simpleion.loads(text, single_value=False, catalog=SymbolTableCatalog()))


CASES = _load_cases()


def _name(index: int, case: Any) -> str:
    if case.ion_annotations:
        name = case.ion_annotations[0].text
    elif "ion" in case:
        try:
            name = simpleion.dumps(case["ion"], binary=False).removeprefix("$ion_1_0 ")
        except Exception:  # a few suite values are beyond amazon-ion's C writer
            name = "ion"
    else:
        name = "10n"
    return f"{index:03d}-{name[:40]}"


def _with(algorithm: str) -> list[Any]:
    return [
        pytest.param(case, id=_name(i, case))
        for i, case in enumerate(CASES)
        if algorithm in case["expect"]
    ]


def _values(case: Any) -> list[Any]:
    """The value under test; a '10n' case is read by both of amazon-ion's binary readers."""
    if "ion" in case:
        return [case["ion"]]
    data = IVM + bytes(case["10n"])
    return [simpleion.loads(data), simpleion.loads(data, catalog=SymbolTableCatalog())]


def _expected(expectations: Any) -> bytes:
    last = expectations[-1]
    assert last.ion_annotations[0].text in ("digest", "final_digest")
    return bytes(last)


def test_suite_has_every_case() -> None:
    assert len(CASES) == CASE_COUNT
    for case in CASES:
        assert ("ion" in case) != ("10n" in case)
        assert set(case["expect"]) <= {"identity", "md5"}
        assert case["expect"]


@pytest.mark.parametrize("case", _with("identity"))
def test_identity_digest(case: Any) -> None:
    expected = _expected(case["expect"]["identity"])
    for value in _values(case):
        assert ion_hash(value, lambda data: data).hex() == expected.hex()


@pytest.mark.parametrize("case", _with("md5"))
def test_md5_digest(case: Any) -> None:
    expected = _expected(case["expect"]["md5"])
    for value in _values(case):
        assert ion_hash(value, lambda data: hashlib.md5(data).digest()) == expected

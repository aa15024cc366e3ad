"""core.merkle against deliberately naive references (RFC 6962/9162 recursions, pairwise root).

Run as a script (``python tests/test_merkle.py``) to print timings; they are not asserted.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ionhash import dot
from core.merkle import (
    Frontier,
    MerkleError,
    NodeGetter,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    path_of,
    range_nodes,
    root_at,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# --- naive references ---------------------------------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH, recursively, with dot as the node hash and the leaf as its own hash."""
    if not leaves:
        return b""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return dot(naive_root(leaves[:k]), naive_root(leaves[k:]))


def naive_pairwise_root(leaves: Sequence[bytes]) -> bytes:
    """QLDB's description: pair left to right, an odd last node carried up unchanged."""
    level = list(leaves)
    if not level:
        return b""
    while len(level) > 1:
        paired = [dot(a, b) for a, b in zip(level[0::2], level[1::2], strict=False)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), bottom-up."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_root(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_root(leaves[:k])]


def naive_consistency(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""

    def sub(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [naive_root(d)]
        k = _split(n)
        if m <= k:
            return [*sub(m, d[:k], b), naive_root(d[k:])]
        return [*sub(m - k, d[k:], False), naive_root(d[:k])]

    return sub(m, leaves, True)


def complete_nodes(n: int) -> set[tuple[int, int]]:
    return {(lv, ix) for lv in range(n.bit_length()) for ix in range(n >> lv)}


# --- helpers ------------------------------------------------------------------------------


def leaf_hashes(n: int, seed: int = 0) -> list[bytes]:
    return [hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(n)]


def rand_hash(rng: random.Random) -> bytes:
    return rng.randbytes(32)


def build_store(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    store: dict[tuple[int, int], bytes] = {}
    f = Frontier()
    for leaf in leaves:
        for lv, ix, h in f.append(leaf):
            store[(lv, ix)] = h
    return store


class Getter:
    """Counts reads and refuses nodes that are not complete in the tree of `limit` leaves."""

    def __init__(self, store: dict[tuple[int, int], bytes], limit: int) -> None:
        self.store, self.limit, self.reads = store, limit, 0

    def __call__(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.limit, f"node {(level, index)} not complete"
        self.reads += 1
        return self.store[(level, index)]


def log_bound(n: int) -> int:
    return 2 * (n - 1).bit_length() + 2  # 2 * ceil(log2 n) + 2


LEAVES = leaf_hashes(5000)
STORE = build_store(LEAVES)


# --- shape and in-memory trees ------------------------------------------------------------


def test_root_uses_qldb_dot() -> None:
    a, b = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
    expected = "940ed9abddfb5ef28004408546bc5043cda391232b6afe07267f9f8ed2b500c9"
    assert root_of([a, b]).hex() == expected
    assert root_of([b, a]).hex() == expected
    assert root_of([]) == b""
    assert root_of([a]) == a


def test_pairwise_shape_is_left_balanced() -> None:
    rng = random.Random(1)
    sizes = [*range(301), *rng.sample(range(301, 4000), 12)]
    for n in sizes:
        leaves = LEAVES[:n] if n <= len(LEAVES) else leaf_hashes(n)
        expected = naive_root(leaves)
        assert naive_pairwise_root(leaves) == expected, n
        assert root_of(leaves) == expected, n


def test_path_of_matches_naive() -> None:
    for n in range(1, 70):
        leaves = LEAVES[:n]
        root = root_of(leaves)
        for i in range(n):
            path = path_of(leaves, i)
            assert path == naive_path(i, leaves), (i, n)
            assert reduce(dot, path, leaves[i]) == root
    with pytest.raises(MerkleError, match="out of range"):
        path_of(LEAVES[:3], 3)
    with pytest.raises(MerkleError):
        path_of([], 0)


# --- index math ---------------------------------------------------------------------------


def test_range_nodes_is_the_compact_range() -> None:
    for end in range(65):
        for begin in range(end + 1):
            nodes = range_nodes(begin, end)
            covered = [i for lv, ix in nodes for i in range(ix << lv, (ix + 1) << lv)]
            assert covered == list(range(begin, end))
            # Maximal: no two neighbours could merge into their parent.
            for (l1, i1), (l2, i2) in zip(nodes, nodes[1:], strict=False):
                assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1)
            assert len(nodes) <= 2 * max(1, (end - begin).bit_length())
    with pytest.raises(MerkleError):
        range_nodes(3, 2)
    with pytest.raises(MerkleError):
        range_nodes(-1, 2)


def test_proof_nodes_are_complete_and_few() -> None:
    for n in range(1, 130):
        complete = complete_nodes(n)
        for i in range(n):
            groups = inclusion_nodes(i, n)
            ids = [node for g in groups for node in g]
            assert set(ids) <= complete
            assert len(ids) <= log_bound(n)
        for m in range(1, n + 1):
            ids = [node for g in consistency_nodes(m, n) for node in g]
            assert set(ids) <= complete
            assert len(ids) <= log_bound(n)


# --- Frontier -----------------------------------------------------------------------------


def test_frontier_every_size_and_completed_nodes() -> None:
    f = Frontier()
    assert f.size == 0
    assert f.root() == b""
    assert f.nodes() == []
    persisted: dict[tuple[int, int], bytes] = {}
    for n in range(1, 301):
        leaf = LEAVES[n - 1]
        new = f.append(leaf)
        assert new[0] == (0, n - 1, leaf)
        assert {(lv, ix) for lv, ix, _ in new} == complete_nodes(n) - complete_nodes(n - 1)
        for lv, ix, h in new:
            assert (lv, ix) not in persisted  # returned once, never changed afterwards
            assert h == naive_root(LEAVES[ix << lv : (ix + 1) << lv])
            persisted[(lv, ix)] = h
        assert f.size == n
        assert f.root() == naive_root(LEAVES[:n])
        assert [(lv, ix) for lv, ix, _ in f.nodes()] == range_nodes(0, n)
    assert persisted == {k: STORE[k] for k in persisted}


def test_frontier_large_random_sizes() -> None:
    rng = random.Random(2)
    checkpoints = set(rng.sample(range(301, len(LEAVES) + 1), 15)) | {len(LEAVES)}
    f = Frontier()
    for n, leaf in enumerate(LEAVES, start=1):
        f.append(leaf)
        if n in checkpoints:
            assert f.root() == naive_root(LEAVES[:n])


def test_frontier_from_storage_and_copy() -> None:
    f = Frontier()
    for n in range(0, 600):
        get = Getter(STORE, n)
        g = Frontier.from_storage(n, get)
        assert get.reads == bin(n).count("1") <= log_bound(max(n, 1))
        assert g.size == n
        assert g.root() == f.root()
        assert g.nodes() == f.nodes()
        assert g.append(LEAVES[n]) == f.copy().append(LEAVES[n])
        f.append(LEAVES[n])
        assert g.root() == f.root()
    c = f.copy()
    c.append(LEAVES[700])
    assert c.size == f.size + 1
    assert c.root() != f.root()
    assert f.root() == naive_root(LEAVES[:600])
    assert "size=600" in repr(f)
    with pytest.raises(MerkleError):
        Frontier.from_storage(-1, Getter(STORE, 0))


# --- root_at and inclusion over stored nodes ----------------------------------------------


def test_root_at_every_past_size() -> None:
    for m in range(0, 301):
        get = Getter(STORE, m)
        assert root_at(m, get) == naive_root(LEAVES[:m])
        assert get.reads <= log_bound(max(m, 1))
    rng = random.Random(3)
    for m in rng.sample(range(301, len(LEAVES) + 1), 20):
        get = Getter(STORE, m)
        assert root_at(m, get) == naive_root(LEAVES[:m])
        assert get.reads <= log_bound(m)
    with pytest.raises(MerkleError):
        root_at(-1, Getter(STORE, 0))


def test_inclusion_exhaustive_small() -> None:
    for n in range(1, 100):
        root = naive_root(LEAVES[:n])
        for i in range(n):
            get = Getter(STORE, n)
            proof = inclusion_proof(i, n, get)
            assert get.reads <= log_bound(n)
            assert proof == naive_path(i, LEAVES[:n]) == path_of(LEAVES[:n], i)
            assert verify_inclusion(LEAVES[i], proof, root)
            assert len(proof) == len(inclusion_nodes(i, n))


def test_inclusion_random_large() -> None:
    rng = random.Random(4)
    for _ in range(60):
        n = rng.randint(1, len(LEAVES))
        i = rng.randrange(n)
        get = Getter(STORE, n)
        proof = inclusion_proof(i, n, get)
        assert get.reads <= log_bound(n)
        assert proof == naive_path(i, LEAVES[:n])
        assert verify_inclusion(LEAVES[i], proof, root_at(n, Getter(STORE, n)))


def test_inclusion_must_fail() -> None:
    rng = random.Random(5)
    for n in [2, 3, 5, 8, 13, 100, 1000, 4097]:
        for i in {0, n // 2, n - 1}:
            leaf, root = LEAVES[i], naive_root(LEAVES[:n])
            proof = inclusion_proof(i, n, Getter(STORE, n))
            assert verify_inclusion(leaf, proof, root)
            assert not verify_inclusion(LEAVES[n], proof, root)  # another leaf
            assert not verify_inclusion(leaf, proof, rand_hash(rng))  # wrong root
            assert not verify_inclusion(leaf, proof[:-1], root)  # truncated
            assert not verify_inclusion(leaf, [*proof, rand_hash(rng)], root)  # extended
            assert not verify_inclusion(leaf, [*proof, proof[-1]], root)
            assert not verify_inclusion(leaf, [*proof, b""], root)  # identity under dot
            assert not verify_inclusion(leaf, proof, b"")
            for k in range(len(proof)):
                tampered = list(proof)
                tampered[k] = rand_hash(rng)
                assert not verify_inclusion(leaf, tampered, root)


def test_proof_may_repeat_a_hash() -> None:
    a, c, d = leaf_hashes(3, seed=9)
    h = dot(c, d)
    leaves = [a, h, c, d]  # the proof of leaf 0 is [h, h]
    proof = inclusion_proof(0, 4, Getter(build_store(leaves), 4))
    assert proof == [h, h]
    assert verify_inclusion(a, proof, root_of(leaves))
    assert not verify_inclusion(a, [h], root_of(leaves))  # de-duplicating breaks it


def test_inclusion_invalid_arguments() -> None:
    for index, size in [(0, 0), (5, 5), (6, 5), (-1, 5)]:
        with pytest.raises(MerkleError, match="out of range"):
            inclusion_proof(index, size, Getter(STORE, 5))
    assert issubclass(MerkleError, ValueError)


# --- consistency --------------------------------------------------------------------------


def test_consistency_exhaustive_with_failures() -> None:
    rng = random.Random(6)
    roots = [naive_root(LEAVES[:n]) for n in range(72)]
    for n in range(1, 71):
        for m in range(1, n + 1):
            get = Getter(STORE, n)
            proof = consistency_proof(m, n, get)
            assert get.reads <= log_bound(n)
            assert proof == naive_consistency(m, LEAVES[:n]), (m, n)
            r1, r2 = roots[m], roots[n]
            assert verify_consistency(m, n, r1, r2, proof)
            bad = rand_hash(rng)
            assert not verify_consistency(m, n, bad, r2, proof)  # wrong old root
            assert not verify_consistency(m, n, r1, bad, proof)  # wrong new root
            assert not verify_consistency(m, n, r1, r2, [*proof, bad])  # extended
            assert not verify_consistency(m, n, r1, r2, [*proof, proof[-1] if proof else r1])
            if m == n:
                assert proof == []
                continue
            with pytest.raises(MerkleError, match="exceeds"):
                verify_consistency(n, m, r2, r1, proof)  # swapped sizes
            assert not verify_consistency(m, n, r2, r1, proof)  # swapped roots
            assert not verify_consistency(m, n, r1, r2, proof[:-1])  # truncated
            assert not verify_consistency(m, n, r1, r2, proof[1:])
            assert not verify_consistency(m, n, r1, r2, [r1, *proof])
            for k in range(len(proof)):
                for replacement in (bad, b""):
                    tampered = list(proof)
                    tampered[k] = replacement
                    assert not verify_consistency(m, n, r1, r2, tampered)
            # A size-n tree that does not extend the size-m tree: one early leaf differs.
            forked = list(LEAVES[:n])
            forked[rng.randrange(m)] = bad
            f_root, f_proof = naive_root(forked), naive_consistency(m, forked)
            assert verify_consistency(m, n, naive_root(forked[:m]), f_root, f_proof)
            assert not verify_consistency(m, n, r1, f_root, f_proof)
            assert not verify_consistency(m, n, r1, f_root, proof)


def test_consistency_random_large() -> None:
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(2, len(LEAVES))
        m = rng.randint(1, n)
        get = Getter(STORE, n)
        proof = consistency_proof(m, n, get)
        assert get.reads <= log_bound(n)
        assert proof == naive_consistency(m, LEAVES[:n])
        r1, r2 = root_at(m, Getter(STORE, m)), root_at(n, Getter(STORE, n))
        assert verify_consistency(m, n, r1, r2, proof)
        forked = list(LEAVES[:n])
        forked[rng.randrange(m)] = rand_hash(rng)
        assert not verify_consistency(m, n, r1, naive_root(forked), naive_consistency(m, forked))


def test_consistency_invalid_sizes() -> None:
    r = LEAVES[0]
    for size1, size2, match in [(0, 5, "positive"), (-1, 5, "positive"), (6, 5, "exceeds")]:
        with pytest.raises(MerkleError, match=match):
            consistency_proof(size1, size2, Getter(STORE, 6))
        with pytest.raises(MerkleError, match=match):
            verify_consistency(size1, size2, r, r, [])
    assert verify_consistency(3, 3, r, r, [])
    assert not verify_consistency(3, 3, r, LEAVES[1], [])
    assert not verify_consistency(3, 3, r, r, [r])
    assert not verify_consistency(3, 5, r, r, [])
    assert not verify_consistency(1, 1, b"", b"", [])
    # b"" is an identity under dot: with it, "size 3 has the same root as size 2" would verify.
    assert not verify_consistency(2, 3, r, r, [b""])
    assert not verify_inclusion(r, [b""], r)


# --- property tests -----------------------------------------------------------------------

HASHES = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=150)


@settings(max_examples=150, deadline=None)
@given(leaves=HASHES, data=st.data())
def test_property_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    store = build_store(leaves)
    root = naive_root(leaves)
    assert root_of(leaves) == root == root_at(n, Getter(store, n))
    i = data.draw(st.integers(0, n - 1), label="index")
    size = data.draw(st.integers(i + 1, n), label="size")
    old_root = naive_root(leaves[:size])
    proof = inclusion_proof(i, size, Getter(store, size))
    assert proof == path_of(leaves[:size], i)
    assert verify_inclusion(leaves[i], proof, old_root)
    m = data.draw(st.integers(1, n), label="m")
    cproof = consistency_proof(m, n, Getter(store, n))
    assert verify_consistency(m, n, naive_root(leaves[:m]), root, cproof)
    f = Frontier.from_storage(m, Getter(store, m))
    for leaf in leaves[m:]:
        f.append(leaf)
    assert f.root() == root


@settings(max_examples=300, deadline=None)
@given(
    size1=st.integers(1, 300),
    extra=st.integers(0, 300),
    roots=st.lists(st.binary(max_size=40), min_size=2, max_size=2),
    proof=st.lists(st.binary(max_size=40), max_size=20),
)
def test_property_garbage_never_raises(
    size1: int, extra: int, roots: list[bytes], proof: list[bytes]
) -> None:
    result = verify_consistency(size1, size1 + extra, roots[0], roots[1], proof)
    assert result is False or (extra == 0 and not proof and roots[0] == roots[1] != b"")
    assert verify_inclusion(roots[0], proof, roots[1]) in (True, False)


# --- timings (python tests/test_merkle.py) -------------------------------------------------


def dict_getter(store: dict[tuple[int, int], bytes]) -> NodeGetter:
    def get(level: int, index: int) -> bytes:
        return store[(level, index)]

    return get


def _bench() -> None:
    rng = random.Random(0)
    for exp in range(3, 7):
        n = 10**exp
        leaves = [rng.randbytes(32) for _ in range(n)]
        store: dict[tuple[int, int], bytes] = {}
        f = Frontier()
        t0 = time.perf_counter()
        for leaf in leaves:
            for lv, ix, h in f.append(leaf):
                store[(lv, ix)] = h
        t_append = (time.perf_counter() - t0) / n
        root = f.root()
        get = dict_getter(store)
        reps = 2000
        idx = [rng.randrange(n) for _ in range(reps)]
        t0 = time.perf_counter()
        proofs = [inclusion_proof(i, n, get) for i in idx]
        t_proof = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        ok = all(verify_inclusion(leaves[i], p, root) for i, p in zip(idx, proofs, strict=True))
        t_verify = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            m = rng.randint(1, n)
            consistency_proof(m, n, get)
        t_cons = (time.perf_counter() - t0) / reps
        assert ok
        print(
            f"n=10^{exp}: append {t_append * 1e6:.2f} us/leaf (incl. dict store), "
            f"inclusion_proof {t_proof * 1e6:.1f} us, verify_inclusion {t_verify * 1e6:.1f} us, "
            f"consistency_proof {t_cons * 1e6:.1f} us, proof length ~{len(proofs[0])}"
        )


if __name__ == "__main__":
    _bench()

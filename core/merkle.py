"""The strand's Merkle tree: roots, inclusion and consistency proofs over QLDB's `dot`.

Theory of operation
-------------------
Shape. QLDB builds every tree pairwise from left to right, an odd last node carried up
unchanged. That is exactly the left-balanced tree of RFC 6962/9162: the root of n > 1 leaves
is ``dot(root(first k), root(rest))`` with k the largest power of two smaller than n. Nodes are
joined with ``core.ionhash.dot`` (commutative; an empty side returns the other), and a single
leaf is its own root: there is no leaf prefix and no node prefix, as in QLDB.

Addressing. A node is ``(level, index)``; it covers the leaves ``[index * 2**level,
(index + 1) * 2**level)``; leaves are ``(0, i)``. A node is *complete* in a tree of size n
once ``(index + 1) * 2**level <= n``. A complete node's hash never changes as the tree grows,
so complete nodes, and only they, are persisted (about 2n of them). Any range ``[begin, end)``
splits into a unique list of maximal complete nodes, its *compact range* (`range_nodes`); the
root of the first n leaves is the fold, from the right, of the compact range ``[0, n)``:
``dot(a, dot(b, dot(c, d)))``. A hash over a range that is not a single complete node (an
*ephemeral* node) is computed the same way from the nodes of its compact range.

Index math is kept apart from fetching (as in transparency-dev/merkle): `inclusion_nodes` and
`consistency_nodes` say which complete nodes each proof element is folded from; the proof
functions fetch them through a `NodeGetter` supplied by the caller, O(log n) reads each.

`Frontier` keeps the compact range ``[0, size)`` in memory (at most one node per level); each
`Frontier.append` returns the nodes that just became complete, for the caller to persist.

Verification needs only hashlib: ``reduce(dot, proof, leaf) == root`` for inclusion (a proof
may hold the same hash twice in a row; it is never de-duplicated), and RFC 9162 2.1.4.2 for
consistency, with `dot` in place of the RFC's node hash. Invalid sizes or indices raise
`MerkleError`; proofs that do not verify make the verifiers return False, never raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import reduce

from core.ionhash import dot

__all__ = [
    "Frontier",
    "MerkleError",
    "NodeGetter",
    "NodeId",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "path_of",
    "range_nodes",
    "root_at",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

NodeId = tuple[int, int]
"""``(level, index)`` of a node; it covers leaves ``[index << level, (index + 1) << level)``."""

NodeGetter = Callable[[int, int], bytes]
"""Returns the hash of the complete node ``(level, index)`` from wherever it is stored."""


class MerkleError(ValueError):
    """A size or index outside what the tree can answer (not a failed verification)."""


def _fold(hashes: Iterable[bytes]) -> bytes:
    """Root of a compact range given left to right: ``dot(a, dot(b, c))``; b"" if empty."""
    acc = b""
    for h in reversed(list(hashes)):
        acc = dot(h, acc)
    return acc


# --- in-memory trees (block trees, tests) --------------------------------------------------


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Root of `leaves` built pairwise left to right, an odd last node carried up; [] gives b""."""
    level = list(leaves)
    while len(level) > 1:
        nxt = [dot(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0] if level else b""


def path_of(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Inclusion proof (siblings, bottom-up) of ``leaves[index]`` in ``root_of(leaves)``.

    Precondition: ``0 <= index < len(leaves)``, else `MerkleError`.
    """
    if not 0 <= index < len(leaves):
        raise MerkleError(f"leaf index {index} out of range for {len(leaves)} leaves")
    path: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):  # else: an odd last node, carried up with no sibling
            path.append(level[sibling])
        nxt = [dot(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, index = nxt, index >> 1
    return path


# --- index math ----------------------------------------------------------------------------


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The compact range of ``[begin, end)``: maximal complete nodes, left to right.

    Precondition: ``0 <= begin <= end``, else `MerkleError`.
    """
    if not 0 <= begin <= end:
        raise MerkleError(f"invalid leaf range [{begin}, {end})")
    nodes: list[NodeId] = []
    while begin < end:
        # Largest aligned node starting at `begin` that does not pass `end`.
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while begin + (1 << level) > end:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _node_path(level: int, index: int, size: int) -> list[list[NodeId]]:
    """Proof groups taking complete node (level, index) to the root of a tree of `size` leaves.

    Each group is folded (`_fold`) into one proof element. Bottom-up: the siblings up to the
    *fork* (the highest ancestor that is complete in this tree), then the ephemeral node to the
    fork's right (if any), then the complete nodes to its left, lowest first.
    """
    inner = (index ^ (size >> level)).bit_length() - 1  # levels from the node up to the fork
    groups: list[list[NodeId]] = [[(level + t, (index >> t) ^ 1)] for t in range(inner)]
    fork_level = level + inner
    fork_begin = (index >> inner) << fork_level
    fork_end = fork_begin + (1 << fork_level)
    right = range_nodes(fork_end, size)
    if right:
        groups.append(right)
    groups.extend([n] for n in reversed(range_nodes(0, fork_begin)))
    return groups


def inclusion_nodes(index: int, size: int) -> list[list[NodeId]]:
    """Which complete nodes the inclusion proof of leaf `index` in a tree of `size` needs.

    Element k of the proof is the fold of the hashes of group k (one node, or the compact
    range of an ephemeral node). Precondition: ``0 <= index < size``, else `MerkleError`.
    """
    if not 0 <= index < size:
        raise MerkleError(f"leaf index {index} out of range for tree size {size}")
    return _node_path(0, index, size)


def consistency_nodes(size1: int, size2: int) -> list[list[NodeId]]:
    """Which complete nodes the RFC 9162 consistency proof from `size1` to `size2` needs.

    Precondition: ``0 < size1 <= size2``, else `MerkleError`. Equal sizes need no nodes.
    """
    _check_sizes(size1, size2)
    if size1 == size2:
        return []
    # The last node of the compact range [0, size1), then its path in the tree of size2.
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    groups = [[(level, index)], *_node_path(level, index, size2)]
    # When size1 is a power of two that node is the old root, which the verifier already has.
    return groups[1:] if index == 0 else groups


def _check_sizes(size1: int, size2: int) -> None:
    if size1 <= 0:
        raise MerkleError(f"old tree size must be positive, got {size1}")
    if size1 > size2:
        raise MerkleError(f"old tree size {size1} exceeds new tree size {size2}")


# --- proofs over stored nodes --------------------------------------------------------------


def _fetch(groups: list[list[NodeId]], get_node: NodeGetter) -> list[bytes]:
    return [_fold(get_node(lv, ix) for lv, ix in group) for group in groups]


def root_at(size: int, get_node: NodeGetter) -> bytes:
    """Root of the tree of the first `size` leaves (b"" for 0), in popcount(size) reads.

    Precondition: ``size >= 0`` and every leaf below `size` stored.
    """
    if size < 0:
        raise MerkleError(f"tree size must not be negative, got {size}")
    return _fold(get_node(lv, ix) for lv, ix in range_nodes(0, size))


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """Proof for leaf `index` in the tree of `size`: ``reduce(dot, proof, leaf) == root_at(size)``.

    Precondition: ``0 <= index < size``, else `MerkleError`. At most 2 * bit_length(size) reads.
    """
    return _fetch(inclusion_nodes(index, size), get_node)


def consistency_proof(size1: int, size2: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 9162 2.1.4 proof that the tree of `size2` extends the tree of `size1`.

    Precondition: ``0 < size1 <= size2``, else `MerkleError`. Equal sizes give [].
    """
    return _fetch(consistency_nodes(size1, size2), get_node)


# --- verification (hashlib only) -----------------------------------------------------------


def verify_inclusion(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True iff ``reduce(dot, proof, leaf) == root``, as QLDB verifies.

    Proof elements are never de-duplicated. An empty element is rejected (False): `dot`
    treats b"" as an identity, so it would let a proof skip a level.
    """
    if not leaf or not root or any(not h for h in proof):
        return False
    return reduce(dot, proof, leaf) == root


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does the tree (size2, root2) extend the tree (size1, root1)?

    Precondition: ``0 < size1 <= size2``, else `MerkleError`. Equal sizes verify iff the
    proof is empty and the roots are equal. Any bad proof content returns False; empty
    hashes (identities under `dot`) are rejected.
    """
    _check_sizes(size1, size2)
    if not root1 or not root2 or any(not h for h in proof):
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = dot(c, fr), dot(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = dot(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root1 and sr == root2


# --- the growing tree ----------------------------------------------------------------------


class Frontier:
    """The right edge of the tree: the compact range ``[0, size)`` kept in memory.

    Holds one hash per set bit of `size`, highest level first. Invariant: ``_hashes[k]`` is
    the hash of ``range_nodes(0, size)[k]``, a complete node.
    """

    __slots__ = ("_hashes", "_root", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []
        self._root: bytes | None = b""

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """The compact range ``[0, size)`` as ``(level, index, hash)``, left to right."""
        ids = range_nodes(0, self._size)
        return [(lv, ix, h) for (lv, ix), h in zip(ids, self._hashes, strict=True)]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add leaf number `size`; return the nodes it completed, ``(0, size - 1, leaf)`` first.

        Every complete node is returned exactly once over the life of the tree; persist them
        all. Amortised O(1), worst O(log n) hashes.
        """
        index = self._size
        completed = [(0, index, leaf)]
        h, level = leaf, 0
        while (index >> level) & 1:  # a complete left sibling waits at this level
            h = dot(self._hashes.pop(), h)
            level += 1
            completed.append((level, index >> level, h))
        self._hashes.append(h)
        self._size = index + 1
        self._root = None
        return completed

    def root(self) -> bytes:
        """Root of the current tree; b"" when empty."""
        if self._root is None:
            self._root = _fold(self._hashes)
        return self._root

    @classmethod
    def from_storage(cls, size: int, get_node: NodeGetter) -> Frontier:
        """Rebuild the frontier of a tree of `size` leaves in popcount(size) reads.

        Precondition: ``size >= 0`` and every node returned by `append` so far is stored.
        """
        if size < 0:
            raise MerkleError(f"tree size must not be negative, got {size}")
        f = cls()
        f._size = size
        f._hashes = [get_node(lv, ix) for lv, ix in range_nodes(0, size)]
        f._root = None
        return f

    def copy(self) -> Frontier:
        """An independent copy (appending to one does not change the other)."""
        f = Frontier()
        f._size, f._hashes, f._root = self._size, list(self._hashes), self._root
        return f

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()[:16] or '-'})"

"""RFC 6962 (section 2.1) Merkle tree hashing over the audit log's event hashes.

Leaf n is the 32 raw bytes of event n+1's chain hash. A `Frontier` (a compact range) holds only
the roots of the aligned perfect subtrees it covers, so appending is O(1) amortized and the root
is O(log n): the service signs checkpoints from it and verify recomputes them. A `Tree` keeps
every level, as flat bytes, for proofs. Proofs are RFC 6962's PATH and PROOF; their checks are
RFC 9162 sections 2.1.3.2 and 2.1.4.2. Pure hashing: nothing here reads the log or a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def event_leaf(event_hash_hex: str) -> bytes:
    """The leaf hash of an event, from its stored (hex) chain hash."""
    return _sha256(b"\x00" + bytes.fromhex(event_hash_hex)).digest()


def event_leaves(event_hashes_hex: Iterable[str]) -> list[bytes]:
    fromhex = bytes.fromhex
    return [_sha256(b"\x00" + fromhex(digest)).digest() for digest in event_hashes_hex]


def _parents(level: Sequence[bytes]) -> list[bytes]:
    """The level above: one node per pair, an odd last node left out."""
    pairs = iter(level)
    return [
        _sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)
    ]


def _perfect_root(leaves: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree (len(leaves) a power of two), one level at a time."""
    level = leaves
    while len(level) > 1:
        level = _parents(level)
    return level[0]


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """A compact range: the aligned perfect subtrees that exactly cover leaves [begin, end).

    From begin 0 (the usual case) it is the tree's right edge, and `root()` is the tree's root
    at size `end`; from another begin it is the tail a consistency proof needs.
    """

    __slots__ = ("_hashes", "_heights", "begin", "end")

    def __init__(self, begin: int = 0) -> None:
        self.begin = self.end = begin
        self._hashes: list[bytes] = []
        self._heights: list[int] = []

    @property
    def size(self) -> int:
        return self.end - self.begin

    def copy(self) -> Frontier:
        other = Frontier(self.begin)
        other.end, other._hashes, other._heights = self.end, self._hashes[:], self._heights[:]
        return other

    def push(self, node: bytes, height: int) -> None:
        """Add the root of the perfect subtree of 2**height leaves that starts at `end` (which
        must be a multiple of 2**height); merge it with its left neighbours where they pair."""
        hashes, heights = self._hashes, self._heights
        at = self.end
        self.end = at + (1 << height)
        while heights and heights[-1] == height and (at >> height) & 1:
            node = _sha256(b"\x01" + hashes.pop() + node).digest()
            heights.pop()
            at -= 1 << height
            height += 1
        hashes.append(node)
        heights.append(height)

    def append(self, leaf: bytes) -> None:
        self.push(leaf, 0)

    def extend(self, leaves: Sequence[bytes], *also: Frontier) -> None:
        """Append many leaf hashes; the largest aligned blocks are hashed a level at a time, and
        each block's root is pushed into `also` too (frontiers ending where this one does)."""
        start, count = 0, len(leaves)
        while start < count:
            at = self.end
            height = (count - start).bit_length() - 1
            if at:
                height = min(height, (at & -at).bit_length() - 1)
            width = 1 << height
            node = leaves[start] if width == 1 else _perfect_root(leaves[start : start + width])
            self.push(node, height)
            for other in also:
                other.push(node, height)
            start += width

    def root(self) -> bytes:
        """The root of the tree of the first `end` leaves (only from begin 0)."""
        if self.begin:
            raise ValueError("only a frontier from leaf 0 has a tree root")
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        node = hashes[-1]
        for left in reversed(hashes[:-1]):
            node = _sha256(b"\x01" + left + node).digest()
        return node

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """(first leaf, end leaf, root) of each subtree, left to right."""
        out, at = [], self.begin
        for node, height in zip(self._hashes, self._heights, strict=True):
            out.append((at, at + (1 << height), node))
            at += 1 << height
        return out


def _path(index: int, size: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]), leaf to root, with subtree roots from `subtree`."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo += k
    return path[::-1]


def _proof(m: int, n: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 6962 PROOF(m, D[0:n]) (SUBPROOF unrolled), with subtree roots from `subtree`."""
    if not 0 <= m <= n:
        raise ValueError(f"no consistency proof from size {m} to {n}")
    if m in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, complete = 0, n, True
    while m - lo != hi - lo:
        k = _split(hi - lo)
        if m - lo <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, complete = lo + k, False
    if not complete:
        proof.append(subtree(lo, hi))
    return proof[::-1]


class Tree:
    """Every level of the tree over `leaves`, each as one bytes string (32 bytes a node), so
    any subtree root -- and so any proof up to this size -- costs O(log n) hashes."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.size = len(leaves)
        level = list(leaves)
        self._levels = [b"".join(level)]
        while len(level) > 1:
            level = _parents(level)
            self._levels.append(b"".join(level))

    def _node(self, height: int, index: int) -> bytes:
        return self._levels[height][32 * index : 32 * index + 32]

    def subtree_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a subtree of the RFC 6962 shape: lo a multiple of the smallest
        power of two >= hi - lo (always so for the subtrees PATH and PROOF name)."""
        if hi > self.size or lo >= hi:
            raise ValueError(f"leaves {lo}..{hi} are not in a tree of size {self.size}")
        nodes, at = [], lo
        while at < hi:  # the binary decomposition of hi - lo, largest block first
            height = (hi - at).bit_length() - 1
            nodes.append(self._node(height, at >> height))
            at += 1 << height
        node = nodes[-1]
        for left in reversed(nodes[:-1]):
            node = node_hash(left, node)
        return node

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else self.subtree_root(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return _path(index, size, self.subtree_root)

    def consistency_proof(self, m: int, n: int | None = None) -> list[bytes]:
        n = self.size if n is None else n
        if n > self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {n}")
        return _proof(m, n, self.subtree_root)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) over leaf hashes."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    return Tree(leaves[:size]).inclusion_proof(index, size)


def consistency_proof(leaves: Sequence[bytes], m: int, n: int) -> list[bytes]:
    return Tree(leaves[:n]).consistency_proof(m, n)


def consistency_proof_from(old: Frontier, tail: Frontier) -> list[bytes]:
    """PROOF(m, D[0:n]) from the frontier of the first m leaves and the compact range of leaves
    [m, n): every node the proof names is one of old's subtrees or lies in the tail, so verify
    gets the proof between two checkpoints without keeping the leaves in between."""
    m, n = old.end, tail.end
    if old.begin or tail.begin != m:
        raise ValueError("the tail must start where the old frontier ends")
    known = {(lo, hi): node for lo, hi, node in old.nodes()}
    ends = {lo: (hi, node) for lo, hi, node in tail.nodes()}

    def subtree(lo: int, hi: int) -> bytes:
        if hi <= m:
            return known[(lo, hi)]
        nodes, at = [], lo
        while at < hi:
            end, node = ends[at]
            nodes.append(node)
            at = end
        if at != hi:
            raise ValueError(f"no subtree {lo}..{hi} in the tail")
        node = nodes[-1]
        for left in reversed(nodes[:-1]):
            node = node_hash(left, node)
        return node

    return _proof(m, n, subtree)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` take leaf `index` to `expected_root` at `size`?"""
    if not 0 <= index < size:
        return False
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == expected_root


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does `proof` show the tree of size n extends the one of size m?"""
    if not 0 <= m <= n:
        return False
    if m == n:
        return not proof and root_m == root_n
    if m == 0:
        return not proof and root_m == EMPTY_ROOT
    path = list(proof)
    if m & (m - 1) == 0:  # m a power of two: the old root is itself the proof's first node
        path.insert(0, root_m)
    if not path:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old = new = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old = node_hash(node, old)
            new = node_hash(node, new)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new = node_hash(new, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and old == root_m and new == root_n

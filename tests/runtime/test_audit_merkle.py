"""The audit log's Merkle tree is RFC 6962's: the RFC's test vectors, and agreement with an
independent implementation (pymerkle) on roots, inclusion and consistency for many sizes."""

from __future__ import annotations

import random

import pymerkle

from runtime.audit import merkle

# certificate-transparency's RFC 6962 test vectors: 8 leaves and the root at each size.
LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
          bytes.fromhex("5051525354555657"),
          bytes.fromhex("606162636465666768696a6b6c6d6e6f")]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# RFC 6962 vectors: inclusion path of leaf 0 in the 8-leaf tree, consistency 1 -> 8.
PATH_0_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def test_rfc6962_vectors():
    leaves = [merkle.leaf_hash(x) for x in LEAVES]
    assert merkle.root([]).hex() == ("e3b0c44298fc1c149afbf4c8996fb924"
                                     "27ae41e4649b934ca495991b7852b855")  # fmt: skip
    for n in range(1, 9):
        assert merkle.root(leaves[:n]).hex() == ROOTS[n - 1], n
        frontier = merkle.Frontier()
        for leaf in leaves[:n]:
            frontier.append(leaf)
        assert frontier.root().hex() == ROOTS[n - 1]
    path = merkle.inclusion_proof(leaves, 0, 8)
    assert [p.hex() for p in path] == PATH_0_8
    assert merkle.verify_inclusion(leaves[0], 0, 8, path, bytes.fromhex(ROOTS[7]))
    assert not merkle.verify_inclusion(leaves[1], 0, 8, path, bytes.fromhex(ROOTS[7]))


def test_proofs_agree_with_pymerkle_and_verify():
    rng = random.Random(6962)
    data = [rng.randbytes(32) for _ in range(70)]
    leaves = [merkle.leaf_hash(d) for d in data]
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for d in data:
        tree.append_entry(d)
    for size in range(1, 71):
        ours = merkle.root(leaves[:size])
        assert ours == tree.get_state(size), size
        for index in {0, size // 2, size - 1}:
            proof = merkle.inclusion_proof(leaves, index, size)
            assert tree.get_leaf(index + 1) == leaves[index]  # pymerkle counts from 1
            assert merkle.verify_inclusion(leaves[index], index, size, proof, ours)
            other = merkle.leaf_hash(b"changed")
            assert not merkle.verify_inclusion(other, index, size, proof, ours)
        for old in {1, size // 3 + 1, max(size - 1, 1), size}:
            theirs = tree.prove_consistency(old, size)
            theirs.verify(tree.get_state(old), tree.get_state(size))  # raises if it fails
            proof = merkle.consistency_proof(leaves, old, size)
            old_root = merkle.root(leaves[:old])
            assert merkle.verify_consistency(old, size, old_root, ours, proof), (old, size)
            if old < size:
                forged = merkle.root([*leaves[: old - 1], merkle.leaf_hash(b"mallory")])
                assert not merkle.verify_consistency(old, size, forged, ours, proof)

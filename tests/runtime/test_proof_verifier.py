"""The standalone proof verifier (scripts/verify_audit_proof.py) agrees with RFC 6962's test
vectors and with an independent tree (pymerkle): it is what an auditor trusts, so it is
checked against sources that are not this project."""

from __future__ import annotations

import hashlib
import importlib.util
import random

import pymerkle

from tests.support.acp_process import ROOT

RFC_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              bytes.fromhex("5051525354555657"),
              bytes.fromhex("606162636465666768696a6b6c6d6e6f")]  # fmt: skip
RFC_ROOT_8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
RFC_PATH_0_8 = [bytes.fromhex(h) for h in (
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
)]  # fmt: skip


def verifier():
    path = ROOT / "scripts" / "verify_audit_proof.py"
    spec = importlib.util.spec_from_file_location("verify_audit_proof", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def test_the_rfc_vector_path_climbs_to_the_rfc_root():
    climb = verifier().climb
    assert climb(leaf(RFC_LEAVES[0]), 0, 8, RFC_PATH_0_8) == RFC_ROOT_8
    assert climb(leaf(RFC_LEAVES[1]), 0, 8, RFC_PATH_0_8) != RFC_ROOT_8
    assert climb(leaf(RFC_LEAVES[0]), 8, 8, RFC_PATH_0_8) is None, "index past the tree"


def test_pymerkles_proofs_climb_to_pymerkles_roots():
    climb = verifier().climb
    rng = random.Random(9162)
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    data = [rng.randbytes(rng.randint(0, 40)) for _ in range(300)]
    for item in data:
        tree.append_entry(item)
    for size in (1, 2, 3, 7, 8, 9, 64, 100, 255, 256, 257, 300):
        root = tree.get_state(size)
        for index in {0, 1 % size, size // 2, size - 1}:
            proof = tree.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
            path = [bytes.fromhex(h) if isinstance(h, str) else h for h in proof.path]
            # pymerkle's path starts with the leaf itself, then the siblings bottom-up
            siblings = path[1:] if path and path[0] == leaf(data[index]) else path
            assert climb(leaf(data[index]), index, size, siblings) == root, (index, size)

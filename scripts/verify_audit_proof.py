#!/usr/bin/env python3
"""Check an `acp audit prove` bundle with nothing from agent-control-plane.

    python verify_audit_proof.py BUNDLE.json --key 'name+hexid+base64'   (BUNDLE '-' = stdin)

For each event: recompute its hash from its fields, its RFC 6962 leaf hash, climb its audit
path to a root, and compare with the checkpoint's; check the checkpoint's Ed25519 signature
(C2SP signed note) with the key you hold (not the one in the bundle). Exit 0 when all hold.
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_hash(e):
    job = "" if e["job_id"] is None else e["job_id"]
    line = f"{e['prev_hash']}\n{e['seq']}\n{e['ts']}\n{job}\n{e['kind']}\n{e['actor']}\n"
    return hashlib.sha256((line + f"{e['artifacts']}\n").encode() + e["data"].encode()).hexdigest()


def climb(leaf, index, size, proof):
    """RFC 9162 2.1.3.2: the root an audit path leads to (None if it cannot)."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def open_checkpoint(text, vkey):
    name, hexid, encoded = vkey.strip().split("+", 2)
    public = base64.b64decode(encoded)[1:]
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    if key_id.hex() != hexid:
        raise SystemExit("FAIL: the key's id does not match its name and public key")
    body, _, signatures = text.partition("\n\n")
    body += "\n"
    for line in signatures.splitlines():
        if line.startswith(f"\u2014 {name} "):
            raw = base64.b64decode(line.split(" ")[-1])
            if raw[:4] == key_id:
                try:
                    Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], body.encode())
                except InvalidSignature:
                    raise SystemExit("FAIL: the checkpoint's signature does not verify") from None
                _, size, root = body.split("\n")[:3]
                return int(size), base64.b64decode(root)
    raise SystemExit(f"FAIL: the checkpoint carries no signature by {name}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--key", required=True, help="the log's public key, or a file with it")
    args = parser.parse_args()
    key = args.key
    if "+" not in key:
        with open(key) as f:
            key = f.read().strip()
    text = sys.stdin.read() if args.bundle == "-" else open(args.bundle).read()  # noqa: SIM115
    bundle = json.loads(text)
    size, root = open_checkpoint(bundle["checkpoint"], key)
    print(f"OK checkpoint: {size} events, root {root.hex()[:16]}, signed by the key given")
    for e in bundle["events"]:
        digest = event_hash(e)
        if digest != e["hash"]:
            raise SystemExit(f"FAIL: event #{e['seq']} ({e['kind']}) does not hash to its hash")
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(digest)).digest()
        proof = [bytes.fromhex(p) for p in e["proof"]]
        if e["index"] != e["seq"] - 1 or climb(leaf, e["index"], size, proof) != root:
            raise SystemExit(f"FAIL: event #{e['seq']} ({e['kind']}) is not in the checkpoint")
        print(f"OK event #{e['seq']} {e['kind']} by {e['actor']}")
    print(f"all {len(bundle['events'])} events are in the signed log")


if __name__ == "__main__":
    main()

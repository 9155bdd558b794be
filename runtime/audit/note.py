"""Signed checkpoints in the C2SP formats: signed-note (c2sp.org/signed-note) with Ed25519,
carrying a tlog-checkpoint body (c2sp.org/tlog-checkpoint):

    <origin>\\n<tree size>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(4-byte key id || 64-byte signature)>\\n

The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key). Keys are
written as `name+hexid+base64(0x01||public)` (what `acp audit key` prints, what auditors hold)
and `PRIVATE+KEY+name+hexid+base64(0x01||seed)`. The private key lives outside the database:
ACP_AUDIT_SIGNING_KEY, or the key file (created 0600 at the service's first start). It is never
printed, logged or stored in the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from runtime.errors import AcpError, AuditChainBroken
from runtime.private_files import create_once

if TYPE_CHECKING:
    from runtime.settings import Settings

ED25519 = b"\x01"
DASH = "\u2014"
KEY_ENV = "ACP_AUDIT_SIGNING_KEY"
_NOTE_MAX = 1_000_000  # golang.org/x/mod/sumdb/note refuses longer notes too
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")  # tlog-checkpoint: decimal, no leading zeros
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # every ASCII control but newline


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    """Standard base64 with padding, nothing else (a signed note allows no other form)."""
    raw = base64.b64decode(text, validate=True)
    if _b64(raw) != text:
        raise ValueError("not canonical base64")
    return raw


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    if not _valid_name(origin) or size < 0 or len(root) != 32:
        raise ValueError("a checkpoint needs an origin without spaces, a size and a 32-byte root")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def _parse_body(body: str, where: str) -> tuple[str, int, bytes]:
    lines = body.split("\n")  # body ends in "\n": the last item is ""
    try:
        origin, size, root = lines[0], lines[1], _unb64(lines[2])
    except (IndexError, ValueError, binascii.Error):
        raise AuditChainBroken(f"{where} is not a checkpoint (origin, size, root)") from None
    if not origin or not _SIZE.fullmatch(size) or len(root) != 32 or "" in lines[3:-1]:
        raise AuditChainBroken(f"{where} is not a checkpoint (origin, size, root)")
    return origin, int(size), root


class Verifier:
    """A log's public key, from its verifier-key text; opens the checkpoints it signed."""

    def __init__(self, vkey: str) -> None:
        try:
            name, hexid, encoded = vkey.strip().split("+", 2)
            raw = _unb64(encoded)
            if not _valid_name(name) or raw[:1] != ED25519 or len(raw) != 33:
                raise ValueError("not an Ed25519 note key")
            if len(hexid) != 8 or bytes.fromhex(hexid) != key_id(name, raw[1:]):
                raise ValueError("its id does not match its name and key")
        except (ValueError, binascii.Error) as error:
            raise AcpError(
                f"not a verifier key: {error}",
                hint="`acp audit key` prints it: name+hexid+base64",
            ) from None
        self.name, self.id, self.public = name, bytes.fromhex(hexid), raw[1:]
        self._key = Ed25519PublicKey.from_public_bytes(self.public)
        self.text = vkey.strip()

    def open(self, text: str, where: str = "the checkpoint") -> Checkpoint:
        """The checkpoint in a signed note, if this key signed it; AuditChainBroken if not (a
        malformed note, a signature by this key that fails, or no signature by this key)."""
        split = text.rfind("\n\n")
        if len(text) > _NOTE_MAX or split < 0 or _CONTROL.search(text):
            raise AuditChainBroken(f"{where} is not a signed note")
        body, signatures = text[: split + 1], text[split + 2 :]
        if not signatures.endswith("\n"):
            raise AuditChainBroken(f"{where} is not a signed note (no signature lines)")
        ours = []
        for line in signatures[:-1].split("\n"):
            dash, name, encoded = [*line.split(" "), "", ""][:3]
            try:
                raw = _unb64(encoded)
            except (ValueError, binascii.Error):
                raw = b""
            if dash != DASH or not _valid_name(name) or len(raw) < 5 or line.count(" ") != 2:
                raise AuditChainBroken(f"{where} is not a signed note (a bad signature line)")
            if name == self.name and raw[:4] == self.id:
                ours.append(raw[4:])
        if not ours:
            raise AuditChainBroken(
                f"{where} carries no signature by the log's key ({self.name}): it was replaced",
                hint="compare it with the copies the witnesses hold",
            )
        for signature in ours:
            try:
                self._key.verify(signature, body.encode())
            except InvalidSignature:
                raise AuditChainBroken(
                    f"{where}: its signature does not verify with the log's public key "
                    f"({self.name}): it was altered or replaced",
                    hint="compare it with the copies the witnesses hold",
                ) from None
        origin, size, root = _parse_body(body, where)
        return Checkpoint(origin, size, root, text)


class Signer:
    """The log's private key. Its repr and str name the key, never its seed."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not _valid_name(name):
            raise ValueError("a key name has no spaces or '+'")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = key_id(name, public)
        self.vkey = f"{name}+{self.id.hex()}+{_b64(ED25519 + public)}"

    def __repr__(self) -> str:
        return f"Signer({self.vkey})"

    def sign(self, body: str) -> str:
        """A signed note: the text, a blank line, this key's signature line."""
        signature = self._key.sign(body.encode())
        return f"{body}\n{DASH} {self.name} {_b64(self.id + signature)}\n"

    def checkpoint(self, size: int, root: bytes, origin: str | None = None) -> str:
        return self.sign(checkpoint_body(origin or self.name, size, root))

    def private_text(self) -> str:
        seed = self._key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.id.hex()}+{_b64(ED25519 + seed)}"


def sign_checkpoint(signer: Signer, origin: str, size: int, root: bytes) -> str:
    """The checkpoint note for a tree of `size` leaves with `root`, signed by `signer`."""
    return signer.checkpoint(size, root, origin)


def parse_and_verify(text: str, vkey: str, where: str = "the checkpoint") -> Checkpoint:
    """The checkpoint in `text` if the key `vkey` signed it and it is for that key's log."""
    verifier = Verifier(vkey)
    checkpoint = verifier.open(text, where)
    if checkpoint.origin != verifier.name:
        raise AuditChainBroken(
            f"{where} is a checkpoint of another log ({checkpoint.origin}, not {verifier.name})"
        )
    return checkpoint


def generate_key(name: str) -> str:
    """A new private key, as ACP_AUDIT_SIGNING_KEY or the key file holds it."""
    return Signer(name, os.urandom(32)).private_text()


def _parse_private(text: str) -> Signer:
    try:
        private, key, name, hexid, encoded = text.strip().split("+", 4)
        raw = _unb64(encoded)
        if (private, key) != ("PRIVATE", "KEY") or raw[:1] != ED25519 or len(raw) != 33:
            raise ValueError
        signer = Signer(name, raw[1:])
        if signer.id.hex() != hexid:
            raise ValueError
        return signer
    except (ValueError, binascii.Error):
        raise AcpError(
            "the audit signing key is not a note private key",
            hint=f"{KEY_ENV} (or the key file) holds PRIVATE+KEY+name+hexid+base64; delete "
            "the file to have the service make a new one (old checkpoints stay verifiable "
            "with the old public key)",
        ) from None


def _create_key_file(path: Path) -> None:
    """Write a new key to `path` unless one appears there first: another process starting at
    the same moment must not swap the key under checkpoints already signed with it."""
    name = f"acp.{socket.gethostname() or 'localhost'}/audit"
    create_once(path, (generate_key(name) + "\n").encode())


def load_signer(
    settings: Settings, *, create: bool = False, environ: Mapping[str, str] | None = None
) -> Signer | None:
    """The signing key from ACP_AUDIT_SIGNING_KEY or the key file; made when `create` (the
    service, at its first start) and there is none. Never printed or logged."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return _parse_private(env[KEY_ENV])
    path = settings.audit_key_file
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    return _parse_private(path.read_text())


def public_key_text(settings: Settings) -> str:
    """The verifier key `acp audit key` prints: what an auditor checks checkpoints with."""
    signer = load_signer(settings)
    if signer is None:
        raise AcpError(
            f"no audit signing key yet ({settings.audit_key_file})",
            hint="the service makes it at its first start (`acp serve`)",
        )
    return signer.vkey

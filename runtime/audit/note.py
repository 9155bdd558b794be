"""Signed checkpoints in the C2SP formats: signed-note (c2sp.org/signed-note) with Ed25519,
carrying a tlog-checkpoint body (c2sp.org/tlog-checkpoint):

    <origin>\\n<tree size>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(4-byte key id || 64-byte signature)>\\n

The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key). Keys are
written as `name+hexid+base64(0x01||public)` (what `acp audit key` prints, what auditors hold)
and `PRIVATE+KEY+name+hexid+base64(0x01||seed)`. The private key lives outside the database:
ACP_AUDIT_SIGNING_KEY, or the key file (created 0600 at the service's first start).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from runtime.errors import AcpError, AuditChainBroken

if TYPE_CHECKING:
    from runtime.settings import Settings

ED25519 = b"\x01"
DASH = "\u2014"
KEY_ENV = "ACP_AUDIT_SIGNING_KEY"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str


class Verifier:
    def __init__(self, vkey: str) -> None:
        try:
            name, hexid, encoded = vkey.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
            if (
                raw[:1] != ED25519
                or len(raw) != 33
                or bytes.fromhex(hexid) != key_id(name, raw[1:])
            ):
                raise ValueError("not an Ed25519 note key")
        except ValueError as error:
            raise AcpError(
                f"not a verifier key: {error}",
                hint="`acp audit key` prints it: name+hexid+base64",
            ) from None
        self.name, self.id, self.public = name, bytes.fromhex(hexid), raw[1:]
        self._key = Ed25519PublicKey.from_public_bytes(self.public)
        self.text = vkey.strip()

    def open(self, text: str, where: str = "the checkpoint") -> Checkpoint:
        """The checkpoint in a signed note, if this key signed it; AuditChainBroken if not."""
        body, sep, signatures = text.partition("\n\n")
        if not sep:
            raise AuditChainBroken(f"{where} is not a signed note (no signature block)")
        body += "\n"
        for line in signatures.splitlines():
            prefix = f"{DASH} {self.name} "
            if not line.startswith(prefix):
                continue
            try:
                raw = base64.b64decode(line[len(prefix) :], validate=True)
            except ValueError:
                continue
            if raw[:4] != self.id or len(raw) != 68:
                continue
            try:
                self._key.verify(raw[4:], body.encode())
            except InvalidSignature:
                raise AuditChainBroken(
                    f"{where}: its signature does not verify with the log's public key "
                    f"({self.name}): it was altered or replaced",
                    hint="compare it with the copies the witnesses hold",
                ) from None
            lines = body.split("\n")
            try:
                origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
            except (IndexError, ValueError):
                raise AuditChainBroken(f"{where} is not a checkpoint") from None
            return Checkpoint(origin, size, root, text)
        raise AuditChainBroken(
            f"{where} carries no signature by the log's key ({self.name}): it was replaced",
            hint="compare it with the copies the witnesses hold",
        )


class Signer:
    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = key_id(name, public)
        self.vkey = f"{name}+{self.id.hex()}+{_b64(ED25519 + public)}"

    def checkpoint(self, size: int, root: bytes) -> str:
        body = f"{self.name}\n{size}\n{_b64(root)}\n"
        signature = self._key.sign(body.encode())
        return f"{body}\n{DASH} {self.name} {_b64(self.id + signature)}\n"


def _parse_private(text: str) -> Signer:
    try:
        private, key, name, hexid, encoded = text.strip().split("+", 4)
        raw = base64.b64decode(encoded, validate=True)
        if (private, key) != ("PRIVATE", "KEY") or raw[:1] != ED25519 or len(raw) != 33:
            raise ValueError
        signer = Signer(name, raw[1:])
        if signer.id.hex() != hexid:
            raise ValueError
        return signer
    except ValueError:
        raise AcpError(
            "the audit signing key is not a note private key",
            hint=f"{KEY_ENV} (or the key file) holds PRIVATE+KEY+name+hexid+base64; delete "
            "the file to have the service make a new one (old checkpoints stay verifiable "
            "with the old public key)",
        ) from None


def load_signer(settings: Settings, *, create: bool = False) -> Signer | None:
    """The signing key from ACP_AUDIT_SIGNING_KEY or the key file; made when `create` (the
    service, at its first start) and there is none. Never printed or logged."""
    if os.environ.get(KEY_ENV):
        return _parse_private(os.environ[KEY_ENV])
    path = settings.audit_key_file
    if path.exists():
        return _parse_private(path.read_text())
    if not create:
        return None
    name = f"acp.{socket.gethostname()}/audit"
    signer = Signer(name, os.urandom(32))
    seed = signer._key.private_bytes_raw()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"PRIVATE+KEY+{name}+{signer.id.hex()}+{_b64(ED25519 + seed)}\n")
    os.replace(tmp, path)
    return signer


def public_key_text(settings: Settings) -> str:
    signer = load_signer(settings)
    if signer is None:
        raise AcpError(
            f"no audit signing key yet ({settings.audit_key_file})",
            hint="the service makes it at its first start (`acp serve`)",
        )
    return signer.vkey


def read_checkpoints(dirs: list[Path]) -> list[tuple[Path, str]]:
    """Every checkpoint file (`<size>.txt`) in these directories, smallest tree first."""
    found = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in directory.glob("*.txt"):
            if path.stem.isdigit():
                found.append((int(path.stem), str(path), path))
    return [(path, path.read_text()) for _, _, path in sorted(found)]

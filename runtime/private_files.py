"""Files only the service may read (its signing keys), made once even when several processes
start in one ACP_HOME at the same moment: written whole under a private name, then linked
into place, so the first one made is the one everybody uses and nobody reads half a file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_dir(path: Path) -> None:
    """`path` and its parents, the last one 0700 (whoever makes it first)."""
    if path.is_dir():
        return
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask


def create_once(path: Path, content: bytes) -> bytes:
    """The content of `path` (0600): `content` if this call made it, else what another
    process made there first. Never replaces a file that exists."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # one exists: that one is the file
            return path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return content

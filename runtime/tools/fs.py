"""File tools for a job: read, write and list files, confined to the job's worktree.

They must never touch a path outside the grant's root (by `..`, an absolute path or a
symlink), never expose the .git entry, and never write through a symlink.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from runtime.errors import SandboxViolation

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FsGrant(BaseModel):
    """What a job's file tools may touch: everything under root, written only if writable."""

    root: Path
    writable: bool


def _refuse(relpath: str, why: str) -> SandboxViolation:
    return SandboxViolation(
        f"refused: {relpath!r} {why}",
        hint="use a path relative to the job's worktree, without '..', symlinks out or .git",
    )


def _is_git_entry(part: str) -> bool:
    # Case-insensitive, as git itself treats .GIT specially on case-folding filesystems.
    return part.lower() == ".git"


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def resolve_inside(grant: FsGrant, relpath: str) -> Path:
    """Resolve relpath under the grant's root, following symlinks, or raise SandboxViolation.

    Refused: absolute paths, `..` components, NUL bytes, the .git entry, and any path
    that (at any component, symlinks followed) lands outside the root.
    """
    if "\0" in relpath:
        raise _refuse(relpath.replace("\0", "\\0"), "contains a NUL byte")
    if relpath.startswith("/"):
        raise _refuse(relpath, "is an absolute path; give a path relative to the worktree")
    parts = [p for p in PurePosixPath(relpath).parts if p != "."]
    if ".." in parts:
        raise _refuse(relpath, "contains '..'; paths must stay inside the job's worktree")
    if any(_is_git_entry(p) for p in parts):
        raise _refuse(relpath, "is inside .git, which the job's tools may not touch")

    root = Path(os.path.realpath(grant.root))
    current = root
    for index, part in enumerate(parts):
        current = current / part
        if not current.is_symlink():
            continue
        target = Path(os.path.realpath(current))
        shown = "/".join(parts[: index + 1])
        if not _inside(root, target):
            raise _refuse(shown, "is a symlink to a path outside the job's worktree")
        if any(_is_git_entry(p) for p in target.relative_to(root).parts):
            raise _refuse(shown, "is a symlink into .git, which the job's tools may not touch")
    resolved = Path(os.path.realpath(root.joinpath(*parts)))
    if not _inside(root, resolved):
        raise _refuse(relpath, "resolves to a path outside the job's worktree")
    return resolved


def _open_resolved(root: Path, resolved: Path, flags: int, *, make_parents: bool = False) -> int:
    """Open resolved (already checked) one component at a time, refusing to follow symlinks.

    This closes the gap between checking a path and opening it: a command running in the
    sandbox could swap a directory for a symlink in between.
    """
    parts = resolved.relative_to(root).parts
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not make_parents:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise OSError(errno.ELOOP, "symlink appeared", part) from None
                raise
            os.close(fd)
            fd = next_fd
        if not parts:
            return os.dup(fd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SandboxViolation(
                f"refused: {resolved.relative_to(root)!s} changed into a symlink while opening it"
            ) from exc
        raise
    finally:
        os.close(fd)


def read_file(grant: FsGrant, relpath: str, max_bytes: int = 1_000_000) -> str:
    """Read a text file from the job's worktree.

    Args:
        relpath: path relative to the worktree root, e.g. "src/app.py".
        max_bytes: read at most this many bytes; a longer file ends with a line
            "[truncated: ...]" saying how much was left out.

    Returns the file's text (invalid UTF-8 shown as U+FFFD).
    """
    resolved = resolve_inside(grant, relpath)
    root = Path(os.path.realpath(grant.root))
    fd = _open_resolved(root, resolved, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IsADirectoryError(f"{relpath!r} is not a regular file")
        data = handle.read(max_bytes + 1)
        size = os.fstat(handle.fileno()).st_size
    text = data[:max_bytes].decode("utf-8", errors="replace")
    if len(data) > max_bytes:
        text += f"\n[truncated: file is {size} bytes, showing the first {max_bytes}]"
    return text


def read_bytes(grant: FsGrant, relpath: str, max_bytes: int) -> bytes:
    """Read a whole file from the job's worktree as bytes; a file over max_bytes is refused
    (a document is reviewed whole or not at all)."""
    resolved = resolve_inside(grant, relpath)
    root = Path(os.path.realpath(grant.root))
    fd = _open_resolved(root, resolved, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(f"{relpath!r} is not a regular file")
        if info.st_size > max_bytes:
            raise SandboxViolation(
                f"refused: {relpath!r} is {info.st_size / 1048576:.1f} MB; the limit is "
                f"{max_bytes / 1048576:.1f} MB"
            )
        return handle.read(max_bytes + 1)[:max_bytes]


def write_file(grant: FsGrant, relpath: str, content: str) -> None:
    """Create or overwrite a text file in the job's worktree (UTF-8); missing folders are made.

    Args:
        relpath: path relative to the worktree root, e.g. "docs/notes.md".
        content: the complete new content of the file.

    Refused when the grant is read-only or the path is a symlink.
    """
    write_bytes(grant, relpath, content.encode("utf-8"))


def write_bytes(grant: FsGrant, relpath: str, data: bytes) -> None:
    """Create or overwrite a file in the job's worktree; the same rules as write_file."""
    if not grant.writable:
        raise SandboxViolation(
            f"refused: cannot write {relpath!r}; this job's file access is read-only"
        )
    resolved = resolve_inside(grant, relpath)
    root = Path(os.path.realpath(grant.root))
    lexical = root.joinpath(*[p for p in PurePosixPath(relpath).parts if p != "."])
    if lexical.is_symlink():
        raise _refuse(relpath, "is a symlink; the file tools do not write through symlinks")
    if resolved == root:
        raise IsADirectoryError(f"{relpath!r} is the worktree itself, not a file")
    fd = _open_resolved(root, resolved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, make_parents=True)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def list_dir(grant: FsGrant, relpath: str = ".") -> list[str]:
    """List a folder of the job's worktree, sorted; sub-folders end with "/".

    Args:
        relpath: folder relative to the worktree root; "." is the root itself.
    """
    resolved = resolve_inside(grant, relpath)
    root = Path(os.path.realpath(grant.root))
    fd = _open_resolved(root, resolved, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = []
        for entry in os.scandir(fd):
            if _is_git_entry(entry.name):
                continue
            names.append(entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name)
    finally:
        os.close(fd)
    return sorted(names)

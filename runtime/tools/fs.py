"""File tools for a job: read, write and list files, confined to the job's worktree.

They must never touch a path outside the grant's root (by `..`, an absolute path or a
symlink), never expose the .git entry, never write through a symlink, and never open anything
but a regular file or a folder (a FIFO, socket or device could block the job forever).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from runtime.errors import SandboxViolation
from runtime.untrusted import has_lone_surrogate

# Every open is non-blocking: a FIFO, a socket or a device can block open() or read() forever,
# and a thread blocked in open() cannot be cancelled, so the type is checked before opening
# (lstat) and again on the very fd that is read or written (fstat).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

_SPECIAL = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symlink (one that loops, or that appeared while it was opened)",
}


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

    Refused: absolute paths, `..` components, NUL bytes, lone surrogates, the .git entry, and
    any path that (at any component, symlinks followed) lands outside the root.
    """
    if "\0" in relpath:
        raise _refuse(relpath.replace("\0", "\\0"), "contains a NUL byte")
    if has_lone_surrogate(relpath):
        raise _refuse(relpath, "is not valid text (it has a lone surrogate); name files in UTF-8")
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


def _check_type(shown: str, mode: int, want: str) -> None:
    """Refuse anything but a regular file or a directory, and the one where the other is meant."""
    if stat.S_ISREG(mode):
        if want == "dir":
            raise NotADirectoryError(f"{shown!r} is a file, not a folder; read it with read_file")
        return
    if stat.S_ISDIR(mode):
        if want == "file":
            raise IsADirectoryError(f"{shown!r} is a folder, not a file; list it with list_dir")
        return
    what = _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")
    raise SandboxViolation(
        f"refused: {shown!r} is {what}; the file tools only open regular files and folders",
        hint="a pipe, socket or device could block the job; read what it holds another way",
    )


def _open_resolved(
    root: Path, resolved: Path, flags: int, *, want: str, make_parents: bool = False
) -> int:
    """Open resolved (already checked) one component at a time, refusing to follow symlinks,
    and return an fd of a regular file (want="file") or a folder (want="dir"), or raise.

    This closes the gap between checking a path and opening it: a command running in the
    sandbox could swap a directory for a symlink, or a file for a FIFO, in between.
    """
    parts = resolved.relative_to(root).parts
    shown = "/".join(parts) or "."
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
            opened = os.dup(fd)
        else:
            try:
                before = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not flags & os.O_CREAT:
                    raise
            else:
                _check_type(shown, before.st_mode, want)
            opened = os.open(parts[-1], flags | _FILE_FLAGS, 0o644, dir_fd=fd)
        try:
            _check_type(shown, os.fstat(opened).st_mode, want)
        except BaseException:
            os.close(opened)
            raise
        return opened
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SandboxViolation(
                f"refused: {shown!r} changed into a symlink while opening it"
            ) from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, or a socket, swapped in
            raise SandboxViolation(
                f"refused: {shown!r} changed into a FIFO or socket while opening it"
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
    fd = _open_resolved(root, resolved, os.O_RDONLY, want="file")
    with os.fdopen(fd, "rb") as handle:
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
    fd = _open_resolved(root, resolved, os.O_RDONLY, want="file")
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
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
    if has_lone_surrogate(content):
        raise SandboxViolation(
            f"refused: {relpath!r} was not written: its content has a lone surrogate, which "
            "is not UTF-8 text",
            hint="send the content as valid Unicode text",
        )
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
    # Not O_TRUNC: the file is cut only once its fd is known to be a regular file.
    fd = _open_resolved(root, resolved, os.O_WRONLY | os.O_CREAT, want="file", make_parents=True)
    with os.fdopen(fd, "wb") as handle:
        os.ftruncate(fd, 0)
        handle.write(data)


def list_dir(grant: FsGrant, relpath: str = ".") -> list[str]:
    """List a folder of the job's worktree, sorted; sub-folders end with "/".

    Args:
        relpath: folder relative to the worktree root; "." is the root itself.
    """
    resolved = resolve_inside(grant, relpath)
    root = Path(os.path.realpath(grant.root))
    fd = _open_resolved(root, resolved, os.O_RDONLY | os.O_DIRECTORY, want="dir")
    try:
        names = []
        for entry in os.scandir(fd):
            if _is_git_entry(entry.name):
                continue
            names.append(entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name)
    finally:
        os.close(fd)
    return sorted(names)

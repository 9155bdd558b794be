"""File tools confined to a job's worktree: what they allow and what they refuse."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import SandboxViolation
from runtime.tools.fs import (
    FsGrant,
    list_dir,
    read_bytes,
    read_file,
    resolve_inside,
    write_bytes,
    write_file,
)


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A real git repo, with a secret file beside it that no tool may reach."""
    wt = tmp_path / "wt"
    (wt / "src").mkdir(parents=True)
    (wt / "src" / "app.py").write_text("print('hi')\n")
    (wt / "README.md").write_text("# demo\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=wt, check=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.db").write_text("top-secret-rows")
    return wt


@pytest.fixture
def grant(worktree: Path) -> FsGrant:
    return FsGrant(root=worktree, writable=True)


def test_reads_writes_and_lists_inside_the_worktree(grant: FsGrant, worktree: Path) -> None:
    write_file(grant, "docs/notes.md", "héllo\n")

    assert (worktree / "docs" / "notes.md").read_text() == "héllo\n"
    assert read_file(grant, "docs/notes.md") == "héllo\n"
    assert read_file(grant, "./src/app.py") == "print('hi')\n"
    assert list_dir(grant) == ["README.md", "docs/", "src/"]
    assert list_dir(grant, "src") == ["app.py"]


def test_overwriting_a_file_replaces_its_content(grant: FsGrant, worktree: Path) -> None:
    write_file(grant, "README.md", "short\n")

    assert (worktree / "README.md").read_text() == "short\n"


def test_symlink_inside_the_worktree_can_be_read(grant: FsGrant, worktree: Path) -> None:
    (worktree / "latest.py").symlink_to("src/app.py")

    assert read_file(grant, "latest.py") == "print('hi')\n"


def test_long_file_is_cut_at_max_bytes_and_says_so(grant: FsGrant, worktree: Path) -> None:
    (worktree / "big.txt").write_text("x" * 5000)

    text = read_file(grant, "big.txt", max_bytes=100)

    assert text.startswith("x" * 100 + "\n[truncated: file is 5000 bytes")


def test_parent_directory_is_refused(grant: FsGrant) -> None:
    with pytest.raises(SandboxViolation, match=r"refused: '\.\./outside/secret\.db'.*'\.\.'"):
        read_file(grant, "../outside/secret.db")
    with pytest.raises(SandboxViolation):
        write_file(grant, "src/../../escape.txt", "x")


def test_absolute_path_is_refused(grant: FsGrant, tmp_path: Path) -> None:
    with pytest.raises(SandboxViolation, match="absolute path"):
        read_file(grant, str(tmp_path / "outside" / "secret.db"))
    with pytest.raises(SandboxViolation, match="absolute path"):
        list_dir(grant, "/etc")


def test_nul_byte_is_refused(grant: FsGrant) -> None:
    with pytest.raises(SandboxViolation, match="NUL byte"):
        read_file(grant, "README.md\0.txt")


def test_file_symlink_pointing_outside_is_refused(grant: FsGrant, worktree: Path) -> None:
    (worktree / "link.txt").symlink_to(worktree.parent / "outside" / "secret.db")

    with pytest.raises(
        SandboxViolation,
        match=r"refused: 'link\.txt' is a symlink to a path outside the job's worktree",
    ):
        read_file(grant, "link.txt")


def test_directory_symlink_in_the_middle_of_a_path_is_refused(
    grant: FsGrant, worktree: Path
) -> None:
    (worktree / "src" / "data").symlink_to(worktree.parent / "outside")

    with pytest.raises(SandboxViolation, match="'src/data' is a symlink to a path outside"):
        read_file(grant, "src/data/secret.db")
    with pytest.raises(SandboxViolation):
        list_dir(grant, "src/data")
    with pytest.raises(SandboxViolation):
        write_file(grant, "src/data/planted.txt", "x")
    assert not (worktree.parent / "outside" / "planted.txt").exists()


def test_writing_through_a_symlink_is_refused(grant: FsGrant, worktree: Path) -> None:
    (worktree / "alias.py").symlink_to("src/app.py")

    with pytest.raises(SandboxViolation, match=r"'alias\.py' is a symlink"):
        write_file(grant, "alias.py", "overwritten\n")

    assert (worktree / "src" / "app.py").read_text() == "print('hi')\n"


def test_git_directory_is_refused(grant: FsGrant, worktree: Path) -> None:
    with pytest.raises(SandboxViolation, match=r"\.git"):
        read_file(grant, ".git/config")
    with pytest.raises(SandboxViolation, match=r"\.git"):
        write_file(grant, ".git/hooks/pre-commit", "#!/bin/sh\ncurl evil\n")
    with pytest.raises(SandboxViolation, match=r"\.git"):
        list_dir(grant, ".GIT")
    assert ".git/" not in list_dir(grant)
    assert not (worktree / ".git" / "hooks" / "pre-commit").exists()


def test_symlink_into_git_directory_is_refused(grant: FsGrant, worktree: Path) -> None:
    (worktree / "cfg").symlink_to(".git/config")

    with pytest.raises(SandboxViolation, match=r"symlink into \.git"):
        read_file(grant, "cfg")


def test_read_only_grant_refuses_writes(worktree: Path) -> None:
    read_only = FsGrant(root=worktree, writable=False)

    with pytest.raises(SandboxViolation, match="read-only"):
        write_file(read_only, "README.md", "x")
    assert read_file(read_only, "README.md") == "# demo\n"


def test_resolve_inside_returns_the_real_path(grant: FsGrant, worktree: Path) -> None:
    assert resolve_inside(grant, "src/app.py") == Path(os.path.realpath(worktree)) / "src/app.py"


# --- a tool call that could block -------------------------------------------------------------


def release_fifos(root: Path) -> None:
    """Open every FIFO under root read-write and close it: a call wrongly blocked opening one
    (for reading or writing) gets its other end, so a failing test fails instead of hanging."""
    for path in root.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))


def bounded(root: Path, tool: Callable[[], Any]) -> Any:
    """tool() in a daemon thread, failing the test (not hanging it) if it takes over 3 s."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, tool()))
        except BaseException as error:  # handed to the test's thread
            outcome.append((False, error))

    worker = threading.Thread(target=run, daemon=True)  # a stuck one must not hang exit
    worker.start()
    worker.join(3)
    if worker.is_alive():
        for _ in range(40):  # release what it waits on, so the test fails instead of hanging
            release_fifos(root)
            worker.join(0.05)
        pytest.fail("the call blocked for over 3 s")
    finished, value = outcome[0]
    if not finished:
        raise value
    return value


CALLS = {
    "read_file": lambda g, p: read_file(g, p),
    "read_bytes": lambda g, p: read_bytes(g, p, 1_000_000),
    "write_file": lambda g, p: write_file(g, p, "x"),
    "write_bytes": lambda g, p: write_bytes(g, p, b"x"),
    "list_dir": lambda g, p: list_dir(g, p),
}


def make_special(worktree: Path, kind: str) -> str:
    """A file that is not a regular file or a folder, made the way a sandboxed command could."""
    path = worktree / "special"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "char-device":  # a copy of /dev/zero: endless if it were read
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    elif kind == "tty-device":  # a copy of /dev/tty: a read waits for a keyboard
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(5, 0))
    elif kind == "symlink-to-fifo":
        os.mkfifo(worktree / "pipe")
        path.symlink_to("pipe")
    return "special"


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("kind", ["fifo", "socket", "char-device", "tty-device", "symlink-to-fifo"])
def test_pipe_socket_or_device_is_refused_without_blocking(
    grant: FsGrant, worktree: Path, kind: str, call: str
) -> None:
    if kind.endswith("device") and os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    relpath = make_special(worktree, kind)
    started = time.monotonic()

    with pytest.raises(SandboxViolation) as refused:
        bounded(worktree, lambda: CALLS[call](grant, relpath))

    assert refused.value.message.startswith("refused: "), refused.value.message
    if not (kind == "symlink-to-fifo" and call.startswith("write")):  # refused as a symlink
        assert "only open regular files and folders" in refused.value.message

    assert time.monotonic() - started < 1
    assert not stat.S_ISREG((worktree / relpath).lstat().st_mode), "nothing replaced it"


@pytest.mark.parametrize("call", sorted(CALLS))
def test_symlink_loop_is_refused(grant: FsGrant, worktree: Path, call: str) -> None:
    (worktree / "loop").symlink_to("loop")
    (worktree / "ping").symlink_to("pong")
    (worktree / "pong").symlink_to("ping")

    for relpath in ("loop", "ping", "loop/inner.txt"):
        with pytest.raises((SandboxViolation, OSError)) as caught:
            bounded(worktree, lambda p=relpath: CALLS[call](grant, p))
        assert isinstance(caught.value, SandboxViolation) or "symlink" in str(caught.value)


def test_symlink_to_a_device_outside_the_worktree_is_refused(
    grant: FsGrant, worktree: Path
) -> None:
    (worktree / "zero").symlink_to("/dev/zero")
    (worktree / "stdin").symlink_to("/dev/stdin")

    for relpath in ("zero", "stdin"):
        with pytest.raises(SandboxViolation, match="outside the job's worktree"):
            bounded(worktree, lambda p=relpath: read_file(grant, p))
    with pytest.raises(SandboxViolation, match="absolute path"):
        read_file(grant, "/dev/stdin")


def test_folder_where_a_file_is_expected_is_an_error_that_says_so(
    grant: FsGrant, worktree: Path
) -> None:
    with pytest.raises(IsADirectoryError, match=r"'src' is a folder.*list_dir"):
        read_file(grant, "src")
    with pytest.raises(IsADirectoryError, match=r"'src' is a folder"):
        read_bytes(grant, "src", 1000)
    with pytest.raises(IsADirectoryError, match=r"'src' is a folder"):
        write_file(grant, "src", "x")
    with pytest.raises(NotADirectoryError, match=r"'README\.md' is a file.*read_file"):
        list_dir(grant, "README.md")
    assert (worktree / "src" / "app.py").exists()


def test_huge_file_is_read_up_to_the_limit_at_once(grant: FsGrant, worktree: Path) -> None:
    with open(worktree / "huge.bin", "wb") as sparse:  # 64 GB, nearly no disk
        sparse.truncate(64 * 1024**3)
    started = time.monotonic()

    text = read_file(grant, "huge.bin", max_bytes=1000)

    assert "[truncated: file is 68719476736 bytes, showing the first 1000]" in text
    with pytest.raises(SandboxViolation, match=r"65536\.0 MB; the limit is"):
        read_bytes(grant, "huge.bin", 20 * 1024**2)
    assert time.monotonic() - started < 2


def test_file_swapped_for_a_fifo_while_it_is_opened_never_blocks(
    grant: FsGrant, worktree: Path
) -> None:
    """A command in the sandbox swaps a regular file and a FIFO as fast as it can; every read
    and write either sees the regular file or is refused, and none waits on the pipe."""
    target = worktree / "flip.txt"
    target.write_text("regular\n")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            spare = worktree / "flip.tmp"
            os.mkfifo(spare)
            os.replace(spare, target)
            spare.write_text("regular\n")
            os.replace(spare, target)

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen: set[str] = set()
    try:
        for _ in range(300):
            for call in ("read_file", "write_file"):
                try:
                    result = bounded(worktree, lambda c=call: CALLS[c](grant, "flip.txt"))
                except SandboxViolation as refusal:
                    assert "FIFO" in refusal.message, refusal.message
                    seen.add("refused")
                except FileNotFoundError:
                    seen.add("missing")
                else:
                    assert result in ("regular\n", "x", None), result
                    seen.add("ok")
    finally:
        stop.set()
        flipper.join()
        release_fifos(worktree)
    assert "refused" in seen and "ok" in seen, seen

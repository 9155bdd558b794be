"""File tools confined to a job's worktree: what they allow and what they refuse."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.errors import SandboxViolation
from runtime.tools.fs import FsGrant, list_dir, read_file, resolve_inside, write_file


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

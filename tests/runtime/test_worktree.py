"""Job worktrees (publishing is test_mirror.py's), against real git repositories in tmp_path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runtime.sandbox.worktree import (
    commit_all,
    create_worktree,
    diff,
    init_sample_repo,
    remove_worktree,
)

AUTHOR = ("Ada Lovelace", "ada@example.com")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("def answer():\n    return 41\n")
    (repo / "README.md").write_text("# demo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


async def test_worktree_is_a_checkout_of_base_on_its_own_branch(repo: Path, tmp_path: Path) -> None:
    wt = await create_worktree(repo, "main", "J-12", tmp_path / "worktrees")

    assert wt.path == (tmp_path / "worktrees" / "J-12").resolve()
    assert wt.branch == "acp/J-12"
    assert wt.base_commit == git(repo, "rev-parse", "main")
    assert wt.git_common_dir == (repo / ".git").resolve()
    assert (wt.path / "app.py").read_text().endswith("return 41\n")
    assert git(wt.path, "branch", "--show-current") == "acp/J-12"


async def test_commit_all_commits_every_change_and_diff_counts_them(
    repo: Path, tmp_path: Path
) -> None:
    wt = await create_worktree(repo, "main", "J-1", tmp_path / "worktrees")
    (wt.path / "app.py").write_text("def answer():\n    return 42\n")
    (wt.path / "docs").mkdir()
    (wt.path / "docs" / "new.md").write_text("one\ntwo\n")
    (wt.path / "README.md").unlink()

    head = await commit_all(wt, "Fix the answer", *AUTHOR)
    change = await diff(wt)

    assert head == git(repo, "rev-parse", "acp/J-1")
    assert git(repo, "log", "-1", "--format=%an <%ae> %s", head) == (
        "Ada Lovelace <ada@example.com> Fix the answer"
    )
    assert change.head_commit == head
    assert change.base_commit == wt.base_commit
    assert change.stat.files_changed == 3
    assert sorted(change.stat.files) == ["README.md", "app.py", "docs/new.md"]
    assert change.stat.insertions == 3
    assert change.stat.deletions == 2
    assert "+    return 42" in change.patch
    assert "diff --git a/docs/new.md b/docs/new.md" in change.patch


async def test_commit_all_returns_none_when_nothing_changed(repo: Path, tmp_path: Path) -> None:
    wt = await create_worktree(repo, "main", "J-2", tmp_path / "worktrees")

    assert await commit_all(wt, "nothing", *AUTHOR) is None


async def test_commit_all_runs_no_hook_and_no_filter_the_job_sets_up(
    repo: Path, tmp_path: Path
) -> None:
    witness = tmp_path / "filter-ran"
    git(repo, "config", "filter.sneaky.clean", f"touch {witness}; cat")
    git(repo, "config", "filter.daemon.process", f"touch {witness}; exit 1")
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-commit").write_text(f"#!/bin/sh\ntouch {witness}\nexit 1\n")
    (hooks / "pre-commit").chmod(0o755)
    wt = await create_worktree(repo, "main", "J-3", tmp_path / "worktrees")
    (wt.path / ".gitattributes").write_text("*.txt filter=sneaky\n*.bin filter=daemon\n")
    (wt.path / "data.txt").write_text("payload\n")
    (wt.path / "blob.bin").write_text("bytes\n")
    # A job that repoints its .git file must not change where the commit goes.
    (wt.path / ".git").write_text(f"gitdir: {tmp_path / 'elsewhere'}\n")

    head = await commit_all(wt, "with attributes", *AUTHOR)

    assert head is not None
    assert not witness.exists()
    assert git(repo, "show", f"{head}:data.txt") == "payload"


async def test_stale_worktree_from_a_crash_is_replaced(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "worktrees"
    crashed = await create_worktree(repo, "main", "J-14", root)
    (crashed.path / "half-done.txt").write_text("partial\n")
    await commit_all(crashed, "partial work", *AUTHOR)
    (repo / "app.py").write_text("return 50\n")
    git(repo, "commit", "-q", "-am", "base moved on")

    fresh = await create_worktree(repo, "main", "J-14", root)

    assert fresh.path == crashed.path
    assert fresh.base_commit == git(repo, "rev-parse", "main")
    assert git(repo, "rev-parse", "acp/J-14") == fresh.base_commit
    assert not (fresh.path / "half-done.txt").exists()
    assert (fresh.path / "app.py").read_text() == "return 50\n"


async def test_branch_left_without_its_directory_is_replaced(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "worktrees"
    crashed = await create_worktree(repo, "main", "J-15", root)
    shutil.rmtree(crashed.path)

    fresh = await create_worktree(repo, "main", "J-15", root)

    assert (fresh.path / "app.py").exists()
    assert git(fresh.path, "branch", "--show-current") == "acp/J-15"


async def test_remove_worktree_deletes_checkout_and_branch(repo: Path, tmp_path: Path) -> None:
    wt = await create_worktree(repo, "main", "J-16", tmp_path / "worktrees")

    await remove_worktree(wt, delete_branch=True)

    assert not wt.path.exists()
    assert git(repo, "branch", "--list", "acp/J-16") == ""
    assert str(wt.path) not in git(repo, "worktree", "list")


async def test_init_sample_repo_commits_the_files_once(tmp_path: Path) -> None:
    source = tmp_path / "sample"
    (source / "src").mkdir(parents=True)
    (source / "src" / "main.py").write_text("print('hi')\n")
    dest = tmp_path / "demo"

    await init_sample_repo(source, dest)
    await init_sample_repo(source, dest)

    assert git(dest, "log", "--format=%an|%s", "main") == "acp sample|Initial sample"
    assert git(dest, "show", "main:src/main.py") == "print('hi')"

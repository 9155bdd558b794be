"""The service's own mirror of a target's repository: a bare repository under ACP_HOME that
jobs' worktrees are made from, fetched from the target's URL and pushed back to it.

It must never write into a person's working tree except by git's own
receive.denyCurrentBranch=updateInstead rule (updated when clean, refused when dirty), never
put a token in a URL, a command line or a file (it travels in the git process's environment
as an http.extraHeader), and never push without a compare-and-swap on what the remote had.
The remote's branches live under refs/remotes/origin/; the mirror's own branches are jobs'.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from runtime.errors import GitCommandFailed, PublishConflict
from runtime.sandbox.file_lock import file_lock
from runtime.sandbox.worktree import _git, _rev, _run_git

FETCH_TIMEOUT_S = 300.0
LOCK_WAIT_S = 300.0
_LOCAL_RECEIVE_PACK = (
    "git -c core.hooksPath=/dev/null -c receive.denyCurrentBranch=updateInstead receive-pack"
)
_AUTH_WORDS = ("could not read Username", "Authentication failed", "HTTP Basic: Access denied",
               "returned error: 401", "returned error: 403")  # fmt: skip
_PASSED_FOR_SSH = ("SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH", "HOME")


class RemoteMoved(PublishConflict):
    """The remote's branch is not where the mirror last saw it (someone pushed meanwhile)."""


class CheckoutDirty(PublishConflict):
    """A local non-bare remote has the branch checked out with uncommitted changes."""


def scheme(url: str) -> str:
    """'file', 'ssh', 'https', 'http', or 'file' for a plain path (also scp-like host:path
    is 'ssh')."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git", "file"):
        return parts.scheme
    if ":" in url.split("/", 1)[0] and not url.startswith("/"):
        return "ssh"  # user@host:path
    return "file"


def local_path(url: str) -> Path | None:
    """The filesystem path of a local remote, else None."""
    if scheme(url) != "file":
        return None
    return Path(urlsplit(url).path if url.startswith("file://") else url).expanduser()


def display(url: str) -> str:
    """The URL as records show it: without any user or password it may carry."""
    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return parts._replace(netloc=netloc).geturl()
    return url


def remote_env(url: str, token: str | None) -> dict[str, str]:
    """What a git process reaching url needs in its environment (and nothing else of ours)."""
    env: dict[str, str] = {}
    kind = scheme(url)
    if kind in ("http", "https") and token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
        )
    if kind == "ssh":
        env.update({k: os.environ[k] for k in _PASSED_FOR_SSH if k in os.environ})
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20")
    return env


def locked(mirror: Path):
    """One fetch or push at a time per mirror, across processes; waits at most LOCK_WAIT_S."""
    return file_lock(mirror / "acp-mirror.lock", LOCK_WAIT_S, "another fetch or push")


# Never part of a job's change unless the repository already tracks them: what tools leave
# behind in a checkout (a virtualenv made there, caches, bytecode, node_modules).
JOB_EXCLUDES = (
    ".venv/", "venv/", "__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/",
    ".ruff_cache/", ".tox/", ".nox/", "node_modules/", "*.egg-info/",
)  # fmt: skip


async def ensure(mirror: Path) -> Path:
    """The bare mirror at `mirror`, made (atomically) if it is not there yet."""
    if (mirror / "HEAD").exists():
        return mirror
    mirror.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{mirror.name}.", dir=mirror.parent))
    try:
        await _git("init", "--quiet", "--bare", str(building), cwd=mirror.parent)
        # Objects a job made stay until the service prunes them, whatever git's defaults.
        await _git("config", "gc.auto", "0", cwd=building)
        (building / "info").mkdir(exist_ok=True)
        (building / "info" / "exclude").write_text(
            "# agent control plane: never in a job's change unless tracked\n"
            + "\n".join(JOB_EXCLUDES)
            + "\n"
        )
        with contextlib.suppress(OSError):
            os.rename(building, mirror)
    finally:
        await asyncio.to_thread(shutil.rmtree, building, True)
    return mirror


async def fetch(mirror: Path, url: str, branch: str, token: str | None = None) -> str:
    """Bring refs/remotes/origin/<branch> to the remote's tip; returns that commit."""
    async with locked(mirror):
        return await _fetch_unlocked(mirror, url, branch, token)


async def _fetch_unlocked(mirror: Path, url: str, branch: str, token: str | None) -> str:
    rc, _, err = await _run_git(
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        url,
        f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        cwd=mirror,
        env=remote_env(url, token),
        check=False,
        timeout_s=FETCH_TIMEOUT_S,
        own_group=True,
    )
    if rc != 0:
        text = err.strip().splitlines()
        if any("couldn't find remote ref" in line for line in text):
            raise GitCommandFailed(
                f"branch {branch!r} does not exist in {display(url)}",
                hint="check the target's base_branch in the policy",
            )
        said = text[-1] if text else "no message"
        if any(word in line for line in text for word in _AUTH_WORDS):
            raise GitCommandFailed(
                f"{display(url)} wants credentials the fetch did not have ({said})",
                hint="name the variable holding its token in the target's push_token_env "
                "(or forge.token_env), and set it in the service's environment",
            )
        raise GitCommandFailed(
            f"cannot fetch {branch} from {display(url)}: {said}",
            hint="check the target's url and, for https, its token variable",
        )
    tip = await _rev(mirror, f"refs/remotes/origin/{branch}^{{commit}}")
    assert tip is not None
    return tip


async def push(
    mirror: Path,
    url: str,
    commit: str | None,
    branch: str,
    *,
    expect: str | None,
    token: str | None = None,
) -> None:
    """Set the remote's branch to commit (None: delete it) if it is at `expect` now (None: it
    must not exist). RemoteMoved when it is not; CheckoutDirty when a local checkout of the
    branch has uncommitted changes."""
    args = ["push", "--porcelain", "--quiet"]
    if local_path(url) is not None:
        args.append(f"--receive-pack={_LOCAL_RECEIVE_PACK}")
    args += [f"--force-with-lease=refs/heads/{branch}:{expect or ''}", url]
    args.append(f"{commit}:refs/heads/{branch}" if commit else f":refs/heads/{branch}")
    async with locked(mirror):
        rc, out, err = await _run_git(
            *args, cwd=mirror, env=remote_env(url, token), check=False,
            timeout_s=FETCH_TIMEOUT_S, own_group=True,
        )  # fmt: skip
        said = f"{out}\n{err}"
        if rc == 0:
            ref = f"refs/remotes/origin/{branch}"
            if commit:
                await _git("update-ref", ref, commit, cwd=mirror)
            else:
                await _run_git("update-ref", "-d", ref, cwd=mirror, check=False)
            return
    where = display(url)
    if "stale info" in said or "fetch first" in said or "non-fast-forward" in said:
        raise RemoteMoved(
            f"{branch} in {where} moved since the mirror fetched it",
            hint="it is fetched again and the change re-checked",
        )
    if "unstaged changes" in said or "uncommitted changes" in said or "updateInstead" in said:
        path = local_path(url)
        changed = await _changed_files(path) if path is not None else []
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if changed[10:] else "")
        raise CheckoutDirty(
            f"{where} has {branch} checked out with uncommitted changes"
            f"{' to ' + shown if shown else ''}, so git's updateInstead rule refuses to update "
            "it; nothing was written there",
            hint=f"commit or stash the changes in {path or where}, then try again",
        )
    lines = [line for line in said.splitlines() if line.strip()]
    raise GitCommandFailed(
        f"git push to {where} failed: {lines[-1] if lines else 'no message'}",
        hint="check that the remote accepts pushes and, for https, the token variable",
    )


async def adopt_branch(mirror: Path, url: str, branch: str, token: str | None = None) -> str | None:
    """Copy the remote's branch into the mirror as one of its own (a job branch an older
    release made in the repository itself); its tip, or None if the remote has no such branch."""
    async with locked(mirror):
        rc, _, _ = await _run_git(
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
            f"+refs/heads/{branch}:refs/heads/{branch}",
            cwd=mirror, env=remote_env(url, token), check=False,
            timeout_s=FETCH_TIMEOUT_S, own_group=True,
        )  # fmt: skip
    return await _rev(mirror, f"refs/heads/{branch}^{{commit}}") if rc == 0 else None


async def _changed_files(checkout: Path) -> list[str]:
    """What a person's checkout has uncommitted (read without taking its index lock)."""
    rc, out, _ = await _run_git(
        "--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=no",
        cwd=checkout, check=False, timeout_s=30.0,
    )  # fmt: skip
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3] if rc == 0 else []


async def delete_branch(mirror: Path, branch: str) -> bool:
    """Delete one of the mirror's own (job) branches; True if it was there."""
    rc, _, _ = await _run_git("update-ref", "-d", f"refs/heads/{branch}", cwd=mirror, check=False)
    return rc == 0


async def keep(mirror: Path, name: str, commit: str) -> None:
    """Keep commit's objects in the mirror under refs/acp/<name> (a rollback needs them)."""
    await _git("update-ref", f"refs/acp/{name}", commit, cwd=mirror)


async def kept(mirror: Path, name: str) -> str | None:
    return await _rev(mirror, f"refs/acp/{name}^{{commit}}")


async def branches(mirror: Path, prefix: str) -> list[str]:
    """The mirror's own branches under prefix (e.g. 'acp/')."""
    out = await _git("for-each-ref", "--format=%(refname:lstrip=2)", f"refs/heads/{prefix}",
                     cwd=mirror)  # fmt: skip
    return [line for line in out.splitlines() if line]

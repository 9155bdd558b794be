"""The repository a code or doc job works on: where it is (the target's URL), the service's
mirror of it under ACP_HOME, the token that reaches it, and the bundled sample made on first
use.

It must never hand a token to anything but the git process that fetches or pushes, and never
let a job's worktree come from anything but the mirror fetched for that job.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import AcpError
from runtime.policy import Policy, RepoTarget
from runtime.sandbox import mirror as mirrors
from runtime.sandbox import worktree as wt
from runtime.settings import SAMPLES_DIR, Settings


def repo_url(settings: Settings, target: RepoTarget) -> str:
    """The target's URL or path with {ACP_HOME} replaced (a plain path made absolute)."""
    url = target.location.replace("{ACP_HOME}", str(settings.home))
    local = mirrors.local_path(url)
    if local is not None and not url.startswith("file://"):
        return str(local.expanduser().resolve())
    return url


def repo_path(settings: Settings, target: RepoTarget) -> Path:
    """A local target's path (its checkout or bare repository); AcpError for a remote one."""
    local = mirrors.local_path(repo_url(settings, target))
    if local is None:
        raise AcpError(f"{target.location} is not a local repository")
    return local


def mirror_path(settings: Settings, name: str) -> Path:
    return settings.home / "mirrors" / f"{name}.git"


def token(target: RepoTarget) -> str | None:
    """The token for an https remote, read from the variable the policy names (None: none)."""
    name = target.token_env
    if name is None or mirrors.scheme(target.location) not in ("http", "https"):
        return None
    value = os.environ.get(name)
    if not value:
        raise AcpError(
            f"the repository's token variable {name} is not set",
            hint=f"export {name}=... in the service's environment (the policy names it)",
        )
    return value


async def ensure_repo(settings: Settings, target: RepoTarget) -> Path:
    """A local target's path; a bundled sample is created there on first use."""
    path = repo_path(settings, target)
    if target.sample and not (path / ".git").exists():
        await wt.init_sample_repo(SAMPLES_DIR / target.sample, path, target.base_branch)
    return path


async def ensure_named_repo(settings: Settings, policy: Policy, name: str) -> Path:
    return await ensure_repo(settings, policy.targets.repos[name])


async def fetched(settings: Settings, name: str, target: RepoTarget) -> tuple[Path, str]:
    """The target's mirror, fetched now: (its path, the base branch's tip upstream)."""
    if target.sample:
        await ensure_repo(settings, target)
    mirror = await mirrors.ensure(mirror_path(settings, name))
    tip = await mirrors.fetch(mirror, repo_url(settings, target), target.base_branch, token(target))
    return mirror, tip


async def mirror_of(settings: Settings, name: str) -> Path:
    """The target's mirror as it is (made empty if missing), without fetching."""
    return await mirrors.ensure(mirror_path(settings, name))

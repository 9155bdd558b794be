"""The repository a code or doc job works on: where it is, and the bundled sample made on first
use."""

from __future__ import annotations

from pathlib import Path

from runtime.policy import Policy, RepoTarget
from runtime.sandbox import worktree as wt
from runtime.settings import SAMPLES_DIR, Settings


def repo_path(settings: Settings, target: RepoTarget) -> Path:
    return Path(target.path.replace("{ACP_HOME}", str(settings.home))).expanduser()


async def ensure_repo(settings: Settings, target: RepoTarget) -> Path:
    """The repo's path; a bundled sample is created there on first use."""
    path = repo_path(settings, target)
    if target.sample and not (path / ".git").exists():
        await wt.init_sample_repo(SAMPLES_DIR / target.sample, path, target.base_branch)
    return path


async def ensure_named_repo(settings: Settings, policy: Policy, name: str) -> Path:
    return await ensure_repo(settings, policy.targets.repos[name])

"""Every tool call goes through the job's grant; refusals are audit events, whoever asked."""

from __future__ import annotations

import os

import pytest

from runtime import code_jobs
from runtime.errors import SandboxViolation, ToolNotGranted
from runtime.sandbox import worktree as wt
from runtime.toolbox import Toolbox


@pytest.fixture
async def toolbox(engine):
    job = await engine.submit("code demo: run `true`", engine.actor("cli", "alice"))
    target, repo = await code_jobs.ensure_repo(engine, "demo")
    tree = await wt.create_worktree(
        repo, target.base_branch, job.job_id, engine.settings.worktrees_dir
    )
    try:
        yield Toolbox(engine, job, tree, "worker:test")
    finally:
        await wt.remove_worktree(tree)


async def refusals(engine) -> list[dict]:
    return [e.data for e in await engine.events() if e.kind == "tool.refused"]


@pytest.mark.parametrize(
    ("tool", "arguments", "words"),
    [
        ("fs.read", {"path": "../../../etc/passwd"}, ".."),
        ("fs.read", {"path": "/etc/passwd"}, "absolute"),
        ("fs.read", {"path": "escape/passwd"}, "outside"),
        ("fs.write", {"path": "escape/owned", "content": "x"}, "outside"),
        ("fs.read", {"path": ".git/config"}, ".git"),
    ],
    ids=["dotdot", "absolute", "symlinked-dir", "write-through-symlink", "git-dir"],
)
async def test_file_tools_refuse_paths_outside_the_worktree(
    engine, toolbox, tool, arguments, words
):
    os.symlink("/etc", toolbox.tree.path / "escape")
    with pytest.raises(SandboxViolation) as caught:
        await toolbox.call(tool, **arguments)
    assert words in caught.value.message
    [refusal] = await refusals(engine)
    assert refusal["tool"] == tool and refusal["arguments"]["path"] == arguments["path"]
    assert not (toolbox.tree.path.parent / "owned").exists()


async def test_tool_outside_the_grant_is_refused_before_it_runs(engine, toolbox):
    narrowed = toolbox.job.model_copy(update={"tools_granted": ["fs.read"]})
    box = Toolbox(engine, narrowed, toolbox.tree, "worker:test")
    with pytest.raises(ToolNotGranted, match="may not use 'shell'"):
        await box.call("shell", command="touch ran.txt")
    assert not (toolbox.tree.path / "ran.txt").exists()
    with pytest.raises(ToolNotGranted, match=r"may not use 'fs\.write'"):
        await box.call("fs.write", path="a.txt", content="x")
    with pytest.raises(ToolNotGranted, match="no tool named"):
        await box.call("browser.goto", url="http://127.0.0.1")
    assert [r["tool"] for r in await refusals(engine)] == ["shell", "fs.write", "browser.goto"]


async def test_granted_file_tools_work_and_are_recorded(engine, toolbox):
    await toolbox.call("fs.write", path="notes/new.md", content="hello\n")
    assert await toolbox.call("fs.read", path="notes/new.md") == "hello\n"
    assert "README.md" in await toolbox.call("fs.list")
    kinds = [e.kind for e in await engine.events()]
    assert kinds.count("tool.fs.write") == 1 and kinds.count("tool.fs.read") == 1

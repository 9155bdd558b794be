"""Every tool call goes through the job's grant; refusals are audit events, whoever asked."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from runtime.errors import SandboxViolation, ToolNotGranted
from runtime.kinds.code.repo import ensure_named_repo
from runtime.sandbox import worktree as wt
from runtime.toolbox import Toolbox
from runtime.tools.documents import DOCUMENT_TOOLS
from runtime.tools.workspace import WORKSPACE_TOOLS

TOOLS = (*WORKSPACE_TOOLS, *DOCUMENT_TOOLS)


@pytest.fixture
async def toolbox(engine):
    job = await engine.submit("code demo: run `true`", engine.actor("cli", "alice"))
    target = engine.policy.targets.repos["demo"]
    repo = await ensure_named_repo(engine.settings, engine.policy, "demo")
    tree = await wt.create_worktree(
        repo, target.base_branch, job.job_id, engine.settings.worktrees_dir
    )
    try:
        yield Toolbox(
            engine.recorder(job.id, "worker:test"), job, tree, engine.policy.limits, TOOLS
        )
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
    recorder = engine.recorder(narrowed.id, "worker:test")
    box = Toolbox(recorder, narrowed, toolbox.tree, engine.policy.limits, TOOLS)
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


def with_docs(engine, toolbox: Toolbox) -> Toolbox:
    granted = toolbox.job.model_copy(update={"tools_granted": [*toolbox.job.tools_granted, "docs"]})
    recorder = engine.recorder(granted.id, "worker:test")
    return Toolbox(recorder, granted, toolbox.tree, engine.policy.limits, TOOLS)


async def test_document_tools_refuse_a_fifo_or_a_huge_file_at_once(engine, toolbox):
    box = with_docs(engine, toolbox)
    root = box.tree.path
    for name in ("pipe.md", "pipe.csv", "pipe.xlsx"):
        os.mkfifo(root / name)
    (root / "huge.xlsx").touch()
    os.truncate(root / "huge.xlsx", 64 * 1024**3)  # sparse: nearly no disk
    (root / "t.md.j2").write_text("{{ rows | length }}\n")
    calls = [
        ("docs.read", {"path": "pipe.md"}, "is a FIFO"),
        ("docs.write", {"path": "pipe.md", "content": "# x\n"}, "is a FIFO"),
        ("docs.template", {"template": "pipe.md", "output": "out.md", "data": []}, "is a FIFO"),
        ("docs.template", {"template": "t.md.j2", "output": "o.md", "data": ["pipe.csv"]}, "FIFO"),
        ("docs.cells", {"path": "pipe.xlsx", "sheet": "S", "cells": {"A1": 1}}, "is a FIFO"),
        ("docs.read", {"path": "huge.xlsx"}, "65536.0 MB; the limit is"),
        ("docs.cells", {"path": "huge.xlsx", "sheet": "S", "cells": {"A1": 1}}, "65536.0 MB"),
    ]
    started = time.monotonic()
    for tool, arguments, words in calls:
        with pytest.raises(SandboxViolation) as caught:
            await asyncio.wait_for(box.call(tool, **arguments), 10)
        assert words in caught.value.message, (tool, caught.value.message)

    assert time.monotonic() - started < 5
    assert [r["tool"] for r in await refusals(engine)] == [c[0] for c in calls]
    assert not (root / "out.md").exists() and not (root / "o.md").exists()


async def test_arguments_that_are_not_valid_text_are_refused_and_recorded(engine, toolbox):
    box = with_docs(engine, toolbox)
    calls = [
        ("fs.write", {"path": "x-\ud800.txt", "content": "x"}),
        ("fs.write", {"path": "notes.txt", "content": "half a pair: \udc00"}),
        ("fs.read", {"path": "bad-\udcff"}),
        ("shell", {"command": "echo \ud83d"}),
        ("docs.cells", {"path": "book.xlsx", "sheet": "S", "cells": {"A\ud800": 1}}),
        ("fs.\ud800", {"path": "README.md"}),
    ]
    for tool, arguments in calls:
        with pytest.raises(SandboxViolation) as caught:
            await box.call(tool, **arguments)
        assert caught.value.message.encode("utf-8"), "the message itself is printable"

    recorded = await refusals(engine)
    assert [r["tool"] for r in recorded] == ["fs.write"] * 2 + ["fs.read", "shell"] + [
        "docs.cells",
        "fs.\\ud800",
    ]
    assert recorded[0]["arguments"]["path"] == "x-\\ud800.txt"
    assert recorded[1]["arguments"]["content"] == "half a pair: \\udc00"
    assert recorded[3]["arguments"]["command"] == "echo \\ud83d"
    assert all("not valid text" in r["reason"] for r in recorded[:5])
    assert not (box.tree.path / "notes.txt").exists()
    assert "tool.shell" not in [e.kind for e in await engine.events()], "the command never ran"
    assert (await engine.verify_audit()).events > 0


async def test_a_failed_tool_call_is_on_the_record_too(engine, toolbox):
    with pytest.raises(FileNotFoundError):
        await toolbox.call("fs.read", path="no/such/file.txt")
    with pytest.raises(IsADirectoryError):
        await toolbox.call("fs.read", path=".")
    failed = [e.data for e in await engine.events() if e.kind == "tool.failed"]
    assert [(f["tool"], f["arguments"]["path"]) for f in failed] == [
        ("fs.read", "no/such/file.txt"),
        ("fs.read", "."),
    ]
    assert "is a folder" in failed[1]["error"]

"""Repository targets by URL: the service's mirror fetched before each job and each publish,
merge / push / pull_request publishing with rollback in each mode, commits authored by the
requester with trailers, job branches removed, and a person's checkout never overwritten.

Real git (a bare remote on disk, and one served over HTTP by `git http-backend` with a token),
a forge stand-in speaking GitHub's REST API over real HTTP, SQLite, bubblewrap.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.kinds.code.repo import mirror_path
from runtime.settings import Settings
from runtime.worker import Worker
from tests.standins.forge_standin import ForgeStandin
from tests.standins.git_http import GitHttpServer
from tests.support.acp_process import ROOT

BUNDLED = ROOT / "policies" / "default.yml"
TOKEN = "ghs_remote-token-value-0123456789abcdef"
TOKEN_ENV = "ACP_TEST_FORGE_TOKEN"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_file(checkout: Path, name: str, text: str, message: str) -> str:
    (checkout / name).write_text(text)
    git(checkout, "add", name)
    git(checkout, "-c", "user.name=Up Stream", "-c", "user.email=up@x", "commit", "-qm", message)
    return git(checkout, "rev-parse", "HEAD")


def make_remote(tmp_path: Path, name: str = "widgets") -> tuple[Path, Path]:
    """A bare repository (the remote) and a person's clone of it to push upstream commits."""
    bare = tmp_path / "remotes" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    clone = tmp_path / f"{name}-clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    git(clone, "checkout", "-q", "-b", "main")
    commit_file(clone, "README.md", "widgets\n", "first")
    git(clone, "push", "-q", "origin", "main")
    return bare, clone


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under root whose bytes contain secret."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            found.append(path)
    return found


def write_policy(directory: Path, repos: dict) -> None:
    policy = yaml.safe_load(BUNDLED.read_text())
    policy["people"]["alice"]["email"] = "alice@example.com"
    policy["people"]["bob"]["email"] = "bob@example.com"
    policy["roles"]["engineer"]["grants"].append(
        {
            "id": "engineer.code.remotes",
            "job_types": ["code"],
            "targets": list(repos),
            "tools": ["fs.read", "fs.write", "shell", "git.diff"],
        }
    )
    policy["approvals"].append(
        {
            "id": "remotes.review",
            "job_types": ["code"],
            "targets": list(repos),
            "actions": ["merge", "push", "pull_request"],
            "approvers": {"roles": ["demo-approver"]},
            "four_eyes": True,
        }
    )
    policy["targets"]["repos"].update(repos)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))


@pytest.fixture
async def make_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    opened: list[Engine] = []

    async def make(repos: dict) -> Engine:
        write_policy(tmp_path / "policy", repos)
        env = {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'acp.db'}",
            "ACP_POLICY_DIR": str(tmp_path / "policy"),
        }
        engine = await Engine.open(Settings.from_env(env))
        opened.append(engine)
        return engine

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    yield make
    for engine in opened:
        await engine.close()


async def settle(engine: Engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def run_and_approve(engine: Engine, request: str):
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    job = await settle(engine, (await engine.submit(request, alice)).id)
    assert job.state is JobState.awaiting_approval, (job.state, job.result)
    await engine.approve(job.id, bob)
    return job, await settle(engine, job.id)


async def test_merge_mode_fetches_the_remote_pushes_the_merge_and_rolls_it_back(
    make_engine, tmp_path
):
    bare, clone = make_remote(tmp_path)
    engine = await make_engine({"widgets": {"url": f"file://{bare}", "base_branch": "main"}})
    # Upstream moves after the target was declared: the job starts from the new tip.
    upstream = commit_file(clone, "upstream.txt", "one\n", "upstream work")
    git(clone, "push", "-q", "origin", "main")

    alice = engine.actor("cli", "alice")
    job = await settle(
        engine, (await engine.submit("code widgets: run `echo hello > hello.txt`", alice)).id
    )
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.base_commit == upstream
    # ...and moves again before the approval: publishing fetches it first, merging onto it.
    later = commit_file(clone, "later.txt", "two\n", "more upstream work")
    git(clone, "push", "-q", "origin", "main")
    await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await settle(engine, job.id)

    assert job.state is JobState.succeeded, job.result
    merge = git(bare, "rev-parse", "main")
    assert job.result["published_commit"] == merge
    first_parent, change = git(bare, "rev-list", "--parents", "-n1", merge).split()[1:]
    assert first_parent == later, "merged onto the tip the remote had at publish time"
    assert git(bare, "show", "main:hello.txt") == "hello"
    assert git(bare, "show", "main:later.txt") == "two"
    author = git(bare, "show", "-s", "--format=%an <%ae>", change)
    assert author == "Alice Example <alice@example.com>"
    message = git(bare, "show", "-s", "--format=%B", change)
    assert f"{job.job_id}:" in message and "echo hello > hello.txt" in message
    assert f"Acp-Job: {job.job_id}" in message
    assert "Approved-by: Bob Example <bob@example.com>" in message
    trailers = git(bare, "show", "-s", "--format=%(trailers:key=Approved-by,valueonly)", merge)
    assert trailers == "Bob Example <bob@example.com>"
    mirror = mirror_path(engine.settings, "widgets")
    assert git(mirror, "branch", "--list", "acp/*") == "", "the job branch is gone"

    job = await engine.rollback(job.id, engine.actor("cli", "bob"))
    assert job.state is JobState.rolled_back
    revert = git(bare, "rev-parse", "main")
    assert job.result["revert_commit"] == revert != merge
    files = git(bare, "ls-tree", "--name-only", "main").split()
    assert "hello.txt" not in files and "later.txt" in files


async def test_push_mode_over_http_pushes_the_branch_with_a_token_never_in_a_url(
    make_engine, tmp_path
):
    bare, _clone = make_remote(tmp_path)
    with GitHttpServer(bare.parent, TOKEN) as server:
        engine = await make_engine(
            {
                "gadgets": {
                    "url": server.url_for(bare.name),
                    "base_branch": "main",
                    "publish": "push",
                    "push_token_env": TOKEN_ENV,
                }
            }
        )
        base = git(bare, "rev-parse", "main")
        job, job_done = await run_and_approve(engine, "code gadgets: run `echo x > x.txt`")
        assert job_done.state is JobState.succeeded, job_done.result
        branch = job.pending_action.job_branch
        pushed = git(bare, "rev-parse", branch)
        assert job_done.result["published_commit"] == pushed
        assert git(bare, "rev-parse", "main") == base, "push mode leaves the base alone"
        assert f"pushed {branch}" in job_done.result.get("reason", "") or any(
            f"pushed {branch}" in (e.data.get("reason") or "")
            for e in await engine.events(job.id)
            if e.kind == "publish.pushed"
        )
        assert git(bare, "show", f"{pushed}:x.txt") == "x"
        assert server.authorizations, "the remote saw the token, as a header"

        rolled = await engine.rollback(job.id, engine.actor("cli", "bob"))
        assert rolled.state is JobState.rolled_back
        assert git(bare, "rev-parse", branch) == rolled.result["revert_commit"]
        assert "x.txt" not in git(bare, "ls-tree", "--name-only", branch).split()

    assert files_holding(Path(engine.settings.home), TOKEN) == []
    config = (mirror_path(engine.settings, "gadgets") / "config").read_text()
    assert TOKEN not in config and "http" not in config


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_pull_request_mode_opens_closes_and_reverts_pull_requests(
    make_engine, tmp_path, kind
):
    bare, _clone = make_remote(tmp_path)
    async with ForgeStandin(token=TOKEN, repos={"acme/widgets": bare}) as forge:
        api_url = forge.api_url if kind == "github" else forge.gitlab_api_url
        engine = await make_engine(
            {
                "widgets": {
                    "url": str(bare),
                    "base_branch": "main",
                    "publish": "pull_request",
                    "forge": {
                        "kind": kind,
                        "api_url": api_url,
                        "project": "acme/widgets",
                        "token_env": TOKEN_ENV,
                    },
                }
            }
        )
        base = git(bare, "rev-parse", "main")
        job, done = await run_and_approve(engine, "code widgets: run `echo a > a.txt`")
        assert done.state is JobState.succeeded, done.result
        pr = done.result["pull_request"]
        [opened] = [p for p in forge.requests if p.method == "POST"]
        fields = ("head", "base") if kind == "github" else ("source_branch", "target_branch")
        assert opened.json[fields[0]] == job.pending_action.job_branch
        assert opened.json[fields[1]] == "main"
        assert git(bare, "rev-parse", "main") == base
        # Rolled back while open: the pull request is closed and its branch deleted.
        rolled = await engine.rollback(done.id, engine.actor("cli", "bob"))
        assert rolled.result["pull_request_closed"] == pr["number"]
        assert forge.pull(pr["number"]).state == "closed"
        branches = git(bare, "branch", "--list", job.pending_action.job_branch)
        assert branches == "", "the closed pull request's branch is deleted"

        # Merged on the forge, then rolled back: a pull request that reverts it is opened.
        _job2, done2 = await run_and_approve(engine, "code widgets: run `echo b > b.txt`")
        assert done2.state is JobState.succeeded, done2.result
        number = done2.result["pull_request"]["number"]
        await forge.merge(number)
        assert git(bare, "show", "main:b.txt") == "b"
        rolled2 = await engine.rollback(done2.id, engine.actor("cli", "bob"))
        revert_pr = rolled2.result["revert_pull_request"]
        head = forge.pull(revert_pr["number"]).head
        assert "b.txt" not in git(bare, "ls-tree", "--name-only", head).split()
        assert git(bare, "show", "main:b.txt") == "b", "the revert waits for its own review"


async def test_a_dirty_checkout_is_never_overwritten_and_a_clean_one_is_updated(
    make_engine, tmp_path
):
    _bare, clone = make_remote(tmp_path)
    engine = await make_engine({"mine": {"url": str(clone), "base_branch": "main"}})
    job = await settle(
        engine,
        (
            await engine.submit(
                "code mine: run `echo agent > README.md`", engine.actor("cli", "alice")
            )
        ).id,
    )
    assert job.state is JobState.awaiting_approval, job.result
    (clone / "README.md").write_text("my unsaved edit\n")  # the person is working here
    head_before = git(clone, "rev-parse", "HEAD")
    await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await settle(engine, job.id)
    assert job.state is JobState.failed
    reason = next(
        e.data["reason"] for e in await engine.events(job.id) if e.kind == "publish.failed"
    )
    assert "uncommitted changes to README.md" in reason and str(clone) in reason
    assert (clone / "README.md").read_text() == "my unsaved edit\n"
    assert git(clone, "rev-parse", "HEAD") == head_before

    git(clone, "checkout", "--", "README.md")  # clean again: the next publish updates it
    job2 = await settle(
        engine,
        (
            await engine.submit(
                "code mine: run `echo agent > README.md`", engine.actor("cli", "alice")
            )
        ).id,
    )
    await engine.approve(job2.id, engine.actor("cli", "bob"))
    job2 = await settle(engine, job2.id)
    assert job2.state is JobState.succeeded, job2.result
    assert (clone / "README.md").read_text() == "agent\n"
    assert git(clone, "status", "--porcelain") == "", "working tree and index match the commit"
    assert git(clone, "rev-parse", "HEAD") == job2.result["published_commit"]


async def test_job_branches_do_not_outlive_their_jobs(make_engine, tmp_path):
    bare, _clone = make_remote(tmp_path)
    engine = await make_engine({"widgets": {"url": str(bare), "base_branch": "main"}})
    alice = engine.actor("cli", "alice")
    mirror = mirror_path(engine.settings, "widgets")
    nothing = await settle(engine, (await engine.submit("code widgets: run `true`", alice)).id)
    assert nothing.state is JobState.succeeded
    failed = await settle(engine, (await engine.submit("code widgets: run `false`", alice)).id)
    assert failed.state is JobState.failed
    assert git(mirror, "branch", "--list", "acp/*") == ""

    waiting = await settle(
        engine, (await engine.submit("code widgets: run `echo r > r`", alice)).id
    )
    assert git(mirror, "branch", "--list", "acp/*").strip() == f"acp/{waiting.job_id}"
    await engine.reject(waiting.id, engine.actor("cli", "bob"), reason="not now")
    from runtime.kinds.code.kind import CodeKind

    CodeKind._swept_at = 0.0
    assert await Worker(engine).sweep_kinds() >= 1
    assert git(mirror, "branch", "--list", "acp/*") == ""


async def test_what_tools_leave_in_a_checkout_is_not_part_of_the_change(make_engine, tmp_path):
    bare, _clone = make_remote(tmp_path)
    engine = await make_engine({"widgets": {"url": str(bare), "base_branch": "main"}})
    litter = (
        "python3 -m venv --without-pip .venv && mkdir -p node_modules/left pkg/__pycache__ "
        "&& touch node_modules/left/index.js pkg/__pycache__/m.cpython-311.pyc && echo k > kept.txt"
    )
    job = await settle(
        engine,
        (await engine.submit(f"code widgets: run `{litter}`", engine.actor("cli", "alice"))).id,
    )
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.stat["files"] == ["kept.txt"]

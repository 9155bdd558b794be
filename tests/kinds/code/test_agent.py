"""The governed agent loop against a real model stand-in, reached through litellm over HTTP.

Real git, bubblewrap, SQLite and litellm; the hosted model is ``ModelStandIn`` (an
OpenAI-compatible server on 127.0.0.1 serving scripted replies). Each test builds its own
policy (the bundled one with a model route pointing at the stand-in) and its own repository
with a real failing unittest.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.jobs import JobState
from runtime.worker import Worker
from tests.standins.model_standin import ModelStandIn, call, say
from tests.support.acp_process import ACP, ROOT, Service

MODEL = "gpt-4o-mini"  # the stand-in's model name; litellm knows its price
LITELLM_MODEL = f"openai/{MODEL}"
FALLBACK = "gpt-4o"
ROUTE = "models.code.standin"
KEY_ENV = "ACP_TEST_MODEL_KEY"
BUNDLED = ROOT / "policies" / "default.yml"
REQUEST = "code demo: fix the failing test"
TESTS = "python3 -m unittest discover -s tests"

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
UNIT_TEST = """\
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mathutil import add


class AddTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    """A small repository whose only test fails: add() subtracts."""
    (path / "src").mkdir(parents=True)
    (path / "tests").mkdir()
    (path / "src" / "mathutil.py").write_text(BUGGY)
    (path / "tests" / "test_mathutil.py").write_text(UNIT_TEST)
    (path / "README.md").write_text("# mathutil\n")
    (path / ".gitignore").write_text("__pycache__/\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "mathutil with a failing test")
    return path


def write_policy(
    directory: Path, base_url: str, repo: Path, budgets: dict | None, limits: dict | None = None
) -> Path:
    """The bundled policy, with a model route to the stand-in and the demo target on `repo`."""
    policy = yaml.safe_load(BUNDLED.read_text())
    policy["models"] = {
        "routes": [
            {
                "id": ROUTE,
                "job_types": ["code"],
                "model": LITELLM_MODEL,
                "api_base": base_url,
                "api_key_env": KEY_ENV,
                "fallbacks": [f"openai/{FALLBACK}"],
            }
        ],
    }
    if budgets:
        policy["models"]["budgets"] = budgets
    policy["targets"]["repos"]["demo"] = {
        "path": str(repo),
        "base_branch": "main",
        "publish": "merge",
        "description": "a repo with a failing test, built by the test",
    }
    policy["limits"].update({"agent_max_steps": 20, "agent_time_limit_s": 600, **(limits or {})})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return directory


@dataclass
class Rig:
    """One test's world: the stand-in, the repo, the environment, and engines opened on it."""

    tmp: Path
    standin: ModelStandIn
    key: str
    repo: Path
    env: dict[str, str]
    engines: list[Any] = field(default_factory=list)
    api: Any = None
    api_engine: Any = None

    async def serve_api(self) -> None:
        from bot.api.server import start_api

        if self.api is not None and self.api_engine is self.engines[-1]:
            return
        await self.close_api()
        self.api, self.api_engine = await start_api(self.engines[-1]), self.engines[-1]

    async def close_api(self) -> None:
        if self.api is not None:
            await self.api.close()
            self.api = None

    async def engine(self, budgets: dict | None = None, limits: dict | None = None):
        from runtime.engine import Engine
        from runtime.settings import Settings

        policy_dir = Path(self.env["ACP_POLICY_DIR"])
        write_policy(policy_dir, self.standin.base_url, self.repo, budgets, limits)
        eng = await Engine.open(Settings.from_env(self.env))
        self.engines.append(eng)
        return eng

    async def acp(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """`acp ...` as a subprocess without blocking the loop (the stand-in keeps serving),
        talking to the service API over the newest engine."""
        await self.serve_api()
        proc = await asyncio.create_subprocess_exec(
            *ACP,
            *args,
            env=self.env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    key = f"sk-live-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)  # the in-process engine reads it from its environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_", "OPENAI_"))}
    env.update(
        ACP_HOME=str(tmp_path / "home"),
        ACP_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/acp.db",
        ACP_POLICY_DIR=str(tmp_path / "policy"),
        PYTHONUNBUFFERED="1",
        ACP_API_LISTEN="",
        ACP_CONSOLE_LISTEN="",
    )
    env[KEY_ENV] = key
    async with ModelStandIn(api_key=key) as standin:
        r = Rig(tmp_path, standin, key, make_repo(tmp_path / "repo"), env)
        try:
            yield r
        finally:
            await r.close_api()
            for eng in r.engines:
                await eng.close()


async def run_until_settled(engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def submit_and_run(engine, text: str = REQUEST, person: str = "alice"):
    job = await engine.submit(text, engine.actor("cli", person))
    assert job.state is JobState.queued, (job.state, job.decision)
    return await run_until_settled(engine, job.id)


async def kinds(engine, job_id: int, kind: str) -> list:
    return [e for e in await engine.events(job_id) if e.kind == kind]


def tool_result(request) -> str:
    """The content of the last message of a recorded request: the previous tool's result."""
    last = request.messages[-1]
    assert last["role"] == "tool", last
    return last["content"]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def script_fix(standin: ModelStandIn) -> None:
    standin.script(
        MODEL,
        call("list_dir", path="."),
        call("read_file", path="src/mathutil.py"),
        call("run", command=TESTS),
        call("write_file", path="src/mathutil.py", content=FIXED),
        call("run", command=TESTS),
        say("fixed"),
    )


# --- the loop -----------------------------------------------------------------------------------


async def test_model_fixes_a_failing_test_and_the_job_waits_for_approval(rig: Rig):
    engine = await rig.engine()
    script_fix(rig.standin)
    job = await submit_and_run(engine)

    assert job.state is JobState.awaiting_approval, job.result
    diff = engine.artifacts.read(job.pending_action.diff_sha256).decode()
    assert "-    return a - b" in diff and "+    return a + b" in diff
    assert job.pending_action.stat["files"] == ["src/mathutil.py"]

    reqs = rig.standin.requests_for(MODEL)
    assert len(reqs) == 6 and rig.standin.pending(MODEL) == 0
    assert "src/" in tool_result(reqs[1]) and "tests/" in tool_result(reqs[1])
    assert tool_result(reqs[2]) == BUGGY
    assert tool_result(reqs[3]).startswith("exit 1"), "the test really failed first"
    assert "FAILED" in tool_result(reqs[3])
    assert tool_result(reqs[5]).startswith("exit 0"), tool_result(reqs[5])
    assert "OK" in tool_result(reqs[5])
    assert {t["function"]["name"] for t in reqs[0].tools} >= {
        "read_file",
        "write_file",
        "list_dir",
        "run",
        "ask",
    }

    assert job.model.model == LITELLM_MODEL and job.model.route_rule == ROUTE
    assert job.model.calls == 6
    assert job.model.cost_usd > 0
    assert job.model.fallbacks_taken == []

    model_calls = await kinds(engine, job.id, "model.call")
    assert len(model_calls) == 6
    for event in model_calls:
        data = event.data
        assert data["model"] == LITELLM_MODEL and data["route_rule"] == ROUTE
        assert data["prompt_tokens"] > 0 and data["completion_tokens"] > 0
        assert data["cost_usd"] > 0 and data["latency_ms"] >= 0
        assert {data["request_sha256"], data["response_sha256"]} <= set(event.artifacts)
        assert engine.artifacts.check(data["request_sha256"]) is None
    last_request = engine.artifacts.read(model_calls[-1].data["request_sha256"]).decode()
    assert "exit 0" in last_request, "the recorded request is the one that was sent"
    assert sum(e.data["cost_usd"] for e in model_calls) == pytest.approx(job.model.cost_usd)

    [finished] = await kinds(engine, job.id, "agent.finished")
    assert finished.data["summary"] == "fixed" and finished.data["steps"] == 6
    assert await engine.verify_audit()

    code, shown, err = await rig.acp("show", job.job_id)
    assert code == 0, err
    assert "6 calls" in shown
    call_lines = [line for line in shown.splitlines() if MODEL in line]
    assert len(call_lines) >= 7, f"a summary line and one line per call:\n{shown}"
    for event in model_calls:
        assert str(event.data["prompt_tokens"]) in shown
        assert str(event.data["completion_tokens"]) in shown


async def test_path_outside_the_worktree_and_the_network_are_refused_and_the_loop_goes_on(
    rig: Rig,
):
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    outside = rig.tmp / "outside.txt"  # a host file next to the repo, outside every worktree
    outside.write_text("host secret\n")
    try:
        engine = await rig.engine()
        rig.standin.script(
            MODEL,
            call("read_file", path="../../etc/passwd"),
            call("run", command=f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
            call("run", command=f"ln -s {outside} leak && echo linked"),
            call("read_file", path="leak"),
            call("write_file", path="leak", content="overwritten by the model\n"),
            call("read_file", path="README.md"),
            say("could not do it"),
        )
        job = await submit_and_run(engine)
    finally:
        listener.close()
        await listener.wait_closed()

    reqs = rig.standin.requests_for(MODEL)
    assert len(reqs) == 7, "the loop continued after every refusal"
    refused_path = tool_result(reqs[1])
    assert refused_path.startswith("refused:"), refused_path
    assert "root:" not in refused_path
    network = tool_result(reqs[2])
    assert network.startswith("exit ") and not network.startswith("exit 0"), network
    assert "connected" not in network.splitlines()
    assert connections == [], "nothing reached the listener from the sandbox"
    assert tool_result(reqs[3]).startswith("exit 0"), "the symlink itself may be made"
    for through_link in (tool_result(reqs[4]), tool_result(reqs[5])):
        assert through_link.startswith("refused:") and "symlink" in through_link
    assert "host secret" not in tool_result(reqs[4])
    assert outside.read_text() == "host secret\n", "nothing was written through the symlink"
    assert tool_result(reqs[6]) == "# mathutil\n"

    refusals = await kinds(engine, job.id, "tool.refused")
    assert len(refusals) == 3
    assert "../../etc/passwd" in str(refusals[0].data)
    assert all("leak" in str(r.data) for r in refusals[1:])
    shell = [e for e in await engine.events(job.id) if e.kind == "tool.shell"]
    assert [e.data["exit_code"] != 0 for e in shell] == [True, False]
    [finished] = await kinds(engine, job.id, "agent.finished")
    assert finished.data["summary"] == "could not do it"
    # The symlink the model made is its only change, and it is what the reviewer sees.
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.stat["files"] == ["leak"]
    assert job.model.calls == 7


async def test_rate_limited_model_falls_back_to_the_next_model_of_the_route(rig: Rig):
    engine = await rig.engine()
    rig.standin.fail_next(MODEL, 429, times=5, retry_after=0.01)
    rig.standin.script(FALLBACK, say("nothing needed changing"))
    job = await submit_and_run(engine)

    assert job.state is JobState.succeeded, job.result
    assert rig.standin.requests_for(MODEL), "the route's model was tried first"
    assert all(r.status in (429, 500) for r in rig.standin.requests_for(MODEL))
    [answered] = rig.standin.requests_for(FALLBACK)
    assert answered.status == 200
    [fallback] = await kinds(engine, job.id, "model.fallback")
    assert fallback.data["model"] == LITELLM_MODEL
    assert fallback.data["next"] == f"openai/{FALLBACK}"
    assert "RateLimit" in fallback.data["error"] or "429" in fallback.data["error"]
    [model_call] = await kinds(engine, job.id, "model.call")
    assert model_call.data["model"] == f"openai/{FALLBACK}"
    assert job.model.fallbacks_taken == [f"openai/{FALLBACK}"]
    assert job.model.calls == 1 and job.model.cost_usd > 0


async def test_job_over_its_model_budget_stops_with_the_reason(rig: Rig):
    engine = await rig.engine(budgets={"per_job_usd": 0.000001})
    rig.standin.script(
        MODEL,
        call("list_dir", path=".", usage=(1000, 500)),  # about $0.00045 for gpt-4o-mini
        say("done", usage=(10, 10)),
    )
    job = await submit_and_run(engine)

    assert job.state is JobState.failed, job.result
    assert "budget" in job.result["reason"]
    assert len(await kinds(engine, job.id, "model.call")) == 1
    assert len(rig.standin.requests_for(MODEL)) == 1
    assert rig.standin.pending(MODEL) == 1, "the second call was never sent"
    assert job.model.calls == 1 and job.model.cost_usd > 0.000001


async def test_job_stopped_by_its_budget_shows_no_approval_and_its_model_calls_can_be_saved(
    rig: Rig,
):
    engine = await rig.engine(budgets={"per_job_usd": 0.000001})
    rig.standin.script(MODEL, call("list_dir", path=".", usage=(1000, 500)), say("done"))
    job = await submit_and_run(engine)
    assert job.state is JobState.failed and job.pending_action is None, job.result

    code, shown, err = await rig.acp("show", job.job_id)
    assert code == 0, err
    assert "approval for" not in shown and "approve with" not in shown, shown
    assert "budget" in shown

    [model_call] = await kinds(engine, job.id, "model.call")
    for name, key in (("model-request-1.json", "request_sha256"),
                      ("model-response-1.json", "response_sha256")):  # fmt: skip
        code, saved, err = await rig.acp("artifact", job.job_id, name, "-o", "-")
        assert code == 0, err
        assert saved.encode() == engine.artifacts.read(model_call.data[key])
    assert json.loads(saved)["choices"][0]["message"]["tool_calls"], "the response as recorded"
    code, _, err = await rig.acp("artifact", job.job_id, "model-request-2.json")
    assert code != 0 and "model-request-1.json, model-response-1.json" in err, err


async def test_team_budget_spent_by_one_job_stops_a_teammates_job(rig: Rig):
    engine = await rig.engine(budgets={"per_team_usd": 0.0001})
    rig.standin.script(MODEL, say("nothing to change", usage=(1000, 500)))  # about $0.00045
    first = await submit_and_run(engine, person="alice")
    assert first.state is JobState.succeeded, first.result
    assert first.model.cost_usd > 0.0001

    second = await submit_and_run(engine, person="bob")  # same team (payments)
    assert second.state is JobState.failed, second.result
    assert "budget" in second.result["reason"] and "payments" in second.result["reason"]
    assert len(rig.standin.requests_for(MODEL)) == 1, "the teammate's job called no model"
    assert second.model.calls == 0


async def test_model_that_never_finishes_is_stopped_at_the_step_limit(rig: Rig):
    engine = await rig.engine(limits={"agent_max_steps": 3})
    rig.standin.script(MODEL, *[call("list_dir", path=".") for _ in range(5)])
    job = await submit_and_run(engine)

    assert job.state is JobState.failed, job.result
    assert "step limit of 3" in job.result["reason"]
    assert len(rig.standin.requests_for(MODEL)) == 3 and rig.standin.pending(MODEL) == 2
    assert job.model.calls == 3


async def test_model_question_waits_for_the_requester_and_the_answer_reaches_the_model(rig: Rig):
    engine = await rig.engine()
    rig.standin.script(MODEL, call("ask", question="Which file?"))
    job = await submit_and_run(engine, "code demo: fix it")

    assert job.state is JobState.needs_clarification, job.result
    assert job.clarification is not None and job.clarification.question == "Which file?"
    assert len(rig.standin.requests_for(MODEL)) == 1

    answer = "src/mathutil.py, the add function"
    rig.standin.script(MODEL, say("understood, nothing else to do"))
    job = await engine.answer(job.id, engine.actor("cli", "alice"), answer)
    assert job.state is JobState.queued
    job = await run_until_settled(engine, job.id)

    reqs = rig.standin.requests_for(MODEL)
    assert len(reqs) == 2
    sent = "\n".join(str(m.get("content")) for m in reqs[1].messages)
    assert answer in sent and "Which file?" in sent
    assert job.state is JobState.succeeded, job.result


async def test_replay_matches_and_a_deliberate_change_on_main_makes_it_differ(rig: Rig):
    engine = await rig.engine()
    script_fix(rig.standin)
    job = await submit_and_run(engine)
    assert job.state is JobState.awaiting_approval, job.result
    sent = len(rig.standin.requests)

    code, out, err = await rig.acp("replay", job.job_id)
    assert code == 0, out + err
    assert "identical" in out
    assert len(rig.standin.requests) == sent, "a replay makes no live model call"

    # A deliberate change on main: the recorded write now drops a function from the new base.
    (rig.repo / "src" / "mathutil.py").write_text(BUGGY + "\n\ndef sub(a, b):\n    return a - b\n")
    git(rig.repo, "commit", "-qam", "add sub()")

    code, out, err = await rig.acp("replay", job.job_id)
    assert code == 0 and "identical" in out, "replay uses the recorded base commit by default"

    code, out, err = await rig.acp("replay", job.job_id, "--on-base", "main")
    assert code == 1, out + err
    assert "differs" in out
    assert "def sub" in out, "the difference is shown as a diff"
    assert len(rig.standin.requests) == sent
    assert (await engine.get(job.id)).state is JobState.awaiting_approval, "replay changes no job"


async def test_replay_of_a_job_resumed_after_an_answer_is_identical(rig: Rig):
    engine = await rig.engine()
    rig.standin.script(MODEL, call("ask", question="Which file?"))
    job = await submit_and_run(engine, "code demo: fix it")
    assert job.state is JobState.needs_clarification
    rig.standin.script(
        MODEL,
        call("write_file", path="src/mathutil.py", content=FIXED),
        say("fixed"),
    )
    await engine.answer(job.id, engine.actor("cli", "alice"), "src/mathutil.py")
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    sent = len(rig.standin.requests)

    code, out, err = await rig.acp("replay", job.job_id)
    assert len(rig.standin.requests) == sent
    assert code == 0, out + err
    assert "identical" in out


async def test_provider_key_never_reaches_the_database_artifacts_or_sandbox(rig: Rig):
    engine = await rig.engine()
    rig.standin.script(
        MODEL,
        call("run", command=f"env; echo ${KEY_ENV}; tr '\\0' '\\n' < /proc/1/environ"),
        call("write_file", path="env.txt", content="see the run above\n"),
        say("done"),
    )
    job = await submit_and_run(engine)
    assert job.state is JobState.awaiting_approval, job.result

    chats = [r for r in rig.standin.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 3
    assert all(r.authorization == f"Bearer {rig.key}" for r in chats), "the provider got it"
    sandbox_output = tool_result(chats[1])
    assert sandbox_output.startswith("exit 0") and "PATH=" in sandbox_output
    assert KEY_ENV not in sandbox_output and rig.key not in sandbox_output
    for r in chats:
        assert rig.key not in str(r.body), "the key is sent only as the Authorization header"

    for args in (("show", job.job_id), ("show", job.job_id, "--json"), ("audit", "export")):
        code, out, err = await rig.acp(*args)
        assert code == 0, err
        assert rig.key not in out + err

    for eng in rig.engines:
        await eng.close()
    rig.engines.clear()
    secret = rig.key.encode()
    db_path = rig.tmp / "acp.db"
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"jobs", "audit_events"} <= set(tables)
        dump = "\n".join(
            repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        )
        dump += "\n".join(conn.iterdump())
    assert "model.call" in dump and rig.key not in dump
    home = Path(rig.env["ACP_HOME"])
    assert files_under(home / "artifacts"), "artifacts were written"
    leaks = [p for p in [*files_under(home), *rig.tmp.glob("acp.db*")] if secret in p.read_bytes()]
    assert leaks == [], f"the key is in {leaks}"


def test_commands_without_a_model_never_import_litellm(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_", "OPENAI_"))}
    env.update(
        ACP_HOME=str(tmp_path / "home"),
        ACP_POLICY_DIR=str(BUNDLED.parent),
        PYTHONUNBUFFERED="1",
        ACP_API_LISTEN="",
        ACP_CONSOLE_LISTEN="",
    )
    importtime = [sys.executable, "-X", "importtime", "-m", "bot.cli"]
    service = Service(env).start()
    try:
        for args in (
            ["submit", "--as", "alice", "--no-wait", "code demo: run `echo hi > hi.txt`"],
            ["jobs"],
            ["show", "J-1"],
        ):
            done = subprocess.run(
                [*importtime, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            assert "import time:" in done.stderr
            assert "litellm" not in done.stderr, f"`acp {args[0]}` imported litellm"
            assert "sqlalchemy" not in done.stderr, f"`acp {args[0]}` opened the database"
    finally:
        service.stop()

"""A job kind defined here, in the test, runs end to end by registering it: no other module knows
it. It is submitted through the `acp` command (a real subprocess, which loads it from
ACP_KINDS), decided by the policy, approved with four-eyes, published, and audited.

It also holds the layout's promises: no kind imports the engine, and every runtime module
imports alone in a fresh interpreter (no import circle hides behind an import order).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import yaml
from pydantic import BaseModel

from runtime.jobs import Evidence, EvidenceLine, JobType, PendingAction
from runtime.kinds.base import JobContext, JobKind, NeedsApproval, Outcome, Succeeded
from tests.support.acp_process import ROOT, Service, acp, service_env

BUNDLED_POLICY = ROOT / "policies" / "default.yml"


class EchoTarget(BaseModel):
    """What the policy says about an echo target (targets.echoes.<name>)."""

    greeting: str
    production: bool = False


class EchoPublish(PendingAction):
    actions: ClassVar[tuple[str, ...]] = ("echo",)
    action: Literal["echo"] = "echo"
    text: str
    text_sha256: str


class EchoKind(JobKind):
    """Writes one artifact, then asks before "publishing" it to a file under ACP_HOME."""

    job_type = JobType("echo")
    aliases = ("echo", "say")
    keywords = ("echo", "repeat")
    target_section = "echoes"
    target_model = EchoTarget
    tools = ("echo.say",)
    artifact_contract = "echo_text"
    mutating = True
    pending_models = (EchoPublish,)

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        return True  # an echo needs no model

    async def execute(self, ctx: JobContext) -> Outcome:
        text = f"{ctx.target.greeting}: {ctx.job.spec.instruction}"
        ref = ctx.recorder.put("echo.txt", text.encode())
        await ctx.recorder.log("artifact.created", {"name": "echo.txt"}, artifacts=(ref.sha256,))
        return NeedsApproval(EchoPublish(text=text, text_sha256=ref.sha256), artifacts=[ref])

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        assert isinstance(approved, EchoPublish)
        out = ctx.settings.home / "echoes" / f"{ctx.job.job_id}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(approved.text)
        return Succeeded(
            reason=f"echoed to {out.name}", event="publish.echoed", result={"echoed_to": str(out)}
        )

    def evidence(self, job) -> Evidence:
        pending = job.pending_action
        if not isinstance(pending, EchoPublish):
            return Evidence()
        return Evidence(
            headline="The echo is about to be published",
            lines=[EvidenceLine(label="echo", text=pending.text)],
            read=[pending.text_sha256],
        )


def echo_policy(folder: Path) -> Path:
    policy = yaml.safe_load(BUNDLED_POLICY.read_text())
    policy["roles"]["engineer"]["grants"].append(
        {"id": "engineer.echo", "job_types": ["echo"], "targets": ["hello"], "tools": ["echo.say"]}
    )
    policy["approvals"].append(
        {"id": "echo.publish", "job_types": ["echo"], "targets": ["*"], "actions": ["echo"],
         "approvers": {"roles": ["demo-approver"]}, "four_eyes": True}
    )  # fmt: skip
    policy["targets"]["echoes"] = {"hello": {"greeting": "hi"}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return service_env(
        tmp_path,
        ACP_POLICY_DIR=str(echo_policy(tmp_path / "policy")),
        ACP_KINDS="tests.kinds.test_kind_plugin:EchoKind",
        PYTHONPATH=str(ROOT),
    )


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = acp(env, *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def api(env: dict[str, str]):
    """The service's API and doors, no worker: the test runs the worker's passes itself."""
    service = Service(env, "serve", "--no-worker").start()
    try:
        yield service
    finally:
        service.stop()


def test_a_kind_defined_in_a_test_runs_end_to_end_through_the_cli(env, api, tmp_path: Path):
    submitted = run(
        env, "submit", "echo hello: good morning", "--as", "alice", "--json", "--no-wait"
    )
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["state"] == "queued", job["decision"]
    assert job["spec"]["job_type"] == "echo" and job["spec"]["artifact_contract"] == "echo_text"
    assert job["tools_granted"] == ["echo.say"]
    assert job["decision"]["rule_ids"][:2] == ["engineer.echo", "echo.publish"]

    worker = subprocess.run(
        [sys.executable, "-c", WORK_ONCE], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    shown = run(env, "show", f"J-{job['id']}")
    assert "awaiting_approval" in shown.stdout, shown.stdout
    assert "  echo        : hi: good morning" in shown.stdout  # the kind's own evidence
    assert "hi: good morning" in shown.stdout.split("approve with")[1]  # the artifact, read

    refused = run(
        env, "approve", f"J-{job['id']}", "--as", "alice", "--no-wait"
    )  # the requester: four-eyes
    assert refused.returncode != 0 and "four-eyes" in refused.stderr
    approved = run(env, "approve", f"J-{job['id']}", "--as", "bob", "--no-wait")
    assert approved.returncode == 0, approved.stderr

    worker = subprocess.run(
        [sys.executable, "-c", WORK_ONCE], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    final = json.loads(run(env, "show", f"J-{job['id']}", "--json").stdout)
    assert final["state"] == "succeeded", final["result"]
    published = Path(final["result"]["echoed_to"])
    assert published.read_text() == "hi: good morning"
    assert published.is_relative_to(Path(env["ACP_HOME"]))

    verified = run(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = run(env, "audit", "export", "--job", f"J-{job['id']}")
    kinds = [json.loads(line)["kind"] for line in exported.stdout.splitlines() if line.strip()]
    assert kinds[:2] == ["job.received", "job.queued"]
    for kind in ("artifact.created", "approval.requested", "approve.refused", "approval.granted",
                 "publish.started", "publish.echoed"):  # fmt: skip
        assert kind in kinds, kinds


def test_without_the_kind_its_policy_is_refused_with_what_there_is(tmp_path: Path, env):
    env = {k: v for k, v in env.items() if k != "ACP_KINDS"}  # the echo kind is not loaded
    done = acp(env, "policy", "check", "--as", "alice", "echo hello: hi")
    assert done.returncode != 0
    assert "unknown job type echo (job types: code, sql, browser, doc, schedule, policy)" in (
        done.stderr
    )
    policy = yaml.safe_load(BUNDLED_POLICY.read_text())
    policy["targets"]["echoes"] = {"hello": {"greeting": "hi"}}
    (tmp_path / "policy" / "default.yml").write_text(yaml.safe_dump(policy))
    done = acp(env, "policy", "check", "--as", "alice", "code demo: run `true`")
    assert done.returncode != 0
    assert (
        "no job kind reads targets.echoes (target sections: databases, policies, repos, sites)"
        in (done.stderr)
    ), done.stderr


class RestlessKind(JobKind):
    """A kind whose action changes every time it is taken, with no approval rule over it."""

    job_type = JobType("restless")
    aliases = ("restless",)
    target_section = "echoes"
    target_model = EchoTarget
    tools = ("echo.say",)
    mutating = True
    pending_models = (EchoPublish,)

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        return True

    async def execute(self, ctx: JobContext) -> Outcome:
        return NeedsApproval(EchoPublish(text="0", text_sha256="0" * 64))

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        assert isinstance(approved, EchoPublish)
        moved = str(int(approved.text) + 1)
        return NeedsApproval(EchoPublish(text=moved, text_sha256="0" * 64))


async def test_an_action_that_keeps_moving_ungated_fails_instead_of_looping(tmp_path: Path):
    from runtime.engine import Engine
    from runtime.jobs import JobState
    from runtime.kinds import registry
    from runtime.settings import Settings
    from runtime.worker import Worker

    registry.register(RestlessKind)
    try:
        policy = yaml.safe_load(BUNDLED_POLICY.read_text())
        policy["roles"]["engineer"]["grants"].append(
            {"id": "engineer.restless", "job_types": ["restless"], "targets": ["hello"],
             "tools": ["echo.say"]}
        )  # fmt: skip
        policy["targets"]["echoes"] = {"hello": {"greeting": "hi"}}
        (tmp_path / "policy").mkdir()
        (tmp_path / "policy" / "default.yml").write_text(yaml.safe_dump(policy))
        settings = Settings.from_env(
            {"ACP_HOME": str(tmp_path / "home"),
             "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
             "ACP_POLICY_DIR": str(tmp_path / "policy")}
        )  # fmt: skip
        engine = await Engine.open(settings)
        try:
            job = await engine.submit("restless hello: go", engine.actor("cli", "alice"))
            assert job.state is JobState.queued, job.decision
            done = await Worker(engine).run_once()
            assert done is not None and done.state is JobState.failed
            assert "changed 3 times while it was being taken" in done.result["reason"]
            assert done.pending_action is None  # a failed job shows no stale action
        finally:
            await engine.close()
    finally:
        registry.unregister("restless")


WORK_ONCE = """
import asyncio
from runtime.engine import Engine
from runtime.worker import Worker

async def main():
    engine = await Engine.open()
    try:
        await Worker(engine).run_once()
    finally:
        await engine.close()

asyncio.run(main())
"""


# --- the layout's promises --------------------------------------------------------------------

RUNTIME = ROOT / "runtime"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any level (TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_kind_module_imports_the_engine():
    kinds = sorted((RUNTIME / "kinds").rglob("*.py"))
    assert len(kinds) >= 10
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            i for i in _imports(path) if i.startswith("runtime.engine")
        )
        for path in kinds
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _modules() -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in RUNTIME.rglob("*.py")
        if "migrations" not in path.parts
    )


def test_every_runtime_module_imports_alone_in_a_fresh_interpreter():
    script = (
        "import subprocess, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def alone(name):\n"
        "    done = subprocess.run([sys.executable, '-c', f'import {name}'],\n"
        "                          capture_output=True, text=True)\n"
        "    return name, done.returncode, (done.stderr.strip().splitlines() or [''])[-1]\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    failed = {n: why for n, code, why in pool.map(alone, sys.argv[1:]) if code}\n"
        "print(failed)\n"
    )
    modules = _modules()
    assert len(modules) > 60
    done = subprocess.run(
        [sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"

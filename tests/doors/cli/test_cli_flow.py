"""The README's flow, through real `acp` subprocesses and a real `acp serve`, on both databases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SECRET_VALUE
from tests.support.acp_process import Service, acp

REQUEST = 'code demo: run `sed -i "s/teh/the/" README.md`'


@pytest.fixture
def service(acp_env: dict[str, str]):
    svc = Service(acp_env).start()
    try:
        yield svc
    finally:
        svc.stop()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def test_submit_review_approve_merge_and_verify(acp_env, service):
    repo = Path(acp_env["ACP_HOME"]) / "repos" / "demo"

    submitted = acp(acp_env, "submit", "--as", "alice", REQUEST)
    assert submitted.returncode == 0, submitted.stderr
    assert "J-1  awaiting_approval" in submitted.stdout

    shown = acp(acp_env, "show", "J-1")
    assert "awaiting_approval" in shown.stdout
    assert "-something real to change. Try fixing teh typo" in shown.stdout
    assert "+something real to change. Try fixing the typo" in shown.stdout
    assert "tools       : fs.read, fs.write, shell, git.diff" in shown.stdout
    assert "decision    : allow" in shown.stdout
    assert "demo.merge.review" in shown.stdout
    assert "teh" in git(repo, "show", "main:README.md"), "nothing may land before approval"

    own = acp(acp_env, "approve", "J-1", "--as", "alice")
    assert own.returncode != 0
    assert "four-eyes" in own.stderr
    outsider = acp(acp_env, "approve", "J-1", "--as", "carol")
    assert outsider.returncode != 0
    assert "carol is not an approver" in outsider.stderr and "approvers: bob" in outsider.stderr
    assert "teh" in git(repo, "show", "main:README.md")

    approved = acp(acp_env, "approve", "J-1", "--as", "bob")
    assert approved.returncode == 0, approved.stderr
    shown = acp(acp_env, "show", "J-1", "--json")
    record = json.loads(shown.stdout)
    assert record["state"] == "succeeded"
    assert record["approvals"][0]["decided_by"] == "bob"
    assert record["model"]["model"] == "direct" and record["model"]["cost_usd"] == 0
    assert len(record["policy_hash"]) == 64
    assert {a["name"] for a in record["artifacts"]} == {"command-1.log", "diff.patch"}
    readme = git(repo, "show", "main:README.md")
    assert "fixing the typo" in readme and "teh" not in readme
    assert (repo / "README.md").read_text() == readme, "the checkout shows the merged change"

    again = acp(acp_env, "approve", "J-1", "--as", "bob")
    assert again.returncode == 0 and "nothing changed" in again.stderr

    verified = acp(acp_env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "chain intact" in verified.stdout

    exported = acp(acp_env, "audit", "export", "--job", "J-1")
    kinds = [json.loads(line)["kind"] for line in exported.stdout.splitlines()]
    for kind in (
        "job.received",
        "job.queued",
        "job.started",
        "tool.shell",
        "artifact.created",
        "approval.requested",
        "approval.refused" if False else "approval.granted",
        "publish.merged",
    ):
        assert kind in kinds, kinds
    everything = acp(acp_env, "audit", "export").stdout
    assert "approve.refused" in everything, "refused approvals are on the record"
    assert SECRET_VALUE not in everything


def test_rollback_reverts_published_change(acp_env, service):
    repo = Path(acp_env["ACP_HOME"]) / "repos" / "demo"
    assert acp(acp_env, "submit", "--as", "alice", REQUEST).returncode == 0
    assert acp(acp_env, "approve", "J-1", "--as", "bob").returncode == 0
    assert "the typo" in git(repo, "show", "main:README.md")

    refused = acp(acp_env, "rollback", "J-1", "--as", "carol")
    assert refused.returncode != 0 and "may not roll back" in refused.stderr

    rolled = acp(acp_env, "rollback", "J-1", "--as", "alice")
    assert rolled.returncode == 0, rolled.stderr
    assert "teh typo" in git(repo, "show", "main:README.md")
    record = json.loads(acp(acp_env, "show", "J-1", "--json").stdout)
    assert record["state"] == "rolled_back"
    assert acp(acp_env, "audit", "verify").returncode == 0


def test_reject_leaves_base_branch_untouched(acp_env, service):
    repo = Path(acp_env["ACP_HOME"]) / "repos" / "demo"
    assert acp(acp_env, "submit", "--as", "alice", REQUEST).returncode == 0
    rejected = acp(acp_env, "reject", "J-1", "--as", "bob", "--reason", "wrong fix")
    assert rejected.returncode == 0, rejected.stderr
    record = json.loads(acp(acp_env, "show", "J-1", "--json").stdout)
    assert record["state"] == "rejected"
    assert record["approvals"][0]["reason"] == "wrong fix"
    assert "teh" in git(repo, "show", "main:README.md")
    twice = acp(acp_env, "reject", "J-1", "--as", "bob")
    assert twice.returncode == 0 and "nothing changed" in twice.stderr


def test_clarifying_question_answered_from_the_terminal(acp_env, service):
    asked = acp(acp_env, "submit", "--as", "alice", "fix teh typo in the readme")
    assert asked.returncode == 0, asked.stderr
    assert "needs_clarification" in asked.stdout
    assert "Which target" in asked.stdout and "options     : demo" in asked.stdout

    still = acp(acp_env, "answer", "J-1", "--as", "alice", "demo")
    assert "needs_clarification" in still.stdout and "Which command" in still.stdout

    answered = acp(acp_env, "answer", "J-1", "--as", "alice", 'sed -i "s/teh/the/" README.md')
    assert answered.returncode == 0, answered.stderr
    assert "awaiting_approval" in answered.stdout
    assert "+something real to change. Try fixing the typo" in answered.stdout


def test_user_errors_are_one_line_without_traceback(acp_env, service):
    for args, expected in [
        (("submit", "--as", "alice", ""), "the request is empty"),
        (("submit", "--as", "alice", "code nowhere: run `true`"), "known code targets: demo"),
        (("submit", "--as", "alice", "cod demo: run `true`"), "did you mean 'code'"),
        (("submit", "--as", "alice", "x" * 100_000), "the limit is 8,000"),
        (("submit", "--as", "mallory", "code demo: run `true`"), "not a person in the policy"),
        (("show", "J-99"), "no job J-99"),
        (("approve", "J-99", "--as", "bob"), "no job J-99"),
        (("show", "banana"), "'banana' is not a job id"),
    ]:
        result = acp(acp_env, *args)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_without_the_service_commands_say_how_to_start_it(acp_env):
    for args in (("jobs",), ("submit", "--as", "alice", "code demo: run `true`"), ("show", "J-1")):
        result = acp(acp_env, *args)
        assert result.returncode == 22, (args, result.stderr)
        assert "the acp service is not running" in result.stderr
        assert "start it with `acp serve`" in result.stderr
        assert "Traceback" not in result.stderr

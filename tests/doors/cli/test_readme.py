"""The README's commands, run as a person would run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.acp_process import ROOT, acp


def test_make_run_starts_the_service_on_embedded_defaults(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
    env["ACP_HOME"] = str(tmp_path / "home")
    log = tmp_path / "make-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while "ready" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            text = log.read_text()
            assert "database : sqlite" in text and "slack    : not configured" in text
            assert (tmp_path / "home" / "repos" / "demo" / ".git").is_dir()
            submitted = acp(env, "submit", "--as", "alice", "code demo: run `true`")
            assert submitted.returncode == 0 and "J-1" in submitted.stdout
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    assert "acp service stopped" in log.read_text()


def test_policy_check_explains_and_runs_nothing(acp_env):
    checked = acp(
        acp_env,
        "policy",
        "check",
        "--as",
        "alice",
        'code demo: run `sed -i "s/teh/the/" README.md`',
    )
    assert checked.returncode == 0, checked.stderr
    assert "effect      : allow" in checked.stdout
    assert "approval    : merge by bob" in checked.stdout
    assert "nothing was run or recorded" in checked.stdout
    assert "decided from the policy files: the service is not running" in checked.stdout


def test_schema_prints_the_job_schema(acp_env):
    schema = json.loads(acp(acp_env, "schema").stdout)
    for field in (
        "job_type",
        "target",
        "tools",
        "approval_required_for",
        "artifact_contract",
        "filesystem_scope",
        "network_scope",
        "browser_domains",
        "credential_refs",
        "origin",
        "requester",
    ):
        assert field in schema["properties"], field

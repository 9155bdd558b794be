"""The policy changing under a running `acp serve` (real subprocesses: the service, its worker
process, `acp`, and Slack's side over real HTTP): every door sees the new version at once.

- a repository target added to the folder while the service runs: `acp policy show` names the
  new version (from the filesystem), and a job on the new target runs in the worker process
  (the old `internal error: KeyError`);
- a Slack user added to `people` is known without a restart;
- a broken file is refused by `acp policy reload` with file and line, the old policy serves on;
  SIGHUP reloads;
- a policy change proposed with `acp policy propose`, refused to its proposer, approved by a
  security approver, written, reloaded and recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from tests.doors.slack.rig import SlackRig, http_env
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import ROOT, acp

BUNDLED = ROOT / "policies" / "default.yml"
DAVE = "U0DAVE0001"


def copy_bundled(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "default.yml"
    path.write_text(BUNDLED.read_text())
    return path


def shown(env: dict[str, str]) -> dict:
    out = acp(env, "policy", "show", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def until_hash_changes(env: dict[str, str], old: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = await asyncio.to_thread(shown, env)
        if now["policy_hash"] != old:
            return now
        await asyncio.sleep(0.2)
    raise AssertionError("the service did not load the edited policy")


async def test_policy_edits_reach_every_door_of_a_running_service(tmp_path: Path):
    folder = tmp_path / "policy"
    policy = copy_bundled(folder)
    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin, ACP_POLICY_DIR=str(folder))
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        first = await asyncio.to_thread(shown, env)
        assert first["source"] == "startup" and first["files"] == ["default.yml"]
        text_out = acp(env, "policy", "show")
        assert f"policy in force: {first['policy_hash']}" in text_out.stdout
        assert "since" in text_out.stdout and "startup by serve:" in text_out.stdout

        # Dave is not in the policy yet: the Slack door refuses him.
        status, _, _ = await rig.command("code demo: run `ls`", user=DAVE)
        assert status == 200
        await rig.response_with("not a person in the policy")

        # A new person and a new repository target, written while the service runs.
        text = policy.read_text()
        text = text.replace(
            "people:\n",
            "people:\n  dave:\n    roles: [engineer]\n    identities: {slack: [U0DAVE0001]}\n",
            1,
        )
        text = text.replace("        targets: [demo]\n", "        targets: [demo, extra]\n", 1)
        text = text.replace(
            "  databases:\n",
            '    extra:\n      path: "{ACP_HOME}/repos/extra"\n      sample: demo\n  databases:\n',
            1,
        )
        policy.write_text(text.split("\nexpect:")[0] + "\n")
        second = await until_hash_changes(env, first["policy_hash"])
        assert second["source"] == "filesystem"
        assert "owner of the policy files" in second["actor"]

        # The CLI and the worker process agree: a job on the new target runs to its end.
        done = acp(env, "submit", "--as", "alice", "--json", "code extra: run `ls`")
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["state"] == "succeeded", job["result"]
        assert job["policy_hash"] == second["policy_hash"]
        # Slack knows Dave now, without a restart.
        status, _, _ = await rig.command("code demo: run `ls`", user=DAVE)
        assert status == 200
        await rig.response_with("Accepted as J-2")

        # A broken file: refused with file and line, the version in force keeps serving.
        policy.write_text(policy.read_text() + "limits: {max_request_chars: lots}\n")
        refused = acp(env, "policy", "reload", "--as", "alice")
        assert refused.returncode == 5
        assert f"{policy}:" in refused.stderr and "max_request_chars" in refused.stderr
        assert (await asyncio.to_thread(shown, env))["policy_hash"] == second["policy_hash"]
        ok = acp(env, "submit", "--as", "alice", "--no-wait", "code demo: run `ls`")
        assert ok.returncode == 0, ok.stderr

        # Fixed again and reloaded by SIGHUP.
        policy.write_text(policy.read_text().replace("limits: {max_request_chars: lots}\n", ""))
        policy.write_text(policy.read_text().replace("threshold: 0.75", "threshold: 0.7"))
        assert rig.service is not None and rig.service.proc is not None
        os.kill(rig.service.proc.pid, signal.SIGHUP)
        third = await until_hash_changes(env, second["policy_hash"])
        assert third["source"] in ("sighup", "filesystem")

        # The audit section too: a witness added by a reload receives the next checkpoint.
        witness = tmp_path / "witness"
        witness.mkdir()
        policy.write_text(
            policy.read_text() + f"audit:\n  checkpoints:\n    every_events: 1\n    witnesses:\n"
            f"      - directory: {witness}\n"
        )
        fourth = await until_hash_changes(env, third["policy_hash"])
        ok = acp(env, "submit", "--as", "alice", "--no-wait", "code demo: run `true`")
        assert ok.returncode == 0, ok.stderr
        deadline = time.monotonic() + 20
        while not any(witness.iterdir()):
            assert time.monotonic() < deadline, "the reloaded witness got no checkpoint"
            await asyncio.sleep(0.2)
        third = fourth

        history = acp(env, "policy", "show", "--history")
        assert history.returncode == 0
        assert third["policy_hash"][:16] in history.stdout
        assert first["policy_hash"][:16] in history.stdout
        audit = acp(env, "audit", "export")
        kinds = [json.loads(line)["kind"] for line in audit.stdout.splitlines() if line.strip()]
        assert kinds.count("policy.loaded") >= 3 and kinds.count("policy.reload_refused") >= 1
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()

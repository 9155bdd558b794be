"""Who is acting is proven, not asserted: the socket's caller is the kernel's peer uid, an
HTTP caller is its API token's person, and `--as` counts only where the policy allows it.

The clients run as other OS users (setpriv), with no access to ACP_HOME or the database: the
service is the only process that reads or writes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BUNDLED_POLICY
from tests.support.acp_process import ACP, ROOT, Service, service_env

ALICE_UID, BOB_UID, STRANGER_UID = 65534, 65533, 65532
FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run clients as others")


@pytest.fixture
def deployment(tmp_path: Path):
    """The service on a policy that maps OS users by uid and refuses impersonation; its socket
    in a directory anyone may reach, ACP_HOME and the database readable by nobody else."""
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["authentication"]["impersonation"] = False
    policy["people"]["alice"]["identities"]["cli"] = [str(ALICE_UID)]
    policy["people"]["bob"]["identities"]["cli"] = [f"uid:{BOB_UID}"]
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    sockets = Path(f"/tmp/acp-auth-{os.getpid()}-{time.monotonic_ns()}")
    sockets.mkdir(mode=0o755)
    os.chmod(sockets, 0o755)
    env = service_env(tmp_path, ACP_POLICY_DIR=str(policy_dir), ACP_SOCKET=str(sockets / "s"))
    service = Service(env).start()
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", service.output()).group(1)
        yield env, url
    finally:
        service.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def acp_as(uid: int, env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess:
    """`acp` run as another OS user, with the service's environment (so ACP_HOME names a
    directory that user cannot read)."""
    run_env = {**env, "HOME": "/nonexistent", **extra}
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *ACP, *args],
        env=run_env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def events(env: dict[str, str], job: str) -> list[dict]:
    done = acp_as(ALICE_UID, env, "audit", "export", "--job", job)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_socket_caller_is_who_the_kernel_says(deployment):
    env, _ = deployment
    home = Path(env["ACP_HOME"])
    probe = acp_as(ALICE_UID, env, "--help")
    assert probe.returncode == 0
    unreadable = subprocess.run(
        ["setpriv", f"--reuid={ALICE_UID}", f"--regid={ALICE_UID}", "--clear-groups",
         "cat", str(Path(env["ACP_DATABASE_URL"].split("///", 1)[1]))],
        capture_output=True, text=True,
    )  # fmt: skip
    assert unreadable.returncode != 0, "the client's user must not be able to read the database"
    assert home.exists()

    submitted = acp_as(ALICE_UID, env, "submit", FIX)
    assert submitted.returncode == 0, submitted.stderr
    record = json.loads(acp_as(ALICE_UID, env, "show", "J-1", "--json").stdout)
    assert record["state"] == "awaiting_approval" and record["spec"]["requester"] == "alice"

    own = acp_as(ALICE_UID, env, "approve", "J-1")
    assert own.returncode == 6 and "four-eyes" in own.stderr
    posing = acp_as(ALICE_UID, env, "approve", "J-1", "--as", "bob")
    assert posing.returncode == 21, posing.stderr
    assert "--as bob refused" in posing.stderr and "does not allow" in posing.stderr
    posing_env = acp_as(ALICE_UID, env, "approve", "J-1", ACP_USER="bob")
    assert posing_env.returncode == 21, "ACP_USER is --as by another name"

    stranger = acp_as(STRANGER_UID, env, "submit", FIX)
    assert stranger.returncode == 4 and f"uid {STRANGER_UID}" in stranger.stderr

    approved = acp_as(BOB_UID, env, "approve", "J-1")
    assert approved.returncode == 0, approved.stderr
    assert "approved by bob" in approved.stderr
    actors = {e["kind"]: e["actor"] for e in events(env, "J-1")}
    assert actors["job.received"] == f"alice via cli socket uid {ALICE_UID}"
    assert actors["approval.granted"] == f"bob via cli socket uid {BOB_UID}"
    refused = [e for e in events(env, "J-1") if e["kind"] == "approve.refused"]
    assert {e["actor"] for e in refused} == {f"alice via cli socket uid {ALICE_UID}"}


def test_tokens_carry_a_person_and_scopes_over_http(deployment):
    env, url = deployment
    assert acp_as(ALICE_UID, env, "submit", FIX).returncode == 0

    made = acp_as(BOB_UID, env, "token", "create", "--scopes", "approve", "--expires", "7d",
                  "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bob = json.loads(made.stdout)
    assert bob["token"]["person"] == "bob" and "approve" in bob["token"]["scopes"]
    database = Path(env["ACP_DATABASE_URL"].split("///", 1)[1])
    assert bob["secret"].encode() not in database.read_bytes(), "only its hash is kept"
    submit_only = json.loads(
        acp_as(ALICE_UID, env, "token", "create", "--scopes", "submit", "--json").stdout
    )
    others = acp_as(ALICE_UID, env, "token", "create", "--for", "bob", "--json")
    assert others.returncode == 6 and "may not manage API tokens of bob" in others.stderr

    http = {"ACP_URL": url}
    anonymous = acp_as(ALICE_UID, env, "show", "J-1", **http)
    assert anonymous.returncode == 19 and "needs an API token" in anonymous.stderr
    scoped = acp_as(ALICE_UID, env, "approve", "J-1", ACP_TOKEN=submit_only["secret"], **http)
    assert scoped.returncode == 20 and "approve" in scoped.stderr, scoped.stderr
    posing = acp_as(ALICE_UID, env, "approve", "J-1", "--as", "alice",
                    ACP_TOKEN=bob["secret"], **http)  # fmt: skip
    assert posing.returncode == 21, posing.stderr

    # alice's machine user, holding bob's token, is bob: that is what a token means.
    approved = acp_as(ALICE_UID, env, "approve", "J-1", ACP_TOKEN=bob["secret"], **http)
    assert approved.returncode == 0, approved.stderr
    short = bob["token"]["id"]
    granted = [e for e in events(env, "J-1") if e["kind"] == "approval.granted"]
    assert granted[0]["actor"] == f"bob via token {short}"

    listed = acp_as(BOB_UID, env, "token", "list").stdout
    assert short in listed and "last used" in listed
    revoked = acp_as(BOB_UID, env, "token", "revoke", short)
    assert revoked.returncode == 0, revoked.stderr
    again = acp_as(ALICE_UID, env, "show", "J-1", ACP_TOKEN=bob["secret"], **http)
    assert again.returncode == 19 and "revoked" in again.stderr
    forged = acp_as(ALICE_UID, env, "show", "J-1", ACP_TOKEN=bob["secret"][:-2] + "xx", **http)
    assert forged.returncode == 19
    everything = acp_as(ALICE_UID, env, "audit", "export").stdout
    assert bob["secret"] not in everything and submit_only["secret"] not in everything
    kinds = [json.loads(line)["kind"] for line in everything.splitlines()]
    assert "token.created" in kinds and "token.revoked" in kinds


def test_an_expired_token_is_refused(deployment):
    env, url = deployment
    made = json.loads(acp_as(ALICE_UID, env, "token", "create", "--expires", "1s", "--json").stdout)
    http = {"ACP_URL": url, "ACP_TOKEN": made["secret"]}
    time.sleep(1.5)
    expired = acp_as(ALICE_UID, env, "jobs", **http)
    assert expired.returncode == 19 and "expired" in expired.stderr, expired.stderr

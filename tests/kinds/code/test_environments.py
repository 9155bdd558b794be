"""A target's environment, built by real pip from a package index the test serves, through the
egress proxy; cached by key and mounted read-only at /env; and a job's network scope.

Real git, bubblewrap, network namespaces, pip, pytest and SQLite; the model is the
OpenAI-compatible stand-in over HTTP. Network only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.sandbox.egress_route import close_shared_proxy
from runtime.settings import Settings
from runtime.worker import Worker
from tests.standins.model_standin import ModelStandIn, call, say
from tests.support import package_index
from tests.support.acp_process import ROOT, acp

BUNDLED = ROOT / "policies" / "default.yml"
SAMPLE = ROOT / "tests" / "fixtures" / "pyproject_sample"
HELPER = {"acp_demo_helper/__init__.py": "def double(x):\n    return 2 * x\n"}
MODEL = "gpt-4o-mini"
KEY_ENV = "ACP_TEST_MODEL_KEY"
API_TOKEN = "internal-api-token-9f8e7d6c5b4a"
API_TOKEN_ENV = "ACP_TEST_INTERNAL_TOKEN"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Up", "-c", "user.email=up@x", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("wheels")
    helper = package_index.build_wheel(directory, "acp-demo-helper", "1.0.0", HELPER)
    return [helper, *package_index.test_toolchain_wheels(directory)]


@pytest.fixture
def index(wheels: list[Path]) -> Iterator[package_index.PackageIndex]:
    with package_index.PackageIndex(wheels) as served:
        yield served


@pytest.fixture
def decoy(wheels: list[Path]) -> Iterator[package_index.PackageIndex]:
    """A second index nobody grants: it must see no request at all."""
    with package_index.PackageIndex(wheels[:1]) as served:
        yield served


def sample_remote(tmp_path: Path) -> tuple[Path, Path]:
    """tallyho as a bare remote, and a clone to push upstream changes from."""
    work = tmp_path / "tallyho-src"
    shutil.copytree(SAMPLE, work)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "tallyho 0.3.0")
    bare = tmp_path / "tallyho.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    git(work, "remote", "add", "up", str(bare))
    return bare, work


def policy_for(tmp_path: Path, bare: Path, index_url: str, host: str, **extra) -> Path:
    policy = yaml.safe_load(BUNDLED.read_text())
    grant = {
        "id": "engineer.code.tallyho",
        "job_types": ["code"],
        "targets": ["tallyho"],
        "tools": ["fs.read", "fs.write", "shell", "git.diff"],
        **extra.pop("grant", {}),
    }
    policy["roles"]["engineer"]["grants"].append(grant)
    policy["approvals"].append(
        {
            "id": "tallyho.review",
            "job_types": ["code"],
            "targets": ["tallyho"],
            "actions": ["merge"],
            "approvers": {"roles": ["demo-approver"]},
        }
    )
    policy["targets"]["repos"]["tallyho"] = {
        "url": str(bare),
        "base_branch": "main",
        "environment": {
            "setup": [
                "python3 -m venv /env",
                "PIP_DISABLE_PIP_VERSION_CHECK=1 /env/bin/pip install -q --no-cache-dir "
                f"--index-url {index_url} -e '.[test]'",
            ],
            "key_files": ["pyproject.toml"],
            "hosts": [host],
        },
    }
    if "models" in extra:
        policy["models"] = extra.pop("models")
    directory = tmp_path / "policy"
    directory.mkdir(exist_ok=True)
    (directory / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return directory


@pytest.fixture
async def opened(tmp_path: Path):
    engines: list[Engine] = []

    async def open_engine(policy_dir: Path) -> Engine:
        env = {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'acp.db'}",
            "ACP_POLICY_DIR": str(policy_dir),
        }
        engine = await Engine.open(Settings.from_env(env))
        engines.append(engine)
        return engine

    yield open_engine
    for engine in engines:
        await engine.close()
    await close_shared_proxy()


async def settle(engine: Engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def run_job(engine: Engine, request: str):
    job = await engine.submit(request, engine.actor("cli", "alice"))
    return await settle(engine, job.id)


async def kinds(engine: Engine, job_id: int) -> list[str]:
    return [e.kind for e in await engine.events(job_id)]


def command_log(engine: Engine, job, index: int = 1) -> str:
    [ref] = [a for a in job.artifacts if a.name == f"command-{index}.log"]
    return engine.artifacts.read(ref.sha256).decode()


def cli_env(engine: Engine) -> dict[str, str]:
    """What `acp` needs to see the engine's home, database and policy."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
    settings = engine.settings
    return {
        **keep,
        "ACP_HOME": str(settings.home),
        "ACP_DATABASE_URL": settings.database_url,
        "ACP_POLICY_DIR": str(settings.policy_dir),
    }


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under root whose bytes contain secret."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            found.append(path)
    return found


def host_of(index: package_index.PackageIndex) -> str:
    return index.url.split("/")[2]


async def test_environment_is_built_once_per_key_and_the_job_phase_has_no_network(
    tmp_path, opened, index, decoy
):
    bare, work = sample_remote(tmp_path)
    engine = await opened(policy_for(tmp_path, bare, index.url, host_of(index)))

    first = await run_job(engine, "code tallyho: run `python -m pytest -q -p no:cacheprovider`")
    assert first.state is JobState.succeeded, first.result
    assert "5 passed" in command_log(engine, first), command_log(engine, first)
    assert "environment.built" in await kinds(engine, first.id)
    assert index.requested_projects() >= {"acp-demo-helper", "pytest"}
    setup_net = [e.data for e in await engine.events(first.id) if e.kind == "network.connection"]
    assert setup_net and {(c["host"], c["port"]) for c in setup_net} == {
        ("127.0.0.1", int(host_of(index).split(":")[1]))
    }, "setup's connections are on the record of the job it was built for"
    assert all(c["setup_step"] == 2 and c["bytes_down"] > 0 for c in setup_net)
    setup_logs = [a for a in first.artifacts if a.name == "setup.log"]
    assert setup_logs, "the setup log is an artifact of the job that built it"
    [built] = [e.data for e in await engine.events(first.id) if e.kind == "environment.built"]

    # The operator's view: `acp env show` and `acp env build` (a cache hit: no setup).
    cli = cli_env(engine)
    shown = await asyncio.to_thread(acp, cli, "env", "show", "tallyho")
    assert shown.returncode == 0, shown.stderr
    assert built["key"][:16] in shown.stdout and "read-only at /env" in shown.stdout
    assert "setup.log" in shown.stdout and "artifact sha256" in shown.stdout
    again = await asyncio.to_thread(acp, cli, "env", "build", "tallyho")
    assert again.returncode == 0 and "tallyho cached" in again.stdout, again
    log = await asyncio.to_thread(acp, cli, "env", "show", "tallyho", "--log")
    assert "$ python3 -m venv /env" in log.stdout and "--- exit 0" in log.stdout, log
    none = await asyncio.to_thread(acp, cli, "env", "show", "demo")
    assert none.returncode != 0 and "declares no environment" in none.stderr

    # A second job mounts the same build: no setup runs, the index hears nothing.
    asked = len(index.requests)
    second = await run_job(engine, "code tallyho: run `which python; python -c 'import tallyho'`")
    assert second.state is JobState.succeeded, second.result
    second_kinds = await kinds(engine, second.id)
    assert "environment.built" not in second_kinds and "environment.mounted" in second_kinds
    assert command_log(engine, second).splitlines()[3] == "/env/bin/python"
    assert len(index.requests) == asked

    # The job phase cannot reach the index (nor anything else), and says why.
    fetch = f"curl -sS -o /dev/null -w '%{{http_code}}' {index.url}"
    blocked = await run_job(engine, f"code tallyho: run `{fetch}`")
    assert len(index.requests) == asked
    log = command_log(engine, blocked)
    assert "not in the job's network scope" in log, log
    refused = [e for e in await engine.events(blocked.id) if e.kind == "network.refused"]
    assert refused and refused[0].data["host"] == "127.0.0.1"

    # The environment is read-only and outside the diff.
    changed = await run_job(
        engine, "code tallyho: run `touch /env/x 2>/dev/null || echo ro > note.txt`"
    )
    assert changed.state is JobState.awaiting_approval, changed.result
    assert changed.pending_action.stat["files"] == ["note.txt"]

    # A key file changes upstream: the next job rebuilds, once.
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.3.0"', 'version = "0.3.1"'))
    git(work, "commit", "-qam", "0.3.1")
    git(work, "push", "-q", "up", "main")
    third = await run_job(engine, "code tallyho: run `python -m pytest -q -p no:cacheprovider`")
    fourth = await run_job(engine, "code tallyho: run `python -m pytest -q -p no:cacheprovider`")
    assert third.state is fourth.state is JobState.succeeded
    assert "environment.built" in await kinds(engine, third.id)
    assert "environment.built" not in await kinds(engine, fourth.id)
    assert decoy.requests == [], "nobody reached the ungranted index"


async def test_setup_reaches_only_its_hosts_and_a_failure_fails_the_job_with_the_log(
    tmp_path, opened, index, decoy
):
    bare, _work = sample_remote(tmp_path)
    policy_dir = policy_for(tmp_path, bare, decoy.url, host_of(index))  # installs from decoy
    engine = await opened(policy_dir)
    job = await run_job(engine, "code tallyho: run `python -m pytest -q`")
    assert job.state is JobState.failed
    reason = next(e.data["reason"] for e in await engine.events(job.id) if e.kind == "job.failed")
    assert "could not be built" in reason and "setup step 2" in reason
    assert "is not in the hosts of tallyho's environment setup" in reason, reason
    assert decoy.requests == [] and index.requests == []
    assert [a for a in job.artifacts if a.name == "setup.log"]
    refused = [e.data for e in await engine.events(job.id) if e.kind == "network.refused"]
    assert refused and refused[0]["port"] == int(host_of(decoy).split(":")[1])


class _TokenServer(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        type(self).seen.append(auth)
        ok = auth == f"Bearer {API_TOKEN}"
        body = b"authenticated\n" if ok else b"who are you\n"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An HTTPS API on 127.0.0.1 with a certificate from a test CA the proxy trusts."""
    from runtime.sandbox.tls_ca import ServiceCA

    ca = ServiceCA.load_or_create(tmp_path / "upstream-ca")
    bundle = ca.bundle(tmp_path / "upstream-ca.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # what the proxy verifies upstreams with
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenServer)
    context: ssl.SSLContext = ca.leaf_context("localhost")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _TokenServer.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def test_granted_hosts_are_reached_with_credentials_the_sandbox_never_sees(
    tmp_path, opened, index, decoy, api_server, monkeypatch, api_thread
):
    monkeypatch.setenv(API_TOKEN_ENV, API_TOKEN)
    bare, _work = sample_remote(tmp_path)
    host = f"localhost:{api_server}"
    grant = {"network": [host], "credentials": {"localhost": API_TOKEN_ENV}}
    engine = await opened(policy_for(tmp_path, bare, index.url, host_of(index), grant=grant))
    command = (
        f"curl -sS https://{host}/v1/ping > got.txt; "
        f"curl -sS -o /dev/null {decoy.url} || true; "
        "(printenv; cat /proc/self/environ; ls -R / 2>/dev/null | head -0) > seen.txt"
    )
    job = await run_job(engine, f"code tallyho: run `{command}`")
    assert job.state is JobState.awaiting_approval, job.result
    diff = engine.artifacts.read(job.pending_action.diff_sha256).decode()
    assert "+authenticated" in diff, diff
    assert API_TOKEN not in diff and API_TOKEN_ENV not in diff
    assert _TokenServer.seen == [f"Bearer {API_TOKEN}"]
    assert decoy.requests == []
    events = await engine.events(job.id)
    # The job's own command (setup's connections, to the index, carry their setup_step).
    [connection] = [
        e.data for e in events if e.kind == "network.connection" and "setup_step" not in e.data
    ]
    assert connection["host"] == "localhost" and connection["port"] == api_server
    assert connection["credential"] == API_TOKEN_ENV and connection["status"] == 200
    assert connection["bytes_down"] > 0
    refused = [e.data for e in events if e.kind == "network.refused" and "setup_step" not in e.data]
    assert [(r["host"], r["port"]) for r in refused] == [("127.0.0.1", int(host_of(decoy)[10:]))]
    assert files_holding(Path(engine.settings.home), API_TOKEN) == []
    for event in events:
        assert API_TOKEN not in str(event.data)
    cli = api_thread(cli_env(engine))
    checked = await asyncio.to_thread(
        acp, cli, "policy", "check", "--as", "alice", "code tallyho: run `true`"
    )
    assert f"network     : {host}" in checked.stdout, checked.stdout
    assert f"credential  : localhost gets ${API_TOKEN_ENV}" in checked.stdout
    shown = await asyncio.to_thread(acp, cli, "show", job.job_id)
    assert f"network     : {host}" in shown.stdout and API_TOKEN not in shown.stdout


BROKEN_FEATURE = '''

def shout(text: str) -> str:
    """text in capitals, with an exclamation mark."""
    return text.upper()
'''
FIXED_FEATURE = BROKEN_FEATURE.replace("text.upper()", 'text.upper() + "!"')
FEATURE_TEST = """from tallyho import shout


def test_shout():
    assert shout("hi") == "HI!"
"""


async def test_trial_a_model_breaks_then_fixes_a_real_project_with_its_toolchain(
    tmp_path, opened, index, monkeypatch
):
    """The trial from issue 15: a Python project with tests as a target; the model adds a
    feature, runs pytest from the cached environment, sees it fail, fixes it, sees it pass."""
    key = "sk-trial-model-key-0000"
    monkeypatch.setenv(KEY_ENV, key)
    bare, _work = sample_remote(tmp_path)
    source = (SAMPLE / "src" / "tallyho" / "__init__.py").read_text()
    async with ModelStandIn(api_key=key) as standin:
        models = {
            "routes": [
                {
                    "id": "models.code.trial",
                    "job_types": ["code"],
                    "model": f"openai/{MODEL}",
                    "api_base": standin.base_url,
                    "api_key_env": KEY_ENV,
                }
            ]
        }
        engine = await opened(policy_for(tmp_path, bare, index.url, host_of(index), models=models))
        tests = "python -m pytest -q -p no:cacheprovider"
        standin.script(
            MODEL,
            call("run", command=tests),
            call("write_file", path="src/tallyho/__init__.py", content=source + BROKEN_FEATURE),
            call("write_file", path="tests/test_shout.py", content=FEATURE_TEST),
            call("run", command=tests),
            call("write_file", path="src/tallyho/__init__.py", content=source + FIXED_FEATURE),
            call("run", command=tests),
            say("added shout(), with its test"),
        )
        job = await run_job(engine, "code tallyho: add a shout() function with a test")
        assert job.state is JobState.awaiting_approval, job.result
        results = [r.messages[-1]["content"] for r in standin.requests_for(MODEL)[1:]]
        assert results[0].startswith("exit 0") and "5 passed" in results[0]
        assert results[3].startswith("exit 1") and "1 failed, 5 passed" in results[3]
        assert results[5].startswith("exit 0") and "6 passed" in results[5]
        assert sorted(job.pending_action.stat["files"]) == [
            "src/tallyho/__init__.py",
            "tests/test_shout.py",
        ]

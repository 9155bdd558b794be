"""A sandboxed shell command's network: only its route's door on the shared egress proxy.

Real bubblewrap in a network namespace made by runtime/sandbox/netns.py, real servers on the
host's 127.0.0.1 (plain HTTP, and HTTPS with a test CA the proxy is told to trust through
SSL_CERT_FILE), curl and python inside the sandbox, and job scopes as HostScope builds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.errors import SandboxUnavailable
from runtime.sandbox import netns
from runtime.sandbox.bwrap import bwrap_available, run_sandboxed
from runtime.sandbox.egress import Connection, Refusal
from runtime.sandbox.egress_route import close_shared_proxy, open_route, shared_proxy
from runtime.sandbox.scope import HostScope
from tests.runtime.test_egress_credentials import TOKEN, TOKEN_VARIABLE, TestCA, Upstream

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def namespaces() -> None:
    import subprocess

    probe = subprocess.run(
        [sys.executable, "-I", "-S", netns.__file__, "--probe"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"no network namespace can be made here: {probe.stderr.strip()}")


@dataclass
class Hosts:
    granted: Upstream  # plain HTTP on 127.0.0.1, in the job's scope
    ungranted: Upstream  # plain HTTP on 127.0.0.1, not in it
    https: Upstream  # HTTPS (test CA) on localhost, in scope, with the job's credential
    home: Path
    workdir: Path


@pytest.fixture
async def hosts(
    namespaces: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hosts]:
    upstream_ca = TestCA.make(tmp_path / "upstream-ca")
    # The shared proxy checks upstream certificates against SSL_CERT_FILE when it is set.
    monkeypatch.setenv("SSL_CERT_FILE", str(upstream_ca.cert_path))
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    workdir = tmp_path / "work"
    workdir.mkdir()
    h = Hosts(
        await Upstream.start(),
        await Upstream.start(),
        await Upstream.start(upstream_ca.server_context(tmp_path)),
        tmp_path / "home",
        workdir,
    )
    yield h
    await close_shared_proxy()
    for up in (h.granted, h.ungranted, h.https):
        up.close()


class Recorder:
    """An on_connection listener that a test can wait on (records come as connections end,
    which may be just after the command has exited)."""

    def __init__(self) -> None:
        self.items: list[Connection] = []
        self._changed = asyncio.Event()

    def __call__(self, connection: Connection) -> None:
        self.items.append(connection)
        self._changed.set()

    async def at_least(self, count: int) -> list[Connection]:
        async with asyncio.timeout(5):
            while len(self.items) < count:
                await self._changed.wait()
                self._changed.clear()
        return self.items


def _scope(h: Hosts) -> HostScope:
    return HostScope([f"127.0.0.1:{h.granted.port}", f"localhost:{h.https.port}"])


async def test_a_sandboxed_command_reaches_its_scope_through_the_proxy_and_nothing_else(
    hosts: Hosts,
) -> None:
    seen = Recorder()
    refused: list[Refusal] = []
    fetch = (
        "import json, sys, urllib.request, urllib.error\n"
        "def get(url):\n"
        "    try:\n"
        "        return urllib.request.urlopen(url, timeout=10).status\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code\n"
        "print(json.dumps([get(u) for u in sys.argv[1:]]))\n"
    )
    (hosts.workdir / "fetch.py").write_text(fetch)
    granted = f"http://127.0.0.1:{hosts.granted.port}/in"
    ungranted = f"http://127.0.0.1:{hosts.ungranted.port}/out"
    command = (
        f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {granted}; "
        f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {ungranted}; "
        f"/usr/bin/python3 fetch.py {granted} {ungranted}; "
        f"exec 3<>/dev/tcp/127.0.0.1/{hosts.ungranted.port} && echo direct || echo no-direct; "
        "cat /proc/net/dev"
    )
    async with open_route(
        hosts.home, "job 1", _scope(hosts).refusal, on_connection=seen,
        on_refusal=refused.append,
    ) as route:  # fmt: skip
        mark = route.refused
        result = await run_sandboxed(command, hosts.workdir, egress=route, timeout_s=60)
        during = route.refusals_since(mark)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # 401: the granted host was reached (it wants a token this job was not given).
    assert lines[:4] == ["401", "403", "[401, 403]", "no-direct"], result.stdout
    interfaces = [ln.split(":")[0].strip() for ln in lines[4:] if ":" in ln]
    assert interfaces == ["lo"]
    assert [h.split("\r\n")[0] for h in hosts.granted.heads] == ["GET /in HTTP/1.1"] * 2
    assert hosts.ungranted.heads == []
    assert len(during) == 2 and during == refused
    assert all("is not in the job's network scope" in r.reason for r in during)
    assert {(r.client, r.port) for r in during} == {("job 1", hosts.ungranted.port)}
    connections = await seen.at_least(2)
    assert [(c.client, c.status, c.credential) for c in connections] == [("job 1", 401, None)] * 2


async def test_another_jobs_door_still_leads_to_this_jobs_door(hosts: Hosts) -> None:
    """Job 2 may reach the ungranted host; job 1 dials job 2's door address and is still
    job 1, refused under job 1's scope."""
    other_scope = HostScope([f"127.0.0.1:{hosts.ungranted.port}"])
    async with (
        open_route(hosts.home, "job 1", _scope(hosts).refusal) as mine,
        open_route(hosts.home, "job 2", other_scope.refusal) as theirs,
    ):
        assert mine.door != theirs.door
        command = (
            f"curl -sS -o /dev/null -w '%{{http_code}}' --proxy http://{theirs.door}:"
            f"{theirs.port} http://127.0.0.1:{hosts.ungranted.port}/steal"
        )
        result = await run_sandboxed(command, hosts.workdir, egress=mine, timeout_s=30)
    assert result.stdout == "403", (result.stdout, result.stderr)
    assert hosts.ungranted.heads == []
    assert [r.client for r in mine.refusals] == ["job 1"] and theirs.refusals == []


async def test_a_credential_authenticates_https_yet_its_value_is_nowhere_in_the_sandbox(
    hosts: Hosts,
) -> None:
    seen = Recorder()
    command = (
        "printenv; cat /proc/self/environ; echo; "
        "cat /etc/ssl/certs/ca-certificates.crt | grep -c 'PRIVATE KEY'; "
        f"curl -sS https://localhost:{hosts.https.port}/secret"
    )
    async with open_route(
        hosts.home, "job 3", _scope(hosts).refusal, {"localhost": TOKEN_VARIABLE}, seen
    ) as route:
        result = await run_sandboxed(command, hosts.workdir, egress=route, timeout_s=60)
    assert result.stdout.endswith("authenticated\n"), (result.stdout, result.stderr)
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
    assert "\n0\n" in result.stdout  # the bundle the sandbox trusts holds no key
    assert f"HTTPS_PROXY=http://127.0.0.1:{route.port}" in result.stdout
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in result.stdout
    assert str(route.proxy_socket) not in result.stdout
    assert hosts.https.heads[0].startswith("GET /secret HTTP/1.1\r\n")
    [connection] = await seen.at_least(1)
    assert (connection.method, connection.status) == ("GET", 200)
    assert connection.credential == TOKEN_VARIABLE


async def test_the_proxy_socket_is_not_in_the_sandbox(hosts: Hosts) -> None:
    async with open_route(hosts.home, "job 4", _scope(hosts).refusal) as route:
        result = await run_sandboxed(
            f"test -e {route.proxy_socket} && echo visible || echo absent; ls /tmp",
            hosts.workdir,
            egress=route,
        )
        with pytest.raises(SandboxUnavailable, match="socket"):
            await run_sandboxed(
                "true", hosts.workdir, egress=route, ro_paths=[route.proxy_socket.parent]
            )
    assert result.stdout.splitlines()[0] == "absent", result.stdout


async def test_a_forwarder_that_cannot_start_is_reported_as_unavailable(hosts: Hosts) -> None:
    async with open_route(hosts.home, "job 5", _scope(hosts).refusal) as route:
        broken = dataclasses.replace(route, door="not-an-address")
        with pytest.raises(SandboxUnavailable, match="could not create the sandbox"):
            await run_sandboxed("echo ran", hosts.workdir, egress=broken)


async def test_binds_and_workdir_at_place_paths_in_the_sandbox(
    hosts: Hosts, tmp_path: Path
) -> None:
    environment = tmp_path / "environment"
    environment.mkdir()
    (environment / "tool.txt").write_text("from the environment\n")
    result = await run_sandboxed(
        "pwd; cat /env/tool.txt; echo made > /repo/out.txt; "
        "echo nope > /env/x 2>/dev/null || echo read-only; "
        f"test -e {hosts.workdir} && echo host-path || echo no-host-path",
        hosts.workdir,
        binds=[(environment, "/env")],
        workdir_at="/repo",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "/repo",
        "from the environment",
        "read-only",
        "no-host-path",
    ]
    assert (hosts.workdir / "out.txt").read_text() == "made\n"


async def test_one_proxy_per_event_loop(hosts: Hosts) -> None:
    first = await shared_proxy(hosts.home)
    assert await shared_proxy(hosts.home) is first
    assert first.unix_path is not None and len(str(first.unix_path)) < 108
    assert (first.unix_path.parent.stat().st_mode & 0o777) == 0o700

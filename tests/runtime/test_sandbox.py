"""The bubblewrap runner, driven with real bwrap against a real git worktree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from runtime.errors import SandboxUnavailable
from runtime.sandbox.bwrap import bwrap_available, run_sandboxed
from runtime.sandbox.worktree import Worktree, create_worktree

USR_WITNESS = "/usr/acp-evil"

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
async def worktree(tmp_path: Path) -> Worktree:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return await create_worktree(repo, "main", "J-1", tmp_path / "worktrees")


async def test_sandboxed_command_cannot_reach_the_network(worktree: Worktree) -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    command = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
    async with server:
        refused = await run_sandboxed(command, worktree.path, timeout_s=10)
        allowed = await run_sandboxed(command, worktree.path, network=True, timeout_s=10)
        await asyncio.sleep(0.1)

    assert refused.exit_code != 0
    assert "connected" not in refused.stdout
    assert allowed.exit_code == 0, allowed.stderr
    assert "connected" in allowed.stdout
    assert connections == 1


async def test_sandboxed_command_cannot_write_outside_its_worktree(
    worktree: Worktree, tmp_path: Path
) -> None:
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    targets = [worktree.git_common_dir / "evil", sibling / "evil", Path("/usr/evil")]
    for target in targets:
        result = await run_sandboxed(
            f"mkdir -p {target.parent} 2>/dev/null; echo pwned > {target}",
            worktree.path,
            ro_paths=[worktree.git_common_dir],
        )
        assert not target.exists(), f"sandbox wrote {target}"
        if target.parent != sibling:
            assert result.exit_code != 0
            assert "Read-only file system" in result.stderr


async def test_sandboxed_root_cannot_remount_or_read_host_secrets(worktree: Worktree) -> None:
    result = await run_sandboxed(
        f"grep CapEff /proc/self/status; mount -o remount,rw,bind /usr && touch {USR_WITNESS};"
        " cat /etc/shadow",
        worktree.path,
    )

    assert "CapEff:\t0000000000000000" in result.stdout
    assert not _host_has(USR_WITNESS)
    assert "root:" not in result.stdout


async def test_sandboxed_command_cannot_read_the_service_data_dir(
    worktree: Worktree, tmp_path: Path
) -> None:
    data_dir = tmp_path / "acp-data"
    data_dir.mkdir()
    (data_dir / "secret.db").write_text("top-secret-rows")

    result = await run_sandboxed(
        f"cat {data_dir}/secret.db; ls {data_dir}; ls /root /home /work /var",
        worktree.path,
        ro_paths=[worktree.git_common_dir],
    )

    assert "top-secret-rows" not in result.stdout
    assert "secret.db" not in result.stdout
    assert "No such file or directory" in result.stderr
    assert result.exit_code != 0


async def test_sandboxed_command_cannot_see_the_service_environment(
    worktree: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACP_TEST_SECRET", "s3cr3t-value")

    result = await run_sandboxed(
        "env; cat /proc/*/environ 2>/dev/null", worktree.path, env={"JOB_ID": "J-1"}
    )

    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert "ACP_TEST_SECRET" not in result.stdout
    assert "JOB_ID=J-1" in result.stdout
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in result.stdout


async def test_writes_inside_the_worktree_land_there_and_git_status_works(
    worktree: Worktree,
) -> None:
    result = await run_sandboxed(
        "echo changed >> README.md && echo new > notes.txt && git status --porcelain",
        worktree.path,
        ro_paths=[worktree.git_common_dir],
    )

    assert result.exit_code == 0, result.stderr
    assert " M README.md" in result.stdout
    assert "?? notes.txt" in result.stdout
    assert (worktree.path / "notes.txt").read_text() == "new\n"
    assert (worktree.path / "README.md").read_text() == "hello\nchanged\n"


async def test_timeout_kills_the_command_and_everything_it_started(worktree: Worktree) -> None:
    started = time.monotonic()
    result = await run_sandboxed("sleep 31.4159 & sleep 30", worktree.path, timeout_s=1)
    elapsed = time.monotonic() - started

    assert result.timed_out
    assert result.exit_code in (-9, 124)
    assert elapsed < 2.5
    await asyncio.sleep(0.2)
    survivors = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and b"31.4159" in _cmdline(pid)
    ]
    assert survivors == []


def _host_has(path: str) -> bool:
    return os.path.lexists(path)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_output_beyond_the_cap_is_truncated(worktree: Worktree) -> None:
    result = await run_sandboxed("yes | head -c 50000000; echo done >&2", worktree.path)

    assert result.exit_code == 0
    assert result.truncated
    assert len(result.stdout) == 256_000
    assert result.stderr == "done\n"


async def test_small_output_is_returned_whole(worktree: Worktree) -> None:
    result = await run_sandboxed("printf 'h\\xc3\\xa9llo'; exit 3", worktree.path)

    assert result.stdout == "héllo"
    assert result.exit_code == 3
    assert not result.truncated and not result.timed_out


async def test_missing_sandbox_path_is_reported_as_unavailable(
    worktree: Worktree, tmp_path: Path
) -> None:
    with pytest.raises(SandboxUnavailable, match="does not exist"):
        await run_sandboxed("true", worktree.path, ro_paths=[tmp_path / "nope"])


async def test_bwrap_setup_failure_is_reported_as_unavailable_not_as_a_command_failure(
    tmp_path: Path,
) -> None:
    not_a_directory = tmp_path / "file.txt"
    not_a_directory.write_text("x")

    with pytest.raises(SandboxUnavailable, match="bubblewrap could not create the sandbox"):
        await run_sandboxed("true", not_a_directory)

"""A repository target's environment (its toolchain): built once per key by the target's setup
commands in a sandbox of their own, cached under ACP_HOME/envs/<target>/<key>, and mounted
read-only at /env into every job's sandbox of that target.

The key is the SHA-256 of the setup commands, the hosts and credential names setup may use,
and the content of the key files at the job's base commit, so a lockfile change rebuilds
once and every later job reuses the build. Setup runs with the base commit at /repo (a
throwaway checkout) and /env writable; its only way out is the egress proxy, allowing the
environment's hosts and nothing else.

It must never publish a half-built environment (a build is renamed into place whole), never
let two jobs build the same key at once, never put the environment into a job's diff (it is
outside the worktree), and never let a setup run without a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from runtime.errors import AcpError
from runtime.policy import EnvironmentSpec, RepoTarget
from runtime.sandbox import worktree as wt
from runtime.sandbox.bwrap import BASE_ENV, run_sandboxed
from runtime.sandbox.egress_route import open_route
from runtime.sandbox.file_lock import file_lock
from runtime.sandbox.plan import ENV_MOUNT, REPO_MOUNT
from runtime.sandbox.scope import HostScope
from runtime.secrets import redact
from runtime.settings import Settings

KEY_VERSION = 2
KEEP_BUILDS = 3  # per target: the newest builds stay, older ones are removed
_TAIL_LINES = 25


class EnvironmentSetupFailed(AcpError):
    """A setup command failed or ran out of time; the message ends with the log's tail, and
    `log` is the whole (redacted) setup log."""

    log: str = ""


class EnvironmentInfo(BaseModel):
    """One built environment, as `acp env show` and the job's record tell it."""

    target: str
    key: str
    path: Path  # the directory mounted at /env
    commit: str  # the base commit it was built from
    built_at: datetime
    duration_s: float
    size_bytes: int
    files: int
    setup_log: Path

    @property
    def age_s(self) -> float:
        return (datetime.now(UTC) - self.built_at).total_seconds()


def root(settings: Settings, name: str) -> Path:
    return settings.home / "envs" / name


async def key_for(mirror: Path, commit: str, spec: EnvironmentSpec) -> str:
    """The cache key of spec at commit: what setup runs and the key files' content there."""
    digest = hashlib.sha256()
    head = {
        "version": KEY_VERSION,
        "setup": spec.setup,
        "hosts": sorted(spec.hosts),
        "credentials": sorted(spec.credentials.items()),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    # Blob ids hash the files' content: one git call reads every key file's.
    blobs = await wt.blob_ids(mirror, commit, sorted(spec.key_files))
    for path in sorted(spec.key_files):
        digest.update(f"\0{path}\0{blobs.get(path, '<missing>')}".encode())
    return digest.hexdigest()


def cached(settings: Settings, name: str, key: str) -> EnvironmentInfo | None:
    """The build of key, if one is complete."""
    meta = root(settings, name) / key / "meta.json"
    try:
        return EnvironmentInfo.model_validate_json(meta.read_text())
    except (OSError, ValueError):
        return None


def builds(settings: Settings, name: str) -> list[EnvironmentInfo]:
    """Every complete build of the target's environment, newest first."""
    found = [cached(settings, name, p.name) for p in sorted(root(settings, name).glob("*"))]
    return sorted((b for b in found if b), key=lambda b: b.built_at, reverse=True)


async def ensure(
    settings: Settings,
    name: str,
    target: RepoTarget,
    mirror: Path,
    commit: str,
    *,
    on_event=None,
    force: bool = False,
) -> tuple[EnvironmentInfo, bool]:
    """The target's environment for commit: (its build, whether it was built now). Builds it
    when no build of its key exists (or force); EnvironmentSetupFailed when setup fails."""
    spec = target.environment
    if spec is None:
        raise AcpError(f"target {name} declares no environment", hint="add environment: to it")
    key = await key_for(mirror, commit, spec)
    if not force and (hit := cached(settings, name, key)) is not None:
        return hit, False
    directory = root(settings, name)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / f".{key}.lock"
    async with file_lock(lock, spec.timeout_s + 60, "another build of this environment"):
        if not force and (hit := cached(settings, name, key)) is not None:
            return hit, False  # another job built it while this one waited
        info = await _build(settings, name, spec, mirror, commit, key, on_event)
    await asyncio.to_thread(_prune, directory, keep={info.key})
    return info, True


async def _build(
    settings: Settings,
    name: str,
    spec: EnvironmentSpec,
    mirror: Path,
    commit: str,
    key: str,
    on_event,
) -> EnvironmentInfo:
    directory = root(settings, name)
    staging = directory / f".build-{key[:16]}-{os.getpid()}"
    await asyncio.to_thread(shutil.rmtree, staging, True)
    (staging / "env").mkdir(parents=True)
    log_path = staging / "setup.log"
    started = time.monotonic()
    deadline = started + spec.timeout_s
    tree = await wt.create_worktree(
        mirror, "env", f"env-{key[:12]}", settings.worktrees_dir, start_commit=commit
    )
    scope = HostScope(spec.hosts, what=f"the hosts of {name}'s environment setup (its hosts:)")
    connections: list[dict] = []
    told = 0
    lines: list[str] = [f"# environment {name} key {key} at {commit}"]
    try:
        async with open_route(
            settings.home,
            f"env:{name}",
            scope.refusal,
            spec.credentials,
            on_connection=lambda c: connections.append(c.model_dump(mode="json")),
        ) as route:
            for index, command in enumerate(spec.setup, start=1):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _failed(name, lines, f"setup ran out of its {spec.timeout_s:g} s")
                mark = route.refused
                result = await run_sandboxed(
                    command,
                    tree.path,
                    ro_paths=[tree.git_common_dir],
                    workdir_at=REPO_MOUNT,
                    writable_binds=[(staging / "env", ENV_MOUNT)],
                    egress=route,
                    timeout_s=left,
                    output_cap=1_000_000,
                    env={"PATH": f"{ENV_MOUNT}/bin:{BASE_ENV['PATH']}"},
                )
                lines += [
                    f"$ {command}",
                    f"--- exit {result.exit_code} in {result.duration_s:.2f}s"
                    + (" (timed out)" if result.timed_out else ""),
                    result.stdout.rstrip("\n"),
                    result.stderr.rstrip("\n"),
                ]
                refused = route.refusals_since(mark)
                lines += [f"acp: refused {r.host}:{r.port}: {r.reason}" for r in refused]
                if on_event is not None:  # setup's way out is on the record of the job it serves
                    await _record_network(on_event, connections, refused, index, told)
                    told = len(connections)
                if result.exit_code != 0:
                    why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                    await asyncio.to_thread(_write_log, log_path, lines)
                    if on_event is not None:
                        data = _failure_data(name, key, index, command, why)
                        await on_event("environment.failed", data)
                    raise _failed(name, lines, f"setup step {index} `{command}` {why}")
    finally:
        await wt.remove_worktree(tree, delete_branch=True)
    await asyncio.to_thread(_write_log, log_path, lines)
    size, files = await asyncio.to_thread(_size, staging / "env")
    info = EnvironmentInfo(
        target=name,
        key=key,
        path=directory / key / "env",
        commit=commit,
        built_at=datetime.now(UTC),
        duration_s=round(time.monotonic() - started, 3),
        size_bytes=size,
        files=files,
        setup_log=directory / key / "setup.log",
    )
    (staging / "meta.json").write_text(info.model_dump_json(indent=2))
    (staging / "connections.json").write_text(json.dumps(connections, indent=1))
    final = directory / key
    await asyncio.to_thread(shutil.rmtree, final, True)  # a forced rebuild replaces the old
    os.rename(staging, final)
    return info


async def _record_network(
    on_event, connections: list[dict], refused: list, step: int, told: int
) -> None:
    if connections[told:] or refused:
        await asyncio.sleep(0.05)  # connections the command's end cut are counted
    for c in connections[told:]:
        keep = ("host", "port", "method", "bytes_up", "bytes_down", "status", "credential")
        await on_event("network.connection", {**{k: c.get(k) for k in keep}, "setup_step": step})
    for r in refused:
        data = {"host": r.host, "port": r.port, "method": r.method, "reason": r.reason}
        await on_event("network.refused", {**data, "setup_step": step})


def _failure_data(name: str, key: str, index: int, command: str, why: str) -> dict:
    return {"target": name, "key": key, "step": index, "command": command, "why": why}


def _failed(name: str, lines: list[str], why: str) -> EnvironmentSetupFailed:
    text = redact("\n".join(lines))
    tail = "\n".join(text.splitlines()[-_TAIL_LINES:])
    error = EnvironmentSetupFailed(
        f"the environment of {name} could not be built: {why}; the log ends:\n{tail}",
        hint=f"fix the setup commands or key files, then `acp env build {name}`",
    )
    error.log = text
    return error


def _write_log(path: Path, lines: list[str]) -> None:
    path.write_text(redact("\n".join(lines)) + "\n")


def _size(path: Path) -> tuple[int, int]:
    total = count = 0
    for dirpath, _dirs, names in os.walk(path):
        for file in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, file)).st_size
                count += 1
    return total, count


def _prune(directory: Path, keep: set[str]) -> None:
    """Remove all but the newest KEEP_BUILDS builds (and stale half-builds of dead pids)."""
    done = [p for p in directory.iterdir() if (p / "meta.json").is_file()]
    done.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in done[KEEP_BUILDS:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for half in directory.glob(".build-*"):
        pid = half.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(half, ignore_errors=True)

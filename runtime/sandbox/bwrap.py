"""The bubblewrap runner: one shell command, in fresh namespaces, seeing only its worktree.

With an egress route the command runs in a network namespace (runtime/sandbox/netns.py) whose
only way out is the route's door on the egress proxy, trusting the service CA's bundle.
It must never hand the sandbox a host path beyond /usr, /etc, the worktree and the paths the
caller lists read-only (never the proxy's socket), never pass on a variable of the service's
environment, never give it a network but its door, and never let a command outlive its time
limit or fill memory with its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pydantic import BaseModel

from runtime.errors import SandboxUnavailable
from runtime.sandbox import netns

if TYPE_CHECKING:
    from runtime.sandbox.egress_route import EgressRoute

# The system's python starts faster than most virtualenvs' (netns.py needs only the stdlib).
_NETNS_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
SHIM_BIN = "/opt/acp/bin"  # `python` -> python3 when the system has no `python` of its own
BASE_ENV: dict[str, str] = {
    "PATH": f"/usr/local/bin:/usr/bin:/bin:{SHIM_BIN}",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    # No __pycache__ in the worktree: it would land in the job's commit, and a bytecode
    # file validated by a one-second mtime can hide an edit made within the same second.
    "PYTHONDONTWRITEBYTECODE": "1",
}

_ETC_SECRET_FILES = ("shadow", "shadow-", "gshadow", "gshadow-", "ssh/ssh_host_*_key")
_ETC_SECRET_DIRS = ("/etc/ssl/private",)
_INSTALL_HINT = "install bubblewrap: apt-get install bubblewrap"
_READ_CHUNK = 65_536
_SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_FALLBACK_CA_BUNDLE = "/tmp/.acp-ca-bundle.pem"  # where /etc has no bundle to cover
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
_CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
)


class CommandResult(BaseModel):
    """What a sandboxed command did, as the job record and the agent loop see it."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    truncated: bool


def bwrap_available() -> bool:
    """True when a bwrap binary is on PATH (it may still be refused namespaces at run time)."""
    return _bwrap_path() is not None


def _bwrap_path() -> str | None:
    return shutil.which("bwrap") or (
        "/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None
    )


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    # Merged-usr systems have /bin -> usr/bin etc.; older layouts have real directories.
    for top in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    args += ["--ro-bind", "/etc", "/etc"]
    # /etc is shared whole so tools find their config, but its secrets are not: run as root,
    # the sandbox would otherwise read them as their owner.
    for secret in _ETC_SECRET_FILES:
        for match in sorted(Path("/etc").glob(secret)):
            if match.is_file() and not match.is_symlink():
                args += ["--ro-bind", "/dev/null", str(match)]
    for secret_dir in _ETC_SECRET_DIRS:
        if Path(secret_dir).is_dir() and not Path(secret_dir).is_symlink():
            args += ["--tmpfs", secret_dir]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if os.path.exists("/usr/bin/python3"):
        args += ["--symlink", "/usr/bin/python3", f"{SHIM_BIN}/python"]
    return args


def bwrap_args(
    workdir: Path,
    *,
    ro_paths: Sequence[Path] = (),
    network: bool = False,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    writable_binds: Sequence[tuple[Path, str]] = (),
    workdir_at: str | None = None,
    egress: EgressRoute | None = None,
) -> list[str]:
    """The command line, up to the command, that run_sandboxed uses (and the benchmark).

    binds are extra read-only host path -> sandbox path mounts (writable_binds: writable ones,
    e.g. an environment being built); workdir_at mounts the
    writable workdir at that sandbox path (and starts there) instead of its own path; egress
    runs bwrap under netns.py, whose only way out is the route's door, with the proxy and the
    CA bundle set for the common tools."""
    bwrap = _bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed", hint=_INSTALL_HINT)
    if egress is not None and network:
        raise ValueError("network=True shares the host's network; an egress route replaces it")
    workdir = Path(workdir).resolve()
    inside = workdir_at or str(workdir)
    mounts = [(Path(p).resolve(), str(Path(p).resolve()), False) for p in ro_paths]
    mounts += [(Path(src).resolve(), dest, False) for src, dest in binds]
    mounts += [(Path(src).resolve(), dest, True) for src, dest in writable_binds]
    mounts.append((workdir, inside, True))
    for _, dest, _ in mounts:
        if not PurePosixPath(dest).is_absolute() or ".." in PurePosixPath(dest).parts:
            raise ValueError(f"sandbox path {dest!r} must be absolute, without '..'")

    prefix: list[str] = []
    variables = {**BASE_ENV, **(env or {})}
    ca_bundle = None
    if egress is not None:
        socket_path = Path(egress.proxy_socket).resolve()
        for src, _, _ in mounts:
            if socket_path.is_relative_to(src):
                raise SandboxUnavailable(
                    f"the egress proxy's socket {socket_path} is under {src}, "
                    "which the sandbox would see"
                )
        system_bundle = Path(_SYSTEM_CA_BUNDLE)
        covers = system_bundle.is_file() and not system_bundle.is_symlink()
        ca_bundle = _SYSTEM_CA_BUNDLE if covers else _FALLBACK_CA_BUNDLE
        # Inside the namespace 127.0.0.1:port is the forwarder, which names this job's door
        # whatever address is dialled. NO_PROXY stays unset: nothing local is reachable, and
        # a granted loopback host (a test's server) must go through the proxy too.
        proxy = f"http://127.0.0.1:{egress.port}"
        variables |= dict.fromkeys(_PROXY_VARIABLES, proxy)
        variables |= dict.fromkeys(_CA_VARIABLES, ca_bundle)
        # runtime/sandbox/netns.py runs as a script (standard library only), outside the
        # sandbox's mounts; it execs bwrap inside the namespace it made.
        prefix = [
            _NETNS_PYTHON, "-I", "-S", str(Path(netns.__file__).resolve()),
            "--port", str(egress.port), "--proxy-socket", str(socket_path),
            "--door", egress.door, "--",
        ]  # fmt: skip

    # --cap-drop ALL matters when the service runs as root: bwrap then keeps every capability
    # by default, and a sandboxed root could remount /usr read-write.
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
    if network or egress is not None:
        args.append("--share-net")  # with egress: the namespace netns.py made, only lo
    args.append("--clearenv")
    for key, value in variables.items():
        args += ["--setenv", key, value]
    args += _system_mounts()
    # Parents before children, so a worktree kept under a read-only path stays writable.
    for src, dest, writable in sorted(mounts, key=lambda m: (len(PurePosixPath(m[1]).parts), m[2])):
        if not src.exists():
            raise SandboxUnavailable(f"sandbox path does not exist: {src}")
        args += ["--bind" if writable else "--ro-bind", str(src), dest]
    if egress is not None and ca_bundle is not None:
        args += ["--ro-bind", str(Path(egress.ca_bundle).resolve()), ca_bundle]
    args += ["--chdir", inside]
    return prefix + args


async def run_sandboxed(
    command: str,
    workdir: Path,
    *,
    ro_paths: Sequence[Path] = (),
    network: bool = False,
    timeout_s: float = 60.0,
    output_cap: int = 256_000,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    writable_binds: Sequence[tuple[Path, str]] = (),
    workdir_at: str | None = None,
    egress: EgressRoute | None = None,
) -> CommandResult:
    """Run `bash -c command` under bubblewrap with workdir writable and nothing else of the host
    (binds, workdir_at and egress as in bwrap_args).

    Raises SandboxUnavailable when bwrap is missing or cannot build the sandbox here, or,
    with egress, when the network namespace cannot be made.
    """
    args = bwrap_args(
        workdir, ro_paths=ro_paths, network=network, env=env, binds=binds,
        writable_binds=writable_binds, workdir_at=workdir_at, egress=egress,
    )  # fmt: skip
    # A pipe the sandboxed shell writes one byte to before running the command: if that byte
    # never arrives, bwrap itself failed, which we must not report as the command's failure.
    started_r, started_w = os.pipe()
    os.set_blocking(started_r, False)
    launcher = f'printf 1 >&{started_w}; exec {started_w}>&-; exec /bin/bash -c "$1"'
    args += ["/bin/bash", "-c", launcher, "acp-sandbox", command]

    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(BASE_ENV),
            pass_fds=(started_w,),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(started_r)
        os.close(started_w)
        raise SandboxUnavailable(f"cannot start bubblewrap: {exc}", hint=_INSTALL_HINT) from exc
    os.close(started_w)

    assert proc.stdout is not None and proc.stderr is not None
    out = _CappedReader(proc.stdout, output_cap)
    err = _CappedReader(proc.stderr, output_cap)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.gather(out.drain(), err.drain(), proc.wait()), timeout_s)
        except TimeoutError:
            timed_out = True
            _kill_group(proc)
            await asyncio.gather(out.drain(), err.drain(), proc.wait())
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        marker = _read_marker(started_r)
        os.close(started_r)

    stderr = err.text()
    if not marker and not timed_out:
        said = next((ln for ln in stderr.splitlines() if ln.startswith("acp netns:")), None)
        if egress is not None and proc.returncode == netns.EXIT_NO_NAMESPACE and said:
            raise SandboxUnavailable(
                f"the command's network namespace could not be made: {said}",
                hint="allow unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1) or run the service as root",
            )
        raise SandboxUnavailable(
            f"bubblewrap could not create the sandbox: {stderr.strip() or 'no message'}",
            hint="for a namespace error, allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or run the service as root; "
            "otherwise check that the worktree is a directory",
        )
    exit_code = proc.returncode if proc.returncode is not None else -9
    return CommandResult(
        command=command,
        exit_code=-9 if timed_out else exit_code,
        stdout=out.text(),
        stderr=stderr,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        truncated=out.truncated or err.truncated,
    )


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # bwrap leads its own process group; --die-with-parent and the pid namespace take
    # every process inside down with it.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _read_marker(fd: int) -> bytes:
    try:
        return os.read(fd, 16)
    except BlockingIOError:
        return b""


class _CappedReader:
    """Keeps the first `cap` bytes of a stream and discards the rest while draining it."""

    def __init__(self, stream: asyncio.StreamReader, cap: int) -> None:
        self._stream = stream
        self._cap = cap
        self._chunks: list[bytes] = []
        self._kept = 0
        self.truncated = False

    async def drain(self) -> None:
        while chunk := await self._stream.read(_READ_CHUNK):
            room = self._cap - self._kept
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            if chunk:
                self._chunks.append(chunk)
                self._kept += len(chunk)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

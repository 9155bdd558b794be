"""Running `acp` and the service as real subprocesses, the way a person does in two terminals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ACP = [sys.executable, "-m", "bot.cli"]
ROOT = Path(__file__).resolve().parents[2]


def acp(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ACP, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


class Service:
    """`acp serve` in the background; started, waited for, killed."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.args = args or ("serve",)
        self.proc: subprocess.Popen | None = None
        self.log = Path(env["ACP_HOME"]).parent / f"serve-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 60) -> Service:
        # 60 s: on a loaded CI machine (two cores, browsers in the other test process) the
        # service and its worker have taken past 30 s to come up.
        Path(self.env["ACP_HOME"]).mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*ACP, *self.args], env=self.env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The line that starts with "ready" (a bare substring test would also take the
            # "already" of "address already in use" in a traceback for it).
            if any(line.startswith("ready") for line in self.log.read_text().splitlines()):
                return self
            if self.proc.poll() is not None:
                self._out.close()
                raise RuntimeError(f"acp serve exited early:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.stop()  # not left running (and loading the cores) for the rest of the session
        raise RuntimeError(f"acp serve did not become ready:\n{self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._out.closed:
            self._out.close()

    def output(self) -> str:
        return self.log.read_text()


def service_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a service under test: none of ours inherited, SQLite under `home`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACP_", "SLACK_")) and not k.lower().endswith("_proxy")
    }
    env.update(ACP_HOME=str(home / "home"), ACP_DATABASE_URL=f"sqlite+aiosqlite:///{home}/acp.db")
    env.update(ACP_API_LISTEN="127.0.0.1:0")  # tests run side by side: any free port
    env.update(ACP_CONSOLE_LISTEN="127.0.0.1:0")
    env.update(extra)
    return env

"""Where the service keeps its state and which policy it reads, from the environment.

Embedded defaults: SQLite under ACP_HOME (~/.acp), the bundled policies/ folder, no model key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BUNDLED_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


# AF_UNIX paths are at most 108 bytes; a longer ACP_HOME gets its socket under /tmp instead.
_SOCKET_PATH_MAX = 100


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    policy_dir: Path
    # The service API: a Unix socket (callers authenticated by the kernel) and an HTTP listener
    # (callers authenticated by API tokens); "" turns the HTTP listener off.
    socket_path: Path = Path()
    api_listen: str = "127.0.0.1:8780"
    # The audit log's signing key: outside the database, so write access to the database is
    # not enough to sign a rewritten log. A key file (created 0600 at first start) or the env
    # var ACP_AUDIT_SIGNING_KEY (a C2SP note private key, PRIVATE+KEY+name+hash+base64).
    audit_key_file: Path = Path()
    # The web console (bot.console): host:port ("" turns it off), and the address people reach
    # it at when that is not the listener's own (behind a proxy): sign-in redirects and links.
    console_listen: str = "127.0.0.1:8080"
    console_url: str | None = None

    def __post_init__(self) -> None:
        # Settings built by hand (tests, tools) get the same defaults from_env() gives.
        if self.socket_path == Path():
            object.__setattr__(self, "socket_path", socket_path(self.home, {}))
        if self.audit_key_file == Path():
            object.__setattr__(self, "audit_key_file", self.home / "audit" / "signing.key")

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def worktrees_dir(self) -> Path:
        return self.home / "worktrees"

    @property
    def checkpoints_dir(self) -> Path:
        """Where the service writes the audit log's signed checkpoints (one file per tree size)."""
        return self.home / "checkpoints"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ACP_HOME") or Path.home() / ".acp").expanduser().resolve()
        url = env.get("ACP_DATABASE_URL") or f"sqlite+aiosqlite:///{home / 'acp.db'}"
        policy_dir = Path(env.get("ACP_POLICY_DIR") or BUNDLED_POLICY_DIR).expanduser().resolve()
        return cls(
            home=home,
            database_url=url,
            policy_dir=policy_dir,
            socket_path=socket_path(home, env),
            api_listen=env.get("ACP_API_LISTEN", "127.0.0.1:8780"),
            audit_key_file=Path(
                env.get("ACP_AUDIT_KEY_FILE") or home / "audit" / "signing.key"
            ).expanduser(),
            console_listen=_console_listen(env),
            console_url=(env.get("ACP_CONSOLE_URL") or "").rstrip("/") or None,
        )


def _console_listen(env: dict[str, str] | os._Environ[str]) -> str:
    """ACP_CONSOLE_LISTEN (host:port, "" for no console), else ACP_CONSOLE_PORT on 127.0.0.1."""
    if "ACP_CONSOLE_LISTEN" in env:
        return env["ACP_CONSOLE_LISTEN"]
    port = env.get("ACP_CONSOLE_PORT", "8080")
    return port if ":" in port else f"127.0.0.1:{port}"


def socket_path(home: Path, env: dict[str, str] | os._Environ[str]) -> Path:
    """The service API's Unix socket: ACP_SOCKET, else ACP_HOME/acp.sock, else (a path too
    long for AF_UNIX) one under /tmp named after ACP_HOME, the same for the service and CLI."""
    if env.get("ACP_SOCKET"):
        return Path(env["ACP_SOCKET"]).expanduser()
    inside = home / "acp.sock"
    if len(str(inside)) <= _SOCKET_PATH_MAX:
        return inside
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
    return Path("/tmp") / f"acp-{digest}.sock"

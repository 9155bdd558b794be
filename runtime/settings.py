"""Where the service keeps its state and which policy it reads, from the environment.

Embedded defaults: SQLite under ACP_HOME (~/.acp), the bundled policies/ folder, no model key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BUNDLED_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    policy_dir: Path

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def worktrees_dir(self) -> Path:
        return self.home / "worktrees"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ACP_HOME") or Path.home() / ".acp").expanduser().resolve()
        url = env.get("ACP_DATABASE_URL") or f"sqlite+aiosqlite:///{home / 'acp.db'}"
        policy_dir = Path(env.get("ACP_POLICY_DIR") or BUNDLED_POLICY_DIR).expanduser().resolve()
        return cls(home=home, database_url=url, policy_dir=policy_dir)

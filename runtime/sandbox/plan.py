"""What a job's command sandbox holds beyond its worktree: the target's environment (mounted
read-only at /env) and the job's network scope and credentials (reached through the egress
proxy). Built by the job's kind from the policy's decision; read by the shell tool.

It carries credential NAMES only, never a value.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from runtime.sandbox.bwrap import BASE_ENV

ENV_MOUNT = "/env"
REPO_MOUNT = "/repo"


class SandboxPlan(BaseModel):
    home: Path  # the service's home (the egress proxy's CA lives there)
    environment: Path | None = Field(None, description="host directory mounted at /env")
    network: list[str] = Field(default_factory=list, description="the grant's hosts")
    credentials: dict[str, str] = Field(default_factory=dict, description="host -> var NAME")

    @property
    def path(self) -> str:
        """PATH inside the sandbox: the environment's bin first."""
        base = BASE_ENV["PATH"]
        return f"{ENV_MOUNT}/bin:{base}" if self.environment else base

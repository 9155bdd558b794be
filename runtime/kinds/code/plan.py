"""A code job's sandbox plan: the target's environment (built now if its key has no build) and
the network scope and credential names its grant decided, for every command the job runs.

A setup that fails ends the job with the log's tail (EnvironmentSetupFailed); the setup log
is an artifact of the job either way it was built.
"""

from __future__ import annotations

from pathlib import Path

from runtime.jobs import ArtifactRef
from runtime.kinds.base import JobContext
from runtime.kinds.code import environment
from runtime.sandbox.plan import SandboxPlan


async def sandbox_plan(
    ctx: JobContext, mirror: Path, commit: str
) -> tuple[SandboxPlan, list[ArtifactRef]]:
    """The plan, and the artifacts making it left (the setup log of a build made now)."""
    job, target = ctx.job, ctx.target
    env_path = None
    artifacts: list[ArtifactRef] = []
    if target.environment is not None:
        name = job.spec.target or ""

        async def on_event(kind: str, data: dict) -> None:
            await ctx.recorder.log(kind, data)

        info, built = await environment.ensure(
            ctx.settings, name, target, mirror, commit, on_event=on_event
        )
        if built:
            log = ctx.recorder.put("setup.log", info.setup_log.read_bytes())
            artifacts.append(log)
            await ctx.recorder.log(
                "environment.built",
                {
                    "target": name,
                    "key": info.key,
                    "size_bytes": info.size_bytes,
                    "files": info.files,
                    "duration_s": info.duration_s,
                },
                artifacts=(log.sha256,),
            )
        else:
            await ctx.recorder.log("environment.mounted", {"target": name, "key": info.key})
        env_path = info.path
    decision = job.decision
    plan = SandboxPlan(
        home=ctx.settings.home,
        environment=env_path,
        network=list(decision.get("network_granted") or []),
        credentials=dict(decision.get("credentials_granted") or {}),
    )
    return plan, artifacts

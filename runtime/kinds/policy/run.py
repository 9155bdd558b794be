"""Running a policy job: validate the proposed files, show the YAML diff against the policy in
force and what the change would do to recorded jobs, stop at the gate; once approved, write
exactly the approved files into the policy folder and put them in force.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from pathlib import Path

from runtime.audit import ArtifactStore
from runtime.errors import AcpError
from runtime.kinds.base import Failed, JobContext, NeedsApproval, Outcome, Succeeded
from runtime.kinds.policy.pending import PolicyApply
from runtime.policy import LoadedPolicy, load_bundle
from runtime.store import policy_store

SIMULATED_SINCE = "30d"  # the recorded jobs a proposal is tried on


def _bundle(ctx: JobContext, policy_hash: str, *, examples: bool) -> LoadedPolicy:
    data = ctx.recorder.read(policy_hash)
    return load_bundle(data, ctx.settings.policy_dir, examples=examples)


def policy_diff(before: LoadedPolicy | None, after: LoadedPolicy) -> str:
    """A unified diff per file: what approving changes in the policy folder."""
    old = {name: raw.decode() for name, raw in (before.sources if before else ())}
    new = {name: raw.decode() for name, raw in after.sources}
    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        out.extend(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"a/{name}" if a is not None else "/dev/null",
                tofile=f"b/{name}" if b is not None else "/dev/null",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


async def execute(ctx: JobContext) -> Outcome:
    job = ctx.job
    proposed_hash = job.spec.commands[0] if job.spec.commands else ""
    try:
        proposed = _bundle(ctx, proposed_hash, examples=True)
    except (OSError, AcpError) as error:
        reason = getattr(error, "message", None) or str(error)
        return Failed(reason=f"the proposed policy cannot be put in force: {reason}")
    replaces = job.policy_hash
    try:
        in_force = _bundle(ctx, replaces, examples=False)
    except (OSError, AcpError):
        in_force = None  # an older service stored no bundle: the diff shows every line new
    diff = policy_diff(in_force, proposed)
    artifacts = [ctx.recorder.put("policy.diff", diff.encode(), "text/x-diff")]
    text, data = await _simulation(ctx, proposed)
    artifacts.append(ctx.recorder.put("simulation.txt", text.encode()))
    body = json.dumps(data, indent=2).encode()
    artifacts.append(ctx.recorder.put("simulation.json", body, "application/json"))
    pending = PolicyApply(
        policy_hash=proposed.sha256, replaces=replaces, files=[n for n, _ in proposed.sources]
    )
    return NeedsApproval(pending, artifacts=artifacts)


async def _simulation(ctx: JobContext, proposed: LoadedPolicy) -> tuple[str, dict]:
    """What the change would do to the last 30 days of recorded jobs (runtime.policy.simulate):
    the same report `acp policy simulate` prints."""
    from runtime.policy.simulate_text import render
    from runtime.policy_change import simulate_recorded

    report = await simulate_recorded(
        ctx.db, proposed, in_force_hash=ctx.policy_hash, since=SIMULATED_SINCE
    )
    data = report.model_dump(mode="json")
    simulation = ctx.recorder.put("simulation.txt", render(data).encode())
    await ctx.recorder.log("policy.simulated", report.summary(), artifacts=(simulation.sha256,))
    return render(data), data


async def apply(ctx: JobContext, approved: PolicyApply) -> Outcome:
    """Write the approved files and put them in force; refused if the policy in force is no
    longer the one the change was reviewed against."""
    from runtime.policy_live import record_load

    async with ctx.db.engine.connect() as conn:
        now = await policy_store.in_force_hash(conn)
    if now is not None and now != approved.replaces:
        if now == approved.policy_hash:
            return Succeeded(
                reason=f"policy {now[:12]} is already in force", result={"policy_hash": now}
            )
        return Failed(
            reason=f"the policy in force changed since this change was reviewed (now "
            f"{now[:12]}, reviewed against {approved.replaces[:12]}); nothing was written: "
            "propose it again on top of the policy in force"
        )
    try:
        proposed = _bundle(ctx, approved.policy_hash, examples=True)
    except (OSError, AcpError) as error:
        reason = getattr(error, "message", None) or str(error)
        return Failed(reason=f"the approved policy cannot be put in force: {reason}")
    folder = Path(ctx.settings.policy_dir)
    written = _stage(folder, proposed)
    approver = next(
        (g.decided_by for g in reversed(ctx.job.approvals) if g.decision == "approved"), None
    )
    who = (
        f"{approver or 'nobody'} (approved {ctx.job.job_id}, proposed by {ctx.job.spec.requester})"
    )
    try:
        await record_load(
            ctx.db,
            ArtifactStore(ctx.settings.artifacts_dir),
            proposed,
            f"job {ctx.job.job_id}",
            who,
            approved.replaces,
            job_id=ctx.job.id,
        )
    except BaseException:
        for tmp in written.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    removed = _commit(folder, written)
    return Succeeded(
        reason=f"policy {proposed.sha256[:12]} is in force: {', '.join(sorted(written))} written "
        f"to {folder}" + (f", {', '.join(removed)} removed" if removed else ""),
        result={
            "policy_hash": proposed.sha256,
            "replaced": approved.replaces,
            "files": sorted(written),
            "removed": removed,
        },
    )


def _stage(folder: Path, proposed: LoadedPolicy) -> dict[str, Path]:
    """Each file written beside its final name (flushed to disk), not yet in place."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for name, raw in proposed.sources:
        tmp = folder / f".{name}.acp-new"
        with open(tmp, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        staged[name] = tmp
    return staged


def _commit(folder: Path, staged: dict[str, Path]) -> list[str]:
    """Rename the staged files into place; policy files the change drops are removed (their
    content stays in the artifact store under the old policy's hash)."""
    for name, tmp in staged.items():
        os.replace(tmp, folder / name)
    removed = []
    for path in [*folder.glob("*.yml"), *folder.glob("*.yaml")]:
        if path.name not in staged:
            path.unlink()
            removed.append(path.name)
    return sorted(removed)

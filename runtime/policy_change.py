"""Changing the policy: what a proposed policy would do to the jobs recorded so far (the
simulation `acp policy simulate` and every policy job show), and proposing it: the files
validated at once (file:line on a bad one), stored by their hash, and a `policy` job decided by
the policy in force (who may propose, which approval rule gates it). The job's kind
(runtime.kinds.policy) shows the diff and simulation and applies the change once approved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.errors import BadRequest, PolicyFileError
from runtime.jobs import JobRecord, JobSpec, JobState, JobType, ModelUse, Origin
from runtime.kinds import registry
from runtime.policy import RequestFacts, decide, load_sources
from runtime.store.job_store import utcnow

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.identity import Actor
    from runtime.policy import LoadedPolicy
    from runtime.policy.simulate import SimulationReport
    from runtime.store.database import Database

POLICY_KIND = JobType("policy")
MAX_FILES = 64


async def simulate_recorded(
    db: Database, proposed: LoadedPolicy, *, in_force_hash: str, since: str = "30d"
) -> SimulationReport:
    """Every job recorded since `since` decided again under `proposed` and compared with its
    recorded decision. Reads rows, runs and writes nothing (the caller records the event)."""
    import asyncio

    from runtime.policy.simulate import simulate, since_time
    from runtime.store.history_store import all_recorded_jobs

    since_at = since_time(since)
    async with db.engine.connect() as conn:
        rows = await all_recorded_jobs(conn, since_at)
    return await asyncio.to_thread(
        simulate, rows, proposed.policy, proposed_hash=proposed.sha256,
        in_force_hash=in_force_hash, since=since, since_at=since_at,
    )  # fmt: skip


def _sources(files: dict[str, str]) -> list[tuple[str, bytes]]:
    if not isinstance(files, dict) or not files:
        raise BadRequest(
            "a policy proposal needs its files", hint="acp policy propose DIR (a folder of *.yml)"
        )
    if len(files) > MAX_FILES:
        raise BadRequest(f"a policy proposal has at most {MAX_FILES} files")
    out = []
    for name, text in sorted(files.items()):
        if not isinstance(name, str) or not isinstance(text, str):
            raise BadRequest("files map each file name to its text")
        out.append((name, text.encode()))
    return out


async def propose(
    engine: Engine, files: dict[str, str], actor: Actor, origin: Origin = Origin.cli
) -> JobRecord:
    """A policy job for these files, decided under the policy in force."""
    with engine.policies.pinned() as in_force:
        try:
            proposed = load_sources(_sources(files), engine.settings.policy_dir, examples=True)
        except (BadRequest, PolicyFileError) as error:
            await engine.record_refusal("request.refused", actor.label, error,
                                        request={"policy_files": sorted(files or {})})  # fmt: skip
            raise
        if proposed.sha256 == in_force.sha256:
            raise BadRequest(
                f"the proposed policy is the one in force ({in_force.sha256[:12]}); "
                "nothing would change"
            )
        engine.artifacts.put("policy.bundle", proposed.bundle(), "application/octet-stream")
        kind = registry.kind_for(POLICY_KIND)
        section = in_force.policy.targets_in(kind.target_section or "policies")
        target = next(iter(section), "service")
        decision = decide(
            in_force.policy,
            RequestFacts(person=actor.person, job_type=POLICY_KIND, target=target, origin=origin),
        )
        names = [name for name, _ in proposed.sources]
        prompt = f"policy {target}: put {', '.join(names)} in force (policy {proposed.sha256[:12]})"
        now = utcnow()
        record = JobRecord(
            id=0,
            state=JobState.received,
            spec=JobSpec(
                job_type=POLICY_KIND, target=target,
                instruction=f"put policy {proposed.sha256} in force",
                tools=decision.tools_granted, approval_required_for=decision.approval_required_for,
                artifact_contract=kind.artifact_contract,
                commands=[proposed.sha256, in_force.sha256], origin=origin,
                requester=actor.person,
            ),
            prompt=prompt,
            tools_granted=decision.tools_granted,
            decision=decision.model_dump(mode="json"),
            policy_hash=in_force.sha256,
            classifier={"method": "command", "confidence": 1.0, "cues": ["policy propose"]},
            model=ModelUse(model=decision.model or "direct", route_rule=decision.model_rule),
            created_at=now,
            updated_at=now,
        )  # fmt: skip
        return await engine.submit_decided(record, decision, actor, prompt, origin)

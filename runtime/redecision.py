"""A job decided under one policy and about to run under another is decided again first, and
says so. Part of the Engine (mixed in); the worker calls it in the transaction that claims.

Still allowed: the job takes the new decision (grants, network, approval gates, model route)
and records the policy it now runs under (`policy.redecided`). Its grant withdrawn: it is
denied with a reason naming the policy change. A `run` gate the new policy adds stops it at
that gate. A job the policy does not decide from a request (a routine's change) only records
the policy it runs under.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.jobs import JobRecord, JobState, ModelUse, RunGate
from runtime.policy.history import redecide

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.policy import Decision


def decision_changes(before: dict[str, Any], after: Decision) -> list[dict[str, str]]:
    """What a new decision changes for a job, as the audit records it: the same changes, in the
    same words, as `acp policy simulate` reports (runtime.policy.simulate.compare)."""
    from runtime.policy.simulate import compare

    return [
        {"kind": kind, "rule": rule, "detail": detail}
        for kind, rule, detail, _, _ in compare(before, after)
    ]


class Redecisions:
    # Needs the Engine's policies, transition, _event and new_gate.

    async def redecide_before_run(self, conn: AsyncConnection, job: JobRecord) -> JobRecord:
        """`job` (queued, or approved) is about to run: if the policy in force is not the one
        it was decided under, decide it again. Returns the job as it now is (denied, waiting
        at a new gate, or ready to run under the policy in force)."""
        in_force = self.policies.current  # type: ignore[attr-defined]
        loaded = in_force.loaded
        if job.policy_hash == loaded.sha256:
            return job
        before = job.policy_hash
        decision = redecide(loaded.policy, job)
        about = {
            "from": before,
            "to": loaded.sha256,
            "source": in_force.source,
            "changed_by": in_force.actor,
            "since": in_force.since.isoformat(),
        }
        if decision is None:
            updated = job.with_changes(policy_hash=loaded.sha256)
            await self._save_redecided(conn, job, updated, {**about, "effect": "not re-decided"})
            return updated
        changes = decision_changes(job.decision, decision)
        why = (
            f"the policy changed before it ran: re-decided under policy {loaded.sha256[:12]} "
            f"(in force since {in_force.since:%Y-%m-%d %H:%M:%S} UTC, {in_force.source}"
            f"{'' if in_force.actor == in_force.source else ' by ' + in_force.actor}; "
            f"it was decided under {before[:12]})"
        )
        data = {
            **about,
            "effect": decision.effect,
            "reasons": decision.reasons,
            "rule_ids": decision.rule_ids,
            "changes": changes,
            "policy_hash": loaded.sha256,
        }
        record = {"decision": decision.model_dump(mode="json"), "policy_hash": loaded.sha256}
        if decision.effect != "allow":
            reason = f"{why}: {'; '.join(decision.reasons)}"
            return await self.transition(  # type: ignore[attr-defined]
                conn,
                job,
                JobState.denied,
                actor="policy",
                kind="policy.denied",
                data={**data, "redecided": True, "reason": reason},
                result={**job.result, "reason": reason},
                **record,
            )
        spec = job.spec.model_copy(
            update={
                "tools": decision.tools_granted,
                "approval_required_for": decision.approval_required_for,
            }
        )
        updated = job.with_changes(spec=spec, tools_granted=decision.tools_granted, **record)
        if job.model.calls == 0:
            updated = updated.with_changes(
                model=ModelUse(model=decision.model or "direct", route_rule=decision.model_rule)
            )
        ran_gate = any(g.action == "run" and g.decision == "approved" for g in job.approvals)
        if "run" in decision.approval_required_for and not ran_gate:
            pending = RunGate(
                job_type=job.spec.job_type.value,
                target=job.spec.target,
                instruction=job.spec.instruction,
                commands=job.spec.commands,
            )
            gate = self.new_gate(updated, "run", pending)  # type: ignore[attr-defined]
            return await self.transition(  # type: ignore[attr-defined]
                conn,
                job,
                JobState.awaiting_approval,
                actor="policy",
                kind="approval.requested",
                data={
                    **data,
                    "redecided": True,
                    "reason": f"{why}: running it now needs approval",
                    "action": "run",
                    "action_hash": gate.action_hash,
                    "pending": pending.canonical(),
                    "approvers": gate.approvers,
                },
                spec=spec,
                tools_granted=decision.tools_granted,
                model=updated.model,
                pending_action=pending,
                approvals=[*job.approvals, gate],
                **record,
            )
        await self._save_redecided(conn, job, updated, {**data, "reason": why})
        return updated

    async def _save_redecided(
        self, conn: AsyncConnection, job: JobRecord, updated: JobRecord, data: dict[str, Any]
    ) -> None:
        from runtime.store import job_store

        await job_store.save_job(conn, updated, expected_state=job.state)
        await self._event(conn, "policy.redecided", "policy", job.id, data)  # type: ignore[attr-defined]

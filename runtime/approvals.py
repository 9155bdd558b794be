"""Approval gates: deciding them, expiring them, and opening new ones bound to a change.

Part of the Engine (mixed in), kept apart because it is its own concern: who may open a gate,
when it lapses, and what exactly an approval applies to. Decisions come from runtime.policy.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from runtime import audit
from runtime.errors import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalRefused,
    InvalidTransition,
    PolicyDenied,
    UnknownJob,
)
from runtime.jobs import ApprovalRequest, JobRecord, JobState, Origin, PendingAction
from runtime.policy import Decision, decide_approval, parse_duration
from runtime.store.job_store import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.identity import Actor


ESCALATED = ":escalated"  # the rule id suffix of a gate the unattended rule escalated


def pending_hash(action: PendingAction | dict[str, Any]) -> str:
    """What an approval is bound to: the SHA-256 of the pending action's canonical form (the
    fields that were set, so an action read back from the database hashes as it did)."""
    fields = action.canonical() if isinstance(action, PendingAction) else action
    return hashlib.sha256(audit.canonical_json(fields).encode()).hexdigest()


class ApprovalGates:
    # Needs the Engine's get, jobs, locked, transition, record_refusal and policy.

    def _open_gate(self, job: JobRecord) -> ApprovalRequest:
        for gate in reversed(job.approvals):
            if gate.decision is None:
                return gate
        raise InvalidTransition(f"{job.job_id} has no open approval request")

    async def approve(self, job_id: int, actor: Actor, action_hash: str | None = None) -> JobRecord:
        return await self._decide_gate(job_id, actor, approve=True, action_hash=action_hash)

    async def reject(
        self, job_id: int, actor: Actor, reason: str = "", action_hash: str | None = None
    ) -> JobRecord:
        return await self._decide_gate(
            job_id, actor, approve=False, action_hash=action_hash, reason=reason
        )

    async def _decide_gate(
        self, job_id: int, actor: Actor, *, approve: bool, action_hash: str | None, reason: str = ""
    ) -> JobRecord:
        verb = "approve" if approve else "reject"
        expired: list[Decision] = []

        async def body(conn: AsyncConnection, job: JobRecord) -> JobRecord:
            if job.state is not JobState.awaiting_approval:
                last = next((g for g in reversed(job.approvals) if g.decision), None)
                said = (
                    f" ({last.decision} by {last.decided_by} "
                    f"at {last.decided_at:%Y-%m-%d %H:%M} UTC)"
                    if last and last.decided_at
                    else ""
                )
                raise AlreadyDecided(
                    f"{job.job_id} is {job.state.value}{said}; nothing changed",
                )
            gate = self._open_gate(job)
            if action_hash and action_hash != gate.action_hash[: len(action_hash)]:
                raise ApprovalMismatch(
                    f"you reviewed change {action_hash[:12]}, but {job.job_id} now waits on "
                    f"{gate.action_hash[:12]}; the approval does not apply",
                    hint=f"review it again: `acp show {job.job_id}`",
                )
            now = utcnow()
            withdrawing = not approve and actor.person == job.spec.requester
            verdict = decide_approval(
                self.policy,
                approver=actor.person,
                requester=job.spec.requester,
                rule_id=gate.rule_id,
                expires_at=gate.expires_at,
                now=now,
                four_eyes=gate.four_eyes,
                escalated_to=gate.approvers if gate.rule_id.endswith(ESCALATED) else None,
            )
            if withdrawing and "approval.expired" not in verdict.rule_ids:
                verdict = Decision(
                    effect="allow",
                    reasons=["the requester withdrew the job"],
                    rule_ids=["approval.requester_withdraws"],
                )
            if verdict.effect != "allow":
                if "approval.expired" in verdict.rule_ids:
                    # Commit the expiry itself; the refusal is raised after the transaction.
                    expired.append(verdict)
                    return await self._expire(conn, job, gate, now)
                raise ApprovalRefused(
                    f"{actor.person} may not {verb} {job.job_id}: " + "; ".join(verdict.reasons),
                    rule_ids=verdict.rule_ids,
                )
            decided = gate.model_copy(
                update={
                    "decision": "approved" if approve else "rejected",
                    "decided_by": actor.person,
                    "decided_at": now,
                    "reason": reason or None,
                }
            )
            approvals = [decided if g is gate else g for g in job.approvals]
            data = {
                "action": gate.action,
                "action_hash": gate.action_hash,
                "rule_ids": verdict.rule_ids,
                "reason": reason or None,
            }
            if approve:
                return await self.transition(
                    conn,
                    job,
                    JobState.approved,
                    actor=actor.label,
                    kind="approval.granted",
                    data=data,
                    approvals=approvals,
                )
            return await self.transition(
                conn,
                job,
                JobState.rejected,
                actor=actor.label,
                kind="approval.rejected",
                data=data,
                approvals=approvals,
                pending_action=None,
                result={**job.result, "reason": reason or "rejected"},
            )

        try:
            job = await self.locked(job_id, body)
            if expired:
                raise ApprovalExpired(
                    f"cannot {verb} {job.job_id}: " + "; ".join(expired[0].reasons),
                    rule_ids=expired[0].rule_ids,
                    hint="the job was rejected as expired; submit it again",
                )
            return job
        except (PolicyDenied, ApprovalMismatch, UnknownJob) as error:
            await self.record_refusal(f"{verb}.refused", actor.label, error, job_id=job_id)
            raise

    async def _expire(
        self, conn: AsyncConnection, job: JobRecord, gate: ApprovalRequest, now: Any
    ) -> JobRecord:
        decided = gate.model_copy(
            update={"decision": "expired", "decided_at": now, "decided_by": "policy"}
        )
        approvals = [decided if g is gate else g for g in job.approvals]
        return await self.transition(
            conn,
            job,
            JobState.rejected,
            actor="policy",
            kind="approval.expired",
            data={
                "action": gate.action,
                "action_hash": gate.action_hash,
                "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
            },
            approvals=approvals,
            pending_action=None,
            result={**job.result, "reason": "the approval request expired"},
        )

    async def expire_overdue(self) -> list[int]:
        """Reject every job whose open approval request has passed its expiry."""
        now = utcnow()
        done = []
        for job in await self.jobs(states=[JobState.awaiting_approval.value], limit=1000):
            gate = next((g for g in reversed(job.approvals) if g.decision is None), None)
            if gate and gate.expires_at and now >= gate.expires_at:

                async def body(conn: AsyncConnection, fresh: JobRecord) -> None:
                    if fresh.state is not JobState.awaiting_approval:
                        return
                    gate = self._open_gate(fresh)
                    if self._escalates(fresh, gate):
                        await self._escalate(conn, fresh, gate, now)
                    else:
                        await self._expire(conn, fresh, gate, now)

                await self.locked(job.id, body)
                done.append(job.id)
        return done

    def _escalates(self, job: JobRecord, gate: ApprovalRequest) -> bool:
        rule = self.policy.routines.unattended
        return (
            job.spec.origin is Origin.schedule
            and rule.on_expiry == "escalate"
            and bool(rule.escalate_to)
            and not gate.rule_id.endswith(ESCALATED)
        )

    async def _escalate(
        self, conn: AsyncConnection, job: JobRecord, gate: ApprovalRequest, now: Any
    ) -> JobRecord:
        """A routine's gate lapsed unattended: ask the policy's named people, once, as long."""
        rule = self.policy.routines.unattended
        lapsed = gate.model_copy(
            update={"decision": "expired", "decided_at": now, "decided_by": "policy"}
        )
        escalated = gate.model_copy(
            update={
                "rule_id": gate.rule_id + ESCALATED,
                "approvers": list(rule.escalate_to),
                "requested_at": now,
                "expires_at": now + parse_duration(rule.expires_after),
            }
        )
        approvals = [lapsed if g is gate else g for g in job.approvals] + [escalated]
        return await self.transition(
            conn,
            job,
            JobState.awaiting_approval,
            actor="policy",
            kind="approval.escalated",
            data={
                "action": gate.action,
                "action_hash": gate.action_hash,
                "approvers": escalated.approvers,
                "expires_at": escalated.expires_at.isoformat() if escalated.expires_at else None,
                "reason": "unattended approval of a routine's job expired",
            },
            approvals=approvals,
        )

    def new_gate(self, job: JobRecord, action: str, pending: dict[str, Any]) -> ApprovalRequest:
        """The approval request for `action` on this job, bound to the pending action's hash."""
        gate = next((g for g in job.decision.get("approvals", []) if g["action"] == action), None)
        if gate is None:
            raise PolicyDenied(f"no approval rule covers {action} for {job.job_id}")
        now = utcnow()
        expires = gate.get("expires_after_s")
        expires_at = now + timedelta(seconds=expires) if expires else None
        if job.spec.origin is Origin.schedule:
            # Nobody watches a routine's run: its gate waits only as long as the policy's
            # unattended rule says, then is rejected or escalated; it never proceeds alone.
            unattended = now + parse_duration(self.policy.routines.unattended.expires_after)
            expires_at = min(expires_at, unattended) if expires_at else unattended
        return ApprovalRequest(
            action=action,
            action_hash=pending_hash(pending),
            rule_id=gate["rule_id"],
            approvers=gate["approvers"],
            four_eyes=gate["four_eyes"],
            requested_at=now,
            expires_at=expires_at,
        )

    async def may_decide(self, job_id: int, actor: Actor, *, approve: bool) -> Decision:
        """Would approve/reject by `actor` be allowed now? For doors to refuse early; no writes."""
        job = await self.get(job_id)
        if job.state is not JobState.awaiting_approval:
            return Decision(
                effect="deny",
                reasons=[f"{job.job_id} is {job.state.value}; there is nothing to decide"],
                rule_ids=["approval.not_pending"],
            )
        gate = self._open_gate(job)
        if not approve and actor.person == job.spec.requester:
            return Decision(effect="allow", reasons=["the requester may withdraw the job"])
        return decide_approval(
            self.policy,
            approver=actor.person,
            requester=job.spec.requester,
            rule_id=gate.rule_id,
            expires_at=gate.expires_at,
            now=utcnow(),
            four_eyes=gate.four_eyes,
            escalated_to=gate.approvers if gate.rule_id.endswith(ESCALATED) else None,
        )

    async def awaiting(self, person: str) -> list[JobRecord]:
        """Jobs whose open approval request names `person` among its approvers."""
        jobs = await self.jobs(states=[JobState.awaiting_approval.value], limit=500)
        return [
            job
            for job in jobs
            if any(g.decision is None and person in g.approvers for g in job.approvals)
        ]

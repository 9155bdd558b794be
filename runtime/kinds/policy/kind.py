"""Policy jobs: `acp policy propose DIR` (or the Slack door) proposes new policy files; the job
validates them, shows the YAML diff and a simulation of the change on recorded jobs, and stops
at the policy's approval gate (bundled: policy.change.review, four-eyes, security approvers).
Approved, it writes the files into the service's policy folder and puts them in force."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from runtime.errors import ApprovalMismatch, BadRequest
from runtime.jobs import Evidence, EvidenceLine, JobRecord, JobType, PendingAction, Phase
from runtime.kinds.base import JobContext, JobKind, Outcome
from runtime.kinds.policy.pending import PolicyApply
from runtime.policy.schema import Policy


class PolicyTarget(BaseModel):
    """targets.policies.<name>: the service's own policy folder, as a target of policy jobs."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    production: bool = True
    sensitivity: str = "internal"


class PolicyKind(JobKind):
    job_type = JobType("policy")
    requestable = False  # proposed with `acp policy propose DIR`, not typed as a request
    target_section = "policies"
    target_model = PolicyTarget
    tools = ("policy.write",)
    artifact_contract = "policy_diff, simulation"
    mutating = True
    pending_models = (PolicyApply,)
    resumable_phases = frozenset({Phase.publish})

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        return True  # its one step is applying the files it carries

    def check_request(self, instruction: str, target: str | None, policy: Policy) -> None:
        """A policy change carries its files; it is never typed as a request."""
        raise BadRequest(
            "a policy change is proposed with its files, not typed as a request",
            hint="acp policy propose DIR (a folder of policy *.yml); see `acp policy --help`",
        )

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.policy.run import execute

        return await execute(ctx)

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        from runtime.kinds.policy.run import apply

        if not isinstance(approved, PolicyApply):
            raise ApprovalMismatch(f"{ctx.job.job_id}: the approved policy is not the pending one")
        return await apply(ctx, approved)

    def evidence(self, job: JobRecord) -> Evidence:
        pending = job.pending_action
        if not isinstance(pending, PolicyApply):
            return Evidence()
        read = [a.sha256 for a in job.artifacts if a.name in ("policy.diff", "simulation.txt")]
        return Evidence(
            headline=f"Approving puts policy {pending.policy_hash[:12]} in force, replacing "
            f"{pending.replaces[:12]}: the files are written and the service reloads.",
            lines=[EvidenceLine(label="files", text=", ".join(pending.files))],
            read=read,
        )

"""The one job schema (JobSpec), the job record every run leaves, and the job states.

Pure data: no I/O here. Every front door and every job type speaks these models.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.errors import BadRequest


class JobType(StrEnum):
    code = "code"
    sql = "sql"
    browser = "browser"
    doc = "doc"
    schedule = "schedule"


class Origin(StrEnum):
    slack = "slack"
    cli = "cli"
    schedule = "schedule"
    console = "console"


class JobState(StrEnum):
    received = "received"
    denied = "denied"
    needs_clarification = "needs_clarification"
    queued = "queued"
    running = "running"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    rejected = "rejected"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    rolled_back = "rolled_back"


TERMINAL_STATES = frozenset(
    {
        JobState.denied,
        JobState.rejected,
        JobState.succeeded,
        JobState.failed,
        JobState.cancelled,
        JobState.rolled_back,
    }
)

# Which state may follow which. The engine refuses anything else.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.received: frozenset(
        {JobState.denied, JobState.needs_clarification, JobState.queued, JobState.awaiting_approval}
    ),
    JobState.needs_clarification: frozenset(
        {
            JobState.needs_clarification,
            JobState.denied,
            JobState.queued,
            JobState.awaiting_approval,
            JobState.cancelled,
        }
    ),
    JobState.queued: frozenset({JobState.running, JobState.cancelled, JobState.failed}),
    JobState.running: frozenset(
        {
            JobState.awaiting_approval,
            JobState.needs_clarification,
            JobState.succeeded,
            JobState.failed,
            JobState.cancelled,
        }
    ),
    JobState.awaiting_approval: frozenset(
        {JobState.approved, JobState.rejected, JobState.cancelled, JobState.awaiting_approval}
    ),
    JobState.approved: frozenset(
        {JobState.running, JobState.succeeded, JobState.failed, JobState.awaiting_approval}
    ),
    JobState.succeeded: frozenset({JobState.rolled_back}),
}

# Job types whose work changes something outside the sandbox once published.
MUTATING_TYPES = frozenset({JobType.code, JobType.browser, JobType.doc, JobType.schedule})

# The artifacts each job type promises to leave for review.
ARTIFACT_CONTRACTS: dict[JobType, str] = {
    JobType.code: "diff",
    JobType.sql: "results_plus_plan",
    JobType.browser: "trace_plus_screenshots",
    JobType.doc: "document_diff",
    JobType.schedule: "routine_definition",
}

# The tools each job type uses; the policy grants a subset of these.
TYPE_TOOLS: dict[JobType, tuple[str, ...]] = {
    JobType.code: ("fs.read", "fs.write", "shell", "git.diff"),
    JobType.sql: ("sql.query",),
    JobType.browser: ("browser", "playwright"),
    JobType.doc: ("fs.read", "fs.write", "docs", "shell"),
    JobType.schedule: ("scheduler",),
}

_JOB_ID = re.compile(r"^\s*J-?(\d+)\s*$", re.IGNORECASE)


def format_job_id(number: int) -> str:
    return f"J-{number}"


def parse_job_id(text: str) -> int:
    """`J-12`, `j12` or `12` -> 12; anything else is a BadRequest with an example."""
    match = _JOB_ID.match(text) or re.match(r"^\s*(\d+)\s*$", text)
    if not match:
        raise BadRequest(f"'{text}' is not a job id", hint="job ids look like J-12")
    return int(match.group(1))


class JobSpec(BaseModel):
    """What a job may read, write and call. The same schema for every door and job type."""

    model_config = ConfigDict(extra="forbid")

    job_type: JobType
    target: str | None = Field(None, description="repo, database, domain or report set")
    instruction: str = Field(description="what the requester asked for, minus type and target")
    tools: list[str] = Field(default_factory=list, description="tools the job asks to use")
    approval_required_for: list[str] = Field(
        default_factory=list, description="actions that stop at a human approval gate"
    )
    artifact_contract: str = Field("", description="artifacts the job must leave for review")
    filesystem_scope: list[str] = Field(
        default_factory=list, description="paths the job may touch; 'worktree' is its own checkout"
    )
    network_scope: Literal["none", "allowlist", "full"] = "none"
    browser_domains: list[str] = Field(default_factory=list)
    credential_refs: list[str] = Field(
        default_factory=list, description="names of secrets the runtime may use; never values"
    )
    commands: list[str] = Field(
        default_factory=list, description="explicit steps for direct mode (no model)"
    )
    schedule: str | None = Field(None, description="cron expression for schedule jobs")
    origin: Origin
    requester: str = Field(description="person name from the policy, whichever door was used")


class Clarification(BaseModel):
    question: str
    options: list[str] = Field(default_factory=list)
    field: Literal["job_type", "target", "commands", "confirm", "agent"]


class ApprovalRequest(BaseModel):
    """One approval gate: requested for an exact pending action, then decided once."""

    action: str
    action_hash: str
    rule_id: str
    approvers: list[str]
    four_eyes: bool
    requested_at: datetime
    expires_at: datetime | None = None
    decision: Literal["approved", "rejected", "expired", "invalidated"] | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None


class ArtifactRef(BaseModel):
    name: str
    sha256: str
    size: int
    media_type: str = "text/plain"


class ModelUse(BaseModel):
    model: str = "direct"
    route_rule: str | None = None
    calls: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks_taken: list[str] = Field(default_factory=list)


class JobRecord(BaseModel):
    """The minimum record every run leaves: prompt, tools, artifacts, approvals, final state."""

    id: int
    state: JobState
    spec: JobSpec
    prompt: str
    tools_granted: list[str] = Field(default_factory=list)
    decision: dict[str, Any] = Field(default_factory=dict)
    policy_hash: str
    classifier: dict[str, Any] = Field(default_factory=dict)
    clarification: Clarification | None = None
    pending_action: dict[str, Any] | None = None
    approvals: list[ApprovalRequest] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    model: ModelUse = Field(default_factory=ModelUse)
    result: dict[str, Any] = Field(default_factory=dict)
    reply_to: dict[str, Any] | None = Field(
        None, description="where the submitting door wants to hear about the job"
    )
    created_at: datetime
    updated_at: datetime

    @property
    def job_id(self) -> str:
        return format_job_id(self.id)

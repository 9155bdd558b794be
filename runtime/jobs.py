"""The one job schema (JobSpec), the job record every run leaves, and the job states.

Pure data: no I/O here. Every front door and every job type speaks these models.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializeAsAny,
    field_validator,
)
from pydantic_core import core_schema

from runtime.errors import BadRequest

_KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")


class JobType(str):
    """The name of a job kind. Open: a kind registered in runtime.kinds.registry brings its own.

    Interned, so `job_type is JobType.code` holds for a name read back from the database. The
    constants below name the built-in kinds; what a kind does is the registry's, never here.
    """

    _interned: ClassVar[dict[str, JobType]] = {}
    code: ClassVar[JobType]
    sql: ClassVar[JobType]
    browser: ClassVar[JobType]
    doc: ClassVar[JobType]
    schedule: ClassVar[JobType]

    def __new__(cls, name: str) -> JobType:
        if isinstance(name, JobType):
            return name
        found = cls._interned.get(name)
        if found is None:
            if not isinstance(name, str) or not _KIND_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a job kind name (lower-case letters, digits, - and _, "
                    "at most 16, starting with a letter)"
                )
            found = cls._interned[name] = super().__new__(cls, name)
        return found

    @property
    def value(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"JobType({str(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


for _name in ("code", "sql", "browser", "doc", "schedule"):
    setattr(JobType, _name, JobType(_name))


class Phase(StrEnum):
    """Which pass over a job the worker is in: running its steps, publishing the approved
    change, or taking the approved live action."""

    execute = "execute"
    publish = "publish"
    resume = "resume"


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
    # A queued or approved job is decided again when the policy changed before it ran
    # (runtime.redecision): it may be denied, or stop at a gate the new policy adds.
    JobState.queued: frozenset(
        {
            JobState.running,
            JobState.cancelled,
            JobState.failed,
            JobState.denied,
            JobState.awaiting_approval,
        }
    ),
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
        {
            JobState.running,
            JobState.succeeded,
            JobState.failed,
            JobState.awaiting_approval,
            JobState.denied,
        }
    ),
    JobState.succeeded: frozenset({JobState.rolled_back}),
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


class PendingAction(BaseModel):
    """What an approval gate is bound to: the exact action a job will take once approved.

    A tagged union that the kinds contribute to: `action` is the tag, and each kind registers
    the models of its actions (`register_pending`). The approval hash is over the fields that
    were set, so a record read back from the database hashes exactly as it did when written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: ClassVar[tuple[str, ...]] = ()
    action: str

    def canonical(self) -> dict[str, Any]:
        """The form that is stored and hashed: the fields that were set, and the tag."""
        dumped = self.model_dump(mode="json", exclude_unset=True, by_alias=True)
        return {**dumped, "action": self.action}


class RunGate(PendingAction):
    """A gate on running the job at all (the policy's `run` approval)."""

    actions: ClassVar[tuple[str, ...]] = ("run",)
    action: Literal["run"] = "run"
    job_type: str
    target: str | None = None
    instruction: str = ""
    commands: list[str] = Field(default_factory=list)


class OtherPending(PendingAction):
    """A pending action of a kind this code does not have: kept as it was, never acted on."""

    model_config = ConfigDict(extra="allow", frozen=True)


_PENDING: dict[str, type[PendingAction]] = {"run": RunGate}


def register_pending(*models: type[PendingAction]) -> None:
    """A kind's pending actions join the union (runtime.kinds.registry calls this)."""
    for model in models:
        for action in model.actions:
            if _PENDING.get(action, model) is not model:
                raise ValueError(
                    f"the pending action '{action}' is already {_PENDING[action].__name__}'s"
                )
            _PENDING[action] = model


def pending_from(data: PendingAction | dict[str, Any] | None) -> PendingAction | None:
    """A stored pending action as its kind's model."""
    if data is None or isinstance(data, PendingAction):
        return data
    model = _PENDING.get(str(data.get("action", "")), OtherPending)
    return model.model_validate(data)


class EvidenceLine(BaseModel):
    label: str
    text: str


class Attachment(BaseModel):
    """An artifact a door attaches as a file (a screenshot, a trace, a published document)."""

    sha256: str
    filename: str
    title: str


class Evidence(BaseModel):
    """What every door shows a reviewer, as the job's kind words it: a door renders this and
    never reads a kind's pending action or result by key."""

    headline: str = Field("", description="what approving does, in one or two sentences")
    lines: list[EvidenceLine] = Field(default_factory=list, description="label: text facts")
    read: list[str] = Field(
        default_factory=list, description="artifacts (sha256) a reviewer reads inline, in order"
    )
    attach: list[Attachment] = Field(default_factory=list, description="files to attach")


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


class ContextItem(BaseModel):
    """Material a door attaches to a request (the Slack thread it was asked in): kept as an
    artifact on the chain, given to the model as untrusted data."""

    name: str = Field(pattern=r"^[\w.\-]{1,80}$", description="e.g. slack-thread.txt")
    source: str = Field(description="where it came from, e.g. slack thread C0123/1712.0001")
    text: str
    facts: dict[str, Any] = Field(default_factory=dict, description="counts, caps, who wrote it")


INPUT_PREFIX = "input/"  # the job's artifacts a door attached as input files
_UNSAFE_NAME = re.compile(r"[^\w.\-]+")


class InputFile(BaseModel):
    """A file a door attaches to a request as an input of the job (a CSV shared in Slack):
    its exact bytes kept as the artifact input/<name> on the chain, handed to the job's kind."""

    name: str = Field(min_length=1, max_length=255, description="as its owner named it")
    source: str = Field(description="where it came from, e.g. slack file F0123 from U0ALICE")
    media_type: str = Field("", description="the type the door was told (Slack's mimetype)")
    content: bytes = Field(repr=False)


def input_name(filename: str, taken: set[str] | None = None) -> str:
    """A file name safe as one path segment in a workspace: letters, digits, `._-`, no leading
    dot, at most 80 characters with its extension kept, and not one of `taken` (a -2 suffix)."""
    stem, dot, ext = filename.rpartition(".") if "." in filename.lstrip(".") else (filename, "", "")
    stem = _UNSAFE_NAME.sub("-", stem).strip("-.") or "input"
    ext = _UNSAFE_NAME.sub("", ext)[:16]
    suffix = f"{dot}{ext}" if ext else ""
    name = stem[: 80 - len(suffix)] + suffix
    n = 2
    while taken is not None and name in taken:
        name = f"{stem[: 80 - len(suffix) - len(str(n)) - 1]}-{n}{suffix}"
        n += 1
    return name


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
    pending_action: SerializeAsAny[PendingAction] | None = None
    phase: Phase | None = Field(None, description="which pass the worker is in (running jobs)")
    approvals: list[ApprovalRequest] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    model: ModelUse = Field(default_factory=ModelUse)
    result: dict[str, Any] = Field(default_factory=dict)
    reply_to: dict[str, Any] | None = Field(
        None, description="where the submitting door wants to hear about the job"
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("pending_action", mode="before")
    @classmethod
    def _pending(cls, value: Any) -> PendingAction | None:
        return pending_from(value)

    @property
    def job_id(self) -> str:
        return format_job_id(self.id)

    @property
    def answers(self) -> list[dict[str, str]]:
        """The requester's answers to the model's questions so far ({question, answer}), which
        the engine keeps and a kind's model loop is given again."""
        return list(self.result.get("answers", []))

    def with_changes(self, **changes: Any) -> JobRecord:
        """A copy with `changes`, validated (a pending action given as a dict becomes its
        kind's model)."""
        if "pending_action" in changes:
            changes["pending_action"] = pending_from(changes["pending_action"])
        return self.model_copy(update=changes)

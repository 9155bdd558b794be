"""The plug-in point for job kinds: the JobKind base class, the context a kind runs in, and the
outcomes it returns.

Shaped like httpx's transport base class: a small class with one method per lifecycle step.
A kind never sees the Engine and never writes a job's state. It gets a JobContext (the job,
its typed target, the grant, the limits, a recorder for events and artifacts, and factories
for a toolbox and a model client) and returns an Outcome; `Engine.apply` alone moves the job.

    class Echo(JobKind):
        job_type = JobType("echo")
        aliases = ("echo",)
        target_section = "repos"
        tools = ("echo",)
        artifact_contract = "echo_text"
        mutating = True

        async def execute(self, ctx):
            ref = ctx.recorder.put("echo.txt", ctx.job.spec.instruction.encode())
            return NeedsApproval(EchoPublish(text=ref.sha256), artifacts=[ref])

        async def resume(self, ctx, approved):
            return Succeeded(reason="echoed", event="publish.echoed")

    registry.register(Echo())
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from runtime.commands import extract_commands
from runtime.errors import AcpError, BadRequest
from runtime.jobs import (
    ArtifactRef,
    Evidence,
    JobRecord,
    JobType,
    PendingAction,
    Phase,
)

if TYPE_CHECKING:
    from runtime.audit import AuditEvent
    from runtime.models import ModelClient
    from runtime.policy import Limits, Policy
    from runtime.settings import Settings
    from runtime.toolbox import Toolbox
    from runtime.tools.base import Tool


# --- outcomes ------------------------------------------------------------------------------


@dataclass
class Ended:
    """A job's end, with a reason a person can act on, the audit event that records it, the
    artifacts the pass left and what joins the job's result (e.g. published_commit)."""

    reason: str
    event: str = "job.ended"
    artifacts: list[ArtifactRef] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Succeeded(Ended):
    """The job is done."""

    event: str = "job.succeeded"


@dataclass
class Failed(Ended):
    """The job ended without publishing anything."""

    event: str = "job.failed"


@dataclass
class NeedsApproval:
    """The job proposes `pending`. Where the policy gates the action, the engine opens a gate
    bound to its hash and the job waits; where it does not, the engine has the kind take it
    straight away (`resume`)."""

    pending: PendingAction
    artifacts: list[ArtifactRef] = field(default_factory=list)
    event_artifacts: tuple[str, ...] = ()
    reason: str | None = None


@dataclass
class NeedsAnswer:
    """The job (its model) asks the requester one question; the answer re-queues it."""

    question: str
    artifacts: list[ArtifactRef] = field(default_factory=list)


Outcome = Succeeded | Failed | NeedsApproval | NeedsAnswer


# --- what a kind is given --------------------------------------------------------------------


class Recorder(Protocol):
    """One job's events and artifacts, on the hash-chained log. A replay's recorder keeps
    nothing on the job's record (`keeps` is False); its artifact reads still work."""

    job_id: int
    actor: str
    keeps: bool

    async def log(
        self, kind: str, data: dict[str, Any] | None = None, artifacts: tuple[str, ...] = ()
    ) -> None: ...

    def put(self, name: str, data: bytes, media_type: str = "text/plain") -> ArtifactRef: ...

    def read(self, sha256: str) -> bytes: ...

    async def events(self) -> list[AuditEvent]: ...


@dataclass
class JobContext:
    """Everything a kind may use for one pass over one job, and nothing that writes its state.

    `remember` keeps the kind's resume state on the job (the engine writes it); `toolbox` and
    `model` build the one tool door and the job's model client over this recorder.
    """

    job: JobRecord
    target: Any  # the kind's typed target from the policy (RepoTarget, DatabaseTarget, ...)
    policy: Policy
    settings: Settings
    recorder: Recorder
    worker_id: str
    phase: Phase
    db: Any  # the runtime's own database, for a kind whose target is the runtime (routines)
    remember_fn: Callable[[dict[str, Any]], Awaitable[JobRecord]]
    toolbox_fn: Callable[..., Toolbox]
    model_fn: Callable[..., ModelClient]
    policy_hash: str = ""  # the version of `policy` this pass acts under

    @property
    def actor(self) -> str:
        return self.recorder.actor

    @property
    def grant(self) -> list[str]:
        return list(self.job.tools_granted)

    @property
    def limits(self) -> Limits:
        return self.policy.limits

    def gated(self, action: str) -> str | None:
        """The approval gate `action` stops at under the job's decision: its own, or a general
        'publish' one; None when it needs no approval."""
        return gated_action(self.job, action)

    async def remember(self, **result: Any) -> JobRecord:
        """Keep `result` on the job (a kind's resume state), written by the engine."""
        self.job = await self.remember_fn(result)
        return self.job

    def toolbox(self, workspace: Any, **options: Any) -> Toolbox:
        return self.toolbox_fn(self, workspace, **options)

    def model(self, **options: Any) -> ModelClient:
        return self.model_fn(self, **options)


class Housekeeping(Protocol):
    """What a kind's sweep may ask of the runtime: a job as it is now, its recorder, and the
    service's settings (where its home is)."""

    settings: Settings

    async def job(self, job_id: int) -> JobRecord: ...

    def recorder(self, job_id: int, actor: str) -> Recorder: ...


def gated_action(job: JobRecord, action: str) -> str | None:
    gated = {gate["action"] for gate in job.decision.get("approvals", [])}
    if action in gated:
        return action
    return "publish" if "publish" in gated else None


# --- the kind --------------------------------------------------------------------------------


class JobKind:
    """One kind of job. Subclass it, set the class attributes, override the steps it has.

    Attributes are what every layer asks the registry for: intake (aliases, keywords, steps),
    the policy (target section, tools, mutating), the engine (artifact contract, spec scopes)
    and the doors (evidence).
    """

    job_type: ClassVar[JobType]
    aliases: ClassVar[tuple[str, ...]] = ()  # words that name it in `<type> <target>: ...`
    keywords: ClassVar[tuple[str, ...]] = ()  # words the free-text classifier counts for it
    target_section: ClassVar[str | None] = None  # the policy's targets.<section> it reads
    target_model: ClassVar[type[BaseModel] | None] = None  # a section the kind adds
    tools: ClassVar[tuple[str, ...]] = ()  # what it may be granted
    artifact_contract: ClassVar[str] = ""
    mutating: ClassVar[bool] = False  # changes something outside the sandbox once published
    requestable: ClassVar[bool] = True  # offered when a request's type is unclear
    pending_models: ClassVar[tuple[type[PendingAction], ...]] = ()
    approved_phase: ClassVar[Phase] = Phase.publish  # what an approval of its action starts
    step_question: ClassVar[str] = "Which command should it run?"
    # How a door words this kind's run events (the door adds its own icons and layout).
    narration: ClassVar[dict[str, str]] = {
        "job.started": "Running in a sandboxed worktree.",
        "approval.invalidated": "The change moved after it was reviewed; it needs a new approval.",
    }
    # What a crash-interrupted pass of this phase becomes: resumed (safe to do again) or failed.
    resumable_phases: ClassVar[frozenset[Phase]] = frozenset()

    # -- intake --------------------------------------------------------------------------

    def steps(self, instruction: str) -> list[str]:
        """Explicit direct-mode steps in `instruction` (by default shell commands: `run `cmd``
        spans or a fenced block); BadRequest when one is malformed."""
        return extract_commands(instruction)

    def answer(self, answer: str, policy: Policy, target: str | None) -> dict[str, Any]:
        """A requester's answer to "which steps?": what it changes of the parsed request."""
        return {"commands": extract_commands(answer) or [answer.strip("`").strip()]}

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        """Whether the job can run without a model (the policy's direct mode)."""
        return bool(steps)

    def check_request(self, instruction: str, target: str | None, policy: Policy) -> None:
        """Refuse, at intake, a request this kind will never run (e.g. a SQL write)."""

    def spec_scopes(self, target: Any) -> dict[str, Any]:
        """The JobSpec's scopes for this target: filesystem, network, browser domains,
        credential references (names, never values)."""
        return {}

    def toolset(self) -> tuple[Tool, ...]:
        """The tools (runtime.tools.base) this kind's jobs call through the Toolbox; the
        policy grants some of them, by their `grant`."""
        return ()

    # -- running ---------------------------------------------------------------------------

    async def execute(self, ctx: JobContext) -> Outcome:
        raise NotImplementedError(f"{self.job_type} jobs do not run")

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        """Take the approved action: publish the change, or the approved live step."""
        raise AcpError(f"{self.job_type} jobs have nothing to publish")

    async def recover(self, ctx: JobContext, phase: Phase, previous_worker: str | None) -> Outcome:
        """After a crash cut a pass short. Phases in `resumable_phases` are resumed by the
        worker (resume is idempotent); the others end here, saying what is and is not known."""
        return Failed(
            reason="interrupted: the service stopped while this job was running its steps "
            f"(worker {previous_worker}); nothing was published. Submit it again to re-run it.",
            event="job.interrupted",
            result={"previous_worker": previous_worker},
        )

    async def discard(self, ctx: JobContext) -> None:
        """Clean up what a cut-short execution left behind (a checkout); never raises."""

    def rollbackable(self, job: JobRecord) -> bool:
        """Whether the job published something `rollback` can undo."""
        return False

    async def rollback(self, ctx: JobContext) -> dict[str, Any]:
        """Undo a published job; what it returns joins the job's result."""
        raise AcpError(f"{self.job_type} jobs have no published change to roll back")

    # -- the worker's housekeeping (kinds that hold live resources, e.g. paused browsers) ----

    def busy(self) -> bool:
        """Whether this process holds live resources of this kind's jobs."""
        return False

    async def sweep(self, house: Housekeeping) -> int:
        """Release resources of jobs that ended meanwhile (rejected, expired, cancelled)."""
        return 0

    async def shutdown(self) -> None:
        """The worker is stopping: release every live resource."""

    # -- showing ---------------------------------------------------------------------------

    def narrate(self, event_kind: str) -> str | None:
        return self.narration.get(event_kind)

    def suggestion(self, target: str) -> tuple[str, str] | None:
        """A prompt a door may offer someone granted this kind on `target`: (its title, the
        request it sends), e.g. ("Top slow queries on db", "sql db: top 10 slowest queries")."""
        return None

    def describe(self, event_kind: str, data: dict[str, Any]) -> tuple[str, str] | None:
        """A (label, text) line a door shows for one of this kind's events in a job's
        timeline (a browser step), or None."""
        return None

    def export_test(self, job: JobRecord, target: Any) -> tuple[str, str]:
        """The job as a test a person can run again: (the script, its default file name)."""
        raise BadRequest(
            f"{job.job_id} is a {job.spec.job_type} job; there is no test to export from it",
            hint="export-test writes a browser job's path as a Playwright test",
        )

    def evidence(self, job: JobRecord) -> Evidence:
        """What every door shows a reviewer of the job's pending action (awaiting approval)."""
        return Evidence()

    def results(self, job: JobRecord) -> Evidence:
        """What every door shows of a job that ended: e.g. the last page and trace of a browser
        job, the documents a doc job published, the result table of a SQL job."""
        return Evidence()

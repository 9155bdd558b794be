"""A job's tools behind one door: each call is authorized against the job's grant, run, recorded.

Every tool of every kind (files, shell, documents, SQL, the browser) is declared once
(runtime.tools.base) and called here, whoever asks: a kind's direct-mode steps or a model.
The caller's word is never the authority. A refusal is an audit event and an exception,
never a silent skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from runtime.errors import SandboxViolation, ToolNotGranted
from runtime.jobs import ArtifactRef, JobRecord
from runtime.tools.base import ToolPaused
from runtime.untrusted import escape_text, has_lone_surrogate

if TYPE_CHECKING:
    from runtime.kinds.base import Recorder
    from runtime.policy import Limits
    from runtime.tools.base import Tool


class ToolUse:
    """What a tool gets for one call: the job, its workspace and limits, and a recorder that
    puts the call on the record as `tool.<name>`."""

    def __init__(self, box: Toolbox, name: str) -> None:
        self.box = box
        self.name = name

    @property
    def job(self) -> JobRecord:
        return self.box.job

    @property
    def workspace(self) -> Any:
        return self.box.workspace

    @property
    def limits(self) -> Limits:
        return self.box.limits

    @property
    def target(self) -> Any:
        return self.box.target

    @property
    def sandbox(self) -> Any:
        """The job's SandboxPlan (runtime.sandbox.plan), or None: no environment, no network."""
        return self.box.sandbox

    def count(self, key: str) -> int:
        """The 1-based index of this call among the job's calls of `key` (command-N.log)."""
        self.box.counts[key] = self.box.counts.get(key, 0) + 1
        return self.box.counts[key]

    def keep(self, name: str, data: bytes, media_type: str = "text/plain") -> ArtifactRef:
        """An artifact the call leaves for review; it joins the job's artifacts."""
        ref = self.box.recorder.put(name, data, media_type)
        self.box.artifacts.append(ref)
        return ref

    async def record(self, data: dict[str, Any], artifacts: tuple[str, ...] = ()) -> None:
        await self.box.recorder.log(f"tool.{self.name}", data, artifacts)


class Toolbox:
    """A job's tools behind one door. Built with the kind's tools (runtime.tools.base.Tool)."""

    def __init__(
        self,
        recorder: Recorder,
        job: JobRecord,
        workspace: Any,
        limits: Limits,
        tools: Iterable[Tool],
        *,
        target: Any = None,
        sandbox: Any = None,
    ) -> None:
        # A replay's recorder keeps nothing: the same checks run, the job's record is left alone.
        self.recorder = recorder
        self.record = recorder.keeps
        self.job = job
        self.workspace = workspace
        self.tree = workspace  # a code or doc job's worktree
        self.limits = limits
        self.target = target
        self.sandbox = sandbox
        self.actor = recorder.actor
        self.tools = {t.name: t for t in tools}
        self.by_model = {t.model_name: t for t in self.tools.values() if t.model_name}
        self.artifacts: list[ArtifactRef] = []
        self.counts: dict[str, int] = {}

    def schemas(self) -> list[dict[str, Any]]:
        """The tools a model may call, as it is told of them."""
        return [t.schema() for t in self.by_model.values()]

    def offers(self, model_name: str) -> Tool | None:
        return self.by_model.get(model_name)

    async def call(self, tool: str, /, **arguments: Any) -> Any:
        """Run `tool` if the job's grant allows it; record the call, the refusal or the error."""
        guarded = False  # the tool runs, and its own guard records what it refuses
        try:
            declared = self._authorize(tool)
            _refuse_unencodable(arguments)
            guarded = declared.records_refusals
            return await declared.run(ToolUse(self, tool), **arguments)
        except ToolPaused:
            raise  # not a failure: the call waits for a person (runtime.tools.base)
        except SandboxViolation as refusal:
            if not guarded:
                await self.record_refusal(tool, arguments, refusal.message)
            raise
        except Exception as error:  # the attempt stays on the record, whatever went wrong
            if self.record:
                await self.recorder.log(
                    "tool.failed",
                    {"tool": tool, "arguments": _brief(arguments), "error": _error_text(error)},
                )
            raise

    async def record_refusal(self, tool: str, arguments: Any, reason: str) -> None:
        """A refused call on the record; also for a call the caller could not even parse."""
        if not self.record:
            return
        await self.recorder.log(
            "tool.refused",
            {"tool": tool, "arguments": _brief(arguments), "reason": reason},
        )

    def _authorize(self, tool: str) -> Tool:
        declared = self.tools.get(tool)
        if declared is None:
            raise ToolNotGranted(f"there is no tool named {escape_text(tool)!r}")
        if declared.grant not in self.job.tools_granted:
            granted = ", ".join(self.job.tools_granted) or "none"
            raise ToolNotGranted(
                f"{self.job.job_id} may not use '{tool}'; its grant allows: {granted}"
            )
        return declared


def _brief(arguments: Any) -> Any:
    """What a refusal records of the arguments: enough to see the attempt, not a whole file.
    The audit log escapes what UTF-8 cannot carry (runtime.audit.canonical_json)."""
    if isinstance(arguments, str):
        return arguments[:200]
    if not isinstance(arguments, dict):
        return arguments
    return {k: (v[:200] if isinstance(v, str) else v) for k, v in arguments.items()}


def _refuse_unencodable(arguments: dict[str, Any]) -> None:
    """A lone surrogate in an argument cannot be a real path, command or file content: refuse
    the call here, once for every tool, rather than fail somewhere in an encoder."""
    for name, value in arguments.items():
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, list | tuple):
            texts = [v for v in value if isinstance(v, str)]
        elif isinstance(value, dict):
            texts = [str(part) for item in value.items() for part in item]
        if any(has_lone_surrogate(text) for text in [name, *texts]):
            raise SandboxViolation(
                f"refused: the argument {escape_text(name)!r} is not valid text "
                "(it has a lone surrogate, which UTF-8 cannot carry)",
                hint="send paths, commands and content as valid Unicode text",
            )


def _error_text(error: Exception) -> str:
    return escape_text(getattr(error, "message", None) or str(error) or type(error).__name__)

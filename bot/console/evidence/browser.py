"""A browser job's evidence: each step's screenshot as a gallery, the pending action's
screenshot (its element outlined by the kind when it paused) framed as what is being approved,
with the requests it would send, and the traces to download with the `playwright show-trace`
line that opens them.

The steps are the chain's `browser.step` events (their artifact is the screenshot taken after
the step); a screenshot no longer in the job's artifacts is a note, not a broken image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from bot.console.evidence.artifacts import SHA256, by_sha
from bot.console.evidence.templates import render
from runtime.audit import AuditEvent
from runtime.jobs import ArtifactRef, JobRecord

IMAGES = ("image/png", "image/jpeg")


@dataclass
class Step:
    index: int
    action: str
    target: str
    url: str
    ok: bool
    detail: str
    shot: ArtifactRef | None


@dataclass
class Pending:
    description: str
    step: str
    url: str
    shot: ArtifactRef | None
    trace: ArtifactRef | None
    requests: list[dict[str, Any]] = field(default_factory=list)


def steps_of(job: JobRecord, events: list[AuditEvent]) -> list[Step]:
    artifacts = by_sha(job)
    out: list[Step] = []
    for event in events:
        if event.kind != "browser.step":
            continue
        data = event.data
        shot = next(
            (artifacts[s] for s in event.artifacts if s in artifacts
             and artifacts[s].media_type in IMAGES),
            None,
        )  # fmt: skip
        out.append(
            Step(
                index=int(data.get("index") or len(out) + 1),
                action=str(data.get("action") or ""),
                target=str(data.get("target") or ""),
                url=str(data.get("url") or ""),
                ok=bool(data.get("ok")),
                detail=str(data.get("detail") or ""),
                shot=shot,
            )
        )
    return out


def pending_of(job: JobRecord) -> Pending | None:
    action = job.pending_action
    if action is None or getattr(action, "action", None) != "mutate":
        return None
    artifacts = by_sha(job)
    shot_sha = str(getattr(action, "screenshot_sha256", "") or "")
    trace_sha = str(getattr(action, "trace_sha256", "") or "")
    binding = getattr(action, "binding", None) or {}
    requests = [r for r in binding.get("requests") or [] if isinstance(r, dict)]
    return Pending(
        description=str(getattr(action, "description", "") or ""),
        step=str(getattr(action, "step", "") or ""),
        url=str(getattr(action, "url", "") or ""),
        shot=artifacts.get(shot_sha) if SHA256.match(shot_sha) else None,
        trace=artifacts.get(trace_sha) if SHA256.match(trace_sha) else None,
        requests=requests,
    )


def traces_of(job: JobRecord) -> list[ArtifactRef]:
    return [
        a for a in job.artifacts if a.media_type == "application/zip" or a.name.endswith(".zip")
    ]


def render_browser(job: JobRecord, events: list[AuditEvent]) -> Markup:
    steps = steps_of(job, events)
    pending = pending_of(job)
    traces = traces_of(job)
    if not steps and pending is None and not traces:
        return Markup()
    return render("_browser.html", steps=steps, pending=pending, traces=traces, job=job)

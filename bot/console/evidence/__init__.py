"""A job's evidence as its reviewer reads it, for the console's job page.

`render_evidence` puts together the kind's part (a code or doc job's documents and diff, a
browser job's steps and pending action, a SQL job's results and plans) and the record every
job has (model calls, decision, approvals, artifacts, timeline). Each part is built on its
own: one that cannot be read (a corrupt artifact, a record from an older version) becomes a
note in its place, never a broken page. Everything shown was escaped by an autoescaping
template or by this package before it became Markup: job material is untrusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from markupsafe import Markup

from bot.console.evidence import diff
from bot.console.evidence.artifacts import ArtifactReader, Note, by_sha, read_ref
from bot.console.evidence.browser import render_browser
from bot.console.evidence.document import render_documents
from bot.console.evidence.pictures import render_pictures
from bot.console.evidence.record import render_record
from bot.console.evidence.sql import render_sql
from bot.console.evidence.templates import render
from runtime.audit import AuditEvent
from runtime.jobs import ArtifactRef, JobRecord

log = logging.getLogger(__name__)

PATCH_TYPES = ("text/x-diff", "text/x-patch")
OUTPUT_BYTES = 64_000  # a text artifact up to this is shown inline under Outputs
SHOWN_ELSEWHERE = ("document-diff.txt", "preview.txt", "result.txt")


def patches_of(job: JobRecord) -> list[ArtifactRef]:
    """The patch the pending change is bound to, else the latest of each patch's name."""
    artifacts = by_sha(job)
    pending = getattr(job.pending_action, "diff_sha256", None)
    if pending and pending in artifacts:
        return [artifacts[pending]]
    latest: dict[str, ArtifactRef] = {}
    for ref in job.artifacts:
        if ref.media_type in PATCH_TYPES or ref.name.endswith((".patch", ".diff")):
            latest[ref.name] = ref
    return list(latest.values())


def render_change(job: JobRecord, store: ArtifactReader, view: str) -> Markup:
    documents, linked = render_documents(job, store, view)
    parts = [documents]
    for ref in patches_of(job):
        text = read_ref(store, ref)
        if isinstance(text, Note):
            parts.append(render("_note.html", note=text))
            continue
        parts.append(
            diff.render_patch(text, sha256=ref.sha256, name=ref.name, view=view, linked=linked)
        )
    if not any(parts):
        return Markup()
    return render("_change.html", parts=parts)


def render_outputs(job: JobRecord, store: ArtifactReader) -> Markup:
    """Small text artifacts nothing else shows (command logs, a policy's simulation)."""
    shown: list[tuple[ArtifactRef, str | Note]] = []
    patches = {ref.sha256 for ref in patches_of(job)}
    for ref in job.artifacts:
        if (ref.media_type != "text/plain" or ref.size > OUTPUT_BYTES or ref.sha256 in patches
                or ref.name in SHOWN_ELSEWHERE):  # fmt: skip
            continue
        shown.append((ref, read_ref(store, ref)))
    if not shown:
        return Markup()
    return render("_outputs.html", outputs=shown, is_note=lambda x: isinstance(x, Note))


def _part(name: str, build: Callable[[], Markup], job: JobRecord) -> Markup:
    try:
        return build()
    except Exception as error:  # a part that cannot be shown says so; the page still renders
        log.exception("evidence part %s of %s", name, job.job_id)
        note = Note(f"The {name} could not be shown ({type(error).__name__}: {str(error)[:200]})")
        return render("_note.html", note=note)


def render_evidence(
    job: JobRecord, events: list[AuditEvent], store: ArtifactReader, view: str = "unified"
) -> Markup:
    """The job's evidence: its kind's part, then its record; `view` is "unified" or "split"."""
    view = view if view in diff.VIEWS else "unified"
    parts = [
        _part("browser steps", lambda: render_browser(job, events), job),
        _part("SQL results", lambda: render_sql(job, events, store), job),
        _part("pictures", lambda: render_pictures(job), job),
        _part("change", lambda: render_change(job, store, view), job),
        _part("outputs", lambda: render_outputs(job, store), job),
        _part("record", lambda: render_record(job, events), job),
    ]
    return Markup("\n").join(p for p in parts if p)


__all__ = ["render_evidence"]

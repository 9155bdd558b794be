"""A doc job's pictures on its page: each changed sheet's region and each changed Word page,
before and after side by side, drawn by the doc kind (runtime.kinds.doc.picture), and the
notes on what could not be pictured ("not rendered (LibreOffice is not installed)").

Images are served by the console's /artifacts route; a picture no longer among the job's
artifacts is a note. It must never put a caption on the page unescaped: captions hold sheet
names a model chose.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from bot.console.evidence.artifacts import SHA256, by_sha
from bot.console.evidence.templates import render
from runtime.jobs import JobRecord, JobType
from runtime.kinds.code.pending import CodeChange


@dataclass(frozen=True)
class Shown:
    name: str
    sha256: str
    caption: str
    side: str  # "before", "after" or ""
    present: bool


def pictures_of(job: JobRecord) -> tuple[list[Shown], list[str]]:
    """The pictures the pending change names (else the job's PNG artifacts, for a job that
    keeps no pending change), and the notes on what was not pictured."""
    if job.spec.job_type is not JobType.doc:
        return [], []
    artifacts = by_sha(job)
    pending = job.pending_action
    if isinstance(pending, CodeChange) and (pending.pictures or pending.picture_notes):
        named = [(p.name, p.sha256, p.caption) for p in pending.pictures]
        notes = list(pending.picture_notes)
    else:
        named = [(a.name, a.sha256, a.name) for a in job.artifacts if a.media_type == "image/png"]
        notes = []
    shown = [
        Shown(name, sha, caption, _side(name), sha in artifacts and bool(SHA256.match(sha)))
        for name, sha, caption in named
    ]
    return shown, notes


@dataclass(frozen=True)
class Pair:
    """One sheet's or page's pictures, before beside after (None: that side has none, as
    for a new sheet)."""

    before: Shown | None
    after: Shown | None
    page: Shown | None = None  # a picture with no side


def pairs(pictures: list[Shown]) -> list[Pair]:
    out: list[Pair] = []
    for picture in pictures:
        key = _key(picture)
        last = out[-1] if out else None
        if (picture.side == "after" and last is not None and last.before is not None
                and last.after is None and _key(last.before) == key):  # fmt: skip
            out[-1] = Pair(last.before, picture)
        elif picture.side == "before":
            out.append(Pair(picture, None))
        elif picture.side == "after":
            out.append(Pair(None, picture))
        else:
            out.append(Pair(None, None, picture))
    return out


def render_pictures(job: JobRecord) -> Markup:
    pictures, notes = pictures_of(job)
    if not pictures and not notes:
        return Markup()
    return render("_pictures.html", pairs=pairs(pictures), notes=notes)


def _key(picture: Shown) -> str:
    return picture.name.removesuffix(".png").removesuffix(f"-{picture.side}")


def _side(name: str) -> str:
    stem = name.removesuffix(".png")
    return next((side for side in ("before", "after") if stem.endswith(f"-{side}")), "")

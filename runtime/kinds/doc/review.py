"""A doc job's review: every document the change touched, as a format-aware diff and a preview.

A text diff for Markdown and CSV, a cell diff for workbooks, a paragraph and table diff for
Word documents (runtime.kinds.doc.diff), after the job's inputs (the files attached to its
request, inputs.py). A document that is not what its extension says, is corrupt or is over the
size limit cannot be reviewed: DocumentError, and nothing is published. Changed workbooks and
Word documents are also pictured before and after, their changes highlighted (picture/); a
picture that cannot be made is a note in the review, never a failure.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from runtime.doc_formats import MEDIA_TYPES, DocumentError, format_of, size_text
from runtime.jobs import ArtifactRef
from runtime.sandbox import worktree as wt
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.kinds.base import Recorder


@dataclass
class ChangeReview:
    """What a reviewer gets for a doc job: the rendered diffs, previews and the documents."""

    text: str = ""
    preview: str = ""
    summaries: list[str] = field(default_factory=list)
    documents: list[ArtifactRef] = field(default_factory=list)
    pictures: list[tuple[ArtifactRef, str]] = field(default_factory=list)  # with a caption
    # Every document's structured diff, uncapped (the text above stops at its line limit).
    whole: list[dict[str, Any]] = field(default_factory=list)
    picture_notes: list[str] = field(default_factory=list)


async def review_change(
    recorder: Recorder,
    limit: int,
    repo: Path,
    base_commit: str,
    head_commit: str,
    *,
    keep: bool = True,
    inputs: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> ChangeReview:
    """Review every document base..head changed; DocumentError for one that cannot be read.
    With keep=False (a replay) the documents themselves are not stored as artifacts, and
    nothing is pictured. The job's `inputs` (input.attached data) come first: what each was
    read as, and its hash."""
    from runtime.kinds.doc import diff as doc_diff
    from runtime.kinds.doc.inputs import review_section, summaries

    out = ChangeReview(summaries=summaries(inputs))
    texts = [review_section(inputs).rstrip()] if inputs else []
    previews = []
    drawn = []
    for status, path in await wt.changed_files(repo, base_commit, head_commit):
        kind = format_of(path)
        if kind is None:
            continue
        old = None if status == "A" else await _blob(repo, base_commit, path, limit)
        new = None if status == "D" else await _blob(repo, head_commit, path, limit)
        review = await asyncio.to_thread(doc_diff.review, path, old, new, limit)
        if review is None:
            continue
        out.summaries.append(f"{path}: {review.summary}")
        texts.append(review.diff_text.rstrip())
        if keep:
            out.whole.append(review.model_dump(mode="json", exclude={"diff_text", "preview"}))
        if review.preview:
            previews.append(f"{path}\n{review.preview.rstrip()}")
        if new is not None and keep:
            out.documents.append(recorder.put(PurePosixPath(path).name, new, MEDIA_TYPES[kind]))
        if keep and review.diff is not None and review.status != "unchanged":
            drawn.append((review, old, new))
    if drawn:
        await _picture(recorder, drawn, out)
    out.text = redact("\n\n".join(texts) + "\n") if texts else ""
    out.preview = redact("\n\n".join(previews) + "\n") if previews else ""
    return out


async def _picture(recorder: Recorder, drawn: list, out: ChangeReview) -> None:
    from runtime.kinds.doc.picture import render_pictures

    pictures = await render_pictures(drawn)
    for picture in pictures.pictures:
        ref = recorder.put(picture.name, picture.png, "image/png")
        out.pictures.append((ref, redact(picture.caption)))
    out.picture_notes = [redact(note) for note in pictures.notes]


async def _blob(repo: Path, commit: str, path: str, limit: int) -> bytes | None:
    try:
        return await wt.read_blob(repo, commit, path, limit)
    except ValueError as size:
        raise DocumentError(
            f"{path} is {size_text(int(size.args[0]))}; documents over {size_text(limit)} "
            "are not reviewed or published"
        ) from None


async def document_artifacts(
    recorder: Recorder, review: ChangeReview, artifacts: list[ArtifactRef]
) -> dict[str, Any]:
    """The document diff, the preview and the documents themselves, on the chain; what the
    pending change carries of them."""
    refs = []
    if review.text:
        refs.append(recorder.put("document-diff.txt", review.text.encode()))
    if review.preview:
        refs.append(recorder.put("preview.txt", review.preview.encode()))
    if review.whole:
        whole = json.dumps({"documents": review.whole}, ensure_ascii=False, indent=1)
        refs.append(recorder.put("document-diff.json", redact(whole).encode(), "application/json"))
    refs.extend(review.documents)
    refs.extend(ref for ref, _ in review.pictures)
    artifacts.extend(refs)
    await recorder.log(
        "artifact.created",
        {"name": "document-diff.txt", "documents": review.summaries,
         "pictures": [ref.name for ref, _ in review.pictures],
         "picture_notes": review.picture_notes},
        artifacts=tuple(r.sha256 for r in refs),
    )  # fmt: skip
    return {
        "document_diff_sha256": refs[0].sha256 if review.text else None,
        "preview_sha256": next((r.sha256 for r in refs if r.name == "preview.txt"), None),
        "documents": review.summaries,
        "document_sha256": {d.name: d.sha256 for d in review.documents},
        "pictures": [
            {"name": ref.name, "sha256": ref.sha256, "caption": caption}
            for ref, caption in review.pictures
        ],
        "picture_notes": review.picture_notes,
    }

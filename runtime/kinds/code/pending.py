"""What a code or doc job's approval is bound to: the exact commits it will merge or push."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.jobs import PendingAction


class PictureRef(BaseModel):
    """A picture of a doc job's change (runtime.kinds.doc.picture): a PNG artifact, its file
    name and what it shows."""

    model_config = ConfigDict(frozen=True)

    name: str
    sha256: str
    caption: str


class CodeChange(PendingAction):
    actions: ClassVar[tuple[str, ...]] = ("merge", "push", "pull_request")
    action: Literal["merge", "push", "pull_request"]
    repo: str
    base_branch: str
    job_branch: str
    base_commit: str
    head_commit: str
    diff_sha256: str
    stat: dict[str, Any] = Field(default_factory=dict)
    # A doc job's documents, reviewed as document diffs (runtime.kinds.doc.review).
    document_diff_sha256: str | None = None
    preview_sha256: str | None = None
    documents: list[str] = Field(default_factory=list)
    document_sha256: dict[str, str] = Field(default_factory=dict)
    # Their pictures, before and after, and what could not be pictured and why.
    pictures: list[PictureRef] = Field(default_factory=list)
    picture_notes: list[str] = Field(default_factory=list)

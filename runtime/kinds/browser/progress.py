"""Where a browser job is, kept on the job between passes (its result's "browser" key): the
steps taken, the URL each one landed on, the step that paused, and what a resume needs.

The stored keys are the ones a job has always had, so a job paused before an upgrade resumes
after it, and `acp export-test` reads any of them: only the fields a pass set are kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runtime.jobs import JobRecord


class BrowserProgress(BaseModel):
    step: int | None = Field(None, description="index of the direct-mode step that paused")
    pending_step: str | None = Field(None, description="the step line the approval is for")
    done: list[str] = Field(default_factory=list, description="step lines taken, in order")
    landed: list[str] = Field(default_factory=list, description="the URL after each one")
    mutations: int = Field(0, description="approved mutations sent")
    segment: int = Field(1, description="the next trace part's number")
    call_id: str | None = Field(None, description="model mode: the tool call that paused")
    before_step: bool = Field(
        False, description="the page's own request paused before the step; the step is to come"
    )
    transcript_sha256: str | None = Field(None, description="model mode: the conversation")

    @classmethod
    def of(cls, job: JobRecord) -> BrowserProgress:
        return cls.model_validate(job.result.get("browser") or {})

    def stored(self) -> dict[str, Any]:
        """What `remember` keeps: the fields that were set, as the old dict had them."""
        return self.model_dump(mode="json", exclude_unset=True)

"""What the session holds back for approval: a mutating click not yet clicked, or non-GET
requests the page tried to send, held unsent; and the errors that say so.

HeldAction is the page-level action (bound to the page's fingerprint and the held requests);
a browser job's approval is bound to its binding() (runtime.kinds.browser.pending).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from runtime.errors import AcpError


class HeldRequest(BaseModel):
    """A non-GET request the page is about to send, held at the network layer."""

    method: str
    url: str
    body_sha256: str
    body_bytes: int
    resource_type: str


class HeldAction(BaseModel):
    """An action held back for approval, bound to the page as it was.

    kind "click": a control whose role, text or form means a mutation, not yet clicked.
    kind "request": non-GET requests the page already tried to send, held unsent.
    """

    kind: Literal["click", "request"] = "click"
    index: int
    action: str
    selector: str
    description: str
    url: str
    screenshot: bytes = Field(exclude=True, repr=False)
    page_fingerprint: str
    requests: list[HeldRequest] = Field(default_factory=list)
    # The session's own keys of the held requests above, one each, in order: an approval
    # releases exactly those entries, once. Not part of the binding (they name this
    # session's entries, not what the reviewer saw).
    held_keys: list[int] = Field(default_factory=list, exclude=True, repr=False)

    def binding(self) -> dict[str, Any]:
        """What an approval of this action is bound to (JSON-safe, no screenshot bytes)."""
        return self.model_dump(mode="json")


class MutationPending(AcpError):
    """Raised instead of clicking a control that would mutate; carries the HeldAction."""

    def __init__(self, pending: HeldAction, *, before_step: bool = False) -> None:
        super().__init__(
            f"approval needed: {pending.description}",
            hint="approve to perform this action; reject and nothing is sent",
        )
        self.pending = pending
        # The page sent it on its own before the step could act: the step is still to take.
        self.before_step = before_step


class PageChanged(AcpError):
    """Raised by perform_pending when the page is no longer the one that was approved."""

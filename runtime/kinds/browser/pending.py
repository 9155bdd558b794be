"""What a browser job's approval is bound to: the one action the paused page is about to take.

`binding` is the session's HeldAction as it was when the job paused (the page's fingerprint,
or the held requests' methods, URLs and body hashes): an approval applies only to a page that
is still exactly that one. The screenshot and the trace so far are the reviewer's evidence.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from runtime.jobs import PendingAction


class BrowserMutation(PendingAction):
    actions: ClassVar[tuple[str, ...]] = ("mutate",)
    action: Literal["mutate"] = "mutate"
    site: str | None
    kind: Literal["click", "request"]
    description: str
    step: str  # the step line that paused ("wait 0": what the page sends on its own)
    url: str
    screenshot_sha256: str
    trace_sha256: str
    binding: dict[str, Any]

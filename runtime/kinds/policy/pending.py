"""What a policy job's approval is bound to: exactly these files, replacing exactly the policy
that was in force when they were reviewed."""

from __future__ import annotations

from typing import ClassVar, Literal

from runtime.jobs import PendingAction


class PolicyApply(PendingAction):
    actions: ClassVar[tuple[str, ...]] = ("apply",)
    action: Literal["apply"] = "apply"
    policy_hash: str  # the proposed files' bundle (its sha256 is the new policy's hash)
    replaces: str  # the policy in force when it was proposed; applying needs it still in force
    files: list[str]

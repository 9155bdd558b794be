"""Who is acting: a person from the policy, and the door and identity they came through."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.policy import Door


@dataclass(frozen=True)
class Actor:
    """A person from the policy, and the door and identity they came through."""

    person: str
    door: Door
    identity: str

    @property
    def label(self) -> str:
        return f"{self.person} ({self.door}:{self.identity})"

"""What a routine job's approval is bound to: the routine it creates, or the change to one."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.jobs import PendingAction


class RoutineProposal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str
    schedule: dict[str, Any]
    request: str
    reply_to: dict[str, Any] | None = None


class RoutineCreate(PendingAction):
    actions: ClassVar[tuple[str, ...]] = ("create",)
    action: Literal["create"] = "create"
    routine: RoutineProposal


class RoutineChange(PendingAction):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    actions: ClassVar[tuple[str, ...]] = ("change", "delete")
    action: Literal["change", "delete"]
    routine_id: int
    request: str
    from_: dict[str, Any] = Field(alias="from")
    to: dict[str, Any] | None = None

"""The plan tree the console draws: runtime.kinds.sql.plan reads it (the same reading `acp
show` and Slack print as text), so every door marks the same costliest node."""

from __future__ import annotations

from runtime.kinds.sql.plan import MAX_NODES, Node, Plan, read_plan

__all__ = ["MAX_NODES", "Node", "Plan", "read_plan"]

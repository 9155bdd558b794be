"""What every job's page shows beneath its kind's evidence, from the record: the model calls
(tokens, cost, latency), the policy's decision (effect, reasons, rule ids, the policy hash),
the approvals (who decided, how they were authenticated, when), the artifacts, and the event
timeline with each event's hash and the hash it chains to.

"How authenticated" is the actor of the chain's approval event: the door writes there how it
knew the person (`bob via console oidc https://idp (sub 123)`, `bob via slack U123 (signed
request)`), so the page shows what the record proves, not what the console believes now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from bot.console.evidence.templates import render
from runtime.audit import AuditEvent
from runtime.jobs import ApprovalRequest, JobRecord

DECIDED = {"approval.granted": "approved", "approval.rejected": "rejected"}
SUMMARY_KEYS = (
    "to", "reason", "command", "exit_code", "action", "target", "statement", "name", "model",
    "decision", "error", "published_commit", "branch", "commit", "detail",
)  # fmt: skip
MAX_EVENTS = 2_000  # a job with more shows its latest ones, saying so


@dataclass
class Approval:
    gate: ApprovalRequest
    actor: str  # the decider as the chain records them, with how they were authenticated
    seq: int | None
    event_hash: str


@dataclass
class Row:
    event: AuditEvent
    summary: list[tuple[str, str]]


def approvals_of(job: JobRecord, events: list[AuditEvent]) -> list[Approval]:
    decided = [e for e in events if e.kind in DECIDED]
    out: list[Approval] = []
    for gate in job.approvals:
        event = next(
            (e for e in decided if e.data.get("action_hash") == gate.action_hash
             and DECIDED[e.kind] == gate.decision),
            None,
        )  # fmt: skip
        out.append(
            Approval(
                gate=gate,
                actor=event.actor if event else (gate.decided_by or ""),
                seq=event.seq if event else None,
                event_hash=event.hash if event else "",
            )
        )
    return out


def _short(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def rows_of(events: list[AuditEvent]) -> list[Row]:
    return [
        Row(event, [(k, _short(event.data[k])) for k in SUMMARY_KEYS
                    if event.data.get(k) not in (None, "", [], {})][:4])
        for event in events[-MAX_EVENTS:]
    ]  # fmt: skip


def model_calls_of(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.kind in ("model.call", "model.fallback")]


def render_record(job: JobRecord, events: list[AuditEvent]) -> Markup:
    return render(
        "_record.html",
        job=job,
        decision=job.decision,
        calls=model_calls_of(events),
        approvals=approvals_of(job, events),
        rows=rows_of(events),
        hidden=max(0, len(events) - MAX_EVENTS),
    )

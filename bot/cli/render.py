"""How the `acp` command shows things: a job as text (render_job), a job's line in a list
(job_line), and JSON. Pure formatting over records the engine returned; never changes state.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.jobs import JobRecord


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def render_job(engine: Engine, job: JobRecord, *, with_diff: bool = True) -> str:
    from runtime.jobs import TERMINAL_STATES

    spec = job.spec
    decision = job.decision
    lines = [
        f"{job.job_id}  {job.state.value}",
        f"  type/target : {spec.job_type.value} {spec.target or '(none)'}",
        f"  requester   : {spec.requester} via {spec.origin.value}",
        f"  prompt      : {job.prompt if len(job.prompt) < 300 else job.prompt[:300] + '…'}",
        f"  decision    : {decision.get('effect')} — " + "; ".join(decision.get("reasons", [])),
        f"  rules       : {', '.join(decision.get('rule_ids', [])) or '-'}",
        f"  policy hash : {job.policy_hash[:16]}",
        f"  tools       : {', '.join(job.tools_granted) or '-'}",
        f"  model       : {job.model.model} (rule {job.model.route_rule or '-'}), "
        f"{job.model.calls} calls, ${job.model.cost_usd:.4f}",
    ]
    if spec.approval_required_for and job.state not in TERMINAL_STATES:
        # What the job will stop at; once it has ended, its approvals below say what happened.
        lines.append(f"  approval for: {', '.join(spec.approval_required_for)}")
    if job.clarification and job.state.value == "needs_clarification":
        lines.append(f"  question    : {job.clarification.question}")
        if job.clarification.options:
            lines.append(f"  options     : {', '.join(job.clarification.options)}")
        lines.append(f"  answer with : acp answer {job.job_id} '<answer>'")
    for gate in job.approvals:
        status = gate.decision or "pending"
        who = f" by {gate.decided_by}" if gate.decided_by else ""
        when = f" at {gate.decided_at:%Y-%m-%d %H:%M:%S} UTC" if gate.decided_at else ""
        expires = (
            f", expires {gate.expires_at:%Y-%m-%d %H:%M} UTC"
            if gate.expires_at and not gate.decision
            else ""
        )
        lines.append(
            f"  approval    : {gate.action} {status}{who}{when} (rule {gate.rule_id}; "
            f"approvers: {', '.join(gate.approvers) or '-'}; change {gate.action_hash[:12]}"
            f"{expires})"
        )
    pending = job.pending_action or {}
    if job.state.value == "awaiting_approval" and pending.get("action") == "mutate":
        lines.append(f"  pending     : {pending['description']}")
        lines.append(f"  at step     : {pending['step']}")
        lines.append(
            f"  evidence    : screenshot {pending['screenshot_sha256'][:12]} (element outlined), "
            f"trace {pending['trace_sha256'][:12]}; save with "
            f"`acp artifact {job.job_id} <name> -o <file>`"
        )
    if job.state.value == "awaiting_approval":
        lines.append(f"  approve with: acp approve {job.job_id} --as <approver>")
    if job.result.get("reason"):
        lines.append(f"  result      : {job.result['reason']}")
    for ref in job.artifacts:
        lines.append(f"  artifact    : {ref.name} ({ref.size} bytes, sha256 {ref.sha256[:12]})")
    diff = next((a for a in reversed(job.artifacts) if a.name == "diff.patch"), None)
    documents = [a for a in review_artifacts(job) if a is not None]
    if pending.get("documents"):
        for line in pending["documents"]:
            lines.append(f"  document    : {line}")
    if with_diff and documents:
        for ref in documents:
            lines.append("")
            lines.append(engine.artifacts.read(ref.sha256).decode(errors="replace").rstrip())
    elif with_diff and diff:
        stat = (job.pending_action or {}).get("stat") or {}
        if stat:
            lines.append(
                f"  diff        : {stat.get('files_changed', 0)} file(s), "
                f"+{stat.get('insertions', 0)} -{stat.get('deletions', 0)}"
            )
        lines.append("")
        lines.append(engine.artifacts.read(diff.sha256).decode(errors="replace").rstrip())
    return "\n".join(lines)


def review_artifacts(job: JobRecord) -> list[Any]:
    """A doc job's review: its document diff and preview (the git patch of a binary is not)."""
    named = {a.name: a for a in job.artifacts}
    return [named.get("document-diff.txt"), named.get("preview.txt")]


def job_line(job: JobRecord) -> str:
    spec = job.spec
    return (
        f"{job.job_id:<6} {job.state.value:<19} {spec.job_type.value:<7} "
        f"{(spec.target or '-'):<18} {spec.requester:<10} {job.created_at:%Y-%m-%d %H:%M}  "
        f"{spec.instruction[:50]}"
    )


def print_job(engine: Engine, job: JobRecord, args: argparse.Namespace) -> int:
    if args.json:
        print_json(job.model_dump(mode="json"))
    else:
        print(render_job(engine, job))
    return 0

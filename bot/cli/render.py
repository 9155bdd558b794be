"""How the `acp` command shows things: a job as text (render_job), a job's line in a list
(job_line), and JSON. Pure formatting over records the service returned; never changes state.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient
    from runtime.jobs import JobRecord


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def render_job(client: ServiceClient, job: JobRecord, *, with_diff: bool = True) -> str:
    from runtime.jobs import TERMINAL_STATES
    from runtime.kinds import registry

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
        f"  network     : {', '.join(decision.get('network_granted') or []) or 'none'}",
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
    if job.state.value == "rolled_back" and job.result.get("revert_commit"):
        on = f" on {job.result['reverted_on']}" if job.result.get("reverted_on") else ""
        lines.append(f"  rolled back : revert {job.result['revert_commit'][:12]}{on}")
    kind = registry.kind_for(job.spec.job_type)
    waiting = job.state.value == "awaiting_approval"
    shown = kind.evidence(job) if waiting else kind.results(job)
    for line in shown.lines:  # a multi-line fact (a statement) stays under its label
        lines.append(f"  {line.label:<12}: " + line.text.replace("\n", "\n" + " " * 16))
    if shown.attach:
        names = ", ".join(f"{a.filename} ({a.sha256[:12]})" for a in shown.attach)
        lines.append(
            f"  files       : {names}; save with `acp artifact {job.job_id} <name> -o <file>`"
        )
    if waiting:
        lines.append(f"  approve with: acp approve {job.job_id} --as <approver>")
    if job.result.get("reason"):
        lines.append(f"  result      : {job.result['reason']}")
    for ref in job.artifacts:
        lines.append(f"  artifact    : {ref.name} ({ref.size} bytes, sha256 {ref.sha256[:12]})")
    if with_diff:
        for digest in shown.read:
            lines.append("")
            lines.append(client.artifacts.read(digest).decode(errors="replace").rstrip())
    return "\n".join(lines)


def review_text(client: ServiceClient, job: JobRecord) -> list[str]:
    """What a reviewer reads of a job, as its kind says: a diff, a document diff and preview,
    a result table."""
    from runtime.kinds import registry

    kind = registry.kind_for(job.spec.job_type)
    shown = kind.evidence(job) if job.state.value == "awaiting_approval" else kind.results(job)
    return [client.artifacts.read(d).decode(errors="replace").rstrip() for d in shown.read]


def job_line(job: JobRecord) -> str:
    spec = job.spec
    return (
        f"{job.job_id:<6} {job.state.value:<19} {spec.job_type.value:<7} "
        f"{(spec.target or '-'):<18} {spec.requester:<10} {job.created_at:%Y-%m-%d %H:%M}  "
        f"{spec.instruction[:50]}"
    )


def print_job(client: ServiceClient, job: JobRecord, args: argparse.Namespace) -> int:
    if args.json:
        print_json(job.model_dump(mode="json"))
    else:
        print(render_job(client, job))
    return 0

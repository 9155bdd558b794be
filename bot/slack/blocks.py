"""Block Kit rendering for the Slack door: pure functions from job records and events to blocks.

Nothing here calls Slack or the engine. Slack's limits are respected (3,000 characters a text
block); anything longer goes to a file, which the deliverer uploads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from runtime.audit import AuditEvent
from runtime.jobs import JobRecord
from runtime.untrusted import escape_text

TEXT_LIMIT = 2_800
EXAMPLE = '/agent code demo: run `sed -i "s/teh/the/" README.md`'

STATE_LABEL = {
    "received": ":inbox_tray: received",
    "denied": ":no_entry: denied",
    "needs_clarification": ":question: needs clarification",
    "queued": ":hourglass_flowing_sand: queued",
    "running": ":gear: running",
    "awaiting_approval": ":raised_hand: awaiting approval",
    "approved": ":white_check_mark: approved",
    "rejected": ":x: rejected",
    "succeeded": ":large_green_circle: succeeded",
    "failed": ":red_circle: failed",
    "cancelled": ":heavy_minus_sign: cancelled",
    "rolled_back": ":leftwards_arrow_with_hook: rolled back",
}


def _text(text: str) -> dict[str, Any]:
    # Every text block passes here: what UTF-8 cannot carry (a lone surrogate from a model or
    # a file name) is escaped, so a payload always encodes and Slack always gets the card.
    return {"type": "mrkdwn", "text": escape_text(text[:TEXT_LIMIT])}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _text(text)}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_text(p) for p in parts if p]}


def escape(text: str) -> str:
    """Slack's three control characters; user text never becomes a mention or a link."""
    return escape_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_block(text: str) -> str:
    return "```" + escape(text).replace("```", "ˋˋˋ") + "```"


def person(name: str, slack_ids: dict[str, str]) -> str:
    user = slack_ids.get(name)
    return f"<@{user}> ({name})" if user else name


def card_text(job: JobRecord) -> str:
    spec = job.spec
    return f"{job.job_id} {spec.job_type.value} {spec.target or ''}: {job.state.value}"


# Per-step events: they move the card's progress line; they do not post in the thread.
STEP_KINDS = frozenset({"tool.shell", "browser.step"})
ENDED = frozenset({"succeeded", "failed", "cancelled", "denied", "rejected", "rolled_back"})


class Progress(BaseModel):
    """How far a job's steps have come, as its events tell."""

    done: int = 0
    total: int | None = None  # known in direct mode only: the request's own steps
    last: str | None = None  # the newest step in words: "Step 3/5: `pytest -q` → exit 0 in 1.20s"
    last_ok: bool = True


def progress(job: JobRecord, events: Sequence[AuditEvent]) -> Progress:
    """The job's step progress from its audit events (a later pass counts afresh)."""
    commands = job.spec.commands
    total = len(commands) if commands and job.model.model == "direct" else None
    steps = [e for e in events if e.kind in STEP_KINDS]
    if not steps:
        return Progress(total=total)
    last = steps[-1]
    index = last.data.get("index")
    # tool.shell counts from 1 in each pass; other steps are counted here.
    done = index if last.kind == "tool.shell" and isinstance(index, int) else len(steps)
    words, ok = _step_words(last, job.spec.job_type.value, done, total)
    return Progress(done=done, total=total, last=words, last_ok=ok)


def _step_words(event: AuditEvent, job_type: str, done: int, total: int | None) -> tuple[str, bool]:
    data = event.data
    label = f"Step {done}/{total}" if total else f"Step {done}"
    if event.kind == "tool.shell":
        flag = " (timed out)" if data.get("timed_out") else ""
        return (
            f"{label}: `{escape(str(data.get('command', '')))[:300]}` → exit "
            f"{data.get('exit_code')} in {data.get('duration_s', 0):.2f}s{flag}",
            data.get("exit_code") == 0 and not data.get("timed_out"),
        )
    from runtime.kinds import registry

    described = registry.kind_for(job_type).describe(event.kind, data)
    text = described[1] if described else event.kind
    return f"{label}: {escape(text)[:300]}", bool(data.get("ok", True))


def _bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * min(done, total) / total) if total else width
    return "▰" * filled + "▱" * (width - filled)


def _progress_text(job: JobRecord, shown: Progress, slack_ids: dict[str, str]) -> str | None:
    """The card's live line: the step it is at, or whom it waits for, or how it ended."""
    from runtime.kinds import registry

    state = job.state.value
    told = registry.kind_for(job.spec.job_type).narrate
    step = shown.last and (shown.last if shown.last_ok else f":warning: {shown.last}")
    open_gate = next((g for g in reversed(job.approvals) if g.decision is None), None)
    approved = next(
        (g for g in reversed(job.approvals) if g.decision == "approved" and g.action != "run"),
        None,
    )
    if state == "queued":
        return ":hourglass_flowing_sand: Waiting for a worker."
    if state in ("running", "approved") and approved is not None:
        doing = told("job.resumed") or f"Carrying out the approved {escape(approved.action)}."
        return f":arrow_forward: {doing}"
    if state == "running":
        return f":gear: {step}" if step else f":gear: {told('job.started') or 'Starting.'}"
    if state == "awaiting_approval" and open_gate is not None:
        who = ", ".join(person(a, slack_ids) for a in open_gate.approvers) or "nobody"
        waiting = f":raised_hand: Waiting for {who} to approve *{escape(open_gate.action)}*."
        return f"{waiting}\n{step}" if step else waiting
    if state == "needs_clarification":
        asked = job.clarification.question if job.clarification else "a question"
        return (
            f":question: Waiting for {person(job.spec.requester, slack_ids)} to answer: "
            f"{escape(asked)[:300]}"
        )
    if state in ENDED and step:
        return f"*Last step:* {step}"
    return None


def job_card(
    job: JobRecord,
    slack_ids: dict[str, str],
    events: Sequence[AuditEvent] = (),
    console_url: str | None = None,
) -> list[dict[str, Any]]:
    """The job card posted in the channel and updated in place as the job moves: its one live
    progress message (with the job's events, the step it is at; without, its state), and a
    link to its page in the web console where the console has a public address."""
    spec, decision = job.spec, job.decision
    fields = [
        f"*State*\n{STATE_LABEL.get(job.state.value, job.state.value)}",
        f"*Requester*\n{person(spec.requester, slack_ids)}",
        f"*Type / target*\n{spec.job_type.value} `{spec.target or '—'}`",
        f"*Tools granted*\n{', '.join(job.tools_granted) or '—'}",
        f"*Decision*\n{decision.get('effect', '—')}",
        f"*Model route*\n{job.model.model} (rule `{job.model.route_rule or '—'}`)",
    ]
    title = f"{job.job_id} · {spec.job_type.value} {spec.target or ''}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        _section(f">{escape(spec.instruction)[:500]}"),
        {"type": "section", "fields": [_text(f) for f in fields]},
    ]  # fmt: skip
    shown = progress(job, events)
    live = _progress_text(job, shown, slack_ids)
    if live:
        blocks.append({**_section(live), "block_id": "progress"})
    if shown.done:
        ran = "ran" if job.state.value in ENDED else "done"
        count = (
            f"{shown.done} of {shown.total} steps {ran}"
            if shown.total
            else f"{shown.done} steps {ran}"
        )
        bar = f"{_bar(shown.done, shown.total)} " if shown.total else ""
        blocks.append(_context(f"{bar}{count}"))
    reasons = "; ".join(decision.get("reasons", []))
    if reasons:
        blocks.append(_section(f"*Why:* {escape(reasons)}"))
    for gate in job.approvals:
        if gate.decision:
            who = person(gate.decided_by or "?", slack_ids)
            when = f" at {gate.decided_at:%Y-%m-%d %H:%M} UTC" if gate.decided_at else ""
            blocks.append(_section(f"*{gate.action}:* {gate.decision} by {who}{when}"))
    if job.result.get("reason") and job.state.value in (
        "failed",
        "succeeded",
        "denied",
        "rejected",
    ):
        blocks.append(_section(f"*Result:* {escape(job.result['reason'])}"))
    blocks.append(
        _context(
            f"policy `{job.policy_hash[:12]}`",
            f"rules: {', '.join(decision.get('rule_ids', [])) or '—'}",
            f"via {spec.origin.value}",
            f"<{console_url}/jobs/{job.job_id}|open in the console>" if console_url else "",
        )
    )
    return blocks


def approval_request(
    job: JobRecord, diff_text: str | None, slack_ids: dict[str, str], *, high_risk: bool
) -> list[dict[str, Any]]:
    """The pending change with Approve / Reject; the buttons carry the job id and change hash."""
    gate = next((g for g in reversed(job.approvals) if g.decision is None), None)
    if gate is None:
        return [_section("There is no open approval request any more.")]
    from runtime.kinds import registry

    shown = registry.kind_for(job.spec.job_type).evidence(job)  # what the job's kind shows
    approvers = ", ".join(person(a, slack_ids) for a in gate.approvers) or "nobody"
    headline = shown.headline or f"{gate.action} needs approval"
    listed = "".join(
        f"• {escape(line.label)}: {escape(line.text)[:1500]}\n" for line in shown.lines[:12]
    )
    attached = (
        "Attached below: " + ", ".join(escape(a.title) for a in shown.attach) + ".\n"
        if shown.attach
        else ""
    )
    what = f"*{escape(headline)}* — `{gate.action_hash[:12]}`:\n{listed}{attached}"
    summary = (
        what
        + f"Approvers: {approvers}"
        + (" · four-eyes: the requester cannot approve" if gate.four_eyes else "")
    )
    blocks = [_section(summary)]
    if diff_text is not None:
        blocks.append(_section(code_block(diff_text)))
    value = f"{job.id}|{gate.action_hash}"
    approve: dict[str, Any] = {
        "type": "button",
        "action_id": "acp_approve",
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve"},
        "value": value,
    }
    if high_risk:
        approve["confirm"] = {
            "title": {"type": "plain_text", "text": "Approve a high-risk action?"},
            "text": _text(f"{gate.action} for {job.job_id} on `{job.spec.target}`"),
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
    reject = {
        "type": "button",
        "action_id": "acp_reject",
        "style": "danger",
        "text": {"type": "plain_text", "text": "Reject…"},
        "value": value,
    }
    blocks.append(
        {"type": "actions", "block_id": f"approval-{job.id}", "elements": [approve, reject]}
    )
    if gate.expires_at:
        blocks.append(_context(f"expires {gate.expires_at:%Y-%m-%d %H:%M} UTC"))
    return blocks


def clarification(job: JobRecord) -> list[dict[str, Any]]:
    question = job.clarification
    if question is None:
        return []
    buttons = [
        {
            "type": "button",
            "action_id": f"acp_answer_{index}",
            "text": {"type": "plain_text", "text": option[:75]},
            "value": f"{job.id}|{option}"[:2000],
        }
        for index, option in enumerate(question.options[:20])
    ]
    buttons.append(
        {
            "type": "button",
            "action_id": "acp_answer_text",
            "text": {"type": "plain_text", "text": "Answer…"},
            "value": str(job.id),
        }
    )
    return [
        _section(f":question: *{escape(question.question)}*"),
        {"type": "actions", "block_id": f"clarify-{job.id}", "elements": buttons[:25]},
    ]


def event_line(event: AuditEvent, slack_ids: dict[str, str], job_type: str = "code") -> str | None:
    """A thread reply for an event, or None when the card update says it all. The job's kind
    words its own run events (runtime.kinds: narration)."""
    from runtime.kinds import registry

    data = event.data
    actor = event.actor.split(" ")[0]
    told = registry.kind_for(job_type).narrate(event.kind)
    match event.kind:
        case "job.started":
            return f":gear: {told or 'Running.'}"
        case "job.resumed" if told:
            return f":arrow_forward: {told}"
        case "browser.mutation_sent":
            return f":outbox_tray: Sent, as approved: {escape(data.get('description', ''))[:500]}"
        case "browser.session_closed":
            return ":wastebasket: The held action was dropped; nothing was sent."
        case "tool.shell":
            took = f"{data.get('duration_s', 0):.2f}s"
            flag = " (timed out)" if data.get("timed_out") else ""
            return (
                f"Step {data.get('index')}: `{escape(data.get('command', ''))[:300]}` → "
                f"exit {data.get('exit_code')} in {took}{flag}"
            )
        case "tool.refused":
            return f":no_entry_sign: Refused `{data.get('tool')}`: {escape(data.get('reason', ''))}"
        case "approval.granted":
            return f":white_check_mark: Approved by {person(actor, slack_ids)}."
        case "approval.rejected":
            why = f": {escape(data['reason'])}" if data.get("reason") else "."
            return f":x: Rejected by {person(actor, slack_ids)}{why}"
        case "approval.expired":
            return ":hourglass: The approval request expired; the job was rejected."
        case "approval.invalidated":
            return (
                f":warning: {told or 'It changed after it was reviewed; it needs a new approval.'}"
            )
        case "publish.merged" | "publish.pushed" | "publish.pull_request":
            return f":rocket: {escape(data.get('reason', 'published'))}"
        case "publish.rolled_back":
            return f":leftwards_arrow_with_hook: Rolled back by {person(actor, slack_ids)}."
        case "job.succeeded" | "job.failed" | "job.interrupted" | "publish.failed":
            icon = ":large_green_circle:" if event.kind == "job.succeeded" else ":red_circle:"
            return f"{icon} {escape(data.get('reason', event.kind))}"
        case "policy.denied":
            return f":no_entry: Denied: {escape('; '.join(data.get('reasons', [])))}"
    return None


def help_blocks() -> list[dict[str, Any]]:
    return [
        _section(
            "*/agent* puts a request through the control plane: policy, sandbox, approval, audit.\n"
            f"• `{EXAMPLE}`\n"
            "• `/agent sql payments-replica: SELECT status, count(*) FROM orders GROUP BY 1`\n"
            "• /agent doc reports: weekly summary "
            "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`\n"
            '• `/agent schedule "0 9 * * MON" sql payments-replica: top 10 slowest queries`'
            " — a routine (approved first; every run is a job)\n"
            "• `/agent routines` — routines, next runs, last results\n"
            "• `/agent status J-12` — where a job is\n"
            "• `/agent audit J-12` — its audit trail\n"
            "Requests read `<type> <target>: <instruction>`; types are code, sql, browse, doc, "
            "schedule. Free text works too: the job asks when it is unsure."
        )
    ]


def refusal(message: str, hint: str | None = None) -> list[dict[str, Any]]:
    text = f":warning: {escape(message)}"
    if hint:
        text += f"\n_{escape(hint)}_"
    return [_section(text)]


def audit_blocks(job: JobRecord, events: list[AuditEvent]) -> list[dict[str, Any]]:
    lines = [
        f"`#{e.seq}` {e.ts[:19]} *{e.kind}* by {escape(e.actor)} `{e.hash[:10]}`"
        for e in events[-40:]
    ]
    head = f"*Audit trail of {job.job_id}* ({len(events)} events, policy `{job.policy_hash[:12]}`)"
    return [_section(head), _section("\n".join(lines) or "no events")]


def home_view(
    pending: list[JobRecord], recent: list[JobRecord], slack_ids: dict[str, str]
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Waiting for your approval"}}
    ]
    if not pending:
        blocks.append(_section("Nothing is waiting for you."))
    for job in pending[:20]:
        blocks.append(
            _section(
                f"*{job.job_id}* {job.spec.job_type.value} `{job.spec.target}` from "
                f"{person(job.spec.requester, slack_ids)}: {escape(job.spec.instruction[:150])}"
            )
        )
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Your recent jobs"}})
    if not recent:
        blocks.append(_section(f"No jobs yet. Try `{EXAMPLE}`"))
    for job in recent[:15]:
        label = STATE_LABEL.get(job.state.value, job.state.value)
        blocks.append(
            _section(
                f"*{job.job_id}* {label} — {job.spec.job_type.value} `{job.spec.target or '—'}`: "
                f"{escape(job.spec.instruction[:120])}"
            )
        )
    return {"type": "home", "blocks": blocks}


def reason_modal(job_id: int, action_hash: str, channel: str | None) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "acp_reject_reason",
        "private_metadata": f"{job_id}|{action_hash}|{channel or ''}",
        "title": {"type": "plain_text", "text": f"Reject J-{job_id}"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why? (recorded in the audit log)"},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            }
        ],
    }


def answer_modal(job: JobRecord, channel: str | None) -> dict[str, Any]:
    question = job.clarification.question if job.clarification else "Your answer"
    return {
        "type": "modal",
        "callback_id": "acp_answer_text",
        "private_metadata": f"{job.id}|{channel or ''}",
        "title": {"type": "plain_text", "text": f"Answer {job.job_id}"},
        "submit": {"type": "plain_text", "text": "Answer"},
        "blocks": [
            {
                "type": "input",
                "block_id": "answer",
                "label": {"type": "plain_text", "text": question[:2000]},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }


async def routine_line(engine: Any, routine: Any) -> str:
    """One routine as a line: id, owner, schedule with its time zone, next run, last result."""
    from runtime import routines

    nxt = routine.next_run()
    when = f"{nxt:%Y-%m-%d %H:%M %Z}" if nxt else routine.state
    last = await routines.last_result(engine, routine)
    return (
        f"*{routine.routine_id}* {routine.state} · owner {routine.owner} · "
        f"`{escape(routine.schedule.text())}` · next {when} · last: {escape(last)}\n"
        f">{escape(routine.request)[:300]}"
    )


def routines_blocks(lines: list[str]) -> list[dict[str, Any]]:
    if not lines:
        example = '/agent schedule "0 9 * * MON" sql payments-replica: top 10 slowest queries'
        return [_section(f"No routines yet. Propose one: `{example}`")]
    return [_section("*Routines*"), *(_section(line) for line in lines[:40])]

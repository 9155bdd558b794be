"""The pure functions that decide: who may run what where (grants, tools), when to ask
before guessing, which actions need approval, which model runs, and who may approve a gate or
manage a routine.

`decide()` and `decide_approval()` never do I/O and never raise for a refusal: they return a
Decision with human-readable reasons and the ids of the rules they used. Deny by default.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from runtime.jobs import JobType, Origin
from runtime.kinds import registry
from runtime.policy.schema import Person, Policy, parse_duration


class RequestFacts(BaseModel):
    """What the policy needs to know about a request; built by the engine from a JobSpec."""

    person: str | None
    job_type: JobType | None
    target: str | None
    tools: list[str] = Field(default_factory=list)
    origin: Origin = Origin.cli
    confidence: float = 1.0
    has_explicit_steps: bool = True
    channel: str | None = Field(None, description="the Slack channel it was asked in, if any")


class ApprovalGate(BaseModel):
    action: str
    rule_id: str
    approvers: list[str]
    four_eyes: bool
    expires_after_s: float | None = None
    high_risk: bool = False


class Decision(BaseModel):
    effect: Literal["allow", "deny", "needs_clarification"]
    reasons: list[str] = Field(default_factory=list)
    rule_ids: list[str] = Field(default_factory=list)
    tools_granted: list[str] = Field(default_factory=list)
    network_granted: list[str] = Field(
        default_factory=list, description="hosts the job's commands may reach (the egress proxy)"
    )
    credentials_granted: dict[str, str] = Field(
        default_factory=dict, description="host -> NAME of the variable the proxy sends there"
    )
    approvals: list[ApprovalGate] = Field(default_factory=list)
    model: str | None = None
    model_rule: str | None = None
    risk: Literal["low", "medium", "high"] | None = None
    clarify_field: Literal["job_type", "target", "commands"] | None = None
    question: str | None = None
    options: list[str] = Field(default_factory=list)

    @property
    def approval_required_for(self) -> list[str]:
        return [gate.action for gate in self.approvals]


def _matches(name: str | None, patterns: Iterable[str]) -> bool:
    """Whether `name` matches one of the shell globs (case-sensitive)."""
    if name is None:
        return False
    return _globs(tuple(patterns)).match(name) is not None


@functools.lru_cache(maxsize=8192)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The globs as one compiled pattern: a policy's lists are few and asked often."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def risk_of(
    policy: Policy, job_type: JobType, target: str | None
) -> Literal["low", "medium", "high"]:
    target_def = policy.targets_for(job_type).get(target or "")
    production = bool(getattr(target_def, "production", False))
    if not registry.kind_for(job_type).mutating:
        return "medium" if production else "low"
    return "high" if production else "medium"


def decide(policy: Policy, facts: RequestFacts) -> Decision:
    """Who may do what where, which actions need approval, which model runs. Pure."""
    if facts.person is None or facts.person not in policy.people:
        return Decision(
            effect="deny",
            reasons=["the requester is not a person in the policy"],
            rule_ids=["people.unknown"],
        )
    person = policy.people[facts.person]
    threshold = policy.clarification.confidence_threshold
    if facts.job_type is None or (facts.confidence < threshold and facts.target is None):
        return Decision(
            effect="needs_clarification",
            reasons=[f"the request's type is unclear (confidence {facts.confidence:.2f})"],
            rule_ids=["clarification.confidence"],
            clarify_field="job_type",
            question="What kind of job is this?",
            options=_requestable(),
        )
    if facts.target is None:
        mutating = registry.kind_for(facts.job_type).mutating
        rule = "clarification.mutating_without_target" if mutating else "clarification.no_target"
        return Decision(
            effect="needs_clarification",
            reasons=[f"a {facts.job_type.value} job needs a target and none was named"],
            rule_ids=[rule],
            clarify_field="target",
            question=f"Which target should this {facts.job_type.value} job work on?",
            options=_granted_targets(policy, person, facts.job_type),
        )
    if facts.confidence < threshold:
        return Decision(
            effect="needs_clarification",
            reasons=[
                f"the request was understood with confidence {facts.confidence:.2f}, "
                f"below the policy's threshold {threshold:.2f}"
            ],
            rule_ids=["clarification.confidence"],
            clarify_field="job_type",
            question=f"Is this a {facts.job_type.value} job on {facts.target}?",
            options=_requestable(),
        )
    if facts.target not in policy.targets_for(facts.job_type):
        return Decision(
            effect="deny",
            reasons=[f"'{facts.target}' is not a {facts.job_type.value} target in the policy"],
            rule_ids=["targets.unknown"],
        )
    grants = [
        grant
        for role in person.roles
        for grant in policy.roles[role].grants
        if facts.job_type in grant.job_types and _matches(facts.target, grant.targets)
    ]
    if not grants:
        roles = ", ".join(person.roles) or "none"
        return Decision(
            effect="deny",
            reasons=[
                f"{facts.person} has no grant for {facts.job_type.value} jobs on "
                f"'{facts.target}' (roles: {roles})"
            ],
            rule_ids=["grants.none"],
        )
    where = channel_refusal(policy, facts)
    if where is not None:
        return where
    allowed_tools = sorted({tool for grant in grants for tool in grant.tools})
    wanted = facts.tools or list(registry.kind_for(facts.job_type).tools)
    missing = [tool for tool in wanted if tool not in allowed_tools]
    rule_ids = [grant.id for grant in grants]
    if facts.tools and missing:
        return Decision(
            effect="deny",
            reasons=[f"tools not granted to {facts.person} here: {', '.join(missing)}"],
            rule_ids=[*rule_ids, "grants.tool"],
        )
    tools_granted = [tool for tool in wanted if tool in allowed_tools]
    network_granted = sorted({host for grant in grants for host in grant.network})
    credentials_granted = {
        host: name for grant in grants for host, name in sorted(grant.credentials.items())
    }
    risk = risk_of(policy, facts.job_type, facts.target)
    sensitivity = getattr(policy.targets_for(facts.job_type).get(facts.target), "sensitivity", None)
    route = next(
        (
            r
            for r in policy.models.routes
            if (not r.job_types or facts.job_type in r.job_types)
            and (not r.risk or risk in r.risk)
            and (not r.origins or facts.origin in r.origins)
            and (not r.sensitivity or sensitivity in r.sensitivity)
        ),
        None,
    )
    model = route.model if route else "direct"
    reasons = [f"{facts.person} may run {facts.job_type.value} jobs on '{facts.target}'"]
    if model == "direct" and not facts.has_explicit_steps:
        return Decision(
            effect="needs_clarification",
            reasons=[*reasons, "no model is routed for this job, so it runs only explicit steps"],
            rule_ids=[*rule_ids, route.id if route else "models.none", "clarification.direct_mode"],
            tools_granted=tools_granted,
            clarify_field="commands",
            question="No model runs this job, so it needs explicit steps. "
            + registry.kind_for(facts.job_type).step_question,
            options=[],
            model=model,
            model_rule=route.id if route else None,
            risk=risk,
        )
    gates, gate_rules, gate_reasons = approval_gates(policy, facts.job_type, facts.target)
    rule_ids += gate_rules
    reasons += gate_reasons
    if route:
        rule_ids.append(route.id)
    return Decision(
        effect="allow",
        reasons=reasons,
        rule_ids=rule_ids,
        tools_granted=tools_granted,
        network_granted=network_granted,
        credentials_granted=credentials_granted,
        approvals=gates,
        model=model,
        model_rule=route.id if route else None,
        risk=risk,
    )


def channel_refusal(policy: Policy, facts: RequestFacts) -> Decision | None:
    """A request covered by a slack.channels rule, asked elsewhere: refused, saying where to
    ask. Slack requests carry their channel; other doors are refused only by `only_slack`."""
    rules = [
        rule
        for rule in policy.slack.channels
        if (not rule.job_types or facts.job_type in rule.job_types)
        and _matches(facts.target, rule.targets)
    ]
    if not rules:
        return None
    allowed = sorted({c for rule in rules for c in rule.channels})
    ids = [rule.id for rule in rules]
    places = ", ".join("direct messages to the app" if c == "dm" else f"<#{c}>" for c in allowed)
    what = f"{facts.job_type.value if facts.job_type else '?'} jobs on '{facts.target}'"
    # A routine's firing that reports to a channel is held to it like a request asked there.
    if facts.origin is Origin.slack or (facts.origin is Origin.schedule and facts.channel):
        here = "dm" if (facts.channel or "").startswith("D") else facts.channel
        if here in allowed:
            return None
        where = f"<#{facts.channel}>" if facts.channel else "this conversation"
        reason = f"{what} are asked in Slack only in {places}, not in {where}"
    else:
        if not any(rule.only_slack for rule in rules):
            return None
        reason = f"{what} are asked only in Slack, in {places}"
    return Decision(effect="deny", reasons=[reason], rule_ids=[*ids, "slack.channel"])


def _requestable() -> list[str]:
    """The job types a person is offered when a request's type is unclear."""
    return [str(kind.job_type) for kind in registry.kinds() if kind.requestable]


def approval_gates(
    policy: Policy, job_type: JobType, target: str | None
) -> tuple[list[ApprovalGate], list[str], list[str]]:
    """The approval gates the policy puts on this job type and target, with why. Asked once
    per job type and target of a policy (it never changes once loaded), then remembered."""
    cache = policy._cache.setdefault("gates", {})
    found = cache.get((job_type, target))
    if found is None:
        found = cache[(job_type, target)] = _approval_gates(policy, job_type, target)
    gates, rule_ids, reasons = found
    return list(gates), list(rule_ids), list(reasons)


def _approval_gates(
    policy: Policy, job_type: JobType, target: str | None
) -> tuple[list[ApprovalGate], list[str], list[str]]:
    gates: list[ApprovalGate] = []
    rule_ids: list[str] = []
    reasons: list[str] = []
    for rule in policy.approvals:
        if rule.job_types and job_type not in rule.job_types:
            continue
        if not _matches(target, rule.targets):
            continue
        for action in rule.actions:
            if any(g.action == action for g in gates):
                continue
            expires = (
                parse_duration(rule.expires_after).total_seconds() if rule.expires_after else None
            )
            gates.append(
                ApprovalGate(
                    action=action,
                    rule_id=rule.id,
                    approvers=policy.approvers_for(rule),
                    four_eyes=rule.four_eyes,
                    expires_after_s=expires,
                    high_risk=rule.high_risk,
                )
            )
        rule_ids.append(rule.id)
        reasons.append(f"{', '.join(rule.actions)} needs approval ({rule.id})")
    return gates, rule_ids, reasons


def decide_routine(policy: Policy, facts: RequestFacts) -> Decision:
    """May this person schedule this request? Only if they may run it now, as themselves; the
    routine's own gates (create, delete) come from approval rules for `schedule` jobs. Pure."""
    inner = decide(policy, facts)
    if inner.effect != "allow":
        return inner.model_copy(
            update={"reasons": [f"the scheduled request: {r}" for r in inner.reasons]}
        )
    gates, _, _ = approval_gates(policy, JobType.schedule, facts.target)
    gates = [g for g in gates if g.action == "create"]  # change and delete gate later jobs
    kind = facts.job_type.value if facts.job_type else "?"
    return Decision(
        effect="allow",
        reasons=[
            f"{facts.person} may run {kind} jobs on '{facts.target}', so may schedule them",
            *(f"creating the routine needs approval ({g.rule_id})" for g in gates),
        ],
        rule_ids=[*inner.rule_ids, *(g.rule_id for g in gates)],
        tools_granted=["scheduler"],
        approvals=gates,
        model="direct",
        risk=inner.risk,
    )


def decide_routine_management(
    policy: Policy, *, person: str, owner: str, verb: str, routine: str
) -> Decision:
    """May `person` pause, resume, run now, change or delete a routine? Its owner and the
    approvers of `schedule` jobs may. Pure."""
    managers = {owner} | {
        name
        for rule in policy.approvals
        if JobType.schedule in rule.job_types
        for name in policy.approvers_for(rule)
    }
    if person in managers:
        return Decision(
            effect="allow",
            reasons=[f"{person} may {verb} {routine}"],
            rule_ids=["routines.owner_or_approver"],
        )
    return Decision(
        effect="deny",
        reasons=[
            f"{person} may not {verb} {routine}; its owner ({owner}) and the approvers of "
            "routines may"
        ],
        rule_ids=["routines.not_allowed"],
    )


def requestable_for(
    policy: Policy, person: str, *, channel: str | None = None
) -> list[tuple[JobType, str]]:
    """What `person` may ask for by a typed request: (kind, target) pairs their grants cover,
    of kinds a request can name, less those the channel rules refuse where they are asked
    (`channel`: a Slack channel id, D… for a direct message). Doors offer these as choices;
    the engine still decides each request."""
    key = ("requestable", person, "dm" if (channel or "").startswith("D") else channel)
    cached = policy._cache.get(key)
    if cached is not None:
        return list(cached)
    who = policy.people.get(person)
    if who is None:
        return []
    found: list[tuple[JobType, str]] = []
    for kind in registry.kinds():
        if not kind.requestable:
            continue
        for target in _granted_targets(policy, who, kind.job_type):
            facts = RequestFacts(
                person=person, job_type=kind.job_type, target=target, origin=Origin.slack,
                channel=channel,
            )  # fmt: skip
            if channel is None or channel_refusal(policy, facts) is None:
                found.append((kind.job_type, target))
    if len(policy._cache) < 50_000:  # a policy never changes once loaded: remember it
        policy._cache[key] = tuple(found)
    return found


def _granted_targets(policy: Policy, person: Person, job_type: JobType) -> list[str]:
    names = policy.targets_for(job_type)
    patterns = [
        p
        for role in person.roles
        for grant in policy.roles[role].grants
        if job_type in grant.job_types
        for p in grant.targets
    ]
    return sorted(name for name in names if _matches(name, patterns))


def decide_approval(
    policy: Policy,
    *,
    approver: str | None,
    requester: str,
    rule_id: str,
    expires_at: datetime | None,
    now: datetime,
    four_eyes: bool,
    escalated_to: list[str] | None = None,
) -> Decision:
    """May `approver` decide this gate now? Re-reads approvers from the current policy (an
    escalated routine gate: the people it was escalated to, still in the policy). Pure."""
    if approver is None or approver not in policy.people:
        return Decision(
            effect="deny",
            reasons=["you are not a person in the policy"],
            rule_ids=["people.unknown"],
        )
    if expires_at is not None and now >= expires_at:
        return Decision(
            effect="deny",
            reasons=[f"the approval request expired at {expires_at:%Y-%m-%d %H:%M} UTC"],
            rule_ids=["approval.expired"],
        )
    rule = next((r for r in policy.approvals if r.id == rule_id), None)
    if escalated_to is not None and not (four_eyes and approver == requester):
        if approver in escalated_to:
            return Decision(
                effect="allow",
                reasons=[f"{approver} was named to decide this routine's unattended approval"],
                rule_ids=[rule_id],
            )
        return Decision(
            effect="deny",
            reasons=[
                f"{approver} is not among the people this approval was escalated to "
                f"({', '.join(escalated_to)})"
            ],
            rule_ids=[rule_id, "approval.not_approver"],
        )
    if four_eyes and approver == requester:
        return Decision(
            effect="deny",
            reasons=[f"{approver} requested this job and may not approve it (four-eyes)"],
            rule_ids=[rule_id, "approval.four_eyes"],
        )
    if rule is None:
        return Decision(
            effect="deny",
            reasons=[f"approval rule '{rule_id}' is no longer in the policy; nobody may approve"],
            rule_ids=[rule_id, "approval.rule_gone"],
        )
    approvers = policy.approvers_for(rule)
    if approver not in approvers:
        who = ", ".join(approvers) or "nobody (no person holds an approver role of this rule)"
        return Decision(
            effect="deny",
            reasons=[f"{approver} is not an approver under rule '{rule_id}'; approvers: {who}"],
            rule_ids=[rule_id, "approval.not_approver"],
        )
    return Decision(
        effect="allow", reasons=[f"{approver} is an approver under '{rule_id}'"], rule_ids=[rule_id]
    )

"""Why a request is decided as it is, rule by rule (`acp policy explain`): the person, how the
request was read, the clarification rules, the target, every grant of every role of the person
(matched, or skipped and why), the tools, every model route in order, every approval rule, and
the decision itself.

The decision is decide()'s own (through submission.decide_parsed); the rest retraces the same
steps in the same order, so each rule the decision passed over says why. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtime.errors import AcpError
from runtime.jobs import JobType, Origin
from runtime.kinds import registry
from runtime.policy.decide import Decision, RequestFacts, risk_of
from runtime.policy.schema import ApprovalRule, Grant, ModelRoute, Policy

Result = Literal[
    "ok",  # a rule that could have stopped the request did not
    "asks",  # a clarification rule stops the request with a question
    "denies",  # the rule that denies the request
    "matched",  # a grant that covers the request
    "skipped",  # a grant, route or approval rule that does not apply, with why
    "granted",  # a tool the job gets
    "not granted",  # a tool of its kind the job does not get
    "chosen",  # the model route that runs the job
    "applies",  # an approval rule that gates the job
    "not reached",  # the decision was made before this rule (why says what it would do)
]


class Check(BaseModel):
    """One rule as the decision considered it."""

    rule: str
    result: Result
    why: str
    role: str | None = Field(None, description="a grant's role")


class Explanation(BaseModel):
    """A request's decision with every rule considered on the way, in decide()'s order."""

    person: str
    known: bool = Field(description="the person is in the policy")
    roles: list[str] = Field(default_factory=list)
    request: str
    origin: Origin = Origin.cli
    parsed: dict[str, Any] | None = Field(None, description="the intake's reading (None: refused)")
    refused: str | None = Field(None, description="the intake's refusal, if it refused")
    clarification: list[Check] = Field(default_factory=list)
    target: list[Check] = Field(default_factory=list)
    grants: list[Check] = Field(default_factory=list)
    tools: list[Check] = Field(default_factory=list)
    models: list[Check] = Field(default_factory=list)
    approvals: list[Check] = Field(default_factory=list)
    decided_by: str | None = Field(
        None, description="the rule that denied it or asked a question; None when allowed"
    )
    decision: Decision
    policy_hash: str | None = None


def explain(policy: Policy, person: str, text: str, origin: Origin = Origin.cli) -> Explanation:
    """Parse and decide `text` as `person` would send it, with every rule considered."""
    from runtime.intake import parse_request
    from runtime.submission import decide_parsed, facts_of_request

    known = person in policy.people
    roles = list(policy.people[person].roles) if known else []
    base = {"person": person, "known": known, "roles": roles, "request": text, "origin": origin}
    try:
        parsed = parse_request(text, policy)
    except AcpError as error:
        refused = Decision(effect="deny", reasons=[error.message], rule_ids=["intake"])
        return Explanation(**base, refused=error.message, decided_by="intake", decision=refused)
    decision = decide_parsed(policy, person, parsed, origin)
    facts = facts_of_request(person, parsed, origin)
    trace = _Trace(policy, facts, roles, routine=parsed.schedule is not None)
    trace.run()
    return Explanation(
        **base,
        parsed=parsed.model_dump(mode="json"),
        clarification=trace.clarification,
        target=trace.target,
        grants=trace.grants,
        tools=trace.tools,
        models=trace.models,
        approvals=trace.approvals,
        decided_by=trace.stop,
        decision=decision,
    )


def _c(rule: str, result: Result, why: str, role: str | None = None) -> Check:
    return Check(rule=rule, result=result, why=why, role=role)


def _matches(name: str | None, patterns: Iterable[str]) -> bool:
    return name is not None and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _would(misses: list[str] | None, match: str) -> str:
    """What a rule not reached would have done, when it can be told."""
    if misses is None:
        return ""
    return f"would skip: {'; '.join(misses)}" if misses else match


def _listed(values: Iterable[str]) -> str:
    return ", ".join(map(str, values)) or "-"


class _Trace:
    """decide()'s steps, each rule recorded; `stop` is the rule that ended it early."""

    def __init__(self, policy: Policy, facts: RequestFacts, roles: list[str], *, routine: bool):
        self.policy, self.facts, self.roles, self.routine = policy, facts, roles, routine
        self.stop: str | None = None if facts.person in policy.people else "people.unknown"
        self.clarification: list[Check] = []
        self.target: list[Check] = []
        self.grants: list[Check] = []
        self.tools: list[Check] = []
        self.models: list[Check] = []
        self.approvals: list[Check] = []
        self.matched: list[Grant] = []
        self.model = "direct"

    def _unreached(self, would: str = "") -> str:
        return f"decided before this rule (by {self.stop})" + (f"; {would}" if would else "")

    def run(self) -> None:
        self._clarify()
        self._target()
        self._grants()
        self._tools()
        self._models()
        self._direct_mode()
        self._approvals()

    # --- the steps, in decide()'s order -----------------------------------------------

    def _clarify(self) -> None:
        facts, out = self.facts, self.clarification
        threshold = self.policy.clarification.confidence_threshold
        kind = registry.kind_for(facts.job_type) if facts.job_type is not None else None
        target_rule = (
            "clarification.mutating_without_target"
            if kind is not None and kind.mutating
            else "clarification.no_target"
        )
        confidence = f"confidence {facts.confidence:.2f}, threshold {threshold:.2f}"
        if self.stop:
            out.append(_c("clarification.confidence", "not reached", self._unreached()))
            out.append(_c(target_rule, "not reached", self._unreached()))
            return
        if facts.job_type is None or (facts.confidence < threshold and facts.target is None):
            out.append(
                _c(
                    "clarification.confidence",
                    "asks",
                    f"the request's type is unclear ({confidence})",
                )
            )
            self.stop = "clarification.confidence"
            out.append(_c(target_rule, "not reached", self._unreached()))
            return
        if facts.target is None:
            out.append(
                _c("clarification.confidence", "ok", f"a {facts.job_type} job ({confidence})")
            )
            out.append(
                _c(target_rule, "asks", f"a {facts.job_type} job needs a target and none was named")
            )
            self.stop = target_rule
            return
        if facts.confidence < threshold:
            out.append(
                _c(
                    "clarification.confidence",
                    "asks",
                    f"understood as {facts.job_type} on {facts.target} with "
                    f"{confidence}: below the threshold",
                )
            )
            self.stop = "clarification.confidence"
        else:
            out.append(
                _c("clarification.confidence", "ok", f"a {facts.job_type} job ({confidence})")
            )
        out.append(_c(target_rule, "ok", f"names the target {facts.target}"))

    def _target(self) -> None:
        facts = self.facts
        if facts.job_type is None or facts.target is None:
            self.target.append(_c("targets.unknown", "not reached", self._unreached()))
            return
        section = registry.kind_for(facts.job_type).target_section or "any section"
        known = facts.target in self.policy.targets_for(facts.job_type)
        if self.stop:
            would = "a known target" if known else "an unknown target"
            self.target.append(_c("targets.unknown", "not reached", self._unreached(would)))
        elif known:
            self.target.append(
                _c(
                    f"targets.{section}.{facts.target}",
                    "ok",
                    f"'{facts.target}' is a {facts.job_type} target (targets.{section})",
                )
            )
        else:
            self.target.append(
                _c(
                    "targets.unknown",
                    "denies",
                    f"'{facts.target}' is not a {facts.job_type} target "
                    f"in the policy (targets.{section})",
                )
            )
            self.stop = "targets.unknown"

    def _grants(self) -> None:
        facts = self.facts
        stopped = self.stop
        for role in self.roles:
            for grant in self.policy.roles[role].grants:
                misses = self._grant_misses(grant)
                if stopped:
                    would = _would(misses, "would match")
                    self.grants.append(_c(grant.id, "not reached", self._unreached(would), role))
                elif misses:
                    self.grants.append(_c(grant.id, "skipped", "; ".join(misses), role))
                else:
                    self.matched.append(grant)
                    network = _listed(grant.network) if grant.network else "none"
                    why = (
                        f"grants {_listed(grant.job_types)} on {_listed(grant.targets)}; "
                        f"tools {_listed(grant.tools)}; network {network}"
                    )
                    self.grants.append(_c(grant.id, "matched", why, role))
        if stopped or self.matched:
            return
        roles = _listed(self.roles) if self.roles else "none"
        why = f"{facts.person} has no grant for {facts.job_type} jobs on '{facts.target}' "
        self.grants.append(_c("grants.none", "denies", why + f"(roles: {roles})"))
        self.stop = "grants.none"

    def _grant_misses(self, grant: Grant) -> list[str] | None:
        """Why the grant does not cover the request (empty: it does; None: cannot tell)."""
        facts = self.facts
        if facts.job_type is None or facts.target is None:
            return None
        misses = []
        if facts.job_type not in grant.job_types:
            misses.append(
                f"other job type: it grants {_listed(grant.job_types)}, this is {facts.job_type}"
            )
        if not _matches(facts.target, grant.targets):
            misses.append(
                f"target '{facts.target}' does not match its targets [{_listed(grant.targets)}]"
            )
        return misses

    def _tools(self) -> None:
        facts = self.facts
        if self.stop or facts.job_type is None:
            self.tools.append(_c("tools", "not reached", self._unreached()))
            return
        wanted = facts.tools or list(registry.kind_for(facts.job_type).tools)
        for tool in wanted:
            by = [g.id for g in self.matched if tool in g.tools]
            if by:
                self.tools.append(_c(tool, "granted", f"by {_listed(by)}"))
            elif facts.tools:
                self.tools.append(_c(tool, "denies", "asked for, and no matched grant names it"))
                self.stop = self.stop or "grants.tool"
            else:
                self.tools.append(
                    _c(
                        tool,
                        "not granted",
                        f"a {facts.job_type} tool no matched grant names; the job runs without it",
                    )
                )

    def _models(self) -> None:
        facts = self.facts
        if facts.job_type is None or facts.target is None:
            self.models += [
                _c(r.id, "not reached", self._unreached()) for r in self.policy.models.routes
            ]
            return
        risk = risk_of(self.policy, facts.job_type, facts.target)
        target = self.policy.targets_for(facts.job_type).get(facts.target)
        sensitivity = getattr(target, "sensitivity", None)
        chosen: ModelRoute | None = None
        for route in self.policy.models.routes:
            misses = self._route_misses(route, risk, sensitivity)
            if self.stop:
                would = _would(misses, "would match")
                if chosen is None and not misses:
                    chosen = route
                elif chosen is not None:
                    would = f"an earlier route ({chosen.id}) would be chosen"
                self.models.append(_c(route.id, "not reached", self._unreached(would)))
            elif chosen is not None:
                self.models.append(
                    _c(route.id, "not reached", f"an earlier route was chosen ({chosen.id})")
                )
            elif misses:
                self.models.append(_c(route.id, "skipped", "; ".join(misses)))
            else:
                chosen = route
                self.model = route.model
                self.models.append(
                    _c(
                        route.id,
                        "chosen",
                        f"model {route.model} (job type {facts.job_type}, "
                        f"risk {risk}, origin {facts.origin}, sensitivity "
                        f"{sensitivity or '-'})",
                    )
                )
        if chosen is None and not self.stop:
            self.models.append(
                _c("models.none", "chosen", "no route matches: direct mode, explicit steps only")
            )
        if self.routine and not self.stop:
            self.models.append(
                _c(
                    "routine",
                    "ok",
                    "the routine's own job runs direct; each run is decided again when it fires",
                )
            )

    def _route_misses(self, route: ModelRoute, risk: str, sensitivity: str | None) -> list[str]:
        facts = self.facts
        misses = []
        if route.job_types and facts.job_type not in route.job_types:
            misses.append(f"job types {_listed(route.job_types)}, this is {facts.job_type}")
        if route.risk and risk not in route.risk:
            misses.append(f"risk {_listed(route.risk)}, this is {risk}")
        if route.origins and facts.origin not in route.origins:
            misses.append(f"origins {_listed(route.origins)}, this is {facts.origin}")
        if route.sensitivity and sensitivity not in route.sensitivity:
            misses.append(f"sensitivity {_listed(route.sensitivity)}, this is {sensitivity}")
        return misses

    def _direct_mode(self) -> None:
        facts = self.facts
        rule = "clarification.direct_mode"
        if self.stop:
            self.clarification.append(_c(rule, "not reached", self._unreached()))
        elif self.model == "direct" and not facts.has_explicit_steps:
            self.clarification.append(
                _c(
                    rule,
                    "asks",
                    "no model is routed for this job and the request names no explicit steps",
                )
            )
            self.stop = rule
        elif self.model == "direct":
            self.clarification.append(
                _c(rule, "ok", "the request names explicit steps, which run without a model")
            )
        else:
            self.clarification.append(_c(rule, "ok", f"a model ({self.model}) runs the job"))

    def _approvals(self) -> None:
        facts = self.facts
        job_type = JobType.schedule if self.routine else facts.job_type
        gated: dict[str, str] = {}  # action -> the rule that gates it
        for rule in self.policy.approvals:
            misses = self._approval_misses(rule, job_type)
            actions = [a for a in rule.actions if not self.routine or a == "create"]
            if self.routine and misses == [] and not actions:
                misses = [
                    f"a routine's creation is gated by 'create'; this rule gates "
                    f"{_listed(rule.actions)} (later jobs)"
                ]
            if self.stop:
                would = _would(misses, "would apply")
                self.approvals.append(_c(rule.id, "not reached", self._unreached(would)))
            elif misses:
                self.approvals.append(_c(rule.id, "skipped", "; ".join(misses)))
            else:
                self.approvals.append(_c(rule.id, "applies", self._gate_text(rule, actions, gated)))

    def _approval_misses(self, rule: ApprovalRule, job_type: JobType | None) -> list[str] | None:
        """Why the rule does not gate the job (empty: it does; None: cannot tell)."""
        if job_type is None or self.facts.target is None:
            return None
        misses = []
        if rule.job_types and job_type not in rule.job_types:
            misses.append(f"job types {_listed(rule.job_types)}, this is {job_type}")
        if not _matches(self.facts.target, rule.targets):
            misses.append(
                f"target '{self.facts.target}' does not match its targets [{_listed(rule.targets)}]"
            )
        return misses

    def _gate_text(self, rule: ApprovalRule, actions: list[str], gated: dict[str, str]) -> str:
        approvers = self.policy.approvers_for(rule)
        parts = []
        for action in actions:
            if action in gated:
                parts.append(f"{action} (already gated by {gated[action]})")
            else:
                gated[action] = rule.id
                parts.append(action)
        text = f"gates {_listed(parts)}; approvers: {_listed(approvers) if approvers else 'nobody'}"
        if rule.four_eyes:
            text += "; four-eyes"
        if rule.expires_after:
            text += f"; expires after {rule.expires_after}"
        return text

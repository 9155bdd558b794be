"""A proposed policy tried on recorded jobs: each job decided again (runtime.policy.history, the
same facts the worker re-decides on) and its recorded decision compared with the new one.

What changes: the effect (allow -> deny, ...); for a job allowed both times, an approval gate
added or removed (a gate is its action and rule), another approver set on a gate, another model
or route, other tools or hosts. Each change names the rule responsible and its jobs. Also the
proposed files as the API receives them (validated as a load would) and `--since` as a time.
Pure: no I/O; rendering is the CLI's, reading the rows runtime.store.history_store's.

Fast: jobs asked alike share one decision (memoized by their facts), and a job asked as one
before (same person, type, target, steps, classification, recorded decision) shares its result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from runtime.errors import AcpError, BadRequest
from runtime.jobs import JobSpec, JobType, Origin
from runtime.policy.decide import Decision, decide
from runtime.policy.history import facts_of_job, redecide
from runtime.policy.load import LoadedPolicy, load_sources
from runtime.policy.schema import parse_duration

if TYPE_CHECKING:
    from runtime.policy.schema import Policy
    from runtime.store.history_store import RecordedJob

ChangeKind = Literal[
    "effect", "approval_added", "approval_removed", "approvers", "model", "tools", "network"
]
# The order changes are listed and counted in.
KINDS: tuple[str, ...] = ChangeKind.__args__  # type: ignore[attr-defined]


class Change(BaseModel):
    """One thing the proposed policy decides differently, and the recorded jobs it does so for."""

    kind: ChangeKind
    rule: str = Field(description="the rule responsible: a new refusal's, a gate's, a route's")
    detail: str = Field(description="what changes, in words: 'allow -> deny', 'merge gate ...'")
    before: Any = None
    after: Any = None
    jobs: list[str] = Field(default_factory=list, description="the jobs (J-n), oldest first")


class ChangeCount(BaseModel):
    kind: ChangeKind
    rule: str
    jobs: int


class SimulationReport(BaseModel):
    """What a proposed policy would change for the jobs recorded since a time. Nothing ran."""

    proposed_hash: str
    in_force_hash: str
    since: str | None = Field(None, description="how far back, as asked (30d)")
    since_at: datetime | None = None
    jobs_considered: int = 0
    jobs_skipped: int = Field(0, description="jobs the policy does not decide again")
    jobs_changed: int = 0
    distinct_decisions: int = Field(0, description="decisions computed (the rest were shared)")
    changes: list[Change] = Field(default_factory=list)
    counts: list[ChangeCount] = Field(default_factory=list, description="jobs per kind, rule")

    def summary(self) -> dict[str, Any]:
        """What the audit event of a simulation records: the policies, the window, counts."""
        return {
            "proposed_hash": self.proposed_hash,
            "in_force_hash": self.in_force_hash,
            "since": self.since,
            "since_at": self.since_at.isoformat() if self.since_at else None,
            "jobs_considered": self.jobs_considered,
            "jobs_skipped": self.jobs_skipped,
            "jobs_changed": self.jobs_changed,
            "counts": [c.model_dump(mode="json") for c in self.counts],
        }


# A change before it is tied to jobs: (kind, rule, detail), and its (before, after).
_Key = tuple[str, str, str]


MAX_FILES = 100


def proposed_sources(files: Any, where: str | None = None) -> LoadedPolicy:
    """The proposed policy from its files as sent ({name: text}), validated as a load would
    (examples included); errors name `where`/name and the line. Reads no file."""
    if not isinstance(files, dict) or not files:
        raise BadRequest('the request body needs \'files\': {"name.yml": "its text", ...}')
    if len(files) > MAX_FILES:
        raise BadRequest(f"{len(files)} policy files; at most {MAX_FILES}")
    sources = []
    for name, text in files.items():
        if not isinstance(text, str):
            raise BadRequest(f"the text of '{name}' must be a string")
        try:
            sources.append((name, text.encode()))
        except UnicodeEncodeError as error:
            raise BadRequest(f"'{name}' is not valid text: {error.reason}") from None
    label = where if where and len(where) <= 300 and where.isprintable() else "proposed"
    return load_sources(sources, Path(label), examples=True)


def since_time(text: str, now: datetime | None = None) -> datetime:
    """How far back a simulation looks ('30d') as the time it starts from."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError as error:
        raise BadRequest(str(error), hint="e.g. --since 30m, 72h or 30d") from None


def simulate(
    rows: Iterable[RecordedJob],
    proposed: Policy,
    *,
    proposed_hash: str = "",
    in_force_hash: str = "",
    since: str | None = None,
    since_at: datetime | None = None,
) -> SimulationReport:
    """Every recorded job (rows as runtime.store.history_store reads them, oldest first)
    decided again under `proposed` and compared with its recorded decision. The hashes and the
    window only label the report."""
    sim = _Simulation(proposed)
    seen, reads_text = sim.seen, sim.reads_text
    jobs_of: defaultdict[_Key, list[str]] = defaultdict(list)
    considered = skipped = changed = 0
    for row in rows:  # the hot loop: over 100,000 jobs, most of them asked alike before
        id_, requester, job_type, target, origin, instruction, commands, schedule, cl, dec, chan = (
            row
        )
        considered += 1
        reads = reads_text.get(job_type)
        if reads is None:
            reads = reads_text[job_type] = _reads_text(job_type)
        # The text matters only to a kind that reads explicitness from it (and to a routine).
        text = (instruction, tuple(commands)) if reads else bool(commands)
        key = (requester, job_type, target, origin, text, schedule, id(cl), id(dec), chan)
        found = seen.get(key)
        if found is None:
            found = seen[key] = sim.job_changes(row)
        if found is _SKIPPED:
            skipped += 1
        elif found:
            changed += 1
            job = f"J-{id_}"
            for change in found:
                jobs_of[change].append(job)
    changes = [
        Change(kind=kind, rule=rule, detail=detail, before=before, after=after,
               jobs=jobs_of[kind, rule, detail])  # type: ignore[arg-type]
        for (kind, rule, detail), (before, after) in sorted(
            ((key, sim.sides[key]) for key in jobs_of), key=lambda i: _order(i[0])
        )
    ]  # fmt: skip
    return SimulationReport(
        proposed_hash=proposed_hash,
        in_force_hash=in_force_hash,
        since=since,
        since_at=since_at,
        jobs_considered=considered,
        jobs_skipped=skipped,
        jobs_changed=changed,
        distinct_decisions=len(sim.decisions),
        changes=changes,
        counts=_counts(changes),
    )


_SKIPPED: tuple[_Key, ...] = (("skipped", "", ""),)


def _reads_text(job_type: str) -> bool:
    """Whether a job's instruction and steps (not only whether it has steps) can change how it
    is decided: a routine's (its request is parsed again), and a kind's that reads explicit
    steps from its text (SQL). facts_of_job reads the text through has_explicit_steps alone."""
    from runtime.kinds import registry
    from runtime.kinds.base import JobKind

    if job_type == JobType.schedule:
        return True
    try:
        kind = registry.kind_for(job_type)
    except AcpError:
        return False  # not decided again, whatever its text
    return type(kind).has_explicit_steps is not JobKind.has_explicit_steps


class _Simulation:
    """The memos of one simulation: decisions by facts, comparisons by (recorded, new)."""

    def __init__(self, proposed: Policy) -> None:
        self.proposed = proposed
        self.reads_text: dict[str, bool] = {}
        self.seen: dict[tuple[Any, ...], tuple[_Key, ...]] = {}
        self.decisions: dict[tuple[Any, ...], Decision | None] = {}
        self.compared: dict[tuple[int, int], tuple[_Key, ...]] = {}
        self.sides: dict[_Key, tuple[Any, Any]] = {}
        # Objects whose id() is in a memo key stay alive, so no id is reused meanwhile.
        self.kept: dict[int, Any] = {}

    def job_changes(self, row: RecordedJob) -> tuple[_Key, ...]:
        self.kept[id(row.classifier)] = row.classifier
        self.kept[id(row.decision)] = row.decision
        after = self.decision_of(row)
        if after is None:
            return _SKIPPED
        key = (id(row.decision), id(after))
        found = self.compared.get(key)
        if found is None:
            self.kept[id(after)] = after
            changes = compare(row.decision, after)
            for kind, rule, detail, before, now in changes:
                self.sides.setdefault((kind, rule, detail), (before, now))
            found = self.compared[key] = tuple(c[:3] for c in changes)
        return found

    def decision_of(self, row: RecordedJob) -> Decision | None:
        if row.job_type == JobType.schedule:
            key: tuple[Any, ...] = ("schedule", row.requester, row.origin, row.instruction,
                                    row.schedule, row.classifier.get("method"),
                                    row.channel)  # fmt: skip
            if key not in self.decisions:
                self.decisions[key] = _redecide_routine(self.proposed, row)
            return self.decisions[key]
        try:
            facts = facts_of_job(
                requester=row.requester,
                job_type=row.job_type,
                target=row.target,
                origin=row.origin,
                instruction=row.instruction,
                commands=list(row.commands),
                classifier=row.classifier,
                decision=row.decision,
                channel=row.channel,
            )
        except ValueError:  # an origin this code does not know: not decided again
            return None
        if facts is None:
            return None
        key = (facts.person, facts.job_type, facts.target, tuple(facts.tools), facts.origin,
               facts.confidence, facts.has_explicit_steps, facts.channel)  # fmt: skip
        if key not in self.decisions:
            self.decisions[key] = decide(self.proposed, facts)
        return self.decisions[key]


def _redecide_routine(policy: Policy, row: RecordedJob) -> Decision | None:
    """A proposed routine, as the worker re-decides one (its request parsed again)."""
    try:
        spec = JobSpec(
            job_type=JobType.schedule,
            target=row.target,
            instruction=row.instruction,
            commands=list(row.commands),
            schedule=row.schedule,
            origin=Origin(row.origin),
            requester=row.requester,
        )
    except (ValueError, AcpError):
        return None
    reply_to = {"door": "slack", "channel": row.channel} if row.channel else None
    job = SimpleNamespace(
        spec=spec, classifier=row.classifier, decision=row.decision, reply_to=reply_to
    )
    return redecide(policy, job)  # type: ignore[arg-type]  # reads spec, classifier, decision


def compare(before: dict[str, Any], after: Decision) -> list[tuple[str, str, str, Any, Any]]:
    """What differs between a recorded decision and a new one. A job that would no longer be
    allowed (or newly would be) is one change, its effect; gates, approvers, model, tools and
    hosts are compared for a job allowed both times."""
    was = before.get("effect")
    if was != after.effect:
        rule = responsible_rule(after)
        asked_steps = "clarification.direct_mode" in (before.get("rule_ids") or [])
        if after.effect == "allow" and asked_steps:
            rule = after.model_rule or rule  # it asked for steps as no model ran it; one now does
        return [("effect", rule, f"{was} -> {after.effect}", was, after.effect)]
    if after.effect != "allow":
        return []
    out: list[tuple[str, str, str, Any, Any]] = []
    old = {(g.get("action"), g.get("rule_id")): g for g in before.get("approvals") or []}
    new = {(g.action, g.rule_id): g for g in after.approvals}
    for action, rule in sorted(new.keys() - old.keys(), key=str):
        who = new[action, rule].approvers
        out.append(("approval_added", rule, f"{action} gate, approvers: {_names(who)}",
                    None, {"action": action, "rule_id": rule, "approvers": who}))  # fmt: skip
    for action, rule in sorted(old.keys() - new.keys(), key=str):
        who = list(old[action, rule].get("approvers") or [])
        out.append(("approval_removed", rule, f"{action} gate, approvers: {_names(who)}",
                    {"action": action, "rule_id": rule, "approvers": who}, None))  # fmt: skip
    for action, rule in sorted(old.keys() & new.keys(), key=str):
        was_who = sorted(old[action, rule].get("approvers") or [])
        now_who = sorted(new[action, rule].approvers)
        if was_who != now_who:
            out.append(("approvers", rule,
                        f"{action} gate: {_names(was_who)} -> {_names(now_who)}",
                        was_who, now_who))  # fmt: skip
    was_model = (before.get("model"), before.get("model_rule"))
    now_model = (after.model, after.model_rule)
    if was_model != now_model:
        out.append(("model", after.model_rule or "models.none",
                    f"{was_model[0] or 'none'} ({was_model[1] or 'no route'}) -> "
                    f"{now_model[0] or 'none'}",
                    {"model": was_model[0], "route": was_model[1]},
                    {"model": now_model[0], "route": now_model[1]}))  # fmt: skip
    grant = after.rule_ids[0] if after.rule_ids else "grants"
    for kind, name, now in (
        ("tools", "tools_granted", after.tools_granted),
        ("network", "network_granted", after.network_granted),
    ):
        was_set, now_set = set(before.get(name) or []), set(now)
        if was_set != now_set:
            diff = [*(f"-{t}" for t in sorted(was_set - now_set)),
                    *(f"+{t}" for t in sorted(now_set - was_set))]  # fmt: skip
            out.append((kind, grant, " ".join(diff), sorted(was_set), sorted(now_set)))
    return out


def responsible_rule(decision: Decision) -> str:
    """The rule that settles a decision: a refusal's is its last (grants.none, targets.unknown,
    clarification.*); an allow's is its first (the grant)."""
    if not decision.rule_ids:
        return decision.effect
    return decision.rule_ids[0] if decision.effect == "allow" else decision.rule_ids[-1]


def _names(people: list[str]) -> str:
    return ", ".join(people) or "nobody"


def _order(key: _Key) -> tuple[int, str, str]:
    return (KINDS.index(key[0]), key[1], key[2])


def _counts(changes: list[Change]) -> list[ChangeCount]:
    """Jobs per (kind, rule): a job counted once, whatever its changes of that kind and rule."""
    jobs: dict[tuple[str, str], list[list[str]]] = {}
    for change in changes:
        jobs.setdefault((change.kind, change.rule), []).append(change.jobs)
    return [
        ChangeCount(kind=kind, rule=rule,  # type: ignore[arg-type]
                    jobs=len(lists[0]) if len(lists) == 1 else len(set().union(*lists)))
        for (kind, rule), lists in jobs.items()
    ]  # fmt: skip

"""A recorded job asked again: the facts the policy decided it on, read back from its record,
and its decision under another policy (a newer one before it runs, a proposed one in a
simulation). Pure: no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError
from runtime.jobs import JobType, Origin
from runtime.policy.decide import Decision, RequestFacts, decide, decide_routine
from runtime.policy.schema import Policy

if TYPE_CHECKING:
    from runtime.jobs import JobRecord

# Effects recorded only once a request's meaning was settled (its type and target known).
_SETTLED = ("allow", "deny")


def facts_of_job(
    *,
    requester: str,
    job_type: str,
    target: str | None,
    origin: str,
    instruction: str,
    commands: list[str],
    classifier: dict[str, Any],
    decision: dict[str, Any],
    channel: str | None = None,
) -> RequestFacts | None:
    """The facts a job was decided on, from its record's fields; None for a job the policy
    does not decide from a request (a routine's change or deletion, a policy change)."""
    from runtime.kinds import registry

    if classifier.get("method") == "command":
        return None
    try:
        kind = registry.kind_for(job_type)
    except AcpError:
        return None
    if not kind.requestable:
        return None
    settled = decision.get("effect") in _SETTLED
    known = classifier.get("job_type_known", True)
    return RequestFacts(
        person=requester,
        job_type=kind.job_type if (known or settled) else None,
        target=target,
        origin=Origin(origin),
        confidence=1.0 if settled else float(classifier.get("confidence", 1.0)),
        has_explicit_steps=kind.has_explicit_steps(instruction, commands),
        channel=channel,
    )


def redecide(policy: Policy, job: JobRecord) -> Decision | None:
    """The job's decision under `policy`; None when the policy does not decide it again."""
    spec = job.spec
    if spec.job_type is JobType.schedule:
        return _redecide_routine(policy, job)
    facts = facts_of_job(
        requester=spec.requester,
        job_type=spec.job_type,
        target=spec.target,
        origin=spec.origin,
        instruction=spec.instruction,
        commands=spec.commands,
        classifier=job.classifier,
        decision=job.decision,
        channel=_channel(job),
    )
    return decide(policy, facts) if facts is not None else None


def slack_channel(reply_to: dict[str, Any] | None) -> str | None:
    """The Slack channel a job answers in: where it was asked (or where a routine reports)."""
    if reply_to and reply_to.get("door") == "slack":
        return reply_to.get("channel")
    return None


def _channel(job: Any) -> str | None:
    return slack_channel(getattr(job, "reply_to", None))


def _redecide_routine(policy: Policy, job: JobRecord) -> Decision | None:
    """A proposed routine: may its owner still run (so schedule) its request?"""
    from runtime.intake import parse_request

    if job.classifier.get("method") == "command" or not job.spec.schedule:
        return None
    try:
        parsed = parse_request(job.spec.instruction, policy)
    except AcpError as error:
        return Decision(effect="deny", reasons=[error.message], rule_ids=["intake"])
    from runtime.kinds import registry

    explicit = bool(parsed.commands)
    if parsed.job_type is not None:
        explicit = registry.kind_for(parsed.job_type).has_explicit_steps(
            parsed.instruction, parsed.commands
        )
    facts = RequestFacts(
        person=job.spec.requester,
        job_type=parsed.job_type,
        target=parsed.target,
        origin=job.spec.origin,
        confidence=1.0,
        has_explicit_steps=explicit,
        channel=_channel(job),
    )
    return decide_routine(policy, facts)

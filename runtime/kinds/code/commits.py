"""What a code job's commits say: the requester as author (the policy's name and email), the job
id and the prompt in the message, and Acp-Job / Approved-by trailers once approved.

It must never put a secret of the service's environment in a message (the prompt is
redacted), and never name as approver anyone who did not approve this job's action.
"""

from __future__ import annotations

from runtime.jobs import JobRecord
from runtime.policy import Policy
from runtime.secrets import redact

_SUBJECT_MAX = 72


def identity(policy: Policy, person: str) -> tuple[str, str]:
    """(name, email) a person's commits carry: the policy's display name and email, else the
    person's name and an address that says it is not a real mailbox."""
    entry = policy.people.get(person)
    name = (entry.display_name if entry else None) or person
    email = entry.email if entry and entry.email else f"{person}@acp.invalid"
    return name, email


def job_message(job: JobRecord) -> str:
    """The job commit's message: a subject, the whole prompt, and the Acp-Job trailer."""
    prompt = redact(job.spec.instruction).strip()
    first = prompt.splitlines()[0] if prompt else "change"
    subject = f"{job.job_id}: {first}"
    if len(subject) > _SUBJECT_MAX:
        subject = subject[: _SUBJECT_MAX - 1].rstrip() + "…"
    return f"{subject}\n\nRequested by {job.spec.requester}:\n\n{prompt}\n\nAcp-Job: {job.job_id}\n"


def approvers(job: JobRecord, action: str) -> list[str]:
    """Who approved the job's latest gate for this action (in the order they decided)."""
    names = []
    for gate in job.approvals:
        if gate.action == action and gate.decision == "approved" and gate.decided_by:
            names.append(gate.decided_by)
    return names[-1:] if names else []


def approved_message(message: str, job: JobRecord, policy: Policy, approved_by: list[str]) -> str:
    """message with Approved-by trailers joined to its Acp-Job trailer."""
    body = message.rstrip("\n")
    if f"Acp-Job: {job.job_id}" not in body:
        body += f"\n\nAcp-Job: {job.job_id}"
    for person in approved_by:
        name, email = identity(policy, person)
        body += f"\nApproved-by: {name} <{email}>"
    return body + "\n"


def merge_message(job: JobRecord, branch: str, policy: Policy, approved_by: list[str]) -> str:
    prompt = redact(job.spec.instruction).strip()
    first = prompt.splitlines()[0] if prompt else "change"
    subject = f"Merge {branch} ({job.job_id}): {first}"
    if len(subject) > _SUBJECT_MAX:
        subject = subject[: _SUBJECT_MAX - 1].rstrip() + "…"
    return approved_message(f"{subject}\n\n{prompt}\n", job, policy, approved_by)


def revert_message(job: JobRecord, commit: str, actor: str, policy: Policy) -> str:
    name, email = identity(policy, actor)
    return (
        f"Revert {job.job_id}: {commit[:12]}\n\nRolled back by {name} <{email}> with "
        f"acp rollback.\n\nAcp-Job: {job.job_id}\n"
    )

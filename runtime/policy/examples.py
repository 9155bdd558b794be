"""The policy's own examples (`expect:`): each request decided as written, compared with what
the example says, at every load. A policy whose examples fail is refused, naming the example's
file and line; `acp policy test` prints them all as a table.

Pure: parses and decides, never writes. Imports intake and submission when run (they import
the policy package).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.errors import AcpError, PolicyFileError
from runtime.policy.decide import Decision
from runtime.policy.schema import PolicyExample

if TYPE_CHECKING:
    from runtime.policy.load import LoadedPolicy


@dataclass(frozen=True)
class ExampleResult:
    index: int
    example: PolicyExample
    where: tuple[str, int]
    got_effect: str
    got_approvals: list[str]
    got_rules: list[str]
    got_model: str | None
    failures: list[str] = field(default_factory=list)
    refusal: str | None = None  # the request was refused at intake (a BadRequest, an unknown)

    @property
    def passed(self) -> bool:
        return not self.failures


def run_examples(loaded: LoadedPolicy) -> list[ExampleResult]:
    """Every example of the policy, decided and compared; never raises for a failing one."""
    expect = loaded.policy.expect
    return [run_example(loaded, index, example) for index, example in enumerate(expect)]


def run_example(loaded: LoadedPolicy, index: int, example: PolicyExample) -> ExampleResult:
    from runtime.intake import parse_request
    from runtime.submission import decide_parsed

    policy = loaded.policy
    first = str(loaded.files[0]) if loaded.files else "?"
    where = loaded.lines.get(("expect", index)) or (first, 1)
    refusal = None
    decision: Decision | None = None
    if example.as_ not in policy.people:
        refusal = f"'{example.as_}' is not a person in the policy"
    else:
        try:
            parsed = parse_request(example.request, policy)
            decision = decide_parsed(policy, example.as_, parsed, example.origin)
        except AcpError as error:
            refusal = error.message
    if decision is None:
        decision = Decision(effect="deny", reasons=[refusal or "refused"], rule_ids=["intake"])
    approvals = [gate.rule_id for gate in decision.approvals]
    failures = []
    if decision.effect != example.expected_effect:
        why = f" ({'; '.join(decision.reasons)})" if decision.reasons else ""
        failures.append(f"expected {example.expected_effect}, got {decision.effect}{why}")
    if example.approvals is not None and sorted(set(approvals)) != sorted(set(example.approvals)):
        failures.append(
            f"expected approvals [{', '.join(example.approvals)}], got [{', '.join(approvals)}]"
        )
    for rule_id, people in (example.approvers or {}).items():
        gate = next((g for g in decision.approvals if g.rule_id == rule_id), None)
        got = sorted(gate.approvers) if gate else []
        if got != sorted(people):
            failures.append(
                f"expected approvers of {rule_id}: [{', '.join(sorted(people))}], "
                f"got [{', '.join(got)}]"
            )
    missing = [rule for rule in example.rules if rule not in decision.rule_ids]
    if missing:
        failures.append(
            f"expected rules {', '.join(missing)} among [{', '.join(decision.rule_ids)}]"
        )
    if example.model is not None and decision.model != example.model:
        failures.append(f"expected model {example.model}, got {decision.model or '-'}")
    return ExampleResult(
        index=index,
        example=example,
        where=(where[0], where[1]),
        got_effect=decision.effect,
        got_approvals=approvals,
        got_rules=list(decision.rule_ids),
        got_model=decision.model,
        failures=failures,
        refusal=refusal,
    )


def check_examples(loaded: LoadedPolicy) -> None:
    """Refuse the policy at its first failing example, naming its file and line."""
    results = run_examples(loaded)
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    first = failed[0]
    file, line = first.where
    more = f" ({len(failed) - 1} more examples fail)" if len(failed) > 1 else ""
    raise PolicyFileError(
        f"{file}:{line}: example {first.index + 1} (as {first.example.as_}: "
        f"{first.example.request!r}): {'; '.join(first.failures)}{more}",
        hint="`acp policy test` runs every example and prints what each one got",
    )

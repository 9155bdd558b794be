"""The policy: loading YAML with file and line in every error, and the pure decide functions.

Real YAML files only: the bundled policies/ and small policies written to tmp_path.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime.errors import PolicyFileError
from runtime.jobs import JobType, Origin
from runtime.policy import Decision, Policy, RequestFacts, decide, decide_approval, load_policy

BUNDLED = Path(__file__).resolve().parents[2] / "policies"
MARK = "# <-- here"


@pytest.fixture(scope="module")
def bundled() -> Policy:
    return load_policy(BUNDLED).policy


def write_policy(directory: Path, text: str, name: str = "policy.yml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def marked_line(path: Path) -> int:
    """The 1-based line carrying MARK: where the error must point."""
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if MARK in line)


# A policy with several targets and model routes, to tell the rules apart.
ROUTED = """
people:
  alice:
    roles: [engineer]
    identities: {cli: [alice]}
  bob:
    roles: [engineer]
roles:
  engineer:
    grants:
      - id: eng.repos
        job_types: [code, doc]
        targets: [demo, reports, payments-api, hr-records]
        tools: [fs.read, fs.write, shell, git.diff, docs]
      - id: eng.sql
        job_types: [sql]
        targets: ["*"]
        tools: [sql.query]
      - id: eng.browser
        job_types: [browser]
        targets: [admin.internal.example.com]
        tools: [browser, playwright]
models:
  routes:
    - id: route.sql.direct
      job_types: [sql]
      model: direct
    - id: route.confidential.local
      sensitivity: [confidential, restricted]
      model: ollama/llama3
    - id: route.high
      risk: [high]
      model: openai/gpt-4o
    - id: route.routines
      origins: [schedule]
      model: direct
    - id: route.default
      model: openai/gpt-4o-mini
targets:
  repos:
    demo: {path: /srv/demo}
    reports: {path: /srv/reports}
    payments-api: {path: /srv/payments-api, production: true}
    vault: {path: /srv/vault}
    hr-records: {path: /srv/hr, sensitivity: confidential}
  databases:
    payments-replica: {dsn_env: PAYMENTS_REPLICA_DSN}
    payments-primary: {dsn_env: PAYMENTS_PRIMARY_DSN, production: true}
  sites:
    admin.internal.example.com: {domains: [admin.internal.example.com]}
"""


@pytest.fixture
def routed(tmp_path: Path) -> Policy:
    write_policy(tmp_path / "routed", ROUTED)
    return load_policy(tmp_path / "routed").policy


# --- decide() on the bundled policy ------------------------------------------------------


@dataclass
class DecideCase:
    facts: RequestFacts
    effect: str
    rule_ids: tuple[str, ...]
    reason_words: tuple[str, ...] = ()
    clarify_field: str | None = None
    tools_granted: list[str] | None = None
    options: list[str] | None = None
    extra: dict = field(default_factory=dict)


def facts(person: str | None, job_type: JobType | None, target: str | None, **kw) -> RequestFacts:
    return RequestFacts(person=person, job_type=job_type, target=target, **kw)


CODE_TOOLS = ["fs.read", "fs.write", "shell", "git.diff"]

DECIDE_CASES = {
    "alice-code-demo-allowed": DecideCase(
        facts("alice", JobType.code, "demo"),
        "allow",
        ("engineer.code.demo", "demo.merge.review", "models.direct.default"),
        reason_words=("alice", "demo"),
        tools_granted=CODE_TOOLS,
    ),
    "alice-sql-replica-allowed-without-gate": DecideCase(
        facts("alice", JobType.sql, "payments-replica"),
        "allow",
        ("engineer.sql.replica",),
        tools_granted=["sql.query"],
    ),
    "carol-code-demo-denied-no-grant": DecideCase(
        facts("carol", JobType.code, "demo"),
        "deny",
        ("grants.none",),
        reason_words=("carol", "demo", "analyst"),
    ),
    "unknown-person-denied": DecideCase(
        facts("mallory", JobType.sql, "payments-replica"),
        "deny",
        ("people.unknown",),
        reason_words=("not a person",),
    ),
    "no-person-denied": DecideCase(
        facts(None, JobType.sql, "payments-replica"), "deny", ("people.unknown",)
    ),
    "tool-not-granted-denied": DecideCase(
        facts("alice", JobType.code, "demo", tools=["fs.read", "browser"]),
        "deny",
        ("engineer.code.demo", "grants.tool"),
        reason_words=("alice", "browser"),
    ),
    "unknown-target-denied": DecideCase(
        facts("alice", JobType.code, "payments-api"),
        "deny",
        ("targets.unknown",),
        reason_words=("payments-api",),
    ),
    "no-job-type-asks-for-type": DecideCase(
        facts("alice", None, "demo"),
        "needs_clarification",
        ("clarification.confidence",),
        clarify_field="job_type",
    ),
    "mutating-without-target-asks-for-target": DecideCase(
        facts("alice", JobType.code, None),
        "needs_clarification",
        ("clarification.mutating_without_target",),
        reason_words=("code", "target"),
        clarify_field="target",
        options=["demo"],
    ),
    "read-only-without-target-asks-for-target": DecideCase(
        facts("carol", JobType.sql, None),
        "needs_clarification",
        ("clarification.no_target",),
        clarify_field="target",
        options=["payments-replica"],
    ),
    "low-confidence-asks-before-guessing": DecideCase(
        facts("alice", JobType.code, "demo", confidence=0.5),
        "needs_clarification",
        ("clarification.confidence",),
        reason_words=("0.50", "0.75"),
        clarify_field="job_type",
    ),
    "confidence-at-threshold-proceeds": DecideCase(
        facts("alice", JobType.code, "demo", confidence=0.75),
        "allow",
        ("engineer.code.demo",),
    ),
    "direct-mode-without-steps-asks-for-commands": DecideCase(
        facts("alice", JobType.code, "demo", has_explicit_steps=False),
        "needs_clarification",
        ("engineer.code.demo", "models.direct.default", "clarification.direct_mode"),
        reason_words=("explicit steps",),
        clarify_field="commands",
    ),
}


@pytest.mark.parametrize("case", DECIDE_CASES.values(), ids=DECIDE_CASES.keys())
def test_decide_on_bundled_policy(bundled: Policy, case: DecideCase) -> None:
    decision = decide(bundled, case.facts)

    assert decision.effect == case.effect, decision.reasons
    for rule_id in case.rule_ids:
        assert rule_id in decision.rule_ids
    text = " ".join(decision.reasons)
    for word in case.reason_words:
        assert word in text
    if case.effect == "deny":
        assert decision.tools_granted == [] and decision.approvals == []
    if case.clarify_field is not None:
        assert decision.clarify_field == case.clarify_field
        assert decision.question
    if case.tools_granted is not None:
        assert decision.tools_granted == case.tools_granted
    if case.options is not None:
        assert decision.options == case.options


def test_merge_on_demo_waits_for_bob_under_four_eyes_for_72_hours(bundled: Policy) -> None:
    decision = decide(bundled, facts("alice", JobType.code, "demo"))

    assert decision.effect == "allow"
    assert decision.model == "direct"
    assert decision.approval_required_for == ["merge"]
    (gate,) = decision.approvals
    assert gate.rule_id == "demo.merge.review"
    assert gate.approvers == ["bob"]
    assert gate.four_eyes is True
    assert gate.expires_after_s == 72 * 3600
    assert any("merge needs approval" in reason for reason in decision.reasons)


def test_read_only_sql_job_has_no_approval_gate(bundled: Policy) -> None:
    decision = decide(bundled, facts("carol", JobType.sql, "payments-replica"))

    assert decision.effect == "allow"
    assert decision.approvals == []
    assert decision.risk == "low"


def test_mutating_job_without_target_offers_only_targets_the_person_is_granted(
    routed: Policy,
) -> None:
    decision = decide(routed, facts("alice", JobType.code, None))

    assert decision.effect == "needs_clarification"
    assert decision.rule_ids == ["clarification.mutating_without_target"]
    # 'vault' is a repo in the policy, but no grant of alice's names it.
    assert decision.options == ["demo", "hr-records", "payments-api", "reports"]
    assert "vault" not in decision.options


def test_unclear_request_without_type_offers_job_types(bundled: Policy) -> None:
    decision = decide(bundled, facts("alice", None, None, confidence=0.0))

    assert decision.effect == "needs_clarification"
    assert decision.clarify_field == "job_type"
    assert set(decision.options) == {"code", "sql", "browser", "doc"}


ROUTE_CASES = {
    "sql-goes-direct-by-job-type": (
        facts("alice", JobType.sql, "payments-replica"),
        "direct",
        "route.sql.direct",
        "low",
    ),
    "sql-on-production-still-direct-by-job-type": (
        facts("alice", JobType.sql, "payments-primary"),
        "direct",
        "route.sql.direct",
        "medium",
    ),
    "code-on-production-repo-is-high-risk": (
        facts("alice", JobType.code, "payments-api"),
        "openai/gpt-4o",
        "route.high",
        "high",
    ),
    "code-on-ordinary-repo-takes-default": (
        facts("alice", JobType.code, "demo"),
        "openai/gpt-4o-mini",
        "route.default",
        "medium",
    ),
    "routine-origin-goes-direct": (
        facts("alice", JobType.code, "demo", origin=Origin.schedule),
        "direct",
        "route.routines",
        "medium",
    ),
    "confidential-data-stays-on-a-local-model": (
        facts("alice", JobType.code, "hr-records"),
        "ollama/llama3",
        "route.confidential.local",
        "medium",
    ),
    "browser-takes-default": (
        facts("alice", JobType.browser, "admin.internal.example.com"),
        "openai/gpt-4o-mini",
        "route.default",
        "medium",
    ),
}


@pytest.mark.parametrize(
    ("request_facts", "model", "route_id", "risk"), ROUTE_CASES.values(), ids=ROUTE_CASES.keys()
)
def test_model_route_follows_job_type_risk_and_origin(
    routed: Policy, request_facts: RequestFacts, model: str, route_id: str, risk: str
) -> None:
    decision = decide(routed, request_facts)

    assert decision.effect == "allow", decision.reasons
    assert decision.model == model
    assert decision.model_rule == route_id
    assert route_id in decision.rule_ids
    assert decision.risk == risk


def test_routed_model_runs_a_job_without_explicit_steps(routed: Policy) -> None:
    decision = decide(routed, facts("alice", JobType.code, "demo", has_explicit_steps=False))

    assert decision.effect == "allow"
    assert decision.model == "openai/gpt-4o-mini"


def test_policy_without_routes_means_direct_mode(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        """
        people: {alice: {roles: [eng]}}
        roles:
          eng:
            grants: [{id: g, job_types: [code], targets: ["*"], tools: [shell]}]
        targets: {repos: {demo: {path: /srv/demo}}}
        """,
    )
    decision = decide(load_policy(tmp_path).policy, facts("alice", JobType.code, "demo"))

    assert decision.effect == "allow"
    assert decision.model == "direct"
    assert decision.model_rule is None
    # Only the tools the grant names, in the job type's order.
    assert decision.tools_granted == ["shell"]


# --- decide_approval() -------------------------------------------------------------------

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
RULE = "demo.merge.review"


@dataclass
class ApprovalCase:
    approver: str | None
    requester: str
    effect: str
    rule_ids: tuple[str, ...]
    reason_words: tuple[str, ...] = ()
    expires_at: datetime | None = NOW + timedelta(hours=72)
    four_eyes: bool = True
    rule_id: str = RULE


APPROVAL_CASES = {
    "approver-bob-may-approve": ApprovalCase("bob", "alice", "allow", (RULE,), ("bob",)),
    "requester-cannot-approve-own-job": ApprovalCase(
        "alice", "alice", "deny", (RULE, "approval.four_eyes"), ("alice", "four-eyes")
    ),
    "approver-who-requested-is-refused-under-four-eyes": ApprovalCase(
        "bob", "bob", "deny", ("approval.four_eyes",), ("bob",)
    ),
    "non-approver-is-refused-and-told-who-may": ApprovalCase(
        "carol", "alice", "deny", (RULE, "approval.not_approver"), ("carol", "approvers: bob")
    ),
    "unknown-approver-is-refused": ApprovalCase("mallory", "alice", "deny", ("people.unknown",)),
    "expired-at-the-instant-of-expiry": ApprovalCase(
        "bob", "alice", "deny", ("approval.expired",), ("expired",), expires_at=NOW
    ),
    "expired-long-ago": ApprovalCase(
        "bob", "alice", "deny", ("approval.expired",), expires_at=NOW - timedelta(days=3)
    ),
    "one-second-before-expiry-still-open": ApprovalCase(
        "bob", "alice", "allow", (RULE,), expires_at=NOW + timedelta(seconds=1)
    ),
    "no-expiry-never-expires": ApprovalCase("bob", "alice", "allow", (RULE,), expires_at=None),
    "without-four-eyes-requester-who-is-approver-may-approve": ApprovalCase(
        "bob", "bob", "allow", (RULE,), four_eyes=False
    ),
    "without-four-eyes-non-approver-requester-still-refused": ApprovalCase(
        "alice", "alice", "deny", ("approval.not_approver",), four_eyes=False
    ),
    "rule-gone-from-policy-refuses-everyone": ApprovalCase(
        "bob",
        "alice",
        "deny",
        ("approval.rule_gone",),
        ("no longer in the policy",),
        rule_id="old.rule",
    ),
}


@pytest.mark.parametrize("case", APPROVAL_CASES.values(), ids=APPROVAL_CASES.keys())
def test_decide_approval(bundled: Policy, case: ApprovalCase) -> None:
    decision = decide_approval(
        bundled,
        approver=case.approver,
        requester=case.requester,
        rule_id=case.rule_id,
        expires_at=case.expires_at,
        now=NOW,
        four_eyes=case.four_eyes,
    )

    assert decision.effect == case.effect, decision.reasons
    for rule_id in case.rule_ids:
        assert rule_id in decision.rule_ids
    text = " ".join(decision.reasons)
    for word in case.reason_words:
        assert word in text


def _approve(policy: Policy, approver: str) -> Decision:
    return decide_approval(
        policy,
        approver=approver,
        requester="alice",
        rule_id=RULE,
        expires_at=None,
        now=NOW,
        four_eyes=True,
    )


def test_approver_removed_from_role_in_changed_policy_is_refused(tmp_path: Path) -> None:
    assert _approve(load_policy(BUNDLED).policy, "bob").effect == "allow"
    text = (BUNDLED / "default.yml").read_text()
    bobs = "roles: [engineer, demo-approver, reports-approver, security-approver]"
    assert bobs in text
    changed = text.replace(bobs, "roles: [engineer, reports-approver, security-approver]").replace(
        "    roles: [analyst]", "    roles: [analyst, demo-approver]"
    )
    write_policy(tmp_path, changed, "default.yml")

    # (examples=False: the bundled examples pin down bob's approvals, which this changes)
    decision = _approve(load_policy(tmp_path, examples=False).policy, "bob")

    assert decision.effect == "deny"
    assert "approval.not_approver" in decision.rule_ids
    assert "approvers: carol" in decision.reasons[0]


def test_rule_without_any_approver_is_not_reported_as_gone(tmp_path: Path) -> None:
    text = (BUNDLED / "default.yml").read_text()
    write_policy(
        tmp_path,
        text.replace(
            "roles: [engineer, demo-approver, reports-approver, security-approver]",
            "roles: [engineer]",
        ),
        "default.yml",
    )

    decision = _approve(load_policy(tmp_path, examples=False).policy, "bob")

    assert decision.effect == "deny"
    assert "gone" not in decision.reasons[0]


# --- malformed policy files ----------------------------------------------------------------

MALFORMED = {
    "yaml-syntax-error": (
        """
        people:
          alice:
            roles: x: y   # <-- here
        """,
        "YAML syntax error",
    ),
    "unknown-top-level-section": (
        """
        version: 1
        peeple:   # <-- here
          alice: {}
        """,
        "unknown section 'peeple'",
    ),
    "unknown-field-in-person": (
        """
        roles:
          engineer: {}
        people:
          alice:
            display_name: Alice
            rolez: [engineer]   # <-- here
        """,
        "unknown field 'rolez'",
    ),
    "wrong-type": (
        """
        clarification:
          confidence_threshold: "high"   # <-- here
        """,
        "confidence_threshold",
    ),
    "threshold-out-of-range": (
        """
        clarification:
          confidence_threshold: 7   # <-- here
        """,
        "confidence_threshold",
    ),
    "person-with-unknown-role": (
        """
        roles:
          engineer: {}
        people:
          alice:
            roles:
              - engineer
              - enginer   # <-- here
        """,
        "person 'alice' has unknown role 'enginer'",
    ),
    "approval-rule-naming-unknown-person": (
        """
        people:
          alice: {}
        approvals:
          - id: first
            actions: [merge]
            approvers: {people: [alice]}
          - id: demo.merge
            actions: [merge]
            approvers:
              people: [alice, dave]   # <-- here
        """,
        "approval rule 'demo.merge' names unknown person 'dave'",
    ),
    "same-slack-identity-on-two-people": (
        """
        people:
          alice:
            identities:
              slack: [U0ALICE001]
          mallory:
            identities:
              slack: [U0ALICE001]   # <-- here
        """,
        "slack identity 'U0ALICE001' belongs to both 'alice' and 'mallory'",
    ),
    "bad-duration": (
        """
        people:
          bob: {}
        approvals:
          - id: demo.merge
            actions: [merge]
            approvers: {people: [bob]}
            expires_after: soon   # <-- here
        """,
        "'soon' is not a duration",
    ),
    "duplicate-grant-id": (
        """
        roles:
          a:
            grants:
              - {id: g1, job_types: [sql], targets: ["*"]}
          b:
            grants:
              - {id: g1, job_types: [code], targets: ["*"]}   # <-- here
        """,
        "duplicate grant id 'g1'",
    ),
    "not-a-mapping": (
        """
        - alice   # <-- here
        - bob
        """,
        "must be a mapping",
    ),
}


@pytest.mark.parametrize(("text", "what"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_policy_fails_at_load_with_file_line_and_what_is_wrong(
    tmp_path: Path, text: str, what: str
) -> None:
    path = write_policy(tmp_path, text)

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    message = str(caught.value)
    assert f"{path}:{marked_line(path)}:" in message
    assert what in message


def test_error_in_second_file_points_into_that_file(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        """
        people: {alice: {}, bob: {}}
        approvals:
          - {id: a1, actions: [merge], approvers: {people: [bob]}}
          - {id: a2, actions: [deploy], approvers: {people: [bob]}}
        """,
        "a.yml",
    )
    second = write_policy(
        tmp_path,
        """
        # more rules
        approvals:
          - id: b1
            actions: [delete]
            approvers:
              people: [zed]   # <-- here
        """,
        "b.yml",
    )

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    assert f"{second}:{marked_line(second)}:" in str(caught.value)
    assert "unknown person 'zed'" in str(caught.value)


def test_same_person_in_two_files_fails_with_file_and_line(tmp_path: Path) -> None:
    first = write_policy(tmp_path, "people:\n  alice: {}\n", "a.yml")
    second = write_policy(
        tmp_path,
        """
        # the support team
        people:
          alice:   # <-- here
            team: support
        """,
        "b.yml",
    )

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    message = str(caught.value)
    assert "people.alice" in message and str(first) in message
    assert f"{second}:{marked_line(second)}:" in message


def test_same_person_in_two_files_is_refused_naming_both_files(tmp_path: Path) -> None:
    first = write_policy(tmp_path, "people:\n  alice: {}\n", "a.yml")
    second = write_policy(tmp_path, "people:\n  alice: {team: support}\n", "b.yml")

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    message = str(caught.value)
    assert "people.alice" in message
    assert str(first) in message and str(second) in message


def test_people_split_across_files_merge_into_one_policy(tmp_path: Path) -> None:
    write_policy(tmp_path, "roles: {eng: {}}\npeople:\n  alice: {roles: [eng]}\n", "a.yml")
    write_policy(tmp_path, "people:\n  bob: {roles: [eng]}\n", "b.yaml")

    loaded = load_policy(tmp_path)

    assert set(loaded.policy.people) == {"alice", "bob"}
    assert [p.name for p in loaded.files] == ["a.yml", "b.yaml"]


def test_empty_policy_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a policy")

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    assert str(tmp_path) in str(caught.value)
    assert "no policy files" in str(caught.value)


def test_missing_policy_directory_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path / "nowhere")

    assert str(tmp_path / "nowhere") in str(caught.value)
    assert "ACP_POLICY_DIR" in (caught.value.hint or "")


# --- the policy hash ----------------------------------------------------------------------


def test_policy_hash_changes_when_a_file_changes_and_is_stable_otherwise(tmp_path: Path) -> None:
    shutil.copytree(BUNDLED, tmp_path / "p")
    first = load_policy(tmp_path / "p").sha256

    assert load_policy(tmp_path / "p").sha256 == first
    assert load_policy(BUNDLED).sha256 == first  # same bytes, same name, other directory

    path = tmp_path / "p" / "default.yml"
    original = path.read_text()
    path.write_text(original.replace("expires_after: 72h", "expires_after: 48h"))
    changed = load_policy(tmp_path / "p").sha256
    assert changed != first

    path.write_text(original + "# a reviewer's note\n")
    assert load_policy(tmp_path / "p").sha256 not in (first, changed)

    path.write_text(original)
    assert load_policy(tmp_path / "p").sha256 == first


def test_policy_hash_changes_when_a_file_is_added(tmp_path: Path) -> None:
    shutil.copytree(BUNDLED, tmp_path / "p")
    before = load_policy(tmp_path / "p").sha256

    write_policy(tmp_path / "p", "people:\n  dave: {roles: [analyst]}\n", "zz-people.yml")

    assert load_policy(tmp_path / "p").sha256 != before


# --- one person across doors ----------------------------------------------------------------

DOORS = {
    "alice-cli": ("cli", "alice", "alice"),
    "alice-slack": ("slack", "U0ALICE001", "alice"),
    "alice-console": ("console", "alice@example.com", "alice"),
    "bob-slack": ("slack", "U0BOB00001", "bob"),
    "carol-console": ("console", "carol@example.com", "carol"),
    "unknown-slack-user": ("slack", "U0NOBODY01", None),
    "slack-id-is-not-a-console-login": ("console", "U0ALICE001", None),
    "person-name-is-not-a-slack-id": ("slack", "alice", None),
}


@pytest.mark.parametrize(("door", "identity", "person"), DOORS.values(), ids=DOORS.keys())
def test_every_door_identity_maps_to_the_same_person(
    bundled: Policy, door: str, identity: str, person: str | None
) -> None:
    assert bundled.person_for(door, identity) == person


# --- browser sites --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "site, words",
    [
        ("{domains: [admin.example.com], base_url: 'https://evil.example.net/'}",
         "base_url host 'evil.example.net' is not in its domains"),
        ("{domains: [admin.example.com], base_url: 'ftp://admin.example.com'}",
         "is not an http(s) URL"),
        ("{domains: [admin.example.com], credentials: {pw: 'hunter2 plain'}}",
         "must name an environment variable"),
        ("{domains: []}", "domains"),
    ],
    ids=["base-off-domains", "scheme", "credential-value", "no-domains"],
)  # fmt: skip
def test_site_target_mistakes_are_refused_with_file_and_line(tmp_path, site, words) -> None:
    path = write_policy(tmp_path, f"targets:\n  sites:\n    admin: {site}\n")
    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)
    assert words in str(caught.value)
    assert str(path) in str(caught.value)


def test_site_with_wildcard_domain_and_base_url_loads(tmp_path) -> None:
    write_policy(
        tmp_path,
        "targets:\n  sites:\n    admin: {domains: ['*.example.com'], "
        "base_url: 'https://admin.example.com/app/', credentials: {pw: ADMIN_PW}}\n",
    )
    site = load_policy(tmp_path).policy.targets.sites["admin"]
    assert site.start_url() == "https://admin.example.com/app"
    assert site.credentials == {"pw": "ADMIN_PW"}

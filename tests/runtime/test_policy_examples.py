"""The policy's own examples (`expect:`), their coverage, and `explain`: real policy files (the
bundled policies/ and small ones written to tmp_path), loaded, decided and compared.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.errors import PolicyFileError
from runtime.intake import parse_request
from runtime.jobs import Origin
from runtime.policy import load_policy
from runtime.policy.examples import coverage, run_examples
from runtime.policy.explain import explain
from runtime.submission import decide_parsed

BUNDLED = Path(__file__).resolve().parents[2] / "policies"
MARK = "# <-- here"

# A small policy: engineers code on demo (a reviewer merges), analysts query the replica.
BASE = """
people:
  alice: {roles: [engineer]}
  bob: {roles: [engineer, reviewer]}
  carol: {roles: [analyst]}
roles:
  engineer:
    grants:
      - id: eng.code
        job_types: [code]
        targets: [demo]
        tools: [fs.read, fs.write, shell, git.diff]
  reviewer: {}
  analyst:
    grants:
      - id: analyst.sql
        job_types: [sql]
        targets: [replica]
        tools: [sql.query]
approvals:
  - id: demo.review
    job_types: [code]
    targets: [demo]
    actions: [merge]
    approvers: {roles: [reviewer]}
models:
  routes:
    - id: route.direct
      model: direct
targets:
  repos:
    demo: {path: /srv/repos/demo}
  databases:
    replica: {dsn_env: REPLICA_DSN}
"""


def write(directory: Path, text: str, name: str = "policy.yml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def with_examples(examples: str) -> str:
    return textwrap.dedent(BASE) + "expect:\n" + textwrap.indent(textwrap.dedent(examples), "  ")


def marked_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if MARK in line)


# --- examples at load ----------------------------------------------------------------


def test_a_policy_whose_examples_pass_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        with_examples("""
        - as: alice
          request: 'code demo: run `make test`'
          approvals: [demo.review]
          approvers: {demo.review: [bob]}
          rules: [eng.code, route.direct]
          model: direct
        - as: carol
          request: 'code demo: run `ls`'
          effect: deny
          rules: [grants.none]
        - as: carol
          request: 'sql replica: select 1'
          approvals: []
        """),
    )

    loaded = load_policy(tmp_path)

    results = run_examples(loaded)
    assert [r.passed for r in results] == [True, True, True]
    assert [r.got_effect for r in results] == ["allow", "deny", "allow"]
    assert results[0].got_approvers == {"demo.review": ["bob"]}


def test_a_failing_example_refuses_the_policy_at_its_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        with_examples(f"""
        - as: alice
          request: 'code demo: run `make test`'
          approvals: [demo.review]
        - as: carol  {MARK}
          request: 'code demo: run `ls`'
          effect: allow
        """),
    )

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    message = str(caught.value)
    assert message.startswith(f"{path}:{marked_line(path)}: example 2 (as carol:")
    assert "expected allow, got deny" in message
    assert "carol has no grant for code jobs on 'demo'" in message
    assert "acp policy test" in (caught.value.hint or "")


def test_without_examples_the_failing_policy_still_loads_and_each_result_says_why(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        with_examples(f"""
        - as: carol  {MARK}
          request: 'code demo: run `ls`'
          effect: allow
        """),
    )

    loaded = load_policy(tmp_path, examples=False)

    [result] = run_examples(loaded)
    assert not result.passed
    assert result.where == (str(path), marked_line(path))
    assert result.failures[0].startswith("expected allow, got deny")


def test_examples_in_two_files_point_into_their_own_file(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        with_examples("""
        - as: alice
          request: 'code demo: run `make test`'
          approvals: [demo.review]
        """),
        "a.yml",
    )
    second = write(
        tmp_path,
        f"""
        expect:
          - as: carol
            request: 'sql replica: select 1'
            rules: [analyst.sql]
          - as: bob  {MARK}
            request: 'sql replica: select 1'
            effect: allow
        """,
        "b.yml",
    )

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)
    assert str(caught.value).startswith(f"{second}:{marked_line(second)}: example 3 (as bob:")
    assert "bob has no grant for sql jobs on 'replica'" in str(caught.value)

    results = run_examples(load_policy(tmp_path, examples=False))
    assert [r.where[0] for r in results] == [str(first), str(second), str(second)]
    assert [r.passed for r in results] == [True, True, False]


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ("approvals: []", "expected approvals [], got [demo.review]"),
        ("approvals: [other.rule]", "expected approvals [other.rule], got [demo.review]"),
        (
            "approvers: {demo.review: [alice]}",
            "expected approvers of demo.review: [alice], got [bob]",
        ),
        (
            "approvers: {nope.rule: [bob]}",
            "expected approvers of nope.rule, but no gate of nope.rule",
        ),
        (
            "rules: [eng.code, analyst.sql]",
            "expected rules analyst.sql among [eng.code, demo.review",
        ),
        ("model: openai/gpt-4o", "expected model openai/gpt-4o, got direct"),
        ("effect: needs_clarification", "expected needs_clarification, got allow"),
    ],
)
def test_each_kind_of_mismatch_says_what_was_expected_and_what_was_got(
    tmp_path: Path, expectation: str, message: str
) -> None:
    path = write(
        tmp_path,
        with_examples(f"""
        - as: alice  {MARK}
          request: 'code demo: run `make test`'
          {expectation}
        """),
    )

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    assert str(caught.value).startswith(f"{path}:{marked_line(path)}: example 1")
    assert message in str(caught.value)


def test_a_request_refused_at_intake_is_a_deny_by_the_intake(tmp_path: Path) -> None:
    write(
        tmp_path,
        with_examples("""
        - as: alice
          request: 'sql replica: delete from payments'
          effect: deny
          rules: [intake]
        - as: alice
          request: 'code nowhere: run `ls`'
          effect: allow
        """),
    )

    results = run_examples(load_policy(tmp_path, examples=False))

    assert results[0].passed
    assert "read-only" in (results[0].refusal or "")
    assert not results[1].passed
    assert "unknown code target 'nowhere'" in results[1].failures[0]


def test_an_unknown_person_is_denied_by_the_policy_not_the_example(tmp_path: Path) -> None:
    write(
        tmp_path,
        with_examples("""
        - as: mallory
          request: 'sql replica: select 1'
          effect: deny
          rules: [people.unknown]
        """),
    )

    [result] = run_examples(load_policy(tmp_path))
    assert result.passed and result.got_rules == ["people.unknown"]


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ("request: 'sql replica: select 1'\n  job_type: sql\n  target: replica",
         "a request, or a job_type and target, not both"),
        ("job_type: sql", "an example with job_type needs its target"),
        ("request: 'sql replica: select 1'\n  target: replica", "target goes with job_type"),
        ("job_type: nonsense\n  target: replica", "unknown job type nonsense"),
        ("request: 'sql replica: select 1'", "an example needs what to expect"),
    ],
)  # fmt: skip
def test_a_malformed_example_is_refused_at_its_line(
    tmp_path: Path, example: str, message: str
) -> None:
    text = textwrap.dedent(BASE) + f"expect:\n- as: alice  {MARK}\n  {example}\n"
    path = tmp_path / "policy.yml"
    path.write_text(text)

    with pytest.raises(PolicyFileError) as caught:
        load_policy(tmp_path)

    assert str(caught.value).startswith(f"{path}:{marked_line(path)}:")
    assert message in str(caught.value)


def test_an_example_of_a_job_no_request_names_is_decided_from_its_type_and_target() -> None:
    loaded = load_policy(BUNDLED, examples=False)
    policy_jobs = [r for r in run_examples(loaded) if r.example.job_type == "policy"]

    assert {r.example.as_: r.got_effect for r in policy_jobs} == {"alice": "allow", "carol": "deny"}
    allowed = next(r for r in policy_jobs if r.got_effect == "allow")
    assert allowed.got_approvals == ["policy.change.review"]
    assert allowed.request == "(policy job on service)"


# --- the bundled policy --------------------------------------------------------------


def test_the_bundled_policy_loads_and_every_example_passes() -> None:
    loaded = load_policy(BUNDLED)

    results = run_examples(loaded)
    assert len(results) >= 10
    assert [r.failures for r in results if not r.passed] == []
    assert {r.got_effect for r in results} == {"allow", "deny"}


def test_the_bundled_examples_cover_every_grant_and_approval_rule() -> None:
    loaded = load_policy(BUNDLED)
    policy = loaded.policy
    grants = {g.id for role in policy.roles.values() for g in role.grants}
    assert {
        "engineer.code.demo", "engineer.sql.replica", "engineer.doc.reports",
        "engineer.policy.propose", "analyst.sql.replica",
    } <= grants  # fmt: skip

    assert coverage(loaded, run_examples(loaded)) == ([], [])


def test_coverage_names_what_no_example_exercises(tmp_path: Path) -> None:
    write(
        tmp_path,
        with_examples("""
        - as: carol
          request: 'sql replica: select 1'
          rules: [analyst.sql]
        - as: carol
          request: 'code demo: run `ls`'
          effect: deny
        """),
    )
    loaded = load_policy(tmp_path)

    assert coverage(loaded, run_examples(loaded)) == (["eng.code"], ["demo.review"])


def test_an_approval_rule_an_example_names_counts_as_covered(tmp_path: Path) -> None:
    write(
        tmp_path,
        with_examples("""
        - as: alice
          request: 'code demo: run `ls`'
          approvals: [demo.review]
        """),
    )
    loaded = load_policy(tmp_path)

    assert coverage(loaded, run_examples(loaded)) == (["analyst.sql"], [])


# --- explain -------------------------------------------------------------------------

SPREAD = [
    ("alice", "code demo: run `make test`", "allow"),
    ("bob", "doc reports: run `ls`", "allow"),
    ("carol", "sql payments-replica: select 1", "allow"),
    ("alice", 'schedule "0 9 * * MON" sql payments-replica: select 1', "allow"),
    ("carol", "code demo: run `ls`", "deny"),
    ("carol", 'schedule "0 9 * * MON" code demo: run `ls`', "deny"),
    ("mallory", "sql payments-replica: select 1", "deny"),
    ("alice", "doc reports: write up this week's incidents", "needs_clarification"),
    ("alice", "please fix the typo in the readme", "needs_clarification"),
    ("bob", "hello there", "needs_clarification"),
]


@pytest.mark.parametrize(("person", "text", "effect"), SPREAD)
def test_explain_reports_the_decision_decide_makes_and_retraces_it(
    person: str, text: str, effect: str
) -> None:
    policy = load_policy(BUNDLED).policy

    explained = explain(policy, person, text, Origin.cli)

    decided = decide_parsed(policy, person, parse_request(text, policy), Origin.cli)
    assert explained.decision == decided
    assert decided.effect == effect
    grant_ids = {g.id for role in policy.roles.values() for g in role.grants}
    matched = [c.rule for c in explained.grants if c.result == "matched"]
    assert matched == [r for r in decided.rule_ids if r in grant_ids]
    if effect == "allow":
        assert explained.decided_by is None
        applied = [c.rule for c in explained.approvals if c.result == "applies"]
        assert applied == [g.rule_id for g in decided.approvals]
        chosen = [c.rule for c in explained.models if c.result == "chosen"]
        assert len(chosen) == 1 and chosen[0] in decided.rule_ids
    else:
        assert explained.decided_by in decided.rule_ids
        assert not [c for c in explained.approvals if c.result == "applies"]


def test_explain_names_each_skipped_grant_and_why() -> None:
    policy = load_policy(BUNDLED).policy

    explained = explain(policy, "bob", "sql payments-replica: select 1")

    grants = {c.rule: c for c in explained.grants}
    assert grants["engineer.sql.replica"].result == "matched"
    code = grants["engineer.code.demo"]
    assert (code.result, code.role) == ("skipped", "engineer")
    assert "other job type: it grants code, this is sql" in code.why
    assert "target 'payments-replica' does not match its targets [demo]" in code.why
    assert {c.rule: c.result for c in explained.approvals} == {
        "demo.merge.review": "skipped",
        "reports.publish.review": "skipped",
        "routines.review": "skipped",
        "policy.change.review": "skipped",
    }


def test_explain_a_denial_says_which_rule_denied_and_what_was_not_reached() -> None:
    policy = load_policy(BUNDLED).policy

    explained = explain(policy, "carol", "code demo: run `ls`")

    assert explained.known and explained.roles == ["analyst"]
    assert [(c.rule, c.result) for c in explained.grants] == [
        ("analyst.sql.replica", "skipped"),
        ("grants.none", "denies"),
    ]
    assert explained.decided_by == "grants.none"
    assert {c.result for c in explained.models} == {"not reached"}
    merge = next(c for c in explained.approvals if c.rule == "demo.merge.review")
    assert merge.result == "not reached" and "would apply" in merge.why


def test_explain_model_routes_in_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        textwrap.dedent(BASE).replace(
            "    - id: route.direct\n      model: direct\n",
            "    - id: route.sql\n      job_types: [sql]\n      model: direct\n"
            "    - id: route.secret\n      sensitivity: [confidential]\n"
            "      model: ollama/llama3\n"
            "    - id: route.default\n      model: openai/gpt-4o-mini\n"
            "    - id: route.last\n      model: direct\n",
        ),
    )
    policy = load_policy(tmp_path).policy

    explained = explain(policy, "alice", "code demo: tidy up the README")

    assert explained.decision.effect == "allow"
    assert explained.decision.model_rule == "route.default"
    routes = [(c.rule, c.result) for c in explained.models]
    assert routes == [
        ("route.sql", "skipped"),
        ("route.secret", "skipped"),
        ("route.default", "chosen"),
        ("route.last", "not reached"),
    ]
    assert "job types sql, this is code" in explained.models[0].why
    assert "sensitivity confidential, this is internal" in explained.models[1].why
    direct = next(c for c in explained.clarification if c.rule == "clarification.direct_mode")
    assert direct.result == "ok" and "openai/gpt-4o-mini" in direct.why


def test_explain_a_request_the_intake_refuses_says_why() -> None:
    policy = load_policy(BUNDLED).policy

    explained = explain(policy, "alice", "code nowhere: run `ls`")

    assert explained.refused is not None and "unknown code target 'nowhere'" in explained.refused
    assert explained.decision.effect == "deny" and explained.decided_by == "intake"
    assert explained.parsed is None and explained.grants == []

"""Intake: request text -> ParsedRequest, through the grammar first and the classifier second.

Real policies only: the bundled policies/ and a small policy with sites and docs written to
tmp_path.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.errors import BadRequest, UnknownJobType, UnknownTarget
from runtime.intake import parse_request
from runtime.jobs import JobType
from runtime.policy import Policy, load_policy

BUNDLED = Path(__file__).resolve().parents[2] / "policies"

# Every kind of target, so each alias has somewhere to go.
WIDE = """
people:
  alice: {roles: [eng]}
roles:
  eng: {}
targets:
  repos:
    demo: {path: /srv/demo}
    reports: {path: /srv/reports}
  databases:
    payments-replica: {dsn_env: PAYMENTS_REPLICA_DSN}
  sites:
    admin.internal.example.com: {domains: [admin.internal.example.com]}
limits:
  max_request_chars: 100
"""


@pytest.fixture(scope="module")
def bundled() -> Policy:
    return load_policy(BUNDLED).policy


@pytest.fixture
def wide(tmp_path: Path) -> Policy:
    (tmp_path / "policy.yml").write_text(textwrap.dedent(WIDE))
    return load_policy(tmp_path).policy


# --- the grammar ---------------------------------------------------------------------------


def test_grammar_request_parses_with_full_confidence_and_its_command(bundled: Policy) -> None:
    parsed = parse_request('code demo: run `sed -i "s/teh/the/" README.md`', bundled)

    assert (parsed.job_type, parsed.target) == (JobType.code, "demo")
    assert parsed.confidence == 1.0
    assert parsed.method == "grammar"
    assert parsed.commands == ['sed -i "s/teh/the/" README.md']
    assert parsed.instruction == 'run `sed -i "s/teh/the/" README.md`'


def test_grammar_type_word_is_case_insensitive(bundled: Policy) -> None:
    parsed = parse_request("SQL payments-replica: SELECT 1", bundled)

    assert (parsed.job_type, parsed.target) == (JobType.sql, "payments-replica")


ALIASES = {
    "browse": ("browse admin.internal.example.com: disable user 42", JobType.browser),
    "browser": ("browser admin.internal.example.com: screenshot the home page", JobType.browser),
    "doc": ("doc reports: weekly incident summary", JobType.doc),
    "docs": ("docs reports: weekly incident summary", JobType.doc),
    "code": ("code reports: fix the typo", JobType.code),
    "sql": ("sql payments-replica: top 5 slowest queries", JobType.sql),
}


@pytest.mark.parametrize(("text", "job_type"), ALIASES.values(), ids=ALIASES.keys())
def test_type_aliases_name_the_same_job_type(wide: Policy, text: str, job_type: JobType) -> None:
    parsed = parse_request(text, wide)

    assert parsed.job_type is job_type
    assert parsed.target == text.split()[1].rstrip(":")
    assert parsed.confidence == 1.0
    assert parsed.method == "grammar"


def test_schedule_keeps_the_cron_and_parses_the_inner_request(bundled: Policy) -> None:
    parsed = parse_request('schedule "0 9 * * MON" sql payments-replica: top slow queries', bundled)

    assert parsed.schedule == "0 9 * * MON"
    assert (parsed.job_type, parsed.target) == (JobType.sql, "payments-replica")
    assert parsed.instruction == "top slow queries"
    assert parsed.confidence == 1.0


def test_request_without_schedule_has_no_cron(bundled: Policy) -> None:
    assert parse_request("sql payments-replica: SELECT 1", bundled).schedule is None


# --- explicit commands for direct mode -------------------------------------------------------

COMMANDS = {
    "two-spans-joined-by-then": ("run `a` then `b`", ["a", "b"]),
    "spans-with-commas-and-and": (
        "run `make`, `make test` and `git status`",
        ["make", "make test", "git status"],
    ),
    "two-run-phrases": ("run `make` and then run `pytest -q`", ["make", "pytest -q"]),
    "fenced-sh-block": ("please\n```sh\nmake\n\nmake test\n```\n", ["make", "make test"]),
    "fenced-bash-block": ("```bash\nls -la\npwd\n```", ["ls -la", "pwd"]),
    "prose-without-steps": ("fix the flaky refund test", []),
    "backticks-without-run-are-not-commands": ("the `README.md` has a typo", []),
}


@pytest.mark.parametrize(("instruction", "commands"), COMMANDS.values(), ids=COMMANDS.keys())
def test_explicit_commands_are_extracted_in_order(
    bundled: Policy, instruction: str, commands: list[str]
) -> None:
    parsed = parse_request(f"code demo: {instruction}", bundled)

    assert parsed.commands == commands


def test_fenced_block_before_a_run_span_keeps_the_written_order(bundled: Policy) -> None:
    parsed = parse_request("code demo: first\n```sh\nmake\n```\nthen run `pytest -q`", bundled)

    assert parsed.commands == ["make", "pytest -q"]


# --- unknown names ----------------------------------------------------------------------------


def test_unknown_target_lists_the_known_targets(wide: Policy) -> None:
    with pytest.raises(UnknownTarget) as caught:
        parse_request("code payments-api: fix the refund test", wide)

    assert "payments-api" in caught.value.message
    assert caught.value.hint == "known code targets: demo, reports"


def test_near_miss_target_suggests_the_right_one(bundled: Policy) -> None:
    with pytest.raises(UnknownTarget) as caught:
        parse_request("code dmo: fix the typo", bundled)

    assert "did you mean 'demo'?" in caught.value.message
    assert "demo" in caught.value.render()


def test_target_of_another_kind_is_unknown_for_this_job_type(bundled: Policy) -> None:
    with pytest.raises(UnknownTarget) as caught:
        parse_request("sql demo: SELECT 1", bundled)

    assert "unknown sql target 'demo'" in caught.value.message
    assert caught.value.hint == "known sql targets: payments-replica"


def test_unknown_job_type_suggests_one_and_lists_the_types(bundled: Policy) -> None:
    with pytest.raises(UnknownJobType) as caught:
        parse_request("cod demo: fix the typo", bundled)

    assert "unknown job type 'cod'; did you mean 'code'?" in caught.value.message
    assert "browser, code, doc, policy, schedule, sql" in (caught.value.hint or "")


def test_grammar_with_nothing_to_do_is_refused(bundled: Policy) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request("code demo:   ", bundled)

    assert "code demo" in caught.value.message
    assert "nothing to do" in caught.value.message


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"], ids=["empty", "spaces", "whitespace"])
def test_empty_request_is_refused_with_an_example(bundled: Policy, text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(text, bundled)

    assert "empty" in caught.value.message
    assert "code demo:" in (caught.value.hint or "")


def test_100_kb_request_is_refused_saying_its_size_and_the_limit(bundled: Policy) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request("code demo: " + "x" * (100 * 1024 - 11), bundled)

    assert "102,400 characters" in caught.value.message
    assert "8,000" in caught.value.message


def test_request_size_limit_comes_from_the_policy(wide: Policy) -> None:
    parse_request("sql payments-replica: " + "x" * 78, wide)  # exactly 100: accepted

    with pytest.raises(BadRequest) as caught:
        parse_request("sql payments-replica: " + "x" * 79, wide)

    assert "101 characters; the limit is 100" in caught.value.message


def test_nul_byte_is_refused(bundled: Policy) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request("code demo: run `cat README.md`\x00", bundled)

    assert "NUL" in caught.value.message


# --- the classifier on free text --------------------------------------------------------------

FREE_TEXT = {
    "flaky-test-in-demo": ("fix the flaky test in the demo repo", JobType.code, "demo", 0.75),
    "slowest-queries-on-replica": (
        "top 10 slowest queries on payments-replica",
        JobType.sql,
        "payments-replica",
        0.75,
    ),
    "typo-without-target": ("fix the typo", JobType.code, None, 0.0),
    "greeting": ("hello there", None, None, 0.0),
}


@pytest.mark.parametrize(
    ("text", "job_type", "target", "min_confidence"), FREE_TEXT.values(), ids=FREE_TEXT.keys()
)
def test_classifier_finds_type_and_target_in_free_text(
    bundled: Policy, text: str, job_type: JobType | None, target: str | None, min_confidence: float
) -> None:
    parsed = parse_request(text, bundled)

    assert parsed.method == "classifier"
    assert parsed.job_type is job_type
    assert parsed.target == target
    assert parsed.confidence >= min_confidence
    assert 0.0 <= parsed.confidence <= 1.0


def test_greeting_has_zero_confidence(bundled: Policy) -> None:
    parsed = parse_request("hello there", bundled)

    assert parsed.job_type is None
    assert parsed.confidence == 0.0


def test_classifier_on_other_target_kinds(wide: Policy) -> None:
    browse = parse_request("disable user 42 on admin.internal.example.com", wide)
    report = parse_request("weekly incident summary for reports", wide)

    assert (browse.job_type, browse.target) == (JobType.browser, "admin.internal.example.com")
    assert (report.job_type, report.target) == (JobType.doc, "reports")


PAIRS = {
    "code": ("fix the typo in demo", "fix the typo"),
    "sql": ("top slowest queries on payments-replica", "top slowest queries"),
}


@pytest.mark.parametrize(("with_target", "without"), PAIRS.values(), ids=PAIRS.keys())
def test_naming_the_target_raises_confidence(
    bundled: Policy, with_target: str, without: str
) -> None:
    named = parse_request(with_target, bundled)
    unnamed = parse_request(without, bundled)

    assert named.job_type is unnamed.job_type is not None
    assert named.target is not None and unnamed.target is None
    assert named.confidence > unnamed.confidence


def test_target_inside_a_longer_word_is_not_found(bundled: Policy) -> None:
    parsed = parse_request("fix the typo in the demos folder", bundled)

    assert parsed.target is None


# --- browser steps --------------------------------------------------------------------------


def test_browser_steps_from_spans_and_a_fence(wide: Policy) -> None:
    roomy = wide.limits.model_copy(update={"max_request_chars": 8000})
    parsed = parse_request(
        "browse admin.internal.example.com: disable user 42 `goto /users/42` "
        "`click \"role=button[name='Disable user']\"` `fill #pw secret:admin-pw`\n"
        "```steps\nexpect #status disabled\nscreenshot\n```",
        wide.model_copy(update={"limits": roomy}),
    )
    assert parsed.job_type is JobType.browser
    assert parsed.commands == [
        "goto /users/42",
        "click \"role=button[name='Disable user']\"",
        "fill #pw secret:admin-pw",
        "expect #status disabled",
        "screenshot",
    ]


def test_backtick_text_that_is_not_a_step_is_ignored(wide: Policy) -> None:
    parsed = parse_request("browse admin.internal.example.com: check the `status` field", wide)
    assert parsed.commands == []


@pytest.mark.parametrize(
    "step, words",
    [("`fill #name`", "takes 2 argument(s), not 1"), ("`click`", "takes 1 argument(s)"),
     ("`goto \"/users`", "cannot read the browser step"), ("`wait 999999`", "at most 60000 ms"),
     ("`fill #pw secret:`", "is not a secret name")],
)  # fmt: skip
def test_malformed_browser_step_is_a_bad_request_with_usage(wide: Policy, step, words) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(f"browse admin.internal.example.com: {step}", wide)
    assert words in caught.value.message

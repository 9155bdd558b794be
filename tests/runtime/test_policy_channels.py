"""Channel scoping in the policy (slack.channels): which Slack channels a kind and target may be
asked in, which a routine may report to; a refusal names where to ask; other doors are
unaffected unless a rule says `only_slack`. Real policy files; decide() and the engine.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.engine import Engine
from runtime.errors import PolicyFileError
from runtime.jobs import JobState, JobType, Origin
from runtime.policy import RequestFacts, decide, load_policy
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

CHANNELS = """
slack:
  channels:
    - id: payments.channels
      job_types: [sql]
      targets: [payments-*]
      channels: [C0PAYMENTS, dm]
    - id: demo.only.in.slack
      job_types: [code]
      targets: [demo]
      channels: [C0DEMO1234]
      only_slack: true
"""


def policy_dir(tmp_path: Path, extra: str = CHANNELS) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir(exist_ok=True)
    (folder / "default.yml").write_text((ROOT / "policies" / "default.yml").read_text())
    (folder / "channels.yml").write_text(textwrap.dedent(extra).lstrip())
    return folder


def facts(**kw) -> RequestFacts:
    base = {"person": "carol", "job_type": JobType.sql, "target": "payments-replica"}
    return RequestFacts(**{**base, **kw})


def test_a_request_is_allowed_only_in_its_channels_and_told_where_to_ask(tmp_path: Path):
    policy = load_policy(policy_dir(tmp_path)).policy
    here = decide(policy, facts(origin=Origin.slack, channel="C0PAYMENTS"))
    assert here.effect == "allow"
    assert decide(policy, facts(origin=Origin.slack, channel="D0CAROLDM1")).effect == "allow"
    elsewhere = decide(policy, facts(origin=Origin.slack, channel="C0RANDOM12"))
    assert elsewhere.effect == "deny"
    assert elsewhere.rule_ids == ["payments.channels", "slack.channel"]
    assert elsewhere.reasons == [
        "sql jobs on 'payments-replica' are asked in Slack only in <#C0PAYMENTS>, direct "
        "messages to the app, not in <#C0RANDOM12>"
    ]
    # The terminal is unaffected by a rule that does not say only_slack.
    assert decide(policy, facts(origin=Origin.cli)).effect == "allow"
    # A kind or target no rule covers may be asked anywhere.
    other = facts(person="alice", job_type=JobType.doc, target="reports", origin=Origin.slack,
                  channel="C0RANDOM12")  # fmt: skip
    assert decide(policy, other).effect == "allow"


def test_only_slack_refuses_the_other_doors_and_routines_report_where_allowed(tmp_path: Path):
    policy = load_policy(policy_dir(tmp_path)).policy
    code = {"person": "alice", "job_type": JobType.code, "target": "demo"}
    cli = decide(policy, RequestFacts(**code, origin=Origin.cli))
    assert cli.effect == "deny" and "asked only in Slack, in <#C0DEMO1234>" in cli.reasons[0]
    assert decide(
        policy, RequestFacts(**code, origin=Origin.slack, channel="C0DEMO1234")
    ).effect == ("allow")
    # A routine's firing that reports to a channel is held to it.
    firing = decide(policy, facts(origin=Origin.schedule, channel="C0RANDOM12"))
    assert firing.effect == "deny" and "not in <#C0RANDOM12>" in firing.reasons[0]
    assert decide(policy, facts(origin=Origin.schedule, channel="C0PAYMENTS")).effect == "allow"


def test_a_declared_routine_reporting_to_a_channel_not_allowed_is_refused_at_load(
    tmp_path: Path,
):
    folder = policy_dir(tmp_path)
    (folder / "routines.yml").write_text(
        "routines:\n  declared:\n    - name: weekly\n      owner: carol\n"
        "      schedule: '0 9 * * MON'\n      request: 'sql payments-replica: select 1'\n"
        "      slack_channel: C0RANDOM12\n"
    )
    with pytest.raises(PolicyFileError, match=r"routines\.yml:7: routine 'weekly' reports to"):
        load_policy(folder)


def test_a_channel_that_is_not_an_id_is_refused_with_how_to_find_it(tmp_path: Path):
    folder = policy_dir(tmp_path, CHANNELS.replace("C0PAYMENTS", "'#payments'"))
    with pytest.raises(PolicyFileError, match="is not a Slack channel id") as caught:
        load_policy(folder)
    assert "channels.yml:" in caught.value.message


async def test_the_engine_decides_a_slack_request_by_the_channel_it_came_from(tmp_path: Path):
    folder = policy_dir(tmp_path)
    settings = Settings(home=tmp_path / "home", policy_dir=folder,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'acp.db'}")  # fmt: skip
    engine = await Engine.open(settings)
    try:
        carol = engine.actor("slack", "U0CAROL001")
        ok = await engine.submit("sql payments-replica: select 1", carol, Origin.slack,
                                 reply_to={"door": "slack", "channel": "C0PAYMENTS"})  # fmt: skip
        assert ok.state is JobState.queued
        no = await engine.submit("sql payments-replica: select 1", carol, Origin.slack,
                                 reply_to={"door": "slack", "channel": "C0RANDOM12"})  # fmt: skip
        assert no.state is JobState.denied and "<#C0PAYMENTS>" in no.result["reason"]
        cli = await engine.submit("sql payments-replica: select 1", engine.actor("cli", "carol"))
        assert cli.state is JobState.queued
    finally:
        await engine.close()

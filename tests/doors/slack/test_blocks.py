"""Block Kit rendering: what people see in Slack, checked on real job records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.slack import blocks
from runtime.jobs import ApprovalRequest, JobRecord, JobSpec, JobState, JobType, Origin

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
IDS = {"alice": "U0ALICE001", "bob": "U0BOB00001"}


def job(**changes) -> JobRecord:
    gate = ApprovalRequest(
        action="merge",
        action_hash="ab" * 32,
        rule_id="demo.merge.review",
        approvers=["bob"],
        four_eyes=True,
        requested_at=NOW,
        expires_at=NOW + timedelta(hours=72),
    )
    record = JobRecord(
        id=7,
        state=JobState.awaiting_approval,
        spec=JobSpec(
            job_type=JobType.code,
            target="demo",
            instruction="run `make <fmt>`",
            origin=Origin.slack,
            requester="alice",
        ),
        prompt="code demo: run `make <fmt>`",
        tools_granted=["shell"],
        decision={
            "effect": "allow",
            "reasons": ["alice may run code jobs on 'demo'"],
            "rule_ids": ["engineer.code.demo"],
        },
        policy_hash="f" * 64,
        approvals=[gate],
        pending_action={
            "action": "merge",
            "repo": "demo",
            "base_branch": "main",
            "job_branch": "acp/J-7",
            "base_commit": "1" * 40,
            "head_commit": "2" * 40,
            "diff_sha256": "3" * 64,
            "stat": {"files_changed": 1, "insertions": 2, "deletions": 1, "files": ["README.md"]},
        },
        created_at=NOW,
        updated_at=NOW,
    )
    return record.model_copy(update=changes)


def buttons(rendered: list[dict]) -> dict[str, dict]:
    return {e["action_id"]: e for b in rendered if b["type"] == "actions" for e in b["elements"]}


def test_approve_button_carries_job_and_change_hash():
    rendered = blocks.approval_request(job(), "diff text", IDS, high_risk=False)
    found = buttons(rendered)
    assert found["acp_approve"]["value"] == f"7|{'ab' * 32}"
    assert found["acp_reject"]["value"] == f"7|{'ab' * 32}"
    assert "confirm" not in found["acp_approve"]
    assert "<@U0BOB00001> (bob)" in str(rendered) and "four-eyes" in str(rendered)


def test_high_risk_action_asks_for_confirmation():
    found = buttons(blocks.approval_request(job(), None, IDS, high_risk=True))
    assert found["acp_approve"]["confirm"]["confirm"]["text"] == "Approve"


def test_user_text_cannot_become_a_mention_or_a_link():
    rendered = str(
        blocks.job_card(
            job(
                spec=job().spec.model_copy(
                    update={"instruction": "<!channel> see <https://evil.example|docs>"}
                )
            ),
            IDS,
        )
    )
    assert "<!channel>" not in rendered and "&lt;!channel&gt;" in rendered


def test_long_text_is_cut_to_slack_limits():
    long = job(spec=job().spec.model_copy(update={"instruction": "x" * 10_000}))
    for block in blocks.job_card(long, IDS):
        text = block.get("text", {})
        assert len(text.get("text", "")) <= 3000

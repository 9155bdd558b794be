"""A browser job through the Slack door: the pause shows the action in words, the outlined page
and the trace so far; Approve takes the action once, in the service's own browser."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.doors.slack.rig import BOB, SlackRig, button, http_env
from tests.kinds.browser.test_browser_jobs import write_policy
from tests.standins import admin_site
from tests.standins.slack_standin import SlackStandIn

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def browser_rig(tmp_path: Path):
    admin, offlist = await admin_site.start()
    standin = await SlackStandIn().start()
    policy = write_policy(tmp_path / "policy", admin.base)
    rig = SlackRig(http_env(tmp_path, standin, ACP_POLICY_DIR=str(policy)), standin)
    await asyncio.to_thread(rig.start)
    try:
        yield rig, admin
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()
        await admin.stop()
        await offlist.stop()


async def files_named(rig: SlackRig, *names: str, timeout: float = 20) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = {f["filename"]: f for f in rig.standin.files}
        if all(n in found for n in names):
            return found
        assert time.monotonic() < deadline, sorted(found)
        await asyncio.sleep(0.1)


async def test_browser_pause_in_the_thread_then_approve_button_acts_once(browser_rig):
    rig, admin = browser_rig
    status, _, _ = await rig.command("browse admin: disable user 42 `goto /users/42` `click #go`")
    assert status == 200
    request = await rig.thread_with("acp_approve", timeout=60)
    text = str(request["blocks"])
    assert "The browser is about to change data" in text and "Disable user" in text
    assert "/users/42/disable" in text
    files = await files_named(rig, "J-1-pending.png", "J-1-trace-so-far.zip")
    assert files["J-1-pending.png"]["content"].startswith(PNG)
    assert files["J-1-trace-so-far.zip"]["content"].startswith(b"PK")
    assert admin.mutations == {}

    ts, _ = rig.card()
    assert await rig.click("acp_approve", button(request, "acp_approve"), BOB, ts) == 200
    await rig.wait_state({"succeeded"}, timeout=60)
    assert admin.mutations == {"POST /users/42/disable": 1}
    await rig.thread_with("Sent, as approved")
    files = await files_named(rig, "J-1-trace-2.zip")
    assert any(name.startswith("J-1-step-") for name in files)

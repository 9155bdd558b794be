"""App Home: pending approvals and recent jobs, per person."""

from __future__ import annotations

import asyncio
import json
import time

from tests.doors.slack.rig import ALICE, BOB, SECRET, awaiting_approval
from tests.standins.slack_signing import event_callback, post_signed


async def test_app_home_lists_pending_approvals_and_recent_jobs(rig):
    await awaiting_approval(rig)
    body = event_callback({"type": "app_home_opened", "user": BOB, "tab": "home"})
    status, _, _ = await post_signed(rig.url, body, SECRET, content_type="application/json")
    assert status == 200
    deadline = time.monotonic() + 10
    while BOB not in rig.standin.home_views:
        assert time.monotonic() < deadline, "App Home was not published"
        await asyncio.sleep(0.1)
    home = json.dumps(rig.standin.home_views[BOB])
    assert "Waiting for your approval" in home and "J-1" in home
    body = event_callback({"type": "app_home_opened", "user": ALICE, "tab": "home"})
    await post_signed(rig.url, body, SECRET, content_type="application/json")
    while ALICE not in rig.standin.home_views:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    alice_home = json.dumps(rig.standin.home_views[ALICE])
    assert "Nothing is waiting for you" in alice_home and "J-1" in alice_home

"""Request verification: forged and stale signatures are refused and create nothing."""

from __future__ import annotations

import time

from tests.doors.slack.rig import ALICE, CHANNEL, FIX, FORM, SECRET
from tests.standins.slack_signing import post_signed, slash_command
from tests.support.acp_process import acp


async def test_forged_and_stale_signatures_are_401_and_create_nothing(rig):
    body = slash_command(
        FIX, user_id=ALICE, channel_id=CHANNEL, response_url=rig.standin.response_url()
    )
    forged, _, _ = await post_signed(rig.url, body, SECRET, content_type=FORM, bad_signature=True)
    stale, _, _ = await post_signed(
        rig.url, body, SECRET, content_type=FORM, timestamp=int(time.time()) - 600
    )
    assert (forged, stale) == (401, 401)
    assert "no jobs yet" in acp(rig.env, "jobs").stdout

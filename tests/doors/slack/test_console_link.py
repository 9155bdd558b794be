"""A job card links to the job's page in the web console when the console has a public
address (ACP_CONSOLE_URL), and to nothing when it has none (a loopback address is no use in
Slack)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.doors.slack.rig import FIX, SlackRig, http_env
from tests.standins.slack_standin import SlackStandIn

PUBLIC = "https://acp.example.com"


async def card_of(tmp_path: Path, **env: str) -> str:
    standin = await SlackStandIn().start()
    rig = SlackRig(http_env(tmp_path, standin, **env), standin)
    await asyncio.to_thread(rig.start)
    try:
        await rig.command(FIX)
        await rig.wait_state({"awaiting_approval"})
        await asyncio.sleep(0.5)  # the card's render after the state change
        _, card = rig.card()
        return json.dumps(card["blocks"])
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_the_card_links_to_the_console_page(tmp_path: Path):
    shown = await card_of(tmp_path, ACP_CONSOLE_URL=PUBLIC + "/")
    assert f"<{PUBLIC}/jobs/J-1|open in the console>" in shown


async def test_no_link_without_a_public_console_address(tmp_path: Path):
    assert "open in the console" not in await card_of(tmp_path)

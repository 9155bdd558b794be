"""Fixtures shared by the Slack scenario files: `rig`, the service in HTTP mode and its stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.doors.slack.rig import SlackRig, http_env
from tests.standins.slack_standin import SlackStandIn


@pytest.fixture
async def rig(tmp_path: Path):
    standin = await SlackStandIn().start()
    rig = SlackRig(http_env(tmp_path, standin), standin)
    await asyncio.to_thread(rig.start)
    try:
        yield rig
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()

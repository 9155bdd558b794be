"""Fixtures of the console scenarios: `console`, a real service with its console and Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doors.console.rig import ConsoleRig


@pytest.fixture
async def console(tmp_path: Path):
    rig = await ConsoleRig(tmp_path).start()
    try:
        yield rig
    finally:
        await rig.stop()

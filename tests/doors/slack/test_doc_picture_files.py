"""A doc job's pictures in its Slack thread: uploaded as PNG files with the approval request,
before anyone approves (real LibreOffice, the service in HTTP mode, the Slack stand-in)."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest


@pytest.fixture(autouse=True, scope="module")
def _libreoffice_installed() -> None:
    """The set-up installs LibreOffice and poppler; a missing one fails with what to run."""
    missing = [tool for tool in ("soffice", "pdftoppm") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run scripts/setup.sh test"


async def test_the_pictures_of_a_doc_change_are_uploaded_with_its_approval_request(rig):
    status, _, _ = await rig.command(
        "doc reports: weekly incident summary "
        "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`"
    )
    assert status == 200
    await rig.thread_with("acp_approve", timeout=60)
    deadline = time.monotonic() + 20
    while not any(f["filename"].endswith(".png") for f in rig.standin.files):
        assert time.monotonic() < deadline, [f["filename"] for f in rig.standin.files]
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the uploads of one card go out one after another
    pictures = [f for f in rig.standin.files if f["filename"].endswith(".png")]
    # A new workbook: each of its sheets pictured as it is now, nothing before.
    assert {f["filename"] for f in pictures} == {
        "weekly-Incidents-after.png",
        "weekly-By_severity-after.png",
        "weekly-By_service-after.png",
    }
    for picture in pictures:
        assert picture["content"].startswith(b"\x89PNG\r\n\x1a\n")
        assert "out/weekly.xlsx, sheet" in picture["title"]

"""A doc job's pictures on its console page, in a real browser: each loads through the
console's /artifacts route under its CSP, before beside after; and `acp show` lists them as
files. Real service, real LibreOffice, real Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.doors.console.rig import ConsoleRig, job_id_of, shot
from tests.kinds.doc.test_doc_jobs import write_policy
from tests.kinds.doc.test_doc_picture import NEXT_VERSIONS, pictured_repo


@pytest.fixture(autouse=True, scope="module")
def _libreoffice_installed() -> None:
    """The set-up installs LibreOffice and poppler; a missing one fails with what to run."""
    missing = [tool for tool in ("soffice", "pdftoppm") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run scripts/setup.sh test"


@pytest.fixture
async def console_with_reports(tmp_path: Path):
    repo = pictured_repo(tmp_path / "reports")
    rig = ConsoleRig(tmp_path, ACP_POLICY_DIR=str(write_policy(tmp_path / "policy", repo)))
    await rig.start()
    try:
        yield rig
    finally:
        await rig.stop()


async def test_a_doc_jobs_pictures_load_on_its_page_before_beside_after(console_with_reports):
    rig = console_with_reports
    job = job_id_of(rig.acp("submit", "--as", "alice", "--no-wait", NEXT_VERSIONS))
    await rig.wait_state(job, {"awaiting_approval"})
    shown = rig.acp("show", job)
    assert "files       : budget-Budget-before.png" in shown, shown
    assert "runbook-page1-after.png" in shown

    _, bob = await rig.page_for("bob")
    await bob.goto(f"{rig.url}/jobs/{job}")
    pictures = bob.locator("#ev-pictures img.ev-picture-img")
    await expect(pictures).to_have_count(6)
    await expect(bob.locator("#ev-pictures .ev-picture-pair")).to_have_count(3)
    for index in range(6):
        image = pictures.nth(index)
        await image.scroll_into_view_if_needed()
        await expect(image).to_have_js_property("complete", True)
        assert await image.evaluate("i => i.naturalWidth") > 100  # loaded, not a broken icon
    first = bob.locator("#ev-pictures .ev-picture-pair").first
    await expect(first.locator(".ev-picture-before figcaption")).to_contain_text(
        "budget.xlsx, sheet Budget, before"
    )
    await expect(first.locator(".ev-picture-after figcaption")).to_contain_text(
        "budget.xlsx, sheet Budget, after"
    )
    await shot(bob, "doc-pictures")

"""Documents drawn as pages: LibreOffice (soffice, headless) prints them to PDF and poppler's
pdftoppm turns the pages into pixels, both in one bubblewrap sandbox (runtime.sandbox.bwrap).

The documents were written by a model, so the sandbox has no network, a fresh profile with
macros disabled, an empty environment and only its own temporary folder writable, and is
killed at its deadline. This module must never run either program outside that sandbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

INSIDE = "/render"  # the sandbox's only writable folder
TIMEOUT_S = 60.0  # one conversion of every document of a job
MAX_PAGES = 20  # pages of one document drawn at most
# A fresh profile that runs no macro (whatever a document asks) and updates no link.
_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>2</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>2</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""  # noqa: E501
_PAGE = re.compile(r"^(?P<base>.+)-(?P<page>\d+)\.ppm$")


class NotDrawn(Exception):
    """Why the documents were not drawn, as the review says it ("LibreOffice is not
    installed"); never a reason to fail the job."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Drawing:
    """One document to draw: its file name (an extension LibreOffice knows), bytes and the
    longer side of its pages in pixels (so a page's size bounds memory, whatever its paper)."""

    name: str
    data: bytes
    long_side: int
    pages: list[bytes] = field(default_factory=list)  # PPM, page 1 first, once drawn


def soffice_path() -> str | None:
    """The soffice program: $ACP_SOFFICE when set (empty or not a program: none), else the
    one on PATH."""
    named = os.environ.get("ACP_SOFFICE")
    if named is not None:
        return named if named and os.path.isfile(named) and os.access(named, os.X_OK) else None
    return shutil.which("soffice")


def missing() -> str | None:
    """What is missing to draw documents here, in words; None when nothing is."""
    from runtime.sandbox.bwrap import bwrap_available

    if soffice_path() is None:
        return "LibreOffice is not installed"
    if shutil.which("pdftoppm") is None:
        return "pdftoppm (poppler-utils) is not installed"
    if not bwrap_available():
        return "bubblewrap is not installed, and documents are only drawn in its sandbox"
    return None


async def draw(drawings: list[Drawing], *, timeout_s: float = TIMEOUT_S) -> None:
    """Every drawing's pages (up to MAX_PAGES each), in one sandboxed run; NotDrawn when the
    tools are missing, the sandbox cannot be made, or the run fails or times out. A document
    LibreOffice could not open keeps no pages."""
    from runtime.errors import SandboxUnavailable
    from runtime.sandbox.bwrap import run_sandboxed

    reason = missing()
    if reason:
        raise NotDrawn(reason)
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="acp-draw-"))
    try:
        soffice, install = await asyncio.to_thread(_lay_out, root, drawings)
        try:
            result = await run_sandboxed(
                _script(soffice, drawings), root, workdir_at=INSIDE, ro_paths=install,
                timeout_s=timeout_s, output_cap=16_000,
            )  # fmt: skip
        except SandboxUnavailable as error:
            raise NotDrawn(f"the sandbox could not be made ({error.message})") from None
        if result.timed_out:
            raise NotDrawn(f"LibreOffice did not finish within {timeout_s:.0f} s")
        if result.exit_code != 0:
            said = [ln for ln in result.stderr.splitlines() if ln.strip() and "javaldx" not in ln]
            raise NotDrawn(
                f"LibreOffice exited with {result.exit_code}"
                + (f": {said[-1].strip()[:200]}" if said else "")
            )
        await asyncio.to_thread(_collect, root, drawings)
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)


def _lay_out(root: Path, drawings: list[Drawing]) -> tuple[str, list[Path]]:
    """The sandbox's folder: the documents, a fresh profile, and folders for what is drawn;
    the soffice to run and the host paths it needs bound."""
    soffice = Path(soffice_path() or "soffice").resolve()
    # A LibreOffice outside /usr (an /opt install) is bound read-only where it lives.
    install = [] if soffice.is_relative_to("/usr") else [soffice.parent.parent]
    for sub in ("in", "out", "pages", "profile/user"):
        (root / sub).mkdir(parents=True)
    (root / "profile/user/registrymodifications.xcu").write_text(_PROFILE)
    for index, drawing in enumerate(drawings):
        (root / "in" / _local(index, drawing)).write_bytes(drawing.data)
    return str(soffice), install


def _collect(root: Path, drawings: list[Drawing]) -> None:
    pages: dict[str, list[tuple[int, Path]]] = {}
    for page in (root / "pages").iterdir():
        match = _PAGE.match(page.name)
        if match:
            pages.setdefault(match["base"], []).append((int(match["page"]), page))
    for index, drawing in enumerate(drawings):
        found = sorted(pages.get(Path(_local(index, drawing)).stem, []))
        drawing.pages = [page.read_bytes() for _, page in found]


def _local(index: int, drawing: Drawing) -> str:
    # The sandbox sees the index, never a name the model chose.
    return f"d{index}{Path(drawing.name).suffix.lower()}"


def _script(soffice: str, drawings: list[Drawing]) -> str:
    names = [f"{INSIDE}/in/{_local(i, d)}" for i, d in enumerate(drawings)]
    lines = [
        "set -e",
        f"{shlex.quote(soffice)} --headless --norestore --nologo --nolockcheck --nodefault "
        f"-env:UserInstallation=file://{INSIDE}/profile --convert-to pdf "
        f"--outdir {INSIDE}/out {' '.join(shlex.quote(n) for n in names)} >/dev/null",
    ]
    for index, drawing in enumerate(drawings):
        stem = Path(_local(index, drawing)).stem
        pdf = f"{INSIDE}/out/{stem}.pdf"
        lines.append(
            f"if [ -s {pdf} ]; then pdftoppm -scale-to {int(drawing.long_side)} -l {MAX_PAGES} "
            f"{pdf} {INSIDE}/pages/{stem}; fi"
        )
    return "\n".join(lines)

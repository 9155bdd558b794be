"""Files written by LibreOffice itself: generated files passed through `soffice --convert-to`,
so that reviews are tried on a writer nobody here controls (its own XML, styles, escapes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOFFICE_TIMEOUT = 120  # seconds for one conversion run (a cold start takes ~1-3 s)


def soffice() -> str:
    """The soffice program; the test set-up (scripts/setup.sh test) installs it."""
    found = shutil.which("soffice")
    assert found, "LibreOffice is missing: run scripts/setup.sh test (it installs it)"
    return found


def resaved(files: dict[str, bytes], fmt: str) -> dict[str, bytes]:
    """Each file as LibreOffice saves it in `fmt` (xlsx, docx), converted in one run."""
    with tempfile.TemporaryDirectory(prefix="acp-lo-") as tmp:
        src, out = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        for name, data in files.items():
            (src / name).write_bytes(data)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8"}
        done = subprocess.run(
            [soffice(), "--headless", "--norestore", "--convert-to", fmt, "--outdir", str(out),
             *(str(src / name) for name in files)],
            env=env, capture_output=True, timeout=SOFFICE_TIMEOUT, check=False,
        )  # fmt: skip
        written = {name: out / f"{Path(name).stem}.{fmt}" for name in files}
        missing = [name for name, path in written.items() if not path.exists()]
        assert not missing, f"soffice did not convert {missing}: {done.stderr.decode()[-500:]}"
        return {name: path.read_bytes() for name, path in written.items()}

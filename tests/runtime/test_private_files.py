"""Keys made at first start when several services start in one ACP_HOME at once: the audit
signing key is one key, whole and private, whichever process makes it first."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from runtime.audit.note import load_signer
from runtime.settings import Settings


def _sign_with(home: str, barrier, out) -> None:
    settings = Settings.from_env({"ACP_HOME": home})
    barrier.wait()
    out.put(load_signer(settings, create=True, environ={}).private_text())


def test_services_starting_together_sign_with_one_audit_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        home = tmp_path / f"home-{round_}"  # not there yet: its audit folder is made too
        barrier, out = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_sign_with, args=(str(home), barrier, out)) for _ in range(8)]
        for proc in procs:
            proc.start()
        keys = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        settings = Settings.from_env({"ACP_HOME": str(home)})
        path = settings.audit_key_file
        assert set(keys) == {path.read_text().strip()}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert [p.name for p in path.parent.iterdir()] == [path.name], "no leftovers"

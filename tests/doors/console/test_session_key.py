"""The console's session key when several services start in one ACP_HOME at once (a service
and its restarted twin, two processes on one home): one key, whole, private."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from bot.console.session import Signer


def _make(home: str, barrier, out) -> None:
    barrier.wait()
    out.put(Signer.for_home(Path(home), {})._key)


def test_services_starting_together_agree_on_one_whole_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        home = tmp_path / f"home-{round_}"
        barrier, out = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_make, args=(str(home), barrier, out)) for _ in range(8)]
        for proc in procs:
            proc.start()
        keys = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        path = home / "console" / "session.key"
        assert set(keys) == {path.read_bytes()} and len(keys[0]) == 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["session.key"], "no leftovers"

"""The console's session key when several services start in one ACP_HOME at once (a service
and its restarted twin, two processes on one home): one key, whole, private."""

from __future__ import annotations

import stat
from pathlib import Path

from bot.console.session import Signer
from tests.support.racing import race


def _key(home: str) -> bytes:
    return Signer.for_home(Path(home), {})._key


def test_services_starting_together_agree_on_one_whole_key(tmp_path: Path) -> None:
    for round_ in range(5):
        home = tmp_path / f"home-{round_}"
        keys = race(_key, str(home))
        path = home / "console" / "session.key"
        assert set(keys) == {path.read_bytes()} and len(keys[0]) == 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["session.key"], "no leftovers"

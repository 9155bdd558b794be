"""Keys made at first start when several services start in one ACP_HOME at once: the audit
signing key is one key, whole and private, whichever process makes it first."""

from __future__ import annotations

import stat
from pathlib import Path

from runtime.audit.note import load_signer
from runtime.settings import Settings
from tests.support.racing import race


def _signer(home: str) -> str:
    settings = Settings.from_env({"ACP_HOME": home})
    return load_signer(settings, create=True, environ={}).private_text()


def test_services_starting_together_sign_with_one_audit_key(tmp_path: Path) -> None:
    for round_ in range(5):
        home = tmp_path / f"home-{round_}"  # not there yet: its audit folder is made too
        keys = race(_signer, str(home))
        path = Settings.from_env({"ACP_HOME": str(home)}).audit_key_file
        assert set(keys) == {path.read_text().strip()}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert [p.name for p in path.parent.iterdir()] == [path.name], "no leftovers"

"""The git smart-HTTP stand-in: real git clones from it and pushes to it, only with the token."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins.git_http import GitHttpServer

TOKEN = "git-token-7f3a"


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "NO_PROXY": "127.0.0.1",
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "tester@example.invalid",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "tester@example.invalid",
    }


def git(home: Path, *args: str, cwd: Path | None = None, check: bool = True):
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    """A server over a root holding widgets.git (main with one commit)."""
    root = tmp_path / "srv"
    root.mkdir()
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("widgets\n")
    git(tmp_path, "add", "README.md", cwd=seed)
    git(tmp_path, "commit", "-q", "-m", "first", cwd=seed)
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(root / "widgets.git"))
    with GitHttpServer(root, TOKEN) as server:
        yield server, root


def bearer(token: str) -> str:
    return f"http.extraHeader=Authorization: Bearer {token}"


def test_clone_and_push_with_a_bearer_token(served, tmp_path: Path) -> None:
    server, root = served
    url = server.url_for("widgets.git")
    work = tmp_path / "work"
    git(tmp_path, "-c", bearer(TOKEN), "clone", "-q", url, str(work))
    assert (work / "README.md").read_text() == "widgets\n"

    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # above http.postBuffer: chunked
    git(tmp_path, "add", "big.bin", cwd=work)
    git(tmp_path, "commit", "-q", "-m", "a large file", cwd=work)
    git(tmp_path, "-c", bearer(TOKEN), "push", "-q", "origin", "main:feature", cwd=work)

    pushed = git(tmp_path, "--git-dir", str(root / "widgets.git"), "rev-parse", "feature")
    local = git(tmp_path, "rev-parse", "HEAD", cwd=work)
    assert pushed.stdout == local.stdout
    assert server.request_count >= 4  # info/refs and a pack, for the clone and for the push
    assert set(server.authorizations) == {f"Bearer {TOKEN}"}
    pushes = [r for r in server.requests if r.path.endswith("/git-receive-pack")]
    # git probes with a small request before it streams a large pack in chunks
    assert all(r.status == 200 for r in pushes) and pushes[-1].chunked


def test_basic_credentials_are_sent_after_the_401_challenge(served, tmp_path: Path) -> None:
    server, _root = served
    url = server.url_for("widgets.git").replace("http://", f"http://x-access-token:{TOKEN}@")
    git(tmp_path, "clone", "-q", url, str(tmp_path / "work"))
    first = server.requests[0]
    assert first.authorization is None and first.status == 401
    assert any(a.startswith("Basic ") for a in server.authorizations)
    assert all(r.status == 200 for r in server.requests[1:])


def test_without_a_token_nothing_is_served(served, tmp_path: Path) -> None:
    server, _root = served
    result = git(
        tmp_path, "clone", "-q", server.url_for("widgets.git"), str(tmp_path / "w"), check=False
    )
    assert result.returncode != 0
    assert not (tmp_path / "w").exists()
    assert [r.status for r in server.requests] == [401]


@pytest.mark.parametrize("how", ["bearer", "basic"])
def test_a_wrong_token_can_neither_clone_nor_push(served, tmp_path: Path, how: str) -> None:
    server, root = served
    url = server.url_for("widgets.git")
    before = git(tmp_path, "--git-dir", str(root / "widgets.git"), "rev-parse", "main").stdout
    wrong = "not-the-token"
    if how == "bearer":
        config = ["-c", bearer(wrong)]
    else:
        config = []
        url = url.replace("http://", f"http://x-access-token:{wrong}@")
    clone = git(tmp_path, *config, "clone", "-q", url, str(tmp_path / "w"), check=False)
    assert clone.returncode != 0

    work = tmp_path / "local"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "x.txt").write_text("x\n")
    git(tmp_path, "add", "x.txt", cwd=work)
    git(tmp_path, "commit", "-q", "-m", "x", cwd=work)
    push = git(tmp_path, *config, "push", "-q", url, "main:main", cwd=work, check=False)
    assert push.returncode != 0
    after = git(tmp_path, "--git-dir", str(root / "widgets.git"), "rev-parse", "main").stdout
    assert after == before
    assert {r.status for r in server.requests} == {401}
    assert TOKEN not in clone.stderr + push.stderr


def test_paths_outside_the_root_are_not_served(served, tmp_path: Path) -> None:
    server, _root = served
    result = git(
        tmp_path,
        "-c",
        bearer(TOKEN),
        "ls-remote",
        f"{server.url}/../srv/widgets.git",
        check=False,
    )
    assert result.returncode != 0
    unknown = git(
        tmp_path, "-c", bearer(TOKEN), "ls-remote", server.url_for("nope.git"), check=False
    )
    assert unknown.returncode != 0

"""The forge client against the forge stand-in: GitHub and GitLab, and every way a call fails."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from runtime.kinds.code import forge
from runtime.kinds.code.forge import (
    ForgeError,
    ForgeNotFound,
    ForgeRejected,
    ForgeTokenMissing,
    ForgeTokenRefused,
    ForgeUnreachable,
    PullRequest,
)
from runtime.policy.schema import ForgeSpec
from tests.standins.forge_standin import ForgeStandin, git, make_bare_repo

TOKEN = "forge-secret-8d2e41"
TOKEN_ENV = "ACME_FORGE_TOKEN"


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare_repo(tmp_path)


@pytest.fixture
async def standin(bare: Path) -> AsyncIterator[ForgeStandin]:
    async with ForgeStandin(token=TOKEN, repos={"acme/widgets": bare}) as running:
        yield running


def spec_for(standin: ForgeStandin, kind: str, project: str = "acme/widgets") -> ForgeSpec:
    api = standin.api_url if kind == "github" else standin.gitlab_api_url
    return ForgeSpec(kind=kind, api_url=api, project=project, token_env=TOKEN_ENV)


def spec_at(api_url: str) -> ForgeSpec:
    return ForgeSpec(kind="github", api_url=api_url, project="acme/widgets", token_env=TOKEN_ENV)


async def open_feature(spec: ForgeSpec, token: str = TOKEN, head: str = "feature") -> PullRequest:
    return await forge.open_pull_request(
        spec, token, head=head, base="main", title="Add the feature", body="From a job."
    )


def assert_keeps_the_token_out(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    shown += getattr(error, "hint", None) or ""
    assert TOKEN not in shown
    assert error.__cause__ is None and error.__context__ is None


# --- the token ----------------------------------------------------------------------------------


def test_token_for_reads_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert forge.token_for(spec_at("https://api.github.com")) == TOKEN


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_token_names_the_variable(monkeypatch: pytest.MonkeyPatch, value) -> None:
    if value is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, value)
    with pytest.raises(ForgeTokenMissing) as caught:
        forge.token_for(spec_at("https://api.github.com"))
    assert TOKEN_ENV in caught.value.message and TOKEN_ENV in (caught.value.hint or "")


# --- the life of a pull request -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_open_get_and_close_a_pull_request(standin: ForgeStandin, kind: str) -> None:
    spec = spec_for(standin, kind)
    opened = await open_feature(spec)
    assert opened.number == 1 and opened.state == "open"
    assert (opened.head, opened.base, opened.merge_commit) == ("feature", "main", None)
    assert opened.url.startswith("https://") and opened.url.endswith("1")
    assert await forge.get_pull_request(spec, TOKEN, 1) == opened
    closed = await forge.close_pull_request(spec, TOKEN, 1)
    assert closed.state == "closed" and closed.merge_commit is None
    assert (await forge.get_pull_request(spec, TOKEN, 1)).state == "closed"
    assert standin.pull(1).title == "Add the feature" and standin.pull(1).body == "From a job."
    assert standin.pull(1).events == ["opened", "closed"]


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_a_merged_pull_request_names_its_merge_commit(
    standin: ForgeStandin, bare: Path, kind: str
) -> None:
    spec = spec_for(standin, kind)
    await open_feature(spec)
    sha = await standin.merge(1)
    merged = await forge.get_pull_request(spec, TOKEN, 1)
    assert merged.state == "merged" and merged.merge_commit == sha
    assert git("--git-dir", str(bare), "rev-parse", "main") == sha


async def test_gitlab_takes_a_numeric_project_id(standin: ForgeStandin) -> None:
    spec = spec_for(standin, "gitlab", project=str(standin.project_ids["acme/widgets"]))
    opened = await open_feature(spec)
    assert (await forge.get_pull_request(spec, TOKEN, opened.number)).head == "feature"


async def test_each_forge_gets_its_own_headers_and_body(standin: ForgeStandin) -> None:
    await open_feature(spec_for(standin, "github"))
    await forge.close_pull_request(spec_for(standin, "github"), TOKEN, 1)
    gh_open, gh_close = standin.requests
    assert (gh_open.method, gh_open.path) == ("POST", "/github/repos/acme/widgets/pulls")
    assert gh_open.headers["Authorization"] == f"Bearer {TOKEN}"
    assert gh_open.headers["Accept"] == "application/vnd.github+json"
    assert gh_open.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert gh_open.json == {
        "title": "Add the feature",
        "head": "feature",
        "base": "main",
        "body": "From a job.",
    }
    assert (gh_close.method, gh_close.json) == ("PATCH", {"state": "closed"})

    standin.requests.clear()
    await open_feature(spec_for(standin, "gitlab"), head="feature")
    await forge.close_pull_request(spec_for(standin, "gitlab"), TOKEN, 2)
    gl_open, gl_close = standin.requests
    assert gl_open.path == "/gitlab/api/v4/projects/acme%2Fwidgets/merge_requests"
    assert gl_open.headers["PRIVATE-TOKEN"] == TOKEN and "Authorization" not in gl_open.headers
    assert gl_open.json == {
        "source_branch": "feature",
        "target_branch": "main",
        "title": "Add the feature",
        "description": "From a job.",
    }
    assert (gl_close.method, gl_close.json) == ("PUT", {"state_event": "close"})


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_a_wrong_token_names_the_variable_and_never_the_token(
    standin: ForgeStandin, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-5f0c77"
    with pytest.raises(ForgeTokenRefused) as caught:
        await open_feature(spec_for(standin, kind), token=wrong)
    error = caught.value
    assert f"${TOKEN_ENV}" in error.message and "refused" in error.message
    assert wrong not in error.render() and wrong not in repr(error)
    assert wrong not in "".join(traceback.format_exception(error))
    assert error.__cause__ is None and error.__context__ is None
    assert wrong not in caplog.text and TOKEN not in caplog.text
    assert standin.pulls == []


@pytest.mark.parametrize("bad", ["tok\nen-5f0c77", "tøken-5f0c77", " token-5f0c77"])
async def test_a_token_that_cannot_be_a_header_is_refused_without_showing_it(
    standin: ForgeStandin, bad: str
) -> None:
    with pytest.raises(ForgeTokenRefused) as caught:
        await open_feature(spec_for(standin, "github"), token=bad)
    assert TOKEN_ENV in caught.value.message
    assert "5f0c77" not in caught.value.render()
    assert standin.requests == []


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_an_unknown_head_branch_gives_the_forges_reason(
    standin: ForgeStandin, kind: str
) -> None:
    with pytest.raises(ForgeRejected) as caught:
        await open_feature(spec_for(standin, kind), head="no-such-branch")
    expected = "head invalid" if kind == "github" else 'Source branch "no-such-branch"'
    assert expected in caught.value.message
    assert_keeps_the_token_out(caught.value)


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_a_second_pull_request_for_the_same_branch_is_rejected(
    standin: ForgeStandin, kind: str
) -> None:
    await open_feature(spec_for(standin, kind))
    with pytest.raises(ForgeRejected) as caught:
        await open_feature(spec_for(standin, kind))
    assert "already exists" in caught.value.message
    assert ("422" if kind == "github" else "409") in caught.value.message


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_an_unknown_project_is_named(standin: ForgeStandin, kind: str) -> None:
    with pytest.raises(ForgeNotFound) as caught:
        await open_feature(spec_for(standin, kind, project="acme/gadgets"))
    assert "acme/gadgets" in caught.value.message
    assert_keeps_the_token_out(caught.value)
    with pytest.raises(ForgeNotFound) as missing:
        await forge.get_pull_request(spec_for(standin, kind), TOKEN, 42)
    assert ("#42" if kind == "github" else "!42") in missing.value.message


def test_a_github_project_must_be_owner_and_repo() -> None:
    spec = ForgeSpec(kind="github", api_url="http://x", project="widgets", token_env=TOKEN_ENV)
    with pytest.raises(ForgeError) as caught:
        asyncio.run(forge.get_pull_request(spec, TOKEN, 1))
    assert "owner/repo" in caught.value.message


# --- an unreachable or broken forge -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_closed_port_is_a_clear_error_with_the_url() -> None:
    api = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ForgeUnreachable) as caught:
        await forge.get_pull_request(spec_at(api), TOKEN, 7)
    assert f"{api}/repos/acme/widgets/pulls/7" in caught.value.message
    assert_keeps_the_token_out(caught.value)


async def test_a_forge_that_never_answers_fails_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(forge, "DEADLINE_S", 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ForgeUnreachable) as caught:
            await open_feature(spec_at(f"http://127.0.0.1:{port}"))
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 3
    assert "no answer within 0.5 s" in caught.value.message
    assert f"127.0.0.1:{port}" in caught.value.message
    assert_keeps_the_token_out(caught.value)


async def test_a_gateway_error_page_is_reported_not_parsed() -> None:
    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>502 Bad Gateway</html>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(ForgeUnreachable) as caught:
            await forge.get_pull_request(spec_at(f"http://127.0.0.1:{port}"), TOKEN, 1)
    finally:
        await runner.cleanup()
    assert "502" in caught.value.message and "Bad Gateway" in caught.value.message

"""Each model of a route, and each fallback, gets its own base URL and key: a key never goes
to another provider's host.

Two recording servers over real HTTP, reached through litellm: the route's provider (down, so
the route falls back) and the fallback's. The servers' own records of the headers they
received are the truth.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from runtime.engine import Engine
from runtime.errors import ModelUnavailable
from runtime.models import ModelClient
from runtime.settings import Settings
from tests.conftest import BUNDLED_POLICY
from tests.standins.model_standin import ModelStandIn, say

ROUTE = "models.code.two-providers"
MESSAGES = [{"role": "user", "content": "hello"}]


class DownProvider:
    """Any provider's API that is down: records every request's headers, answers 500."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> DownProvider:
        async def anything(request: web.Request) -> web.Response:
            self.headers.append(dict(request.headers))
            await request.read()
            return web.json_response(
                {"type": "error", "error": {"type": "api_error", "message": "down"}}, status=500
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def open_engine(tmp_path: Path, route: dict) -> Engine:
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["models"] = {"routes": [{"id": ROUTE, "job_types": ["code"], **route}]}
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return await Engine.open(
        Settings.from_env(
            {"ACP_HOME": str(tmp_path / "home"),
             "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
             "ACP_POLICY_DIR": str(folder)}
        )
    )  # fmt: skip


async def complete_once(engine: Engine):
    job = await engine.submit("code demo: fix the failing test", engine.actor("cli", "alice"))
    assert job.model.route_rule == ROUTE, job.model
    client = ModelClient(engine.recorder(job.id, "test"), engine.policy, job)
    return await client.complete(list(MESSAGES), []), client


def every_header_value(records: list[dict[str, str]]) -> str:
    return "\n".join(f"{k}: {v}" for headers in records for k, v in headers.items())


async def test_readme_route_anthropic_falls_back_to_openai_without_the_anthropic_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example: an anthropic/... route with its key in one variable and
    `fallbacks: [openai/gpt-4o]`. OpenAI is sent OpenAI's own key, never Anthropic's."""
    anthropic_key = f"sk-ant-{uuid.uuid4().hex}"
    openai_key = f"sk-openai-{uuid.uuid4().hex}"
    monkeypatch.setenv("ACP_TEST_ANTHROPIC_KEY", anthropic_key)
    async with DownProvider() as anthropic, ModelStandIn(api_key=openai_key) as openai:
        # OpenAI's own variables: what litellm uses for a provider the route says nothing of.
        monkeypatch.setenv("OPENAI_API_KEY", openai_key)
        monkeypatch.setenv("OPENAI_API_BASE", openai.base_url)
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
        openai.script("gpt-4o", say("fine"))
        engine = await open_engine(
            tmp_path,
            {"model": "anthropic/claude-sonnet-4-5", "api_base": anthropic.base_url,
             "api_key_env": "ACP_TEST_ANTHROPIC_KEY", "fallbacks": ["openai/gpt-4o"]},
        )  # fmt: skip
        try:
            reply, client = await complete_once(engine)
        finally:
            await engine.close()
    assert reply.content == "fine" and reply.model == "openai/gpt-4o"
    assert client.usage.fallbacks_taken == ["openai/gpt-4o"]
    assert anthropic.headers, "the route's own provider was tried first"
    assert anthropic_key in every_header_value(anthropic.headers)
    [answered] = openai.requests_for("gpt-4o")
    assert answered.authorization == f"Bearer {openai_key}"
    received = every_header_value([r.headers for r in openai.requests])
    assert anthropic_key not in received, "the Anthropic key was sent to OpenAI's host"


async def test_fallback_with_its_own_endpoint_gets_only_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two OpenAI-compatible hosts, each with its key: neither host sees the other's key."""
    first_key, second_key = f"sk-a-{uuid.uuid4().hex}", f"sk-b-{uuid.uuid4().hex}"
    monkeypatch.setenv("ACP_TEST_KEY_A", first_key)
    monkeypatch.setenv("ACP_TEST_KEY_B", second_key)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with ModelStandIn(api_key=first_key) as first, ModelStandIn(api_key=second_key) as second:
        first.fail_next("gpt-4o-mini", 503, times=3)
        second.script("gpt-4o", say("from the second host"))
        engine = await open_engine(
            tmp_path,
            {"model": "openai/gpt-4o-mini", "api_base": first.base_url,
             "api_key_env": "ACP_TEST_KEY_A",
             "fallbacks": [{"model": "openai/gpt-4o", "api_base": second.base_url,
                            "api_key_env": "ACP_TEST_KEY_B"}]},
        )  # fmt: skip
        try:
            reply, _ = await complete_once(engine)
        finally:
            await engine.close()
    assert reply.content == "from the second host"
    assert {r.authorization for r in first.requests} == {f"Bearer {first_key}"}
    assert {r.authorization for r in second.requests} == {f"Bearer {second_key}"}


async def test_a_fallback_whose_key_is_not_set_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_key = f"sk-a-{uuid.uuid4().hex}"
    monkeypatch.setenv("ACP_TEST_KEY_A", first_key)
    monkeypatch.delenv("ACP_TEST_KEY_UNSET", raising=False)
    async with ModelStandIn(api_key=first_key) as first, ModelStandIn() as second:
        first.fail_next("gpt-4o-mini", 503, times=3)
        engine = await open_engine(
            tmp_path,
            {"model": "openai/gpt-4o-mini", "api_base": first.base_url,
             "api_key_env": "ACP_TEST_KEY_A",
             "fallbacks": [{"model": "openai/gpt-4o", "api_base": second.base_url,
                            "api_key_env": "ACP_TEST_KEY_UNSET"}]},
        )  # fmt: skip
        try:
            with pytest.raises(ModelUnavailable) as refused:
                await complete_once(engine)
        finally:
            await engine.close()
    assert "fallback openai/gpt-4o" in refused.value.message
    assert "ACP_TEST_KEY_UNSET" in (refused.value.hint or "")
    assert not second.requests, "nothing went to a host whose key is not set"

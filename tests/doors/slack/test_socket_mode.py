"""Slack in Socket Mode: `acp serve` with SLACK_APP_TOKEN and no signing secret.

The service is a real subprocess. It asks the stand-in's ``apps.connections.open`` for a URL,
holds a real WebSocket to it on 127.0.0.1, gets Slack's envelopes over it and acknowledges them;
its Web API calls go to the same stand-in over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import pytest

from tests.doors.slack.rig import ALICE, BOB, CHANNEL, FIX, SlackRig, button
from tests.standins.slack_signing import block_action, event_callback, slash_command
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import service_env

ACK_BUDGET = 3.0  # seconds: Slack's deadline for acknowledging an envelope


class SocketRig(SlackRig):
    """SlackRig whose requests travel as Socket Mode envelopes instead of signed POSTs."""

    def __init__(self, env: dict[str, str], standin: SlackStandIn) -> None:
        self.env = env
        self.standin = standin
        self.url = ""  # no HTTP endpoint in Socket Mode
        self.service = None

    async def send(self, envelope_type: str, payload: dict[str, Any]) -> tuple[dict, float]:
        """Push one envelope; return the app's ack and how long it took to arrive."""
        envelope_id = await self.standin.socket_send(envelope_type, payload)
        ack = await self.standin.socket_ack(envelope_id)
        took = self.standin.socket_ack_at[envelope_id] - self.standin.socket_sent_at[envelope_id]
        assert ack["envelope_id"] == envelope_id
        return ack, took

    async def command(self, text: str, user: str = ALICE, **kw) -> tuple[dict, float]:  # type: ignore[override]
        body = slash_command(
            text, user_id=user, channel_id=CHANNEL, response_url=self.standin.response_url(), **kw
        )
        # Socket Mode carries the slash command's form fields as one JSON object of strings.
        return await self.send("slash_commands", dict(parse_qsl(body.decode())))

    async def click(self, action_id: str, value: str, user: str, message_ts: str) -> tuple:  # type: ignore[override]
        body = block_action(
            action_id,
            value,
            user_id=user,
            channel_id=CHANNEL,
            message_ts=message_ts,
            response_url=self.standin.response_url(),
        )
        return await self.send("interactive", json.loads(parse_qs(body.decode())["payload"][0]))

    async def event(self, event: dict[str, Any]) -> tuple[dict, float]:
        return await self.send("events_api", json.loads(event_callback(event)))


@pytest.fixture
async def socket_rig(tmp_path: Path):
    standin = await SlackStandIn().start()
    env = service_env(
        tmp_path,
        SLACK_BOT_TOKEN=standin.bot_token,
        SLACK_APP_TOKEN=standin.app_token,
        ACP_SLACK_API_URL=standin.base_url,
    )
    rig = SocketRig(env, standin)
    # start() blocks until "ready", and the service connects before it says so: keep the
    # stand-in's event loop free meanwhile.
    await asyncio.to_thread(rig.start)
    try:
        await standin.wait_socket()
        yield rig
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


def assert_socket_mode(rig: SocketRig) -> None:
    assert rig.service is not None
    log = rig.service.output()
    assert "slack    : Socket Mode" in log, log
    opened = rig.standin.calls_to("apps.connections.open")
    assert opened and opened[0].headers["Authorization"] == f"Bearer {rig.standin.app_token}"
    assert opened[0].response == {"ok": True, "url": opened[0].response["url"]}
    assert opened[0].response["url"].startswith("ws://127.0.0.1:")


async def test_slash_command_to_approval_to_success_over_socket_mode(socket_rig):
    rig = socket_rig
    assert_socket_mode(rig)

    started = time.monotonic()
    ack, took = await rig.command(FIX)
    wall = time.monotonic() - started
    assert set(ack) == {"envelope_id"}, f"an empty ack, no payload: {ack}"
    assert took < ACK_BUDGET and wall < ACK_BUDGET, (took, wall)

    accepted = await rig.response_with("Accepted as J-1")
    assert accepted["response_type"] == "ephemeral"
    request = await rig.thread_with("acp_approve")
    ts, card = rig.card()
    assert "code demo" in json.dumps(card)

    ack, took = await rig.click("acp_approve", button(request, "acp_approve"), BOB, ts)
    assert set(ack) == {"envelope_id"} and took < ACK_BUDGET, (ack, took)
    record = await rig.wait_state({"succeeded"})
    assert record["approvals"][0]["decided_by"] == "bob"
    await rig.thread_with("Approved by <@U0BOB00001>")


async def test_app_home_opened_over_socket_mode_publishes_the_home(socket_rig):
    rig = socket_rig
    ack, took = await rig.event({"type": "app_home_opened", "user": BOB, "tab": "home"})
    assert set(ack) == {"envelope_id"} and took < ACK_BUDGET, (ack, took)
    published = await rig.standin.wait_for(
        "views.publish", where=lambda c: c.args.get("user_id") == BOB
    )
    assert published[0].response and published[0].response["ok"], published[0].response
    assert rig.standin.home_views[BOB]["type"] == "home"


async def test_help_is_answered_in_the_ack_payload(socket_rig):
    ack, took = await socket_rig.command("help")
    assert took < ACK_BUDGET
    assert ack["payload"]["response_type"] == "ephemeral"
    assert ack["payload"]["text"] == "How to use /agent" and ack["payload"]["blocks"]


async def test_reconnects_when_slack_asks_it_to(socket_rig):
    rig = socket_rig
    before = len(rig.standin.calls_to("apps.connections.open"))
    await rig.standin.socket_disconnect("refresh_requested")
    await rig.standin.wait_socket(count=2)
    assert len(rig.standin.calls_to("apps.connections.open")) == before + 1
    ack, took = await rig.command("help")
    assert ack["payload"]["text"] == "How to use /agent" and took < ACK_BUDGET

    # A clean stop closes the WebSocket (no reconnect attempt while shutting down).
    await asyncio.to_thread(rig.stop)
    await rig.standin.wait_socket_closed(5)
    assert rig.service is not None and rig.service.proc is not None
    assert rig.service.proc.returncode == 0 and "acp service stopped" in rig.service.output()
    assert len(rig.standin.calls_to("apps.connections.open")) == before + 1


# --- the stand-in's Socket Mode side, in process -----------------------------------------------


async def test_standin_checks_token_types_and_socket_urls():
    import aiohttp
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    async with SlackStandIn() as standin:
        client = AsyncWebClient(token=standin.bot_token, base_url=standin.base_url)
        opened = await client.apps_connections_open(app_token=standin.app_token)
        assert opened["url"].startswith("ws://127.0.0.1:")
        for token, error in [
            (standin.bot_token, "not_allowed_token_type"),
            ("xapp-x", "invalid_auth"),
        ]:
            with pytest.raises(SlackApiError) as raised:
                await client.apps_connections_open(app_token=token)
            assert raised.value.response["error"] == error
        app_client = AsyncWebClient(token=standin.app_token, base_url=standin.base_url)
        with pytest.raises(SlackApiError) as raised:
            await app_client.chat_postMessage(channel=CHANNEL, text="hi")
        assert raised.value.response["error"] == "not_allowed_token_type"

        async with aiohttp.ClientSession() as session:
            bad = opened["url"].rsplit("/", 1)[0] + "/not-issued"
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(bad)
            # like slack_sdk: autoping off, so pongs reach the reader
            async with session.ws_connect(opened["url"], autoping=False) as ws:
                hello = await ws.receive_json(timeout=5)
                assert hello["type"] == "hello" and hello["connection_info"]["app_id"]
                await standin.wait_socket()
                assert standin.socket_connected.is_set()
                await ws.ping(b"sdk-ping-pong:1")
                pong = await ws.receive(timeout=5)
                assert pong.type == aiohttp.WSMsgType.PONG and pong.data == b"sdk-ping-pong:1"
                envelope_id = await standin.socket_send(
                    "events_api",
                    {"type": "event_callback"},
                    retry_attempt=1,
                    retry_reason="timeout",
                )
                envelope = await ws.receive_json(timeout=5)
                assert envelope == {
                    "envelope_id": envelope_id,
                    "payload": {"type": "event_callback"},
                    "type": "events_api",
                    "accepts_response_payload": True,
                    "retry_attempt": 1,
                    "retry_reason": "timeout",
                }
                await ws.send_json({"envelope_id": envelope_id})
                assert await standin.socket_ack(envelope_id) == {"envelope_id": envelope_id}
        await standin.wait_socket_closed(5)
        assert not standin.socket_connected.is_set()


async def test_a_bad_app_token_stops_the_service_with_a_clear_error(tmp_path: Path):
    import signal

    from tests.support.acp_process import ACP, ROOT

    standin = await SlackStandIn().start()
    env = service_env(
        tmp_path,
        SLACK_BOT_TOKEN=standin.bot_token,
        SLACK_APP_TOKEN="xapp-revoked",
        ACP_SLACK_API_URL=standin.base_url,
    )
    proc = await asyncio.create_subprocess_exec(
        *ACP, "serve", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its worker too is killed below, whatever happens
    )  # fmt: skip
    try:
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 8)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = await proc.communicate()
            raise AssertionError(f"still running after 8 s:\n{out.decode()}") from None
        assert proc.returncode != 0, out.decode()
        assert "invalid_auth" in out.decode()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await standin.stop()

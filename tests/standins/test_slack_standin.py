"""The Slack stand-in answers the real slack_sdk client, and the signing helpers satisfy Bolt."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.standins import slack_signing as ss
from tests.standins.slack_standin import SlackStandIn

TOKEN = "xoxb-test-token"
SECRET = "signing-secret-test"


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn(bot_token=TOKEN).start()
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.fixture
def client(slack: SlackStandIn) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.base_url)


# --- Web API through the real AsyncWebClient ---------------------------------------------------


async def test_auth_test(slack: SlackStandIn, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["ok"] is True
    assert resp["user_id"] == "U0BOT"
    assert resp["team_id"] == "T0TEST"
    assert resp["bot_id"]
    [call] = slack.calls_to("auth.test")
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_wrong_token_and_unknown_method(slack: SlackStandIn) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as e:
        await bad.auth_test()
    assert e.value.response["error"] == "invalid_auth"
    good = AsyncWebClient(token=TOKEN, base_url=slack.base_url)
    with pytest.raises(SlackApiError) as e:
        await good.api_call("nonsense.method")
    assert e.value.response["error"] == "unknown_method"


async def test_post_then_update_message(slack: SlackStandIn, client: AsyncWebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    first = await client.chat_postMessage(channel="C1", text="hello", blocks=blocks)
    assert first["ok"] and first["channel"] == "C1"
    assert first["message"]["text"] == "hello"
    ts = first["ts"]
    reply = await client.chat_postMessage(channel="C1", text="in thread", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)

    upd = await client.chat_update(channel="C1", ts=ts, text="hello again", blocks=[])
    assert upd["ts"] == ts and upd["text"] == "hello again"
    assert slack.messages[("C1", ts)]["text"] == "hello again"
    assert slack.messages[("C1", ts)]["user"] == "U0BOT"
    assert [m["text"] for m in slack.thread("C1", ts)] == ["in thread"]
    assert [m["ts"] for m in slack.channel_messages("C1")] == [ts]

    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C1", ts="1.000001", text="nope")
    assert e.value.response["error"] == "message_not_found"
    assert [c.method for c in slack.calls] == ["chat.postMessage"] * 2 + ["chat.update"] * 2
    # chat.* goes as JSON; the body arrives intact
    assert slack.calls[0].args["blocks"] == blocks
    assert slack.calls[0].headers["Content-Type"].startswith("application/json")


async def test_post_to_user_lands_in_dm(slack: SlackStandIn, client: AsyncWebClient) -> None:
    resp = await client.chat_postMessage(channel="U123", text="psst")
    assert resp["channel"] == slack.dm_channel("U123") == "D123"
    assert slack.messages[("D123", resp["ts"])]["text"] == "psst"


async def test_error_next(slack: SlackStandIn, client: AsyncWebClient) -> None:
    slack.error_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C1", text="x")
    assert e.value.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]


async def test_post_ephemeral(slack: SlackStandIn, client: AsyncWebClient) -> None:
    resp = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert resp["message_ts"]
    assert slack.ephemerals == [
        {
            "channel": "C1",
            "user": "U1",
            "text": "only you",
            "blocks": None,
            "thread_ts": None,
            "message_ts": resp["message_ts"],
        }
    ]


async def test_views_open_update_publish(slack: SlackStandIn, client: AsyncWebClient) -> None:
    modal = {
        "type": "modal",
        "callback_id": "approve",
        "private_metadata": "run-1",
        "title": {"type": "plain_text", "text": "Approve"},
        "blocks": [],
    }
    trigger = ss.new_trigger_id()
    opened = await client.views_open(trigger_id=trigger, view=modal)
    vid = opened["view"]["id"]
    assert slack.views_opened[0]["callback_id"] == "approve"
    assert slack.views_opened[0]["private_metadata"] == "run-1"
    # a trigger opens one view only
    with pytest.raises(SlackApiError) as e:
        await client.views_open(trigger_id=trigger, view=modal)
    assert e.value.response["error"] == "exchanged_trigger_id"
    # and expires after 3 s
    stale = f"9.{int((time.time() - 4) * 1000)}.abc"
    with pytest.raises(SlackApiError) as e:
        await client.views_open(trigger_id=stale, view=modal)
    assert e.value.response["error"] == "expired_trigger_id"
    with pytest.raises(SlackApiError) as e:
        await client.views_open(trigger_id="", view=modal)
    assert e.value.response["error"] == "invalid_arguments"

    updated = await client.views_update(view_id=vid, view={**modal, "private_metadata": "run-2"})
    assert updated["view"]["id"] == vid
    assert slack.views[vid]["private_metadata"] == "run-2"

    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}],
    }
    pub = await client.views_publish(user_id="U1", view=home)
    assert slack.home_views["U1"]["blocks"] == home["blocks"]
    again = await client.views_publish(user_id="U1", view=home)
    assert again["view"]["id"] == pub["view"]["id"]


async def test_files_upload_v2(slack: SlackStandIn, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="run report")
    content = "line 1\nline 2 ✓\n"
    resp = await client.files_upload_v2(
        content=content,
        filename="transcript.txt",
        title="Transcript",
        channel="C1",
        thread_ts=parent["ts"],
        initial_comment="full transcript",
    )
    assert resp["file"]["title"] == "Transcript"
    [f] = slack.files
    assert f["content"] == content.encode()
    assert f["filename"] == "transcript.txt"
    assert f["title"] == "Transcript"
    assert f["channel_id"] == "C1"
    assert f["thread_ts"] == parent["ts"]
    assert f["initial_comment"] == "full transcript"
    assert [c.method for c in slack.calls[1:]] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    # the upload POST carries no token; the file shows up as a message in the thread
    assert "Authorization" not in slack.calls_to("upload")[0].headers
    [shared] = slack.thread("C1", parent["ts"])
    assert shared["subtype"] == "file_share" and shared["text"] == "full transcript"


async def test_complete_upload_of_unknown_file_fails(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as e:
        await client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id="C1")
    assert e.value.response["error"] == "file_not_found"


async def test_rate_limit_is_retried(slack: SlackStandIn) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    resp = await client.chat_postMessage(channel="C1", text="eventually")
    assert resp["ok"]
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert len(slack.messages) == 1


async def test_rate_limit_without_retry_handler_raises(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    slack.fail_next("chat.update", retry_after=7)
    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C1", ts="1.1", text="x")
    assert e.value.response.status_code == 429
    assert e.value.response.headers["Retry-After"] == "7"
    assert e.value.response["error"] == "ratelimited"


async def test_response_url_and_wait_for(slack: SlackStandIn, client: AsyncWebClient) -> None:
    url = slack.response_url()
    assert url.startswith(slack.root_url)
    waiter = asyncio.create_task(slack.wait_for("response_url"))
    async with aiohttp.ClientSession() as s, s.post(url, json={"text": "done"}) as r:
        assert r.status == 200
    [call] = await waiter
    assert call.args["text"] == "done"
    assert slack.response_url_posts == [{"text": "done"}]
    assert slack.posts_to(url) == [{"text": "done"}]
    async with aiohttp.ClientSession() as s, s.post(url + "0", json={}) as r:
        assert r.status == 404

    waiter = asyncio.create_task(
        slack.wait_for("chat.postMessage", where=lambda c: c.args.get("text") == "b")
    )
    await client.chat_postMessage(channel="C1", text="a")
    await client.chat_postMessage(channel="C1", text="b")
    assert [c.args["text"] for c in await waiter] == ["b"]
    with pytest.raises(TimeoutError):
        await slack.wait_for("views.open", timeout=0.05)


# --- signing helpers against a real Bolt AsyncApp ----------------------------------------------


@pytest.fixture
async def bolt(slack: SlackStandIn) -> AsyncIterator[tuple[str, AsyncApp]]:
    app = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=slack.base_url),
    )

    @app.command("/agent")
    async def agent(ack, command, respond, say):  # type: ignore[no-untyped-def]
        await ack(f"got: {command['text']}")
        await respond(f"working on {command['text']}")
        await say(f"<@{command['user_id']}> asked: {command['text']}")

    @app.action("approve")
    async def approve(ack, body, client):  # type: ignore[no-untyped-def]
        await ack()
        await client.chat_update(
            channel=body["channel"]["id"], ts=body["message"]["ts"], text="approved"
        )

    @app.view("ask")
    async def ask(ack, view):  # type: ignore[no-untyped-def]
        await ack()

    @app.event("app_home_opened")
    async def home(event, client):  # type: ignore[no-untyped-def]
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    runner = web.AppRunner(app.web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/slack/events", app
    finally:
        await runner.cleanup()


async def test_bolt_accepts_signed_slash_command(
    slack: SlackStandIn, bolt: tuple[str, AsyncApp]
) -> None:
    url, _ = bolt
    rurl = slack.response_url()
    body = ss.slash_command("deploy", user_id="U1", response_url=rurl)
    fields = parse_qs(body.decode())
    assert fields["command"] == ["/agent"] and fields["trigger_id"][0].count(".") == 2
    status, text, elapsed = await ss.post_signed(url, body, SECRET)
    assert status == 200, text
    assert text == "got: deploy"
    assert elapsed < 3
    [say] = await slack.wait_for("chat.postMessage")
    assert say.args["channel"] == "C0TEST"
    assert say.args["text"] == "<@U1> asked: deploy"
    await slack.wait_for("response_url")
    assert slack.posts_to(rurl)[0]["text"] == "working on deploy"
    assert len(slack.calls_to("auth.test")) == 1  # Bolt's single-team authorization


async def test_bolt_rejects_bad_signature_and_stale_timestamp(
    slack: SlackStandIn, bolt: tuple[str, AsyncApp]
) -> None:
    url, _ = bolt
    body = ss.slash_command("deploy", user_id="U1", response_url=slack.response_url())
    status, _, _ = await ss.post_signed(url, body, SECRET, bad_signature=True)
    assert status == 401
    status, _, _ = await ss.post_signed(url, body, SECRET, timestamp=int(time.time()) - 600)
    assert status == 401
    status, _, _ = await ss.post_signed(url, body, "another-secret")
    assert status == 401
    assert slack.calls_to("chat.postMessage") == []


async def test_bolt_block_action_view_submission_event(
    slack: SlackStandIn, bolt: tuple[str, AsyncApp], client: AsyncWebClient
) -> None:
    url, _ = bolt
    posted = await client.chat_postMessage(channel="C9", text="approve?")
    body = ss.block_action(
        "approve",
        "run-1",
        user_id="U1",
        channel_id="C9",
        message_ts=posted["ts"],
        response_url=slack.response_url(),
        message=slack.messages[("C9", posted["ts"])],
    )
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["container"]["message_ts"] == posted["ts"]
    assert payload["message"]["text"] == "approve?"
    status, _, _ = await ss.post_signed(url, body, SECRET)
    assert status == 200
    await slack.wait_for("chat.update")
    assert slack.messages[("C9", posted["ts"])]["text"] == "approved"

    body = ss.view_submission("ask", "run-1", {"q": {"answer": "42"}}, user_id="U1")
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["view"]["state"]["values"]["q"]["answer"]["value"] == "42"
    status, _, _ = await ss.post_signed(url, body, SECRET)
    assert status == 200

    body = ss.event_callback({"type": "app_home_opened", "user": "U1", "tab": "home"})
    status, _, _ = await ss.post_signed(url, body, SECRET, retry_num=1)
    assert status == 200
    await slack.wait_for("views.publish")
    assert slack.home_views["U1"]["type"] == "home"


async def test_sign_matches_slack_sdk_verifier() -> None:
    from slack_sdk.signature import SignatureVerifier

    body = ss.slash_command("x", user_id="U1", response_url="http://r")
    headers = ss.sign(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )

"""The Slack rig shared by the Slack scenario files (tests/doors/slack/test_*.py).

`acp serve` in HTTP mode, a Slack Web API stand-in, signed requests. Everything crosses real
HTTP: Slack's requests into the app, the app's Web API calls out to the stand-in. The service is
a real subprocess, so a restart is a real restart.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

from tests.standins.slack_signing import block_action, post_signed, slash_command, view_submission
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import Service, acp, service_env

SECRET = "test-signing-secret"
ALICE, BOB, CAROL = "U0ALICE001", "U0BOB00001", "U0CAROL001"
CHANNEL = "C0TEST"
FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'
FORM = "application/x-www-form-urlencoded"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlackRig:
    """The service under test, the Slack stand-in it talks to, and Slack's side of the wire."""

    def __init__(self, env: dict[str, str], standin: SlackStandIn) -> None:
        self.env = env
        self.standin = standin
        self.url = f"http://127.0.0.1:{env['ACP_PORT']}/slack/events"
        self.service: Service | None = None

    def start(self) -> SlackRig:
        # The port was free when free_port() probed it, but it is released before the service
        # binds it: another test process (pytest -n) may take it in between. Then the service
        # exits at once with "address already in use"; it gets another free port.
        for attempt in range(3):
            try:
                self.service = Service(self.env).start()
                return self
            except RuntimeError as e:
                if "address already in use" not in str(e) or attempt == 2:
                    raise
            self.env["ACP_PORT"] = str(free_port())
            self.url = f"http://127.0.0.1:{self.env['ACP_PORT']}/slack/events"
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.service:
            self.service.stop()

    async def command(self, text: str, user: str = ALICE, **kw) -> tuple[int, str, float]:
        body = slash_command(
            text, user_id=user, channel_id=CHANNEL, response_url=self.standin.response_url(), **kw
        )
        return await post_signed(self.url, body, SECRET, content_type=FORM)

    async def click(self, action_id: str, value: str, user: str, message_ts: str) -> int:
        body = block_action(
            action_id,
            value,
            user_id=user,
            channel_id=CHANNEL,
            message_ts=message_ts,
            response_url=self.standin.response_url(),
        )
        status, _, _ = await post_signed(self.url, body, SECRET, content_type=FORM)
        return status

    async def submit_view(self, callback_id: str, metadata: str, values: dict, user: str) -> str:
        body = view_submission(callback_id, metadata, values, user_id=user)
        status, text, _ = await post_signed(self.url, body, SECRET, content_type=FORM)
        assert status == 200
        return text

    def job(self, job: str = "J-1") -> dict:
        shown = acp(self.env, "show", job, "--json")
        return json.loads(shown.stdout) if shown.returncode == 0 else {"state": "absent"}

    async def wait_state(self, states: set[str], job: str = "J-1", timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = await asyncio.to_thread(self.job, job)
            if record["state"] in states:
                return record
            await asyncio.sleep(0.2)
        raise AssertionError(f"{job} is {record['state']}, expected {states}")

    def card(self) -> tuple[str, dict]:
        """The first top-level message in the channel: the job card."""
        for (channel, ts), message in self.standin.messages.items():
            if channel == CHANNEL and not message.get("thread_ts"):
                return ts, message
        raise AssertionError("no job card was posted")

    async def thread_with(self, words: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ts, _ = self.card() if self._has_card() else (None, None)
            for message in self.standin.thread(CHANNEL, ts) if ts else []:
                if words in json.dumps(message):
                    return message
            await asyncio.sleep(0.1)
        raise AssertionError(f"no thread reply containing {words!r}")

    def _has_card(self) -> bool:
        return any(
            c == CHANNEL and not m.get("thread_ts") for (c, _), m in self.standin.messages.items()
        )

    async def ephemeral_with(self, words: str, timeout: float = 10) -> dict:
        return await _first_with(self.standin.ephemerals, words, "ephemeral", timeout)

    async def response_with(self, words: str, timeout: float = 10) -> dict:
        posts = self.standin.response_url_posts
        return await _first_with(posts, words, "response_url post", timeout)


async def _first_with(messages: list[dict], words: str, what: str, timeout: float) -> dict:
    """Wait for the first message (in a list the stand-in keeps filling) that mentions words."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in messages:
            if words in json.dumps(message):
                return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {what} containing {words!r}: {messages}")


def button(message: dict, action_id: str) -> str:
    for block in message.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id} button in {message}")


def http_env(tmp_path: Path, standin: SlackStandIn, **extra: str) -> dict[str, str]:
    """`acp serve` in HTTP mode against the stand-in, on a free port."""
    return service_env(
        tmp_path,
        SLACK_BOT_TOKEN=standin.bot_token,
        SLACK_SIGNING_SECRET=SECRET,
        ACP_SLACK_API_URL=standin.base_url,
        ACP_HOST="127.0.0.1",
        ACP_PORT=str(free_port()),
        **extra,
    )


async def awaiting_approval(rig: SlackRig) -> dict:
    status, body, _ = await rig.command(FIX)
    assert status == 200 and body == ""
    await rig.response_with("Accepted as J-1")
    return await rig.thread_with("acp_approve")

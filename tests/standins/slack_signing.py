"""Requests shaped like the ones Slack sends to an app, signed with the app's signing secret.

Slack signs every request it sends to an app (slash commands, interactivity, events):
``X-Slack-Signature: v0=<hex hmac-sha256(secret, f"v0:{timestamp}:{raw body}")>`` and
``X-Slack-Request-Timestamp: <unix seconds>``. Bolt rejects a bad signature, or a timestamp more
than five minutes from now, with HTTP 401.

The builders return the raw body bytes exactly as Slack would put them on the wire:

- slash commands: ``application/x-www-form-urlencoded`` fields;
- interactivity (block_actions, view_submission): form body with one field, ``payload=<json>``;
- Events API: a JSON body (``application/json``).

``post_signed`` sends one of those bodies with the right headers and reports
``(status, text, elapsed_seconds)``.

Trigger ids made here look like Slack's (``<n>.<issued at, ms>.<hex>``); the Slack stand-in reads
the issue time back out of them so that ``views.open`` can refuse a trigger older than three
seconds, as Slack does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

API_APP_ID = "A0TESTAPP"
VERIFICATION_TOKEN = "verification-token-test"  # the legacy token field Slack still sends
TEAM_DOMAIN = "acp-test"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"

_counter = itertools.count(1)


# --- signing ----------------------------------------------------------------------------------


def signature(body: bytes, secret: str, timestamp: int | str) -> str:
    """The ``X-Slack-Signature`` value for ``body`` sent at ``timestamp``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's two signing headers for ``body`` (timestamp defaults to now)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(body, secret, ts),
    }


# --- ids --------------------------------------------------------------------------------------


def new_trigger_id() -> str:
    """A fresh trigger id, ``<n>.<issued at in ms>.<hex>`` (Slack's shape)."""
    return f"{next(_counter)}.{int(time.time() * 1000)}.{secrets.token_hex(16)}"


def trigger_issued_at(trigger_id: str) -> float | None:
    """Unix time a trigger id from ``new_trigger_id`` was issued, or None for other ids."""
    parts = trigger_id.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[1]) / 1000.0


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, Any]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _team(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": TEAM_DOMAIN}


def _payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


# --- request bodies ---------------------------------------------------------------------------


def slash_command(
    text: str,
    *,
    user_id: str,
    channel_id: str = "C0TEST",
    command: str = "/agent",
    response_url: str,
    trigger_id: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
    channel_name: str | None = None,
    api_app_id: str = API_APP_ID,
) -> bytes:
    """Form body of a slash command invocation, with every field Slack sends."""
    if channel_name is None:
        channel_name = "directmessage" if channel_id.startswith("D") else channel_id.lower()
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }
    return urlencode(fields).encode()


def block_action(
    action_id: str,
    value: str | None,
    *,
    user_id: str,
    channel_id: str | None,
    message_ts: str | None,
    response_url: str,
    trigger_id: str | None = None,
    block_id: str = "b",
    thread_ts: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
    action_type: str = "button",
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    is_ephemeral: bool = False,
) -> bytes:
    """``payload=<json>`` body of a ``block_actions`` interaction (a button click by default).

    Clicked in a message by default: ``container`` is ``{"type": "message", ...}`` and the payload
    carries ``channel`` and ``message`` (pass the stand-in's stored ``message`` to include its
    text and blocks). Pass ``view`` (e.g. a view the stand-in published) for a click in an App
    Home or a modal: the container then is ``{"type": "view", "view_id": ...}`` and the payload
    carries ``view`` instead of ``channel``/``message``/``response_url``.
    """
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": _action_ts(),
    }
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
    if value is not None:
        action["value"] = value
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": _team(team_id),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id")}
        payload["view"] = view
    else:
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        }
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": API_APP_ID,
            "text": "",
            "blocks": [],
            "team": team_id,
        }
        if message:
            msg.update({k: v for k, v in message.items() if k != "channel"})
        msg["ts"] = message_ts
        if thread_ts is not None:
            msg["thread_ts"] = thread_ts
        payload["container"] = container
        payload["channel"] = {"id": channel_id, "name": (channel_id or "").lower()}
        payload["message"] = msg
        payload["response_url"] = response_url
    return _payload_body(payload)


def view_submission(
    callback_id: str,
    private_metadata: str,
    values: dict[str, dict[str, Any]],
    *,
    user_id: str,
    trigger_id: str | None = None,
    view_id: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
    response_urls: list[dict[str, Any]] | None = None,
) -> bytes:
    """``payload=<json>`` body of a modal submission.

    ``values`` is ``{block_id: {action_id: value}}``; a plain string value becomes
    ``{"type": "plain_text_input", "value": ...}`` (Slack's shape); a dict is used as-is (for
    selects etc.).
    """
    state: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        state[block_id] = {}
        for action_id, value in actions.items():
            if isinstance(value, dict):
                state[block_id][action_id] = value
            else:
                state[block_id][action_id] = {"type": "plain_text_input", "value": value}
    vid = view_id or f"V{next(_counter):010d}"
    view = {
        "id": vid,
        "team_id": team_id,
        "type": "modal",
        "blocks": blocks or [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": {"type": "plain_text", "text": "Modal", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": None,
        "root_view_id": vid,
        "app_id": API_APP_ID,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": BOT_ID,
    }
    payload = {
        "type": "view_submission",
        "team": _team(team_id),
        "user": _user(user_id, user_name, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": view,
        "response_urls": response_urls or [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_body(payload)


def message_shortcut(
    callback_id: str,
    message: dict[str, Any],
    *,
    user_id: str,
    channel_id: str,
    response_url: str,
    trigger_id: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
) -> bytes:
    """``payload=<json>`` body of a message shortcut (``type: message_action``): someone chose
    the app's shortcut from a message's "More actions" menu; ``message`` is that message."""
    payload = {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": _action_ts(),
        "team": _team(team_id),
        "user": _user(user_id, user_name, team_id),
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or new_trigger_id(),
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": {"type": "message", **message},
    }
    return _payload_body(payload)


def event_callback(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = "T0TEST",
    bot_user_id: str = BOT_USER_ID,
) -> bytes:
    """JSON body of an Events API delivery (``type: event_callback``).

    ``event`` is the inner event, e.g. ``{"type": "app_home_opened", "user": U, "tab": "home"}``;
    ``event_ts`` is filled in when missing.
    """
    now = time.time()
    inner = {"event_ts": f"{now:.6f}", **event}
    body = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": API_APP_ID,
        "event": inner,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_counter):08d}{secrets.token_hex(3).upper()}",
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{secrets.token_hex(8)}",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def url_verification(challenge: str = "challenge-test") -> bytes:
    """JSON body of the Events API URL handshake (the app must echo ``challenge``)."""
    body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return json.dumps(body).encode()


# --- sending ----------------------------------------------------------------------------------


async def post_signed(
    url: str,
    body: bytes,
    secret: str,
    *,
    content_type: str | None = None,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    bad_signature: bool = False,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 30.0,
) -> tuple[int, str, float]:
    """POST a signed Slack-shaped request; returns ``(status, response text, elapsed seconds)``.

    ``content_type`` defaults from the body (JSON if it starts with ``{``, else form).
    ``timestamp`` signs as of that unix time (e.g. ``time.time() - 600`` for a stale request).
    ``retry_num`` adds ``X-Slack-Retry-Num``/``X-Slack-Retry-Reason`` as Slack does on redelivery.
    ``bad_signature`` sends a well-formed signature made with the wrong secret.
    ``session`` reuses a client session (benchmarks); otherwise one is made for this call.
    Elapsed time covers sending the request and reading the whole response.
    """
    if content_type is None:
        content_type = JSON if body.lstrip().startswith(b"{") else FORM
    headers = sign(body, secret + "-wrong" if bad_signature else secret, timestamp)
    headers["Content-Type"] = content_type
    headers["User-Agent"] = "Slackbot 1.0 (+https://api.slack.com/robots)"
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    own = session is None
    s = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        started = time.perf_counter()
        async with s.post(url, data=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, text, time.perf_counter() - started
    finally:
        if own:
            await s.close()


__all__ = [
    "API_APP_ID",
    "FORM",
    "JSON",
    "block_action",
    "event_callback",
    "message_shortcut",
    "new_trigger_id",
    "post_signed",
    "sign",
    "signature",
    "slash_command",
    "trigger_issued_at",
    "url_verification",
    "view_submission",
]

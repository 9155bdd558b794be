"""The conversation above a mention, as a job's context: the thread's messages before it, the
newest ones the policy allows (slack.thread_context_messages and _bytes), authors shown as the
people they are where the policy knows them, credential-shaped tokens redacted. Reads Slack;
decides nothing (the engine stores it on the chain and gives it to the model as untrusted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from runtime.jobs import ContextItem
from runtime.policy.schema import SlackDoor
from runtime.secrets import redact_tokens

FETCH_DEADLINE_S = 10.0  # reading the thread never holds a request longer than this
PAGE = 200


async def thread_messages(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str,
    *,
    before: str,
    wanted: int,
    through: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """The thread's messages older than `before` (the mention; `through`: and that message
    too), oldest first, keeping at most the newest `wanted` of them while paging through (Slack
    pages with cursors); and how many there were."""
    kept: list[dict[str, Any]] = []
    total = 0
    cursor: str | None = None
    async with asyncio.timeout(FETCH_DEADLINE_S):
        while True:
            page = await client.conversations_replies(
                channel=channel, ts=thread_ts, limit=PAGE, cursor=cursor
            )
            for message in page.get("messages", []):
                ts = str(message.get("ts", "0"))
                if float(ts) < float(before) or (through and ts == before):
                    kept.append(message)
                    total += 1
            kept = kept[-wanted:] if wanted else []
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return kept, total


def thread_context(
    messages: list[dict[str, Any]],
    limits: SlackDoor,
    person_of: Callable[[str], str | None],
    *,
    source: str,
    seen: int | None = None,
) -> ContextItem:
    """The messages as one text, newest kept first within the byte cap, oldest printed first."""
    lines: list[str] = []
    size = 0
    authors: set[str] = set()
    for message in reversed(messages[-limits.thread_context_messages :]):
        line = _line(message, person_of)
        cost = len(line.encode()) + 1
        if size + cost > limits.thread_context_bytes:
            break
        lines.append(line)
        size += cost
        authors.add(line.split("]", 1)[1].split(":", 1)[0].strip())
    lines.reverse()
    total = seen if seen is not None else len(messages)
    return ContextItem(
        name="slack-thread.txt",
        source=source,
        text="\n".join(lines),
        facts={
            "messages": len(lines),
            "messages_above": total,
            "truncated": len(lines) < total,
            "limits": {
                "messages": limits.thread_context_messages,
                "bytes": limits.thread_context_bytes,
            },
            "authors": sorted(authors),
        },
    )


def _line(message: dict[str, Any], person_of: Callable[[str], str | None]) -> str:
    at = datetime.fromtimestamp(float(message.get("ts", "0")), UTC)
    user = message.get("user")
    if user:
        person = person_of(user)
        who = f"{person} ({user})" if person else f"unknown Slack user {user}"
    else:
        who = f"bot {message.get('bot_id') or message.get('username') or ''}".strip()
    text = redact_tokens(" ".join(str(message.get("text") or "").split()))
    return f"[{at:%Y-%m-%d %H:%M} UTC] {who}: {text}"

"""Files attached to a Slack request, as the doc job's inputs: the request's own, then those on
people's messages in the thread above it, checked by name and declared size before a byte is
downloaded (with the bot's token) and capped while downloading. Decides nothing the runtime
does not check again at submit (type by content, size): the engine refuses what fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import BaseModel, ConfigDict
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from runtime.doc_formats import DocumentError, check_attachment, size_text
from runtime.errors import AcpError, BadRequest
from runtime.identity import Actor
from runtime.jobs import InputFile
from runtime.submission import request_digest

if TYPE_CHECKING:
    from runtime.engine import Engine

DOWNLOAD_DEADLINE_S = 20.0  # all the files of one request downloaded within this
CHUNK = 64 * 1024
SCOPE_HINT = "the app needs the files:read scope to read shared files (add it and reinstall)"


class SlackFile(BaseModel):
    """A file object as Slack puts it on a message (the fields used here)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = ""
    title: str = ""
    mimetype: str = ""
    filetype: str = ""
    size: int | None = None
    url_private_download: str | None = None
    user: str | None = None
    mode: str | None = None  # "tombstone": deleted; "external": a link (Google Drive, ...)
    file_access: str | None = None  # "check_file_info": the event carries only the id


async def request_inputs(
    engine: Engine,
    client: AsyncWebClient,
    text: str,
    actor: Actor,
    own: list[SlackFile],
    above: list[dict[str, Any]],
) -> list[InputFile]:
    """The inputs of the job `text` asks for: its own files, and for a request that takes
    files (a doc job) those shared in the thread above; downloaded. Files attached to a request
    that cannot take them are refused; files above it are then only conversation. A refusal
    is on the audit chain and raised for the door to show."""
    refusal = engine.inputs_refusal(text, [f.name or f.id for f in own])
    if refusal is not None and not own:
        return []
    files = own
    try:
        if refusal is not None:
            raise refusal
        files = chosen(own, above, engine.policy.slack.files_per_request)
        if not files:
            return []

        def source(file: SlackFile) -> str:
            person = engine.policy.person_for("slack", file.user or "") if file.user else None
            who = f"{person} ({file.user})" if person else (file.user or "someone")
            return f"slack file {file.id} from {who}"

        limit = engine.policy.limits.doc_max_bytes
        return await fetched(client, files, max_bytes=limit, source=source)
    except AcpError as error:
        names = [f.name or f.id for f in files]
        await engine.record_refusal(
            "request.refused", actor.label, error, request=request_digest(text), files=names
        )
        raise


def files_on(message: dict[str, Any]) -> list[SlackFile]:
    """The files shared on one message, deleted ones left out."""
    found = [SlackFile.model_validate(f) for f in message.get("files") or [] if f.get("id")]
    return [f for f in found if f.mode != "tombstone"]


def chosen(own: list[SlackFile], above: list[dict[str, Any]], most: int) -> list[SlackFile]:
    """The request's own files (more than `most` is refused), then the newest files people
    shared in the thread above, while there is room. A bot's files (the app's own published
    documents among them) are not inputs."""
    if own and not most:
        raise BadRequest(
            "attached files are not taken as inputs here (slack.files_per_request is 0); "
            "nothing was submitted",
            hint="ask without the file, or ask whoever runs the agent to allow files",
        )
    if len(own) > most:
        raise BadRequest(
            f"{len(own)} files are attached; a request takes at most {most} "
            "(slack.files_per_request); nothing was submitted",
            hint=f"attach at most {most}, or ask whoever runs the agent to allow more",
        )
    picked = {f.id: f for f in own}
    for message in reversed(above):
        if message.get("bot_id") or message.get("subtype") == "bot_message":
            continue
        for file in files_on(message):
            if len(picked) >= most:
                return list(picked.values())
            picked.setdefault(file.id, file)
    return list(picked.values())


async def fetched(
    client: AsyncWebClient,
    files: list[SlackFile],
    *,
    max_bytes: int,
    source: Callable[[SlackFile], str],
) -> list[InputFile]:
    """Each file's bytes, downloaded with the bot's token. Refused before any download when
    one is not a document by its name or is over `max_bytes` by the size Slack declares;
    refused while downloading when the bytes run past it, or Slack answers with anything but
    the file (a sign-in page, an error, nothing within the deadline)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(DOWNLOAD_DEADLINE_S):
            described = [await _described(client, f) for f in files]
            for file in described:
                check_attachment(file.name, file.size or 0, max_bytes)
            # One after another: the first refusal stops the rest, and says which file.
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=10)) as s:
                contents = [await _download(s, client, f, max_bytes) for f in described]
    except TimeoutError:
        raise BadRequest(
            f"the attached files did not download from Slack within {DOWNLOAD_DEADLINE_S:g} s "
            f"({time.monotonic() - started:.0f} s passed); nothing was submitted",
            hint="try again; if it keeps happening, attach smaller files",
        ) from None
    return [
        InputFile(name=f.name, source=source(f), media_type=f.mimetype, content=content)
        for f, content in zip(described, contents, strict=True)
    ]


async def _described(client: AsyncWebClient, file: SlackFile) -> SlackFile:
    """The file as files.info tells it when the event carried only its id."""
    if file.url_private_download and file.name and file.file_access != "check_file_info":
        return file
    if file.mode == "external":
        raise BadRequest(
            f"{file.name or file.id} is a link to a file kept outside Slack; nothing was submitted",
            hint="download it and attach the file itself",
        )
    try:
        info = (await client.files_info(file=file.id))["file"]
    except SlackApiError as error:
        why = error.response.get("error", "an error")
        raise BadRequest(
            f"Slack would not describe the attached file {file.name or file.id} ({why}); "
            "nothing was submitted",
            hint=SCOPE_HINT if why in ("missing_scope", "file_not_found") else "try again",
        ) from None
    described = SlackFile.model_validate(info)
    if not described.url_private_download:
        raise BadRequest(
            f"{described.name or file.id} cannot be downloaded from Slack; nothing was submitted",
            hint="attach the file itself (not a link, a post or a canvas)",
        )
    return described


async def _download(
    session: aiohttp.ClientSession, client: AsyncWebClient, file: SlackFile, max_bytes: int
) -> bytes:
    name = file.name
    headers = {"Authorization": f"Bearer {client.token}"}
    try:
        async with session.get(
            file.url_private_download or "",
            headers=headers,
            proxy=client.proxy or None,
            ssl=client.ssl if client.ssl is not None else True,
        ) as response:
            if response.status != 200:
                raise BadRequest(
                    f"Slack answered HTTP {response.status} for {name}, not the file; nothing "
                    "was submitted",
                    hint=SCOPE_HINT if response.status in (401, 403) else "try again",
                )
            # Slack answers a download it does not accept the token for with its sign-in
            # page, as a 200: never take that page for the file.
            if response.content_type == "text/html":
                raise BadRequest(
                    f"Slack sent a sign-in page instead of {name}: it did not accept the "
                    "app's token for the download; nothing was submitted",
                    hint=SCOPE_HINT,
                )
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                check_attachment(name, declared, max_bytes)
            chunks, got = [], 0
            async for chunk in response.content.iter_chunked(CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise DocumentError(
                        f"{name} is over the {size_text(max_bytes)} limit for documents (the "
                        f"download passed it; Slack said {size_text(file.size or 0)})",
                        hint="attach a smaller file, or raise limits.doc_max_bytes in the policy",
                    )
                chunks.append(chunk)
    except aiohttp.ClientError as error:
        raise BadRequest(
            f"{name} could not be downloaded from Slack ({type(error).__name__}); nothing was "
            "submitted",
            hint="try again",
        ) from None
    if file.size is not None and got != file.size:
        raise BadRequest(
            f"the download of {name} was cut short: {got} of {file.size} bytes; nothing was "
            "submitted",
            hint="try again",
        )
    return b"".join(chunks)

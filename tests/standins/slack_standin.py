"""A stand-in for Slack's Web API: a real HTTP server on 127.0.0.1 for tests and benchmarks.

Point the bot's ``AsyncWebClient(base_url=standin.base_url)`` at it. It answers the methods the
bot uses the way Slack does (same response shapes, same error strings), keeps the resulting
channel state (messages, threads, ephemerals, views, files) and records every request.

How slack_sdk reaches it (all handled here):

- ``chat.*`` and ``views.*`` are POSTed as JSON; ``auth.test``, ``files.getUploadURLExternal``,
  ``files.completeUploadExternal`` (and most other methods) are POSTed with their arguments in
  the *query string* and an empty form body; ``conversations.info``/``users.info`` are GETs.
  Arguments from the query string, a form body and a JSON body are merged.
- The token arrives as ``Authorization: Bearer ...`` (or a ``token`` argument).
- ``files_upload_v2`` is three requests: ``files.getUploadURLExternal`` (returns an upload URL
  on this server), a raw-bytes POST to that URL (no token), then
  ``files.completeUploadExternal`` with ``files`` as a JSON string.

Besides the API methods, ``calls`` also records POSTs to upload URLs (method ``"upload"``) and
to response URLs (method ``"response_url"``); neither name can clash with a Slack method.
``Call.at`` is ``time.monotonic()`` when the request was read.

Socket Mode: ``apps.connections.open`` (app-level token ``xapp-...`` as bearer) answers a
``ws://127.0.0.1:PORT/socket/<id>`` URL on this server. A client connecting there gets Slack's
``hello`` message; a test then pushes envelopes with ``socket_send`` (shaped exactly like
Slack's: envelope_id, type, payload, accepts_response_payload, retry_attempt, retry_reason) and
waits for the client's acknowledgement (``{"envelope_id", "payload"?}``) with ``socket_ack``.
Pings are answered with pongs (aiohttp's autoping). ``socket_disconnect`` sends Slack's
``{"type": "disconnect"}`` (the client then opens a new connection). Everything the client
sends over a socket is kept in ``socket_received``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata", "user_auth_blocks")


@dataclass
class Call:
    """One request the stand-in received."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float
    response: dict[str, Any] | None = None  # the JSON answered (None for non-JSON answers)
    status: int = 200


@dataclass
class _Injected:
    times: int
    status: int = 200
    error: str = ""
    retry_after: int | None = None


@dataclass
class _Upload:
    file_id: str
    filename: str
    length: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    content: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _trigger_issued_at(trigger_id: str) -> float | None:
    """Issue time of a trigger id shaped ``<n>.<ms>.<hex>`` (see slack_signing.new_trigger_id)."""
    parts = trigger_id.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[1]) / 1000.0


class SlackStandIn:
    """A Slack Web API on 127.0.0.1 for tests: answers what the bot calls, records every call.

    ``latency`` (seconds) delays every API answer, to model Slack's round trip in benchmarks.
    ``trigger_ttl`` is how long a trigger id made by ``slack_signing`` stays usable for
    ``views.open`` (Slack: 3 s); None disables the check. Each trigger id opens one view only.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-1-A0TESTAPP-1-test",
        team_id: str = "T0TEST",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0TESTAPP",
        latency: float = 0.0,
        trigger_ttl: float | None = 3.0,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.latency = latency
        self.trigger_ttl = trigger_ttl

        self.base_url = ""
        self.root_url = ""
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.views_opened: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}  # every view by id, current state
        self.home_views: dict[str, dict[str, Any]] = {}
        self.files: list[dict[str, Any]] = []
        self.response_url_posts: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.channels: dict[str, dict[str, Any]] = {}  # optional conversations.info overrides
        # Socket Mode
        self.socket_connected = asyncio.Event()  # set while a client is connected
        self.socket_connections = 0  # connections greeted with "hello", ever
        self.socket_received: list[dict[str, Any]] = []  # every JSON message clients sent
        self.socket_acks: dict[str, dict[str, Any]] = {}  # envelope_id -> the client's ack
        self.socket_ack_at: dict[str, float] = {}  # envelope_id -> monotonic time of the ack
        self.socket_sent_at: dict[str, float] = {}  # envelope_id -> monotonic time sent

        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._response_urls: dict[str, list[dict[str, Any]]] = {}
        self._uploads: dict[str, _Upload] = {}
        self._used_triggers: set[str] = set()
        self._fail: dict[str, list[_Injected]] = {}
        self._runner: web.AppRunner | None = None
        self._cond: asyncio.Condition | None = None
        self._socket_ids: set[str] = set()  # issued by apps.connections.open, not yet used
        self._sockets: list[web.WebSocketResponse] = []  # open, oldest first

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> SlackStandIn:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_post("/response/{n}", self._handle_response_url)
        app.router.add_get("/socket/{id}", self._handle_socket)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._handle_file_download)
        self._cond = asyncio.Condition()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root_url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root_url}/api/"
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- inspection ---------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait until ``count`` calls to ``method`` (matching ``where``) have been answered.

        Returns all matching calls so far (at least ``count``). The stand-in's state (messages,
        views, files...) already reflects them. Raises TimeoutError listing what did arrive.
        """
        assert self._cond is not None, "start() the stand-in first"

        def matching() -> list[Call]:
            return [c for c in self.calls_to(method) if where is None or where(c)]

        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: len(matching()) >= count), timeout
                )
            except TimeoutError:
                seen = [(c.method, (c.response or {}).get("error")) for c in self.calls]
                raise TimeoutError(
                    f"waited {timeout}s for {count} x {method}, got {len(matching())}; "
                    f"calls so far (method, error): {seen}"
                ) from None
        return matching()

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies in the thread under (channel, ts), oldest first (the parent excluded)."""
        replies = [
            m
            for (ch, mts), m in self.messages.items()
            if ch == channel and m.get("thread_ts") == ts and mts != ts
        ]
        return sorted(replies, key=lambda m: float(m["ts"]))

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages in ``channel`` (not thread replies), oldest first."""
        msgs = [
            m
            for (ch, _), m in self.messages.items()
            if ch == channel and m.get("thread_ts") in (None, m["ts"])
        ]
        return sorted(msgs, key=lambda m: float(m["ts"]))

    def dm_channel(self, user_id: str) -> str:
        """The DM channel id Slack answers when a message is posted to a user id."""
        return "D" + user_id[1:]

    def response_url(self) -> str:
        """A fresh response URL on this server; POSTs to it land in ``response_url_posts``."""
        assert self.root_url, "start() the stand-in first"
        url = f"{self.root_url}/response/{next(self._ids)}"
        self._response_urls[url] = []
        return url

    def posts_to(self, response_url: str) -> list[dict[str, Any]]:
        """JSON bodies posted to one response URL, in order."""
        return self._response_urls[response_url]

    # --- seeding & fault injection ------------------------------------------------------------

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Put a message from a human into the channel state (e.g. before an event about it)."""
        ts = ts or self._next_ts()
        msg = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts}
        if thread_ts:
            msg["thread_ts"] = thread_ts
        self.messages[(channel, ts)] = msg
        return msg

    def fail_next(
        self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP ``status``.

        429 carries ``Retry-After: <retry_after>`` and ``{"ok": false, "error": "ratelimited"}``
        (slack_sdk's AsyncRateLimitErrorRetryHandler sleeps retry_after + up to 1 s, then retries).
        """
        error = "ratelimited" if status == 429 else "fatal_error"
        self._fail.setdefault(method, []).append(
            _Injected(times, status, error, retry_after if status == 429 else None)
        )

    def error_next(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 200 ``{"ok": false, error}``."""
        self._fail.setdefault(method, []).append(_Injected(times, 200, error))

    def clear_failures(self) -> None:
        """Forget every injected failure: Slack is healthy again."""
        self._fail.clear()

    # --- Socket Mode ----------------------------------------------------------------------------

    async def wait_socket(self, count: int = 1, timeout: float = 10) -> None:
        """Wait until ``count`` connections have been greeted, the newest still open."""
        assert self._cond is not None, "start() the stand-in first"
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(
                        lambda: self.socket_connections >= count and bool(self._sockets)
                    ),
                    timeout,
                )
            except TimeoutError:
                opened = len(self.calls_to("apps.connections.open"))
                raise TimeoutError(
                    f"waited {timeout}s for Socket Mode connection #{count}; "
                    f"{self.socket_connections} greeted, {len(self._sockets)} open, "
                    f"apps.connections.open called {opened}x"
                ) from None

    async def wait_socket_closed(self, timeout: float = 10) -> None:
        """Wait until no Socket Mode connection is open."""
        assert self._cond is not None, "start() the stand-in first"
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: not self._sockets), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{len(self._sockets)} Socket Mode connection(s) still open after {timeout}s"
                ) from None

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = True,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Push one envelope to the newest connected client, as Slack does; returns its id.

        ``envelope_type`` is ``"slash_commands"``, ``"interactive"`` or ``"events_api"``;
        ``payload`` is what Slack would have POSTed in HTTP mode (as a JSON object).
        """
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        self.socket_sent_at[envelope_id] = time.monotonic()
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id

    async def socket_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """Wait for the client's acknowledgement of an envelope and return it.

        The ack is ``{"envelope_id": ...}``, plus ``"payload"`` when the app answered with one.
        ``socket_ack_at[envelope_id] - socket_sent_at[envelope_id]`` is the ack's delay.
        """
        assert self._cond is not None, "start() the stand-in first"
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: envelope_id in self.socket_acks), timeout
                )
            except TimeoutError:
                raise TimeoutError(
                    f"no ack for envelope {envelope_id} in {timeout}s; "
                    f"the client sent: {self.socket_received}"
                ) from None
        return self.socket_acks[envelope_id]

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message on the newest connection (it stays open)."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        await self._sockets[-1].send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}}
        )

    async def _notify(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()

    # --- HTTP handlers ------------------------------------------------------------------------

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()

    async def _read_args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.can_read_body:
            if ctype == "application/json":
                raw = await request.read()
                if raw.strip():
                    body = json.loads(raw)
                    if isinstance(body, dict):
                        args.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for k, v in form.items():
                    args[k] = v.file.read() if isinstance(v, web.FileField) else v
            else:
                await request.read()
        for k in JSON_FIELDS:
            v = args.get(k)
            if isinstance(v, str) and v[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    args[k] = json.loads(v)
        return args

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._read_args(request)
        call = Call(method, args, dict(request.headers), time.monotonic())
        status, headers = 200, {}
        injected = self._take_injected(method)
        if injected is not None and injected.status != 200:
            status = injected.status
            body: dict[str, Any] = {"ok": False, "error": injected.error}
            if injected.retry_after is not None:
                headers["Retry-After"] = str(injected.retry_after)
        else:
            body = self._answer(method, args, request, injected)
        call.response, call.status = body, status
        if self.latency:
            await asyncio.sleep(self.latency)
        await self._record(call)
        return web.json_response(body, status=status, headers=headers)

    def _take_injected(self, method: str) -> _Injected | None:
        queue = self._fail.get(method)
        if not queue:
            return None
        inj = queue[0]
        inj.times -= 1
        if inj.times <= 0:
            queue.pop(0)
        return inj

    def _answer(
        self, method: str, args: dict[str, Any], request: web.Request, injected: _Injected | None
    ) -> dict[str, Any]:
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip()
        if not token:
            return {"ok": False, "error": "not_authed"}
        # apps.connections.open takes the app-level token only; every other method the bot token.
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            known = token in (self.app_token, self.bot_token)
            return {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"}
        if injected is not None:
            return {"ok": False, "error": injected.error}
        try:
            return {"ok": True, **handler(args)}
        except SlackError as e:
            return {"ok": False, "error": e.error, **e.extra}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        upload = self._uploads.get(file_id)
        if request.content_type == "multipart/form-data":
            form = await request.post()
            content = b""
            for v in form.values():
                if isinstance(v, web.FileField):
                    content = v.file.read()
                    break
                content = v.encode() if isinstance(v, str) else bytes(v)
        else:
            content = await request.read()
        call = Call(
            "upload",
            {"file_id": file_id, "length": len(content)},
            dict(request.headers),
            time.monotonic(),
        )
        if upload is None:
            call.status = 404
            await self._record(call)
            return web.Response(status=404, text="file not found", content_type="text/plain")
        upload.content = content
        await self._record(call)
        # files.slack.com answers text/plain "OK - <bytes>"; slack_sdk checks only the status.
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        url = f"{self.root_url}/response/{request.match_info['n']}"
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            payload = {"_raw": raw.decode(errors="replace")}
        call = Call(
            "response_url", {"url": url, **payload}, dict(request.headers), time.monotonic()
        )
        if url not in self._response_urls:
            call.status = 404
            await self._record(call)
            return web.Response(status=404, text="no_such_url", content_type="text/plain")
        self._response_urls[url].append(payload)
        self.response_url_posts.append(payload)
        call.response = {"ok": True}
        await self._record(call)
        return web.json_response({"ok": True})

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] not in self._socket_ids:
            return web.Response(status=404, text="invalid_url", content_type="text/plain")
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings with pongs
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {
                    "host": "applink-standin",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self.socket_connected.set()
        await self._notify()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    data = {"_raw": msg.data}
                self.socket_received.append(data)
                envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
                if envelope_id and envelope_id not in self.socket_acks:
                    self.socket_acks[envelope_id] = data
                    self.socket_ack_at[envelope_id] = time.monotonic()
                await self._notify()
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self.socket_connected.clear()
            await self._notify()
        return ws

    # --- helpers ------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def _channel(self, args: dict[str, Any], key: str = "channel") -> str:
        channel = args.get(key)
        if not channel or not isinstance(channel, str):
            raise SlackError("channel_not_found")
        if channel[0] in "UW":  # posting to a user id posts into the app's DM with them
            return self.dm_channel(channel)
        return channel

    @staticmethod
    def _require(args: dict[str, Any], *names: str) -> None:
        missing = [n for n in names if args.get(n) in (None, "")]
        if missing:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] missing required field: {missing[0]}"]},
            )

    def _bot_message(self, channel: str, ts: str, args: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": args.get("text") or "",
        }
        for k in ("blocks", "attachments", "metadata", "thread_ts", "reply_broadcast"):
            if args.get(k) not in (None, ""):
                msg[k] = args[k]
        return msg

    @staticmethod
    def _public(msg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in msg.items() if k != "channel"}

    # --- methods ------------------------------------------------------------------------------

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        socket_id = uuid.uuid4().hex
        self._socket_ids.add(socket_id)
        ws_root = self.root_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_root}/socket/{socket_id}"}

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://acp-test.slack.com/",
            "team": "ACP Test",
            "user": "acp-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        msg = self._bot_message(channel, ts, args)
        self.messages[(channel, ts)] = msg
        return {"channel": channel, "ts": ts, "message": self._public(msg)}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("ts") or "")
        msg = self.messages.get((channel, ts))
        if msg is None:
            raise SlackError("message_not_found")
        if msg.get("user") != self.bot_user_id:
            raise SlackError("cant_update_message")
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackError("no_text")
        self._limit_update_rate(channel, ts, args)
        for k in ("text", "blocks", "attachments", "metadata"):
            if k in args and args[k] is not None:
                msg[k] = args[k]
        msg["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": msg["text"], "message": self._public(msg)}

    def _limit_update_rate(self, channel: str, ts: str, args: dict[str, Any]) -> None:
        """Slack answers a burst of chat.update with HTTP 429 ``ratelimited`` and Retry-After.
        Here: a second update of one message within ``update_interval`` seconds (1 unless the
        attribute is set; None allows any rate). The refused call is recorded in ``calls``
        with status 429, so a test sees a deliverer that hammers."""
        interval = getattr(self, "update_interval", 1.0)
        updated_at: dict[tuple[str, str], float] = vars(self).setdefault("_updated_at", {})
        now = time.monotonic()
        since = now - updated_at.get((channel, ts), float("-inf"))
        if interval is not None and since < interval:
            body = {"ok": False, "error": "ratelimited"}
            self.calls.append(Call("chat.update", dict(args), {}, now, body, 429))
            asyncio.get_running_loop().create_task(self._notify())
            raise web.HTTPTooManyRequests(
                text=json.dumps(body), content_type="application/json", headers={"Retry-After": "1"}
            )
        updated_at[(channel, ts)] = now

    def _m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("ts") or "")
        if self.messages.pop((channel, ts), None) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "ts": ts}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("user"):
            raise SlackError("user_not_found")
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        eph = {
            "channel": channel,
            "user": args["user"],
            "text": args.get("text") or "",
            "blocks": args.get("blocks"),
            "thread_ts": args.get("thread_ts"),
            "message_ts": ts,
        }
        self.ephemerals.append(eph)
        return {"message_ts": ts}

    def _m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("message_ts") or "")
        return {
            "channel": channel,
            "permalink": f"https://acp-test.slack.com/archives/{channel}/p{ts.replace('.', '')}",
        }

    def _m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        self._require(args, "name", "timestamp")
        if (channel, str(args["timestamp"])) not in self.messages:
            raise SlackError("message_not_found")
        self.reactions.append({"channel": channel, "ts": args["timestamp"], "name": args["name"]})
        return {}

    def _m_reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        key = {"channel": channel, "ts": args.get("timestamp"), "name": args.get("name")}
        if key not in self.reactions:
            raise SlackError("no_reaction")
        self.reactions.remove(key)
        return {}

    def _new_view(self, view: Any, *, view_id: str | None = None) -> dict[str, Any]:
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] missing required field: view"]},
            )
        vid = view_id or self._new_id("V")
        out = {
            "id": vid,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{self._new_id('h')}",
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "external_id": view.get("external_id", ""),
            "previous_view_id": None,
            "root_view_id": vid,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[vid] = out
        return out

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            self._require(args, "trigger_id")
        trigger = str(trigger)
        issued = _trigger_issued_at(trigger)
        ttl = self.trigger_ttl
        if ttl is not None and issued is not None and time.time() - issued > ttl:
            raise SlackError("expired_trigger_id")
        if trigger in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        view = self._new_view(args.get("view"))
        if view["type"] != "modal":
            raise SlackError("invalid_arguments")
        self._used_triggers.add(trigger)
        self.views_opened.append(view)
        return {"view": view}

    def _m_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._m_views_open(args)

    def _m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        vid = args.get("view_id")
        if not vid and args.get("external_id"):
            vid = next(
                (i for i, v in self.views.items() if v["external_id"] == args["external_id"]),
                None,
            )
        if not vid or vid not in self.views:
            raise SlackError("not_found")
        old = self.views[vid]
        if args.get("hash") and args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        view = self._new_view(args.get("view"), view_id=vid)
        view["root_view_id"] = old["root_view_id"]
        for user, home in self.home_views.items():
            if home["id"] == vid:
                self.home_views[user] = view
        return {"view": view}

    def _m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "user_id")
        user = str(args["user_id"])
        old = self.home_views.get(user)
        if old is not None and args.get("hash") and args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        view = self._new_view(args.get("view"), view_id=old["id"] if old else None)
        if view["type"] != "home":
            raise SlackError("invalid_arguments")
        self.home_views[user] = view
        return {"view": view}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "filename", "length")
        try:
            length = int(args["length"])
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        file_id = self._new_id("F")
        self._uploads[file_id] = _Upload(
            file_id, str(args["filename"]), length, args.get("alt_txt"), args.get("snippet_type")
        )
        return {"upload_url": f"{self.root_url}/upload/v1/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "files")
        items = args["files"]
        if not isinstance(items, list) or not items:
            raise SlackError("invalid_arguments")
        uploads = []
        for item in items:
            up = self._uploads.get(str(item.get("id")))
            if up is None or up.content is None:
                raise SlackError("file_not_found")
            uploads.append((up, item.get("title") or up.filename))
        channel_id = args.get("channel_id") or None
        channels = [c for c in str(args.get("channels") or "").split(",") if c]
        if channel_id:
            channels = [channel_id, *[c for c in channels if c != channel_id]]
        thread_ts = args.get("thread_ts") or None
        if thread_ts and len(channels) != 1:
            raise SlackError("invalid_arguments")
        now = int(time.time())
        out = []
        for up, title in uploads:
            del self._uploads[up.file_id]
            record = {
                "id": up.file_id,
                "filename": up.filename,
                "title": title,
                "content": up.content,
                "length": up.length,
                "alt_txt": up.alt_txt,
                "snippet_type": up.snippet_type,
                "channel_id": channel_id,
                "channels": channels,
                "thread_ts": thread_ts,
                "initial_comment": args.get("initial_comment"),
            }
            self.files.append(record)
            out.append(
                {
                    "id": up.file_id,
                    "created": now,
                    "timestamp": now,
                    "name": up.filename,
                    "title": title,
                    "mimetype": "text/plain",
                    "filetype": "text",
                    "user": self.bot_user_id,
                    "size": len(up.content or b""),
                    "url_private": f"{self.root_url}/files/{up.file_id}/{up.filename}",
                    "permalink": f"https://acp-test.slack.com/files/{up.file_id}",
                    "channels": [c for c in channels if c.startswith("C")],
                    "ims": [c for c in channels if c.startswith("D")],
                    "groups": [c for c in channels if c.startswith("G")],
                }
            )
        # Slack shares the files with one message per channel (subtype file_share).
        for ch in channels:
            ch = self._channel({"channel": ch})
            ts = self._next_ts()
            msg = self._bot_message(
                ch, ts, {"text": args.get("initial_comment") or "", "thread_ts": thread_ts}
            )
            msg["subtype"] = "file_share"
            msg["files"] = out
            self.messages[(ch, ts)] = msg
        return {"files": out}

    def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel in self.channels:
            info = self.channels[channel]
            if info.get("is_private") and not info.get("is_member", True):
                raise SlackError("channel_not_found")  # as Slack answers a bot not invited
            return {"channel": info}
        return {
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"),
                "is_im": channel.startswith("D"),
                "is_private": not channel.startswith("C"),
                "is_archived": False,
                "is_member": True,
                "created": 1_600_000_000,
            }
        }

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent then the replies, oldest first, paged by `limit` and `cursor`
        (Slack's cursor pagination). A channel the bot is not a member of: not_in_channel."""
        self._require(args, "ts")
        channel = self._channel(args)
        info = self.channels.get(channel)
        if info is not None and not info.get("is_member", True):
            raise SlackError("not_in_channel")
        ts = str(args["ts"])
        parent = self.messages.get((channel, ts))
        if parent is None:
            raise SlackError("thread_not_found")
        thread = [self._public(parent), *(self._public(m) for m in self.thread(channel, ts))]
        limit = max(1, min(int(args.get("limit") or 1000), 1000))
        start = int(args.get("cursor") or 0)
        page = thread[start : start + limit]
        more = start + limit < len(thread)
        return {
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    # --- the assistant panel (assistant.threads.*), as Slack checks them ----------------------

    def _assistant_thread(self, args: dict[str, Any]) -> tuple[str, str]:
        self._require(args, "channel_id", "thread_ts")
        channel, ts = str(args["channel_id"]), str(args["thread_ts"])
        if not channel.startswith("D"):
            raise SlackError("invalid_channel")  # assistant threads live in the app's DM
        return channel, ts

    def _m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        if "status" not in args:
            raise SlackError("invalid_arguments")
        return {}

    def _m_assistant_threads_setTitle(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        self._require(args, "title")
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> dict[str, Any]:
        self._assistant_thread(args)
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise SlackError("invalid_arguments")  # Slack takes one to four prompts
        if not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
            raise SlackError("invalid_arguments")
        return {}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "user")
        user = str(args["user"])
        return {
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": user.lower(),
                "real_name": f"User {user}",
                "is_bot": user == self.bot_user_id,
                "tz": "UTC",
                "profile": {"display_name": user.lower(), "real_name": f"User {user}"},
            }
        }

    # --- files people shared, as files.info and url_private_download serve them ---------------
    # A file is a record in ``files`` with ``id``, ``filename`` and ``content`` (an upload, or
    # one a test appends, with ``user``, ``mimetype``, ``filetype`` and a ``size`` Slack
    # declares, which may differ from the content's on purpose).

    def _file_object(self, record: dict[str, Any]) -> dict[str, Any]:
        """The file object Slack puts on messages and answers in files.info."""
        file_id, name = record["id"], record["filename"]
        private = f"{self.root_url}/files-pri/{self.team_id}-{file_id}"
        content = record.get("content") or b""
        return {
            "id": file_id,
            "created": int(time.time()),
            "name": name,
            "title": record.get("title") or name,
            "mimetype": record.get("mimetype", "text/plain"),
            "filetype": record.get("filetype", name.rpartition(".")[2] or "text"),
            "user": record.get("user", self.bot_user_id),
            "mode": "hosted",
            "size": record.get("size", len(content)),
            "url_private": f"{private}/{name}",
            "url_private_download": f"{private}/download/{name}",
            "permalink": f"https://acp-test.slack.com/files/{file_id}",
        }

    def _m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require(args, "file")
        record = next((f for f in self.files if f["id"] == str(args["file"])), None)
        if record is None:
            raise SlackError("file_not_found")
        return {"file": self._file_object(record), "comments": [], "response_metadata": {}}

    async def _handle_file_download(self, request: web.Request) -> web.Response:
        """A file's bytes for the bot token; anything else gets Slack's sign-in page with a
        200, as Slack answers a download it does not accept the credentials of."""
        team, _, file_id = request.match_info["team_file"].partition("-")
        auth = request.headers.get("Authorization", "")
        call = Call("files.download", {"file": file_id}, dict(request.headers), time.monotonic())
        record = next((f for f in self.files if f["id"] == file_id), None)
        if auth != f"Bearer {self.bot_token}" or team != self.team_id:
            call.status = 200
            response = web.Response(
                text="<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to "
                "your workspace to continue</body></html>",
                content_type="text/html",
            )
        elif record is None or record["filename"] != request.match_info["name"]:
            call.status = 404
            response = web.Response(status=404, text="Not Found", content_type="text/html")
        else:
            response = web.Response(
                body=record.get("content") or b"",
                content_type=record.get("mimetype", "application/octet-stream"),
                headers={"Content-Disposition": f'attachment; filename="{record["filename"]}"'},
            )
        await self._record(call)
        return response


__all__ = ["Call", "SlackStandIn"]

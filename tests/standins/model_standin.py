"""A stand-in for a hosted model: an OpenAI-compatible chat completions server on 127.0.0.1.

Reach it through litellm exactly as a hosted OpenAI model is reached::

    async with ModelStandIn() as model:
        model.script("gpt-4o-mini", say("hello"), call("read_file", path="README.md"))
        resp = await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=[...],
            api_base=model.base_url, api_key=model.api_key,
        )

Serves ``POST /v1/chat/completions`` (plain JSON, or Server-Sent Events when the request has
``"stream": true``; ``stream_options.include_usage`` adds the final usage chunk) and
``GET /v1/models``. Answers are scripted per model name (the part after ``openai/``) and
handed out in order, one per request:

- ``say(text)``: an assistant message with content (finish_reason ``stop``);
- ``call(name, **arguments)``: one tool call (finish_reason ``tool_calls``, content null);
- ``calls([tool(name, **args), ("other", {...}), ...])``: several tool calls in one message.

Every reply carries ``usage``: fixed (``say(..., usage=(p, c))`` or ``script(..., usage=(p, c))``)
or else estimated deterministically (about 4 characters a token), so ``litellm.completion_cost``
works for a model litellm knows the price of (e.g. ``gpt-4o-mini``).

Errors are shaped like OpenAI's (``{"error": {"message", "type", "param", "code"}}``):

- ``fail_next(model, status, times)``: the next ``times`` requests for that model fail with
  ``status`` (429 / 500 / 503 have OpenAI's bodies; ``body`` overrides). A failure does not use
  up a scripted reply.
- A bearer key other than ``api_key``: 401 ``invalid_api_key``.
- A model whose script has run out (or never had one): 500 with the message
  ``no scripted reply left for model X`` (code ``no_scripted_reply``), so a test notices.
- A malformed body (no JSON, no model, no messages): 400 ``invalid_request_error``.

``requests`` records every request (including refused ones) with its raw headers: the
``Authorization`` header is kept as sent, so a test can assert where a key did (and did not)
arrive. ``latency_s`` delays every answer, to model a provider's round trip in benchmarks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Usage = tuple[int, int]  # (prompt_tokens, completion_tokens)


# --- replies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asks for; ``id`` is unique unless given."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True)
class Reply:
    """One scripted assistant answer."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None  # None: estimated from the request and the reply
    finish_reason: str | None = None  # None: "tool_calls" if there are tool calls, else "stop"

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": self.content,
            "refusal": None,
            "annotations": [],
        }
        if self.tool_calls:
            msg["tool_calls"] = [tc.to_openai() for tc in self.tool_calls]
        return msg

    def finish(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


def say(text: str, *, usage: Usage | None = None) -> Reply:
    """An assistant message with ``text`` as its content."""
    return Reply(content=text, usage=usage)


def tool(name: str, /, **arguments: Any) -> ToolCall:
    """A tool call to put in ``calls([...])``."""
    return ToolCall(name=name, arguments=arguments)


def call(name: str, /, *, usage: Usage | None = None, **arguments: Any) -> Reply:
    """An assistant message with one tool call ``name(**arguments)``.

    ``usage`` is reserved (it sets the reply's token counts); pass a tool argument named
    ``usage`` through ``calls([("name", {"usage": ...})])`` instead.
    """
    return Reply(tool_calls=(ToolCall(name=name, arguments=arguments),), usage=usage)


def calls(
    items: Iterable[ToolCall | tuple[str, dict[str, Any]]],
    *,
    text: str | None = None,
    usage: Usage | None = None,
) -> Reply:
    """An assistant message with several tool calls (``tool(...)`` or ``(name, arguments)``)."""
    tcs = tuple(
        it if isinstance(it, ToolCall) else ToolCall(name=it[0], arguments=dict(it[1]))
        for it in items
    )
    if not tcs:
        raise ValueError("calls() needs at least one tool call")
    return Reply(content=text, tool_calls=tcs, usage=usage)


# --- records ------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request the stand-in received, and what it answered."""

    method: str
    path: str
    model: str | None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    headers: dict[str, str]  # raw, Authorization included
    body: dict[str, Any] | None  # the whole JSON body as sent
    at: float  # time.monotonic() when the request was read
    status: int = 200
    response: dict[str, Any] | None = None  # the JSON answered (for a stream: the same
    # completion, assembled); errors: the error body
    stream: bool = False

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


@dataclass
class _Failure:
    status: int
    times: int
    body: dict[str, Any] | None
    retry_after: float | None


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _default_error(status: int) -> dict[str, Any]:
    if status == 429:
        return _error(
            "Rate limit reached for requests (scripted by the model stand-in). "
            "Please try again in 1ms.",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 503:
        return _error(
            "The server is overloaded or not ready yet (scripted by the model stand-in).",
            "server_error",
            None,
        )
    if status == 401:
        return _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    if status == 400:
        return _error(
            "Bad request (scripted by the model stand-in).", "invalid_request_error", None
        )
    return _error(
        "The server had an error while processing your request (scripted by the model stand-in).",
        "server_error",
        None,
    )


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _mask(key: str) -> str:
    return key if len(key) <= 8 else f"{key[:3]}*****{key[-4:]}"


# --- the server ---------------------------------------------------------------------------------


class ModelStandIn:
    """An OpenAI-compatible chat completions server on 127.0.0.1 with scripted answers."""

    def __init__(self, *, api_key: str = "sk-standin-key", latency_s: float = 0.0) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.base_url = ""  # "http://127.0.0.1:PORT/v1" once started
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> ModelStandIn:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ModelStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- scripting ------------------------------------------------------------------------------

    def script(self, model: str, *replies: Reply, usage: Usage | None = None) -> None:
        """Queue ``replies`` for ``model``; ``usage`` applies to those without their own."""
        queue = self._scripts.setdefault(model, deque())
        for r in replies:
            if not isinstance(r, Reply):
                raise TypeError(f"script() takes Reply objects (say/call/calls), not {r!r}")
            if usage is not None and r.usage is None:
                r = Reply(r.content, r.tool_calls, usage, r.finish_reason)
            queue.append(r)

    def fail_next(
        self,
        model: str,
        status: int = 500,
        times: int = 1,
        body: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` requests for ``model`` answer ``status`` with an OpenAI error body.

        ``retry_after`` (seconds) adds a ``retry-after`` header (the OpenAI SDK honours it).
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        self._failures.setdefault(model, deque()).append(
            _Failure(status=status, times=times, body=body, retry_after=retry_after)
        )

    def pending(self, model: str) -> int:
        """How many scripted replies for ``model`` have not been served yet."""
        return len(self._scripts.get(model, ()))

    # --- inspection -----------------------------------------------------------------------------

    def requests_for(self, model: str) -> list[Recorded]:
        return [r for r in self.requests if r.model == model]

    # --- handlers -------------------------------------------------------------------------------

    async def _delay(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorized(self, request: web.Request) -> dict[str, Any]:
        raw = request.headers.get("Authorization", "")
        key = raw.removeprefix("Bearer ").strip()
        if not key:
            return _error(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
            )
        return _error(
            f"Incorrect API key provided: {_mask(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    async def _handle_models(self, request: web.Request) -> web.Response:
        rec = Recorded(
            method="GET",
            path=request.path,
            model=None,
            messages=[],
            tools=None,
            headers=dict(request.headers),
            body=None,
            at=time.monotonic(),
        )
        self.requests.append(rec)
        await self._delay()
        if not self._authorized(request):
            return self._answer(rec, 401, self._unauthorized(request))
        names = sorted(set(self._scripts) | set(self._failures))
        data = {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "model-standin"}
                for n in names
            ],
        }
        return self._answer(rec, 200, data)

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        raw = await request.read()
        body: dict[str, Any] | None
        try:
            parsed = json.loads(raw) if raw else None
            body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            body = None
        model = body.get("model") if body else None
        messages = body.get("messages") if body else None
        rec = Recorded(
            method="POST",
            path=request.path,
            model=model if isinstance(model, str) else None,
            messages=messages if isinstance(messages, list) else [],
            tools=body.get("tools") if body else None,
            headers=dict(request.headers),
            body=body,
            at=at,
            stream=bool(body and body.get("stream")),
        )
        self.requests.append(rec)
        await self._delay()

        if not self._authorized(request):
            return self._answer(rec, 401, self._unauthorized(request))
        if body is None:
            return self._answer(
                rec,
                400,
                _error(
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                ),
            )
        if not isinstance(model, str) or not model:
            return self._answer(
                rec,
                400,
                _error(
                    "you must provide a model parameter", "invalid_request_error", None, "model"
                ),
            )
        if not isinstance(messages, list) or not messages:
            return self._answer(
                rec,
                400,
                _error(
                    "[] is too short - 'messages'",
                    "invalid_request_error",
                    "invalid_value",
                    "messages",
                ),
            )

        failures = self._failures.get(model)
        if failures:
            failure = failures[0]
            failure.times -= 1
            if failure.times <= 0:
                failures.popleft()
            headers = {}
            if failure.retry_after is not None:
                headers["retry-after"] = str(failure.retry_after)
                headers["retry-after-ms"] = str(int(failure.retry_after * 1000))
            err = failure.body if failure.body is not None else _default_error(failure.status)
            return self._answer(rec, failure.status, err, headers)

        queue = self._scripts.get(model)
        if not queue:
            return self._answer(
                rec,
                500,
                _error(
                    f"no scripted reply left for model {model}",
                    "server_error",
                    "no_scripted_reply",
                ),
            )
        reply = queue.popleft()
        completion = self._completion(model, body, reply)
        if rec.stream:
            return await self._stream(request, rec, body, completion)
        return self._answer(rec, 200, completion)

    def _answer(
        self,
        rec: Recorded,
        status: int,
        data: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        rec.status = status
        rec.response = data
        hdrs = {"x-request-id": f"req_{uuid.uuid4().hex}", **(headers or {})}
        return web.json_response(data, status=status, headers=hdrs)

    def _completion(self, model: str, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        if reply.usage is not None:
            prompt, completion = reply.usage
        else:
            prompt = _tokens(json.dumps(body.get("messages", [])))
            if body.get("tools"):
                prompt += _tokens(json.dumps(body["tools"]))
            out = reply.content or ""
            out += "".join(tc.name + json.dumps(tc.arguments) for tc in reply.tool_calls)
            completion = _tokens(out)
        return {
            "id": f"chatcmpl-standin{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_standin",
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": reply.message(),
                    "logprobs": None,
                    "finish_reason": reply.finish(),
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        }

    async def _stream(
        self,
        request: web.Request,
        rec: Recorded,
        body: dict[str, Any],
        completion: dict[str, Any],
    ) -> web.StreamResponse:
        """Send ``completion`` as OpenAI's chat.completion.chunk events, then ``[DONE]``."""
        rec.status = 200
        rec.response = completion
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_{uuid.uuid4().hex}",
            },
        )
        await resp.prepare(request)
        choice = completion["choices"][0]
        msg = choice["message"]

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data: dict[str, Any] = {
                "id": completion["id"],
                "object": "chat.completion.chunk",
                "created": completion["created"],
                "model": completion["model"],
                "system_fingerprint": completion["system_fingerprint"],
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                **extra,
            }
            if include_usage and "usage" not in extra:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n".encode()

        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if msg.get("tool_calls"):
            first["content"] = None
        await resp.write(chunk(first))
        content = msg.get("content") or ""
        for i in range(0, len(content), 16):
            await resp.write(chunk({"content": content[i : i + 16]}))
        for idx, tc in enumerate(msg.get("tool_calls") or []):
            head = {
                "index": idx,
                "id": tc["id"],
                "type": "function",
                "function": {"name": tc["function"]["name"], "arguments": ""},
            }
            await resp.write(chunk({"tool_calls": [head]}))
            args = tc["function"]["arguments"]
            for i in range(0, len(args), 16):
                part = {"index": idx, "function": {"arguments": args[i : i + 16]}}
                await resp.write(chunk({"tool_calls": [part]}))
        await resp.write(chunk({}, choice["finish_reason"]))
        if include_usage:
            usage_event = {
                "id": completion["id"],
                "object": "chat.completion.chunk",
                "created": completion["created"],
                "model": completion["model"],
                "system_fingerprint": completion["system_fingerprint"],
                "choices": [],
                "usage": completion["usage"],
            }
            await resp.write(f"data: {json.dumps(usage_event)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

"""The model stand-in, driven by real ``litellm.acompletion`` exactly as a hosted model is.

litellm is imported lazily (fixture below) with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first,
so importing it never fetches the price list.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.standins.model_standin import ModelStandIn, call, calls, say, tool

MODEL = "gpt-4o-mini"  # litellm knows its price
LITELLM_MODEL = f"openai/{MODEL}"
USER = [{"role": "user", "content": "What is in README.md?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file in the job's worktree.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
]
FAST_RETRY = 0.01  # retry-after (s) for scripted failures; the OpenAI SDK honours it


@pytest.fixture(scope="session")
def litellm() -> ModuleType:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    return litellm


@pytest.fixture
async def standin():
    async with ModelStandIn() as s:
        yield s


async def complete(litellm: ModuleType, standin: ModelStandIn, **kwargs: Any) -> Any:
    kwargs.setdefault("model", LITELLM_MODEL)
    kwargs.setdefault("messages", USER)
    kwargs.setdefault("api_key", standin.api_key)
    return await litellm.acompletion(api_base=standin.base_url, **kwargs)


# --- answers --------------------------------------------------------------------------------


async def test_text_reply(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(MODEL, say("It describes the control plane."))
    resp = await complete(litellm, standin)

    assert resp.choices[0].message.content == "It describes the control plane."
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None
    assert resp.model == MODEL
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0

    (rec,) = standin.requests_for(MODEL)
    assert rec.path == "/v1/chat/completions"
    assert rec.messages == USER
    assert rec.tools is None
    assert rec.stream is False and "stream" not in rec.body  # litellm's default: no stream key
    assert rec.headers["Authorization"] == f"Bearer {standin.api_key}"  # raw, not redacted
    assert rec.status == 200 and rec.response["choices"][0]["message"]["content"]
    assert standin.pending(MODEL) == 0


async def test_tool_call_reply(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(MODEL, call("read_file", path="README.md"), say("Done."))
    resp = await complete(litellm, standin, tools=TOOLS)

    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    (tc,) = msg.tool_calls
    assert tc.type == "function"
    assert tc.id.startswith("call_")
    assert tc.function.name == "read_file"
    assert json.loads(tc.function.arguments) == {"path": "README.md"}

    # The conversation continues with the tool result, as an agent loop would send it.
    follow_up = [
        *USER,
        msg.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tc.id, "content": "# agent-control-plane"},
    ]
    resp2 = await complete(litellm, standin, messages=follow_up, tools=TOOLS)
    assert resp2.choices[0].message.content == "Done."

    first, second = standin.requests_for(MODEL)
    assert first.tools == TOOLS
    assert first.messages == USER
    assert second.messages[-1] == follow_up[-1]
    assert second.messages[1]["tool_calls"][0]["id"] == tc.id


async def test_several_tool_calls_in_one_message(
    litellm: ModuleType, standin: ModelStandIn
) -> None:
    standin.script(
        MODEL,
        calls([tool("read_file", path="a.py"), ("read_file", {"path": "b.py"})], text="Reading."),
        call("read_file", path="c.py"),
    )
    resp = await complete(litellm, standin, tools=TOOLS)
    msg = resp.choices[0].message
    assert msg.content == "Reading."
    assert [json.loads(t.function.arguments)["path"] for t in msg.tool_calls] == ["a.py", "b.py"]

    resp2 = await complete(litellm, standin, tools=TOOLS)
    ids = [t.id for t in msg.tool_calls] + [t.id for t in resp2.choices[0].message.tool_calls]
    assert len(set(ids)) == 3  # unique ids across messages


async def test_completion_cost(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(MODEL, say("fixed"), usage=(1000, 500))
    standin.script(MODEL, say("estimated"))
    resp = await complete(litellm, standin)
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (1000, 500)
    price = litellm.model_cost[MODEL]
    expected = 1000 * price["input_cost_per_token"] + 500 * price["output_cost_per_token"]
    assert litellm.completion_cost(resp) == pytest.approx(expected)
    assert expected > 0

    resp2 = await complete(litellm, standin)
    assert litellm.completion_cost(resp2) > 0


async def test_stream(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(
        MODEL,
        say("A streamed answer, long enough to arrive in several chunks."),
        calls([tool("read_file", path="a.py"), tool("read_file", path="b.py")]),
    )
    for expected in ("text", "tools"):
        chunks = []
        stream = await complete(
            litellm, standin, tools=TOOLS, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            chunks.append(chunk)
        assert len(chunks) > 2
        full = litellm.stream_chunk_builder(chunks, messages=USER)
        assert full.usage.prompt_tokens > 0
        assert litellm.completion_cost(full) > 0
        msg = full.choices[0].message
        if expected == "text":
            assert msg.content == "A streamed answer, long enough to arrive in several chunks."
            assert full.choices[0].finish_reason == "stop"
        else:
            assert [json.loads(t.function.arguments) for t in msg.tool_calls] == [
                {"path": "a.py"},
                {"path": "b.py"},
            ]
            assert full.choices[0].finish_reason == "tool_calls"
    assert all(r.stream for r in standin.requests_for(MODEL))


# --- failures -------------------------------------------------------------------------------


async def test_429_then_success_with_one_retry(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(MODEL, say("after the rate limit"))
    standin.fail_next(MODEL, 429, retry_after=FAST_RETRY)
    resp = await complete(litellm, standin, num_retries=1)

    assert resp.choices[0].message.content == "after the rate limit"
    first, second = standin.requests_for(MODEL)
    assert (first.status, second.status) == (429, 200)
    assert first.response["error"]["code"] == "rate_limit_exceeded"
    # litellm hands num_retries to the OpenAI SDK, which retries and counts in a header.
    counts = [r.headers["x-stainless-retry-count"] for r in (first, second)]
    assert counts == ["0", "1"]


async def test_default_is_two_retries(litellm: ModuleType, standin: ModelStandIn) -> None:
    """Without num_retries the OpenAI SDK under litellm retries 429/5xx twice (3 attempts)."""
    standin.script(MODEL, say("third time lucky"), say("unused"))
    standin.fail_next(MODEL, 500, times=2, retry_after=FAST_RETRY)
    resp = await complete(litellm, standin)
    assert resp.choices[0].message.content == "third time lucky"
    assert [r.status for r in standin.requests_for(MODEL)] == [500, 500, 200]

    standin.fail_next(MODEL, 503, times=3, retry_after=FAST_RETRY)
    with pytest.raises(litellm.exceptions.ServiceUnavailableError):
        await complete(litellm, standin)
    assert [r.status for r in standin.requests_for(MODEL)][3:] == [503, 503, 503]
    assert standin.pending(MODEL) == 1  # failures never use up a scripted reply


@pytest.mark.parametrize(
    ("status", "exc_name"),
    [
        (429, "RateLimitError"),
        (500, "InternalServerError"),
        (503, "ServiceUnavailableError"),
    ],
)
async def test_failure_surfaces_as_litellm_exception(
    litellm: ModuleType, standin: ModelStandIn, status: int, exc_name: str
) -> None:
    standin.script(MODEL, say("still here"))
    standin.fail_next(MODEL, status)
    with pytest.raises(getattr(litellm.exceptions, exc_name)) as info:
        await complete(litellm, standin, num_retries=0)
    assert info.value.status_code == status
    (rec,) = standin.requests_for(MODEL)
    assert rec.status == status
    assert set(rec.response["error"]) == {"message", "type", "param", "code"}
    assert standin.pending(MODEL) == 1
    resp = await complete(litellm, standin, num_retries=0)
    assert resp.choices[0].message.content == "still here"


async def test_custom_error_body(litellm: ModuleType, standin: ModelStandIn) -> None:
    body = {
        "error": {
            "message": "The model `gpt-4o-mini` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    standin.fail_next(MODEL, 404, body=body)
    with pytest.raises(litellm.exceptions.NotFoundError, match="does not exist"):
        await complete(litellm, standin)
    assert len(standin.requests) == 1  # 4xx other than 408/409/429 are not retried


async def test_wrong_key_is_authentication_error(
    litellm: ModuleType, standin: ModelStandIn
) -> None:
    standin.script(MODEL, say("never served"))
    with pytest.raises(litellm.exceptions.AuthenticationError, match="Incorrect API key"):
        await complete(litellm, standin, api_key="sk-wrong-key-123456")
    (rec,) = standin.requests
    assert rec.status == 401
    assert rec.headers["Authorization"] == "Bearer sk-wrong-key-123456"
    assert rec.response["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-123456" not in rec.response["error"]["message"]  # masked, like OpenAI
    assert standin.pending(MODEL) == 1


async def test_exhausted_script_is_a_clear_500(litellm: ModuleType, standin: ModelStandIn) -> None:
    standin.script(MODEL, say("only one"))
    await complete(litellm, standin)
    with pytest.raises(
        litellm.exceptions.InternalServerError, match=f"no scripted reply left for model {MODEL}"
    ):
        await complete(litellm, standin, num_retries=0)
    with pytest.raises(litellm.exceptions.InternalServerError, match="model never-scripted"):
        await complete(litellm, standin, model="openai/never-scripted", num_retries=0)


async def test_latency_is_honoured(litellm: ModuleType) -> None:
    async with ModelStandIn(latency_s=0.2) as slow:
        slow.script(MODEL, say("slow"), say("slow"))
        await complete(litellm, slow)  # warm the client
        started = time.perf_counter()
        resp = await complete(litellm, slow)
        elapsed = time.perf_counter() - started
    assert resp.choices[0].message.content == "slow"
    assert 0.2 <= elapsed < 1.5


# --- raw HTTP -------------------------------------------------------------------------------


async def test_models_and_bad_requests_over_raw_http(standin: ModelStandIn) -> None:
    standin.script(MODEL, say("x"))
    auth = {"Authorization": f"Bearer {standin.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{standin.base_url}/models", headers=auth) as r:
            assert r.status == 200
            data = await r.json()
        assert data["object"] == "list"
        assert [m["id"] for m in data["data"]] == [MODEL]

        async with http.get(f"{standin.base_url}/models") as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "invalid_request_error"

        url = f"{standin.base_url}/chat/completions"
        async with http.post(url, headers=auth, json={"model": MODEL, "messages": []}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "messages"
        async with http.post(url, headers=auth, data=b"not json") as r:
            assert r.status == 400
    assert standin.pending(MODEL) == 1
    assert [r.status for r in standin.requests] == [200, 401, 400, 400]


# --- measurements ---------------------------------------------------------------------------


async def test_standin_response_time(litellm: ModuleType, standin: ModelStandIn) -> None:
    """Median round trip of the stand-in itself (raw HTTP) and through litellm, over 50 calls."""
    n = 50
    standin.script(MODEL, *[say("ok") for _ in range(2 * n + 2)], usage=(10, 1))
    url = f"{standin.base_url}/chat/completions"
    body = {"model": MODEL, "messages": USER}
    auth = {"Authorization": f"Bearer {standin.api_key}"}

    raw: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=auth) as r:  # warm up
            await r.read()
        for _ in range(n):
            t0 = time.perf_counter()
            async with http.post(url, json=body, headers=auth) as r:
                await r.read()
            raw.append(time.perf_counter() - t0)
            assert r.status == 200

    via: list[float] = []
    await complete(litellm, standin)  # warm up
    for _ in range(n):
        t0 = time.perf_counter()
        await complete(litellm, standin)
        via.append(time.perf_counter() - t0)

    raw_ms = statistics.median(raw) * 1000
    via_ms = statistics.median(via) * 1000
    print(
        f"\nmodel stand-in median over {n}: raw HTTP {raw_ms:.2f} ms, "
        f"litellm.acompletion {via_ms:.2f} ms (litellm overhead {via_ms - raw_ms:.2f} ms)"
    )
    assert raw_ms < 50


def test_litellm_version_and_import_time() -> None:
    code = (
        "import os, time; os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'\n"
        "t = time.perf_counter(); import litellm; d = time.perf_counter() - t\n"
        "from importlib.metadata import version\n"
        "print(version('litellm'), version('openai'), d)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    lv, ov, seconds = out[-3], out[-2], float(out[-1])
    print(f"\nlitellm {lv} (openai {ov}) imports in {seconds:.2f} s")
    major, minor = (int(x) for x in lv.split(".")[:2])
    assert (major, minor) >= (1, 83)
    assert lv not in {"1.82.7", "1.82.8"}

"""Model calls through litellm: the policy's route, its fallbacks, budgets, and recording.

litellm is imported here only, and only when a call is made. A key is read from the environment
variable the route names and goes to the provider alone: never into records, artifacts or logs.
Every request and response is stored by content hash and referenced from a `model.call` event.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from runtime.errors import BudgetExceeded, ModelUnavailable
from runtime.jobs import JobRecord
from runtime.policy import ModelEndpoint, ModelRoute
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.policy import Policy
    from runtime.recorder import JobRecorder

# Errors after which the next model of the route is tried; anything else is the caller's fault.
FALLBACK_ERRORS = frozenset(
    {
        "RateLimitError",
        "InternalServerError",
        "ServiceUnavailableError",
        "APIConnectionError",
        "Timeout",
        "BadGatewayError",
        "APIError",
    }
)
CALL_TIMEOUT_S = 120.0
# What the rest of the team spent is re-read at most this often during one job's loop.
TEAM_SPEND_TTL_S = 5.0


def litellm_module():
    """Import litellm on first use, with its cost map read locally (no network at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


async def load_litellm():
    """litellm, imported in a thread the first time: the import takes seconds of CPU, which
    would stall the event loop and hold off every deadline on it. Callers with a deadline
    (the agent loops) load it before their deadline starts."""
    return sys.modules.get("litellm") or await asyncio.to_thread(litellm_module)


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str = Field(description="the model's JSON text, untrusted")


class ModelReply(BaseModel):
    content: str | None
    tool_calls: list[ToolCall]
    message: dict[str, Any] = Field(description="the assistant message, to append as is")
    model: str
    cost_usd: float = 0.0
    latency_ms: float = 0.0


def _message_of(response: dict[str, Any]) -> dict[str, Any]:
    message = response["choices"][0]["message"]
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": call["function"].get("arguments") or "{}",
                },
            }
            for call in message["tool_calls"]
        ]
    return out


def _reply(response: dict[str, Any], model: str, cost: float, latency_ms: float) -> ModelReply:
    message = _message_of(response)
    calls = [
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
        for c in message.get("tool_calls", [])
    ]
    return ModelReply(
        content=message.get("content"),
        tool_calls=calls,
        message=message,
        model=model,
        cost_usd=cost,
        latency_ms=latency_ms,
    )


class ModelClient:
    """One job's model calls. With `replay`, recorded responses are served and nothing is sent."""

    def __init__(
        self,
        recorder: JobRecorder,
        policy: Policy,
        job: JobRecord,
        *,
        replay: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.recorder = recorder
        self.policy = policy
        self.job = job
        self.actor = recorder.actor
        self.route = policy.models.route(job.model.route_rule)
        self.usage = job.model.model_copy(deep=True)
        self._replay = list(replay) if replay is not None else None
        self._others_spent: tuple[float, float] | None = None

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict]) -> ModelReply:
        if self._replay is not None:
            if not self._replay:
                raise ModelUnavailable("the recorded run has no model response left to replay")
            response = self._replay.pop(0)
            return _reply(response, response.get("model", "replay"), 0.0, 0.0)
        if self.route is None or self.route.model == "direct":
            raise ModelUnavailable(f"{self.job.job_id} has no model route; it runs direct steps")
        await self._check_budget()
        litellm = await load_litellm()
        candidates = endpoints(self.route, lambda model: _provider(litellm, model))
        key = self._key(candidates[0], primary=True)
        for index, endpoint in enumerate(candidates):
            model = endpoint.model
            if index > 0:
                try:
                    key = self._key(endpoint, primary=False)
                except ModelUnavailable as missing:
                    if index + 1 < len(candidates):
                        await self._log_fallback(model, missing.message, candidates[index + 1])
                        continue
                    raise
            started = time.perf_counter()
            try:
                # Each endpoint's own base URL and key, and nothing of another's: a key goes
                # only to the host it was configured for.
                response = await litellm.acompletion(
                    model=model,
                    messages=messages,
                    tools=tools or None,
                    api_base=endpoint.api_base,
                    api_key=key,
                    num_retries=0,
                    timeout=CALL_TIMEOUT_S,
                )
            except Exception as error:
                kind = type(error).__name__
                reason = redact(f"{kind}: {error}")[:500]
                if kind in FALLBACK_ERRORS and index + 1 < len(candidates):
                    await self._log_fallback(model, reason, candidates[index + 1])
                    continue
                raise ModelUnavailable(f"the model call failed on {model}: {reason}") from None
            latency_ms = (time.perf_counter() - started) * 1000
            return await self._record(litellm, model, messages, tools, response, latency_ms)
        raise ModelUnavailable("no model of the route answered")  # pragma: no cover

    async def _log_fallback(self, model: str, reason: str, following: ModelEndpoint) -> None:
        await self.recorder.log(
            "model.fallback",
            {"model": model, "error": reason, "next": following.model},
        )
        self.usage.fallbacks_taken.append(following.model)

    def _key(self, endpoint: ModelEndpoint, *, primary: bool) -> str | None:
        assert self.route is not None
        if not endpoint.api_key_env:
            return None  # the provider's own variable, read by litellm
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            which = f"route '{self.route.id}'" if primary else f"fallback {endpoint.model}"
            raise ModelUnavailable(
                f"the key for {which} is not set",
                hint=f"set the environment variable {endpoint.api_key_env} for the service",
            )
        return key

    async def _check_budget(self) -> None:
        budgets = self.policy.models.budgets
        if budgets.per_job_usd is not None and self.usage.cost_usd >= budgets.per_job_usd:
            raise BudgetExceeded(
                f"{self.job.job_id} has spent ${self.usage.cost_usd:.4f} of its "
                f"${budgets.per_job_usd:.4f} model budget; it stops here",
                hint="raise models.budgets.per_job_usd in the policy, or split the job",
            )
        if budgets.per_team_usd is None:
            return
        team = self.policy.people[self.job.spec.requester].team
        now = time.monotonic()
        if self._others_spent is None or now - self._others_spent[0] > TEAM_SPEND_TTL_S:
            others = await self.recorder.team_spend_today(team)
            self._others_spent = (now, others)
        spent = self._others_spent[1] + self.usage.cost_usd
        if spent >= budgets.per_team_usd:
            raise BudgetExceeded(
                f"team {team or '(none)'} has spent ${spent:.4f} of its "
                f"${budgets.per_team_usd:.2f} daily model budget; {self.job.job_id} stops here"
            )

    async def _record(
        self, litellm, model: str, messages: list, tools: list, response: Any, latency_ms: float
    ) -> ModelReply:
        document = response.model_dump()
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # an unpriced model costs what we cannot know: record 0, say so
            cost = 0.0
        usage = document.get("usage") or {}
        index = self.usage.calls + 1
        request = {"model": model, "messages": messages, "tools": tools}
        store = self.recorder
        # A reply may carry a lone surrogate (JSON's "\ud800"); stored as that same JSON
        # escape, the record keeps exactly what was sent and the write cannot fail.
        req = store.put(
            f"model-request-{index}.json",
            redact(_dumps(request)).encode("utf-8", "backslashreplace"),
            "application/json",
        )
        res = store.put(
            f"model-response-{index}.json",
            redact(_dumps(document)).encode("utf-8", "backslashreplace"),
            "application/json",
        )
        self.usage.calls = index
        self.usage.cost_usd += cost
        self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.usage.model = model
        await self.recorder.model_call(
            {
                "index": index,
                "model": model,
                "route_rule": self.usage.route_rule,
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "cost_usd": round(cost, 8),
                "latency_ms": round(latency_ms, 2),
                "request_sha256": req.sha256,
                "response_sha256": res.sha256,
            },
            (req.sha256, res.sha256),
            self.usage,
        )
        self.job = self.job.model_copy(update={"model": self.usage.model_copy(deep=True)})
        return _reply(document, model, cost, latency_ms)


def endpoints(route: ModelRoute, provider_of: Callable[[str], str]) -> list[ModelEndpoint]:
    """The route's model, then its fallbacks, each with the credentials that go to it.

    A bare fallback of the route's own provider shares the route's base URL and key (the
    same host); of another provider it gets nothing of the route's, so litellm uses that
    provider's defaults. A fallback written as an endpoint has exactly what it says."""
    primary = ModelEndpoint(
        model=route.model, api_base=route.api_base, api_key_env=route.api_key_env
    )
    out = [primary]
    for fallback in route.fallbacks:
        if isinstance(fallback, ModelEndpoint):
            out.append(fallback)
        elif provider_of(fallback) == provider_of(route.model):
            out.append(primary.model_copy(update={"model": fallback}))
        else:
            out.append(ModelEndpoint(model=fallback))
    return out


_providers: dict[str, str] = {}


def _provider(litellm: Any, model: str) -> str:
    """litellm's provider for a model string ("anthropic/x" -> anthropic, "gpt-4o" -> openai)."""
    known = _providers.get(model)
    if known is None:
        try:
            known = str(litellm.get_llm_provider(model=model)[1])
        except Exception:  # an unknown provider is its own: it shares nothing with another
            known = model.split("/", 1)[0] if "/" in model else model
        _providers[model] = known
    return known


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)

"""Runtime overhead per model call: ModelClient.complete against a raw litellm call, same run.

Both arms send the same request (model, messages, tools, key) through litellm to the same
OpenAI-compatible model stand-in (tests/standins/model_standin.py) on 127.0.0.1, interleaved call by
call. Ours goes through runtime.models.ModelClient on a real engine and job (SQLite in a temp
dir, a policy with a model route and per-job and per-team budgets): it routes, checks both
budgets, calls, prices the answer, stores request and response as artifacts, appends the
`model.call` audit event and saves the job's model usage. The baseline is the bare
`litellm.acompletion`, which is also the stand-in's own response time as a client sees it.

Budget (issue 4): overhead (ours - baseline) <= 5 ms per call at the median.

    .venv/bin/python bench/model_overhead.py [--rounds 5] [--calls 50] [--latency-ms 0]
                                             [--prior-jobs 0] [--order blocks|interleaved]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins.model_standin import ModelStandIn, say  # noqa: E402

MODEL = "gpt-4o-mini"
LITELLM_MODEL = f"openai/{MODEL}"
KEY_ENV = "ACP_BENCH_MODEL_KEY"
KEY = "sk-bench-model-key-0123456789"
BUDGET_MS = 5.0
USAGE = (400, 40)  # fixed token counts: both arms price the same answer


def write_policy(directory: Path, base_url: str) -> None:
    policy = yaml.safe_load((ROOT / "policies" / "default.yml").read_text())
    policy["models"] = {
        "routes": [
            {
                "id": "models.code.bench",
                "job_types": ["code"],
                "model": LITELLM_MODEL,
                "api_base": base_url,
                "api_key_env": KEY_ENV,
                "fallbacks": ["openai/gpt-4o"],
            }
        ],
        "budgets": {"per_job_usd": 50.0, "per_team_usd": 1000.0},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))


def conversation() -> list[dict]:
    """What an agent's third call looks like: system, request, two tool round trips."""
    from runtime.agent import opening_messages

    messages = opening_messages("demo", "fix the failing test in tests/test_math.py", [])
    source = "def add(a, b):\n    return a - b\n" * 20
    for i, (name, args, result) in enumerate(
        [
            ("read_file", '{"path": "src/mathutil.py"}', source),
            ("run", '{"command": "python3 -m unittest"}', "exit 1\nFAILED (failures=1)\n" * 10),
        ]
    ):
        call_id = f"call_bench{i}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
    return messages


async def breakdown(engine, standin: ModelStandIn, ours, calls: int) -> dict[str, float]:
    """Time each step of ModelClient.complete by wrapping what it calls, for one more round."""
    import litellm

    from runtime import models

    totals: dict[str, float] = {}

    def timed(name: str, fn, *, is_async: bool):
        if is_async:

            async def wrapper(*a, **kw):
                started = time.perf_counter()
                try:
                    return await fn(*a, **kw)
                finally:
                    totals[name] = totals.get(name, 0.0) + time.perf_counter() - started

        else:

            def wrapper(*a, **kw):
                started = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    totals[name] = totals.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    patches = [
        (models.ModelClient, "_check_budget", "budget check (per job + per team)", True),
        (litellm, "acompletion", "litellm.acompletion (same as baseline)", True),
        (litellm, "completion_cost", "litellm.completion_cost", False),
        (models, "redact", "redact request + response", False),
        (engine.artifacts, "put", "artifact store: put request + response", False),
        (engine, "log", "audit event model.call (1 transaction)", True),
        (engine, "save_progress", "save job model usage (1 transaction)", True),
    ]
    saved = []
    for owner, attr, name, is_async in patches:
        original = getattr(owner, attr)
        saved.append((owner, attr, original))
        setattr(owner, attr, timed(name, original, is_async=is_async))
    standin.script(MODEL, *[say("ok") for _ in range(calls)], usage=USAGE)
    whole = 0.0
    try:
        for _ in range(calls):
            whole += await ours()
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)
    out = {"whole ModelClient.complete": whole / calls}
    out.update({name: 1000 * sec / calls for name, sec in totals.items()})
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ[KEY_ENV] = KEY
    import litellm

    from runtime.engine import Engine
    from runtime.models import CALL_TIMEOUT_S, ModelClient
    from runtime.settings import Settings
    from runtime.tools.base import ask_tool
    from runtime.tools.workspace import WORKSPACE_TOOLS

    # What a code job's model is offered: its kind's tools (as the Toolbox declares them) and ask.
    tools = [*(t.schema() for t in WORKSPACE_TOOLS), ask_tool()]

    litellm.suppress_debug_info = True
    messages = conversation()

    with tempfile.TemporaryDirectory(prefix="acp-bench-model-") as tmp:
        async with ModelStandIn(api_key=KEY, latency_s=args.latency_ms / 1000) as standin:
            write_policy(Path(tmp) / "policy", standin.base_url)
            settings = Settings.from_env(
                {
                    "ACP_HOME": f"{tmp}/home",
                    "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/acp.db",
                    "ACP_POLICY_DIR": f"{tmp}/policy",
                }
            )
            engine = await Engine.open(settings)
            try:
                job = await engine.submit(
                    "code demo: fix the failing test", engine.actor("cli", "alice")
                )
                assert job.model.route_rule == "models.code.bench", job.model
                for _ in range(args.prior_jobs):  # history the per-team budget check reads
                    await engine.submit("code demo: run `true`", engine.actor("cli", "bob"))

                async def baseline() -> float:
                    started = time.perf_counter()
                    await litellm.acompletion(
                        model=LITELLM_MODEL,
                        messages=messages,
                        tools=tools,
                        api_base=standin.base_url,
                        api_key=KEY,
                        num_retries=0,
                        timeout=CALL_TIMEOUT_S,  # exactly the arguments ModelClient passes
                    )
                    return (time.perf_counter() - started) * 1000

                # One client for the whole run, as the agent loop holds one per job run.
                client = ModelClient(engine.recorder(job.id, "bench"), engine.policy, job)

                async def ours() -> float:
                    started = time.perf_counter()
                    await client.complete(messages, tools)
                    return (time.perf_counter() - started) * 1000

                # Warm up both paths (imports, connection pools, first SQLite pages).
                standin.script(MODEL, *[say("ok") for _ in range(10)], usage=USAGE)
                for _ in range(5):
                    await baseline()
                    await ours()

                rows = []
                for r in range(1, args.rounds + 1):
                    standin.script(MODEL, *[say("ok") for _ in range(2 * args.calls)], usage=USAGE)
                    base_ms, ours_ms = [], []
                    if args.order == "blocks":
                        # All of one arm, then all of the other (first arm alternates by round).
                        arms = [(baseline, base_ms), (ours, ours_ms)]
                        for arm, out in arms if r % 2 else arms[::-1]:
                            for _ in range(args.calls):
                                out.append(await arm())
                    else:
                        for i in range(args.calls):
                            # Alternate which arm goes first, so neither always follows the other.
                            if i % 2:
                                base_ms.append(await baseline())
                                ours_ms.append(await ours())
                            else:
                                ours_ms.append(await ours())
                                base_ms.append(await baseline())
                    row = {
                        "base_med": statistics.median(base_ms),
                        "base_p90": pct(base_ms, 0.9),
                        "ours_med": statistics.median(ours_ms),
                        "ours_p90": pct(ours_ms, 0.9),
                    }
                    row["overhead"] = row["ours_med"] - row["base_med"]
                    rows.append(row)
                    print(
                        f"round {r}: baseline median {row['base_med']:6.2f} ms p90 "
                        f"{row['base_p90']:6.2f} | ours median {row['ours_med']:6.2f} ms p90 "
                        f"{row['ours_p90']:6.2f} | overhead {row['overhead']:+6.2f} ms"
                    )
                calls = (await engine.get(job.id)).model.calls
                events = [e for e in await engine.events(job.id) if e.kind == "model.call"]
                assert calls == len(events) == 5 + args.rounds * args.calls, (calls, len(events))
                parts = await breakdown(engine, standin, ours, args.calls)
                ok = await engine.verify_audit()
            finally:
                await engine.close()

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    overhead = med("overhead")
    print(
        f"\nmedians over {args.rounds} rounds of {args.calls} calls per arm, order {args.order} "
        "(ms per call)"
    )
    print(f"{'':<26}{'median':>8}{'p90':>8}")
    print(f"{'baseline: raw litellm':<26}{med('base_med'):>8.2f}{med('base_p90'):>8.2f}")
    print(f"{'ours: ModelClient':<26}{med('ours_med'):>8.2f}{med('ours_p90'):>8.2f}")
    verdict = "OK" if overhead <= BUDGET_MS else "OVER BUDGET"
    print(
        f"overhead (ours - baseline) median: {overhead:+.2f} ms  "
        f"budget <= {BUDGET_MS} ms  {verdict}"
    )
    print("\nwhere ours spends its time (one extra round, mean ms per call, timed in place):")
    for name, ms in parts.items():
        print(f"  {name:<44}{ms:>7.2f}")
    print(f"stand-in latency added: {args.latency_ms} ms; audit chain verified: {ok.events} events")
    return 0 if overhead <= BUDGET_MS else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50, help="calls per arm per round")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the stand-in's added round trip (ms)"
    )
    parser.add_argument(
        "--prior-jobs", type=int, default=0, help="other jobs already in the database"
    )
    parser.add_argument(
        "--order",
        choices=["blocks", "interleaved"],
        default="blocks",
        help="blocks: each arm's calls back to back (default); interleaved: alternate calls,\n"
        "which lets one arm's background work (litellm's logging threads) land in the other's",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

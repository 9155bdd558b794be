"""Running a SQL job: one read-only statement or a standard diagnostic, through the job's
toolbox (the `sql.query` tool, runtime.tools.database), with the results and plan as evidence.
A refused statement, a primary that could write or a tool outside the grant is an audit event
(`tool.refused`) and fails the job with the reason."""

from __future__ import annotations

from runtime.errors import AcpError, SandboxViolation
from runtime.jobs import ArtifactRef
from runtime.kinds.base import Failed, JobContext, Outcome, Succeeded
from runtime.kinds.sql.statements import statement_for, window_note
from runtime.secrets import redact


async def execute(ctx: JobContext) -> Outcome:
    job = ctx.job
    if await _investigation(ctx):  # free words, and a model routed to investigate with
        from runtime.kinds.sql.investigate import investigate

        return await investigate(ctx)
    toolbox = ctx.toolbox(None)
    try:
        statement, diagnostic = statement_for(job.spec.instruction)
        evidence = await toolbox.call("sql.query", statement=statement, diagnostic=diagnostic or "")
    except SandboxViolation as refusal:
        return Failed(reason=refusal.message, artifacts=toolbox.artifacts)
    except AcpError as error:
        reason = redact(error.message)
        if "pg_stat_statements" in reason and "time window" not in reason:
            reason += (
                " (the diagnostic needs the pg_stat_statements extension: add it to "
                "shared_preload_libraries and run CREATE EXTENSION pg_stat_statements)"
            )
        return Failed(reason=reason, artifacts=toolbox.artifacts)
    artifacts = list(toolbox.artifacts)
    if evidence.plan is not None and ctx.recorder.keeps:
        artifacts.append(_plan_text(ctx, evidence.plan))
    more = " (truncated at the row cap)" if evidence.truncated else ""
    result = {"statement": redact(evidence.statement), "diagnostic": diagnostic}
    window = window_note(job.spec.instruction)
    if window:
        result["window"] = window
    return Succeeded(
        reason=f"{evidence.row_count} row(s){more} in {evidence.duration_ms:.1f} ms",
        artifacts=artifacts,
        result=result,
    )


def _plan_text(ctx: JobContext, plan: object) -> ArtifactRef:
    """The plan as the text tree `acp show` prints and Slack attaches (plan.json stays the
    database's own words)."""
    import json

    from runtime.kinds.sql.plan import plan_text, read_plan

    tree = plan_text(read_plan(json.dumps(plan, default=str)))
    return ctx.recorder.put("plan.txt", redact(tree).encode())


async def _investigation(ctx: JobContext) -> bool:
    """A request that is not a statement, with a model route, and either a question ("why is
    checkout slow since this morning?": a diagnostic's words in it do not make it one) or
    not a standard diagnostic."""
    from runtime.kinds.sql.investigate import is_question, wants_investigation
    from runtime.kinds.sql.statements import read_request

    instruction = ctx.job.spec.instruction
    request = read_request(instruction)
    if request.is_sql:
        return False
    if not is_question(instruction) and request.form == "diagnostic":
        return False
    return wants_investigation(ctx)

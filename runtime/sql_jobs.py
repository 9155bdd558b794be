"""SQL jobs: one read-only statement or a standard diagnostic, with results and plan as evidence.

The DSN is read from the environment variable the policy names and never leaves this module:
not into the job record, the audit log, an artifact or a message. Refusals are audit events.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING

from runtime.errors import AcpError, NotAReplica, ReadOnlyViolation
from runtime.intake import looks_like_sql
from runtime.jobs import ArtifactRef, JobRecord, JobState
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.engine import Engine


def statement_for(instruction: str) -> tuple[str, str | None]:
    """The statement to run and, for a standard diagnostic, its name."""
    from runtime.tools.sql import match_diagnostic

    if looks_like_sql(instruction):
        return instruction.strip().rstrip(";"), None
    matched = match_diagnostic(instruction)
    if matched is None:
        raise AcpError(
            "this SQL job is neither a statement nor a standard diagnostic, and no model is "
            "routed to write one",
            hint="give a SELECT, or ask for e.g. 'top 10 slowest queries'",
        )
    name, sql = matched
    return sql, name


async def execute(engine: Engine, job: JobRecord, worker_id: str) -> JobRecord:
    from runtime.tools.sql import SqlLimits, check_statement, run_query

    actor = f"worker:{worker_id}"
    target = engine.policy.targets.databases[job.spec.target or ""]
    if "sql.query" not in job.tools_granted:
        return await _refuse(engine, job, actor, f"{job.job_id} may not use the 'sql.query' tool")
    dsn = os.environ.get(target.dsn_env)
    if not dsn:
        return await engine.finish(
            job,
            JobState.failed,
            actor,
            "job.failed",
            reason=f"the DSN for '{job.spec.target}' is not set: the service needs the "
            f"environment variable {target.dsn_env}",
        )
    try:
        statement, diagnostic = statement_for(job.spec.instruction)
        check_statement(
            statement,
            allow_explain_analyze=target.allow_explain_analyze,
            max_sleep_s=target.statement_timeout_ms / 1000,
        )
        limits = SqlLimits(
            statement_timeout_ms=target.statement_timeout_ms,
            lock_timeout_ms=target.lock_timeout_ms,
            idle_in_transaction_timeout_ms=target.idle_in_transaction_timeout_ms,
            row_cap=target.row_cap,
            allow_explain_analyze=target.allow_explain_analyze,
            mask_columns=target.mask_columns,
            primary_for_diagnostics=target.primary_for_diagnostics,
        )
        evidence = await run_query(
            dsn, statement, limits, max_sleep_s=limits.statement_timeout_ms / 1000
        )
    except (ReadOnlyViolation, NotAReplica) as refusal:
        return await _refuse(engine, job, actor, refusal.message, statement=job.spec.instruction)
    except AcpError as error:
        reason = redact(error.message)
        if "pg_stat_statements" in reason:
            reason += (
                " (the diagnostic needs the pg_stat_statements extension: add it to "
                "shared_preload_libraries and run CREATE EXTENSION pg_stat_statements)"
            )
        return await engine.finish(job, JobState.failed, actor, "job.failed", reason=reason)
    store = engine.artifacts
    refs: list[ArtifactRef] = [
        store.put("result.txt", redact(evidence.table).encode()),
        store.put("result.csv", redact(evidence.csv).encode(), "text/csv"),
    ]
    if evidence.plan is not None:
        plan = json.dumps(evidence.plan, indent=2, default=str)
        refs.append(store.put("plan.json", plan.encode(), "application/json"))
    await engine.log(
        job.id,
        "tool.sql.query",
        actor,
        {
            "statement": redact(evidence.statement),
            "statement_sha256": evidence.statement_sha256,
            "diagnostic": diagnostic,
            "row_count": evidence.row_count,
            "truncated": evidence.truncated,
            "duration_ms": round(evidence.duration_ms, 2),
            "masked_columns": limits.mask_columns,
            "server": evidence.server,
        },
        event_artifacts=tuple(ref.sha256 for ref in refs),
    )
    more = " (truncated at the row cap)" if evidence.truncated else ""
    return await engine.finish(
        job,
        JobState.succeeded,
        actor,
        "job.succeeded",
        reason=f"{evidence.row_count} row(s){more} in {evidence.duration_ms:.1f} ms",
        artifacts=[*job.artifacts, *refs],
        statement=redact(evidence.statement),
        diagnostic=diagnostic,
    )


async def _refuse(
    engine: Engine, job: JobRecord, actor: str, reason: str, statement: str | None = None
) -> JobRecord:
    data = {"tool": "sql.query", "reason": reason}
    if statement is not None:
        data["statement_sha256"] = hashlib.sha256(statement.encode()).hexdigest()
    await engine.log(job.id, "tool.refused", actor, data)
    return await engine.finish(job, JobState.failed, actor, "job.failed", reason=reason)

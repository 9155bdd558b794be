"""The SQL tool: one read-only statement against the job's database target, its results and
plan kept as evidence.

The DSN is read from the environment variable the policy names and never leaves this module:
not into the job record, the audit log, an artifact or a message. The statement is checked
by PostgreSQL's own parser (runtime.tools.sql) before it is sent, and runs in a read-only
transaction with the target's timeouts; a primary that could write is refused.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from runtime.errors import AcpError, NotAReplica, ReadOnlyViolation
from runtime.secrets import redact
from runtime.tools.base import tool

if TYPE_CHECKING:
    from runtime.toolbox import ToolUse
    from runtime.tools.sql import SqlEvidence


@tool("sql.query", grant="sql.query", text=lambda evidence: evidence.table)
async def query(use: ToolUse, statement: str, diagnostic: str = "") -> SqlEvidence:
    """Run one read-only statement (SELECT, EXPLAIN, SHOW) against the job's database.

    Args:
        statement: the SQL statement
        diagnostic: the standard diagnostic it is, if it is one
    """
    from runtime.tools.sql import SqlLimits, check_statement, run_query

    target = use.target
    dsn = os.environ.get(target.dsn_env)
    if not dsn:
        raise AcpError(
            f"the DSN for '{use.job.spec.target}' is not set: the service needs the "
            f"environment variable {target.dsn_env}"
        )
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
    try:
        # A diagnostic's plan is the plan of a catalog query: noise, so only a person's own
        # statement is explained.
        evidence = await run_query(
            dsn,
            statement,
            limits,
            max_sleep_s=limits.statement_timeout_ms / 1000,
            plan=not diagnostic,
        )
    except NotAReplica as primary:  # refused for what the server is, like a write
        raise ReadOnlyViolation(primary.message, hint=primary.hint) from None
    refs = [
        use.keep("result.txt", redact(evidence.table).encode()),
        use.keep("result.csv", redact(evidence.csv).encode(), "text/csv"),
    ]
    if evidence.plan is not None:
        plan = json.dumps(evidence.plan, indent=2, default=str)
        refs.append(use.keep("plan.json", plan.encode(), "application/json"))
    await use.record(
        {
            "statement": redact(evidence.statement),
            "statement_sha256": evidence.statement_sha256,
            "diagnostic": diagnostic or None,
            "row_count": evidence.row_count,
            "truncated": evidence.truncated,
            "duration_ms": round(evidence.duration_ms, 2),
            "masked_columns": limits.mask_columns,
            "server": evidence.server,
        },
        tuple(ref.sha256 for ref in refs),
    )
    return evidence


DATABASE_TOOLS = (query,)

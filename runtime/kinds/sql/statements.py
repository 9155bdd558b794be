"""What a SQL request is: a statement (PostgreSQL's own parser decides), a standard diagnostic,
or a write, which is refused at intake for what it is. Pure functions, no database."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from runtime.errors import AcpError, ReadOnlyViolation, SqlWriteRefused

if TYPE_CHECKING:
    from runtime.policy import Policy

_SQL_START = re.compile(
    r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(select|with|explain|show|table|values)\b", re.I | re.S
)


# Words that ask a database for a change when a SQL request starts with them (in any case).
_WRITE_WORDS = re.compile(
    r"^\s*(delete|drop|truncate|insert|alter|vacuum|reindex|grant|revoke|lock|update|upsert)\b",
    re.I,
)


def looks_like_sql(instruction: str) -> bool:
    """An instruction that is itself SQL: PostgreSQL's own parser accepts it (a statement of
    any kind, which the SQL tool then checks), or it starts like a read statement (a
    malformed one, which the tool refuses with the parser's reason)."""
    return bool(_SQL_START.match(instruction)) or _parses_as_sql(instruction)


def _parses_as_sql(text: str) -> bool:
    import pglast

    try:
        return bool(pglast.parse_sql(text))
    except pglast.parser.ParseError:
        return False


def refuse_sql_writes(instruction: str, policy: Policy, target: str | None) -> None:
    """A SQL request that is a statement other than one read, or that asks in words for a
    change, is refused now, for what it is: SQL jobs only read. Never a clarifying question,
    and never a diagnostic run in its place."""
    from runtime.tools.sql import check_statement, match_diagnostic

    hint = (
        "SQL jobs run one read-only statement (SELECT, EXPLAIN, SHOW) or a standard diagnostic "
        "(e.g. 'dead tuples', 'locks', 'top 10 slowest queries'); a change to the data goes "
        "through a reviewed migration in a code job"
    )
    if _parses_as_sql(instruction):
        database = policy.targets.databases.get(target or "")
        try:
            check_statement(
                instruction.strip().rstrip(";"),
                allow_explain_analyze=bool(database and database.allow_explain_analyze),
                max_sleep_s=(database.statement_timeout_ms / 1000) if database else 5.0,
            )
        except ReadOnlyViolation as refusal:
            diagnostic = match_diagnostic(instruction)
            if diagnostic is not None:  # e.g. "lock waits" is also the statement LOCK waits
                words = diagnostic[0].replace("_", " ")
                hint = (
                    f"this is a SQL statement, and it is refused as one. For the standard "
                    f"'{words}' diagnostic, ask in words that are not SQL, e.g. "
                    f"'{words} diagnostic'. " + hint
                )
            why = refusal.message.removeprefix("refused: ")
            raise SqlWriteRefused(
                f"SQL jobs are read-only: {why}; nothing was run", hint=hint
            ) from None
        return
    words = _WRITE_WORDS.match(instruction)
    if words and match_diagnostic(instruction) is None:
        raise SqlWriteRefused(
            f"SQL jobs are read-only: '{words.group(1).lower()} …' asks for a change to the "
            "database; nothing was run",
            hint=hint,
        )


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

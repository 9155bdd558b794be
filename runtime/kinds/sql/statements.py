"""What a SQL request is: a statement (PostgreSQL's own parser decides), a standard diagnostic
named in words (with its time window honoured or refused), or a write, refused at intake for
what it is. Pure functions, no database; a window is never dropped silently.

The rules, in order (tests/kinds/sql/test_sql_intake.py holds them as a table):

1. The parser accepts it: a statement. Except a few bare words, lower case, that happen to
   parse as a read (`table sizes` is `TABLE sizes`, `show locks` is `SHOW locks`) and name a
   standard diagnostic: words, so the diagnostic. A keyword in capitals (`TABLE sizes`) is SQL.
   A write that parses (`lock waits`, `vacuum orders`) stays a statement and is refused.
2. It does not parse but is shaped like SQL (its keyword in capitals; `select` with `*`, `(`,
   `,`, `=`, `;` or `from`; `explain select`; `with x as (`; `values (`): a malformed
   statement, refused with the parser's reason. `show me the locks` and `explain why it is
   slow` are words.
3. Otherwise it is words: a diagnostic if the words name one (a time window in them is taken
   out first, then honoured or refused), else words for a model or a clarifying question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from runtime.errors import AcpError, BadRequest, ReadOnlyViolation, SqlWriteRefused

if TYPE_CHECKING:
    from runtime.policy import Policy

_SQL_START = re.compile(
    r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(select|with|explain|show|table|values)\b", re.I | re.S
)
_SQL_PUNCTUATION = re.compile(r"[*(),;=<>]")
_BARE_WORDS = re.compile(r"[A-Za-z0-9_ ]+")

# Words that ask a database for a change when a SQL request starts with them (in any case).
_WRITE_WORDS = re.compile(
    r"^\s*(delete|drop|truncate|insert|alter|vacuum|reindex|grant|revoke|lock|update|upsert)\b",
    re.I,
)

_HINT = (
    "SQL jobs run one read-only statement (SELECT, EXPLAIN, SHOW) or a standard diagnostic "
    "(e.g. 'dead tuples', 'locks', 'top 10 slowest queries'); a change to the data goes "
    "through a reviewed migration in a code job"
)


# --- time windows ---------------------------------------------------------------------------

_UNITS = {"m": "minute", "min": "minute", "minute": "minute", "h": "hour", "hr": "hour",
          "hour": "hour", "d": "day", "day": "day", "w": "week", "week": "week",
          "mo": "month", "month": "month"}  # fmt: skip
_LAST = re.compile(
    r"\b(?:(?:in|over|during|for|within)\s+)?(?:the\s+)?(?:last|past)\s+(?:(\d{1,4})\s*)?"
    r"(minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|months?|mo)\b",
    re.I,
)
_SINCE_DAY = re.compile(
    r"\b(?:since\s+)?(?:this\s+morning|today|midnight)\b|\bsince\s+yesterday\b", re.I
)

# The diagnostics whose rows are sessions: a window keeps those whose transaction (or, with
# none open, query) started in it. Every other diagnostic counts since a reset or reads the
# current state, and has no time to filter by.
_SESSION_START = {
    "locks": "now() - d.in_transaction_for",
    "long_running": "now() - coalesce(d.in_transaction_for, d.query_running_for)",
}


@dataclass(frozen=True)
class Window:
    """A time window a request named: as written, and where it starts, in SQL."""

    phrase: str  # "in the last hour"
    start_sql: str  # "now() - interval '1 hour'"


def time_window(text: str) -> tuple[Window | None, str]:
    """The time window the words name, if any, and the words without it."""
    last = _LAST.search(text)
    if last is not None:
        count = int(last.group(1) or 1)
        unit = _UNITS[last.group(2).lower().rstrip("s")]
        window = Window(last.group(0).strip(), f"now() - interval '{count} {unit}'")
        return window, (text[: last.start()] + text[last.end() :]).strip()
    day = _SINCE_DAY.search(text)
    if day is not None:
        phrase = day.group(0).strip()
        start = "date_trunc('day', now())"
        if "yesterday" in phrase.lower():
            start += " - interval '1 day'"
        return Window(phrase, start), (text[: day.start()] + text[day.end() :]).strip()
    return None, text


# --- what a request is ----------------------------------------------------------------------


@dataclass(frozen=True)
class SqlRequest:
    """A SQL request read once: what it is, and what the SQL tool runs for it."""

    form: Literal["statement", "malformed", "diagnostic", "words"]
    text: str  # the request as given (a statement: without the trailing ';')
    diagnostic: str | None = None
    diagnostic_sql: str | None = None
    parse_error: str | None = None
    window: Window | None = None

    @property
    def is_sql(self) -> bool:
        return self.form in ("statement", "malformed")


def unfenced(text: str) -> str:
    """A statement as people paste it: without backticks or a ```sql fence's language tag."""
    text = text.strip().strip("`").strip()
    if re.match(r"(?i)(sql|postgresql|postgres|psql)\s*\n", text):
        text = text.split("\n", 1)[1].strip()
    return text


def read_request(instruction: str) -> SqlRequest:
    """What `instruction` is, by the rules in this module's docstring."""
    text = instruction.strip().rstrip(";").strip()
    statement, error = _parse(text)
    if statement is not None:
        if _bare_words(text) and _is_read(statement):
            as_words = _diagnostic_request(text)
            if as_words is not None:
                return as_words
        return SqlRequest("statement", text)
    if _sql_shaped(text):
        return SqlRequest("malformed", text, parse_error=error)
    return _diagnostic_request(text) or SqlRequest("words", text)


def looks_like_sql(instruction: str) -> bool:
    """An instruction that is itself SQL (a statement, or a malformed one), not words."""
    return read_request(instruction).is_sql


def _parse(text: str) -> tuple[object | None, str | None]:
    import pglast

    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError as error:
        return None, str(error)
    return (parsed[0].stmt if parsed else None), None


def _is_read(statement: object) -> bool:
    from pglast import ast

    return isinstance(statement, ast.SelectStmt | ast.VariableShowStmt)


def _bare_words(text: str) -> bool:
    """Lower-case-led words and nothing else: how people name a diagnostic, not write SQL."""
    first = text.split(maxsplit=1)[0] if text.split() else ""
    return bool(_BARE_WORDS.fullmatch(text)) and not (len(first) > 1 and first.isupper())


def _sql_shaped(text: str) -> bool:
    """Text PostgreSQL rejects that was still meant as SQL (its keyword in capitals, or SQL's
    own marks after it); 'show me the locks' and 'explain why it is slow' are words."""
    start = _SQL_START.match(text)
    if start is None:
        return False
    keyword = start.group(1)
    if len(keyword) > 1 and keyword.isupper():
        return True
    rest = text[start.end() :]
    word = keyword.lower()
    if word == "select":
        return bool(_SQL_PUNCTUATION.search(rest) or re.search(r"\bfrom\b", rest, re.I))
    if word == "explain":
        return re.match(r"\s*(select|with|analyze|verbose|\()", rest, re.I) is not None
    if word == "with":
        return re.search(r"\bas\s*\(", rest, re.I) is not None
    if word == "values":
        return rest.lstrip().startswith("(")
    return False


def _diagnostic_request(text: str) -> SqlRequest | None:
    from runtime.tools.sql import match_diagnostic

    window, words = time_window(text)
    matched = match_diagnostic(words)
    if matched is None:
        return None
    name, sql = matched
    return SqlRequest("diagnostic", text, diagnostic=name, diagnostic_sql=sql, window=window)


# --- refusals at intake ---------------------------------------------------------------------


def check_sql_request(instruction: str, policy: Policy, target: str | None) -> SqlRequest:
    """The request read, or refused now for what it is: a write (SQL jobs only read; never a
    clarifying question, never a diagnostic run in its place), a statement that does not
    parse, or a time window the diagnostic cannot apply."""
    from runtime.tools.sql import check_statement, match_diagnostic

    request = read_request(instruction)
    if request.form == "statement":
        database = policy.targets.databases.get(target or "")
        try:
            check_statement(
                request.text,
                allow_explain_analyze=bool(database and database.allow_explain_analyze),
                max_sleep_s=(database.statement_timeout_ms / 1000) if database else 5.0,
            )
        except ReadOnlyViolation as refusal:
            hint = _HINT
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
        return request
    if request.form == "malformed":
        raise BadRequest(
            f"this reads as a SQL statement, but PostgreSQL does not accept it: "
            f"{request.parse_error}; nothing was run",
            hint="fix the statement, or ask in plain words for a standard diagnostic "
            "(e.g. 'top 10 slowest queries')",
        )
    words = _WRITE_WORDS.match(instruction)
    if words and request.form != "diagnostic":
        raise SqlWriteRefused(
            f"SQL jobs are read-only: '{words.group(1).lower()} …' asks for a change to the "
            "database; nothing was run",
            hint=_HINT,
        )
    if request.window is not None and request.diagnostic not in _SESSION_START:
        from runtime.kinds.sql.investigate import is_question

        if is_question(instruction):  # for a model to investigate (or refused when it runs)
            return request
        raise BadRequest(_window_refusal(request), hint=_window_hint(request))
    return request


def refuse_sql_writes(instruction: str, policy: Policy, target: str | None) -> None:
    """check_sql_request, for callers that only want the refusal."""
    check_sql_request(instruction, policy, target)


def _window_refusal(request: SqlRequest) -> str:
    assert request.window is not None and request.diagnostic is not None
    phrase = request.window.phrase
    if request.diagnostic.startswith("top_"):
        return (
            "pg_stat_statements counts since its last reset (stats_reset in "
            f"pg_stat_statements_info), not by time: a time window ('{phrase}') cannot be "
            "applied; nothing was run"
        )
    words = request.diagnostic.replace("_", " ")
    return (
        f"the '{words}' diagnostic reads the database's current state and counters kept since "
        f"its statistics were last reset, with no time in them: a time window ('{phrase}') "
        "cannot be applied; nothing was run"
    )


def _window_hint(request: SqlRequest) -> str:
    if request.diagnostic and request.diagnostic.startswith("top_"):
        return (
            "ask without the window for the totals since the reset; for what runs now, ask "
            f"for 'long-running queries {request.window.phrase if request.window else ''}'"
        ).replace("  ", " ")
    return "ask without the window; the sessions now open ('long-running', 'locks') take one"


# --- what runs ------------------------------------------------------------------------------


def statement_for(instruction: str) -> tuple[str, str | None]:
    """The statement to run and, for a standard diagnostic, its name."""
    request = read_request(instruction)
    if request.is_sql:
        return request.text, None
    if request.form != "diagnostic":
        raise AcpError(
            "this SQL job is neither a statement nor a standard diagnostic, and no model is "
            "routed to write one",
            hint="give a SELECT, or ask for e.g. 'top 10 slowest queries'",
        )
    assert request.diagnostic is not None and request.diagnostic_sql is not None
    if request.window is None:
        return request.diagnostic_sql, request.diagnostic
    if request.diagnostic not in _SESSION_START:  # refused at intake; a record from before
        raise AcpError(_window_refusal(request), hint=_window_hint(request))
    return _windowed(request), request.diagnostic


def _windowed(request: SqlRequest) -> str:
    """The session diagnostic's rows whose transaction started in the window, its own order
    kept (a filter over a subquery does not reorder it), at its own row limit."""
    from runtime.tools.sql_diagnostics import DEFAULT_LIMIT, DIAGNOSTICS, MAX_LIMIT

    assert request.window is not None and request.diagnostic is not None
    _, words = time_window(request.text)
    number = re.search(r"\b(\d{1,6})\b", words.lower())
    limit = min(max(int(number.group(1)), 1), MAX_LIMIT) if number else DEFAULT_LIMIT
    inner = DIAGNOSTICS[request.diagnostic].sql.format(limit=MAX_LIMIT).strip()
    started = _SESSION_START[request.diagnostic]
    return (
        f"SELECT d.* FROM ({inner}) AS d\nWHERE {started} >= {request.window.start_sql}"
        f"\nLIMIT {limit}"
    )


def window_note(instruction: str) -> str | None:
    """How a request's time window was applied, for the job's result; None without one."""
    request = read_request(instruction)
    if request.window is None or request.diagnostic not in _SESSION_START:
        return None
    return (
        f"{request.window.phrase}: sessions whose transaction (or query) started since "
        f"{request.window.start_sql}"
    )

"""Request text -> a parsed request: the grammar first, a keyword classifier second.

`<type> <target>: <instruction>` parses with confidence 1.0; free text gets a type, a target
and a confidence from the classifier. Pure functions: no I/O, no policy decisions.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

from pydantic import BaseModel, Field

from runtime.browser_steps import extract_steps, parse_steps
from runtime.errors import (
    BadRequest,
    ReadOnlyViolation,
    SqlWriteRefused,
    UnknownJobType,
    UnknownTarget,
)
from runtime.jobs import JobType
from runtime.policy import Policy

TYPE_ALIASES: dict[str, JobType] = {
    "code": JobType.code,
    "sql": JobType.sql,
    "browse": JobType.browser,
    "browser": JobType.browser,
    "doc": JobType.doc,
    "docs": JobType.doc,
    "schedule": JobType.schedule,
}

EXAMPLE = 'code demo: run `sed -i "s/teh/the/" README.md`'

_GRAMMAR = re.compile(
    r"^\s*(?P<type>[A-Za-z][\w-]*)\s+(?P<target>[A-Za-z0-9][\w.\-]*)\s*:\s*(?P<rest>.*)$", re.S
)
_SCHEDULE = re.compile(r'^\s*schedule\s+"(?P<cron>[^"]+)"\s+(?P<inner>.+)$', re.S | re.I)
_RUN_SPANS = re.compile(
    r"\b(?:run|execute|exec)\b\s*:?\s*(?P<spans>`[^`\n]+`(?:\s*(?:,|;|and|then|&&)?\s*`[^`\n]+`)*)",
    re.I,
)
_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"```(?:sh|bash|shell)?\n(?P<body>.*?)```", re.S)

# fmt: off
_KEYWORDS: dict[JobType, tuple[str, ...]] = {
    JobType.code: (
        "fix", "bug", "test", "tests", "refactor", "function", "typo", "readme", "commit",
        "build", "lint", "code", "compile", "failing", "flaky", "repo", "branch", "module",
    ),
    JobType.sql: (
        "select", "query", "queries", "slow", "slowest", "database", "table", "rows", "index",
        "replica", "sql", "postgres", "count", "locks", "bloat",
    ),
    JobType.browser: (
        "click", "page", "website", "browser", "form", "admin", "disable", "login", "navigate",
        "url", "site", "screenshot", "button", "browse",
    ),
    JobType.doc: (
        "report", "summary", "summarize", "document", "spreadsheet", "docx", "xlsx", "csv",
        "weekly", "incident", "write-up", "slides",
    ),
}
# fmt: on

_TARGET_KINDS: dict[str, tuple[JobType, ...]] = {
    "repos": (JobType.code, JobType.doc),
    "databases": (JobType.sql,),
    "sites": (JobType.browser,),
}


class ParsedRequest(BaseModel):
    job_type: JobType | None
    target: str | None
    instruction: str
    commands: list[str] = Field(default_factory=list)
    schedule: str | None = None
    scheduled_request: str | None = Field(None, description="what each firing submits")
    confidence: float
    method: Literal["grammar", "classifier"]
    cues: list[str] = Field(default_factory=list)


def parse_request(text: str, policy: Policy) -> ParsedRequest:
    """Turn what a person typed into a ParsedRequest; bad input raises a BadRequest."""
    if text is None or not text.strip():
        raise BadRequest("the request is empty", hint=f"for example: {EXAMPLE}")
    limit = policy.limits.max_request_chars
    if len(text) > limit:
        raise BadRequest(
            f"the request is {len(text):,} characters; the limit is {limit:,}",
            hint="put long material in the repository and refer to it by path",
        )
    if "\x00" in text:
        raise BadRequest("the request contains a NUL character")
    schedule = _SCHEDULE.match(text)
    if schedule:
        from runtime.schedules import parse_schedule

        inner_text = schedule.group("inner").strip()
        if _SCHEDULE.match(inner_text):
            raise BadRequest("a routine cannot schedule another routine")
        parse_schedule(schedule.group("cron"), policy.routines.timezone)  # BadRequest if bad
        inner = parse_request(inner_text, policy)
        return inner.model_copy(
            update={"schedule": schedule.group("cron").strip(), "scheduled_request": inner_text}
        )
    match = _GRAMMAR.match(text)
    parsed = _parse_grammar(match, policy) if match else None
    if parsed is None:
        parsed = classify(text, policy)
    if parsed.job_type is JobType.sql:
        refuse_sql_writes(parsed.instruction, policy, parsed.target)
    return parsed


def _parse_grammar(match: re.Match[str], policy: Policy) -> ParsedRequest | None:
    word, target, rest = match.group("type"), match.group("target"), match.group("rest").strip()
    job_type = TYPE_ALIASES.get(word.lower())
    if job_type is None:
        close = difflib.get_close_matches(word.lower(), TYPE_ALIASES, n=1, cutoff=0.6)
        if close or target in policy.all_target_names():
            known = ", ".join(sorted({t.value for t in TYPE_ALIASES.values()}))
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownJobType(
                f"unknown job type '{word}'{guess}",
                hint=f"job types: {known}. For example: {EXAMPLE}",
            )
        return None
    known_targets = policy.targets_for(job_type)
    if target not in known_targets:
        names = ", ".join(sorted(known_targets)) or "none are defined"
        close = difflib.get_close_matches(target, list(known_targets), n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownTarget(
            f"unknown {job_type.value} target '{target}'{guess}",
            hint=f"known {job_type.value} targets: {names}",
        )
    if not rest:
        raise BadRequest(
            f"the request names {job_type.value} {target} but says nothing to do",
            hint=f"for example: {EXAMPLE}",
        )
    return ParsedRequest(
        job_type=job_type,
        target=target,
        instruction=rest,
        commands=steps_for(job_type, rest),
        confidence=1.0,
        method="grammar",
        cues=["grammar"],
    )


def steps_for(job_type: JobType | None, instruction: str) -> list[str]:
    """Explicit direct-mode steps: browser steps for a browser job, commands otherwise."""
    if job_type is JobType.browser:
        steps = extract_steps(instruction)
        parse_steps(steps)  # a malformed step is a BadRequest now, not a failure later
        return steps
    if job_type is JobType.doc:
        found = [(at, c) for at, c in _commands_at(instruction) if not c.startswith("template ")]
        found += [
            (m.start(), " ".join(m.group(1).split()))
            for m in _SPAN.finditer(instruction)
            if m.group(1).split()[:1] == ["template"]
        ]
        steps = [c for _, c in sorted(found, key=lambda item: item[0])]
        for step in steps:
            if step.split()[:1] == ["template"] and len(step.split()) < 3:
                raise BadRequest(
                    f"the step `{step}` needs a template and an output",
                    hint="template TEMPLATE OUTPUT [DATA.csv ...], e.g. "
                    "`template templates/weekly.md.j2 reports/weekly.xlsx incidents.csv`",
                )
        return steps
    return extract_commands(instruction)


def extract_commands(instruction: str) -> list[str]:
    """Explicit steps for direct mode: `run `cmd``, chained spans, or a fenced shell block."""
    return [c for _, c in sorted(_commands_at(instruction), key=lambda item: item[0])]


def _commands_at(instruction: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = [
        (m.start(), span) for m in _RUN_SPANS.finditer(instruction) for span in _SPAN.findall(m[0])
    ]
    for fence in _FENCE.finditer(instruction):
        found.extend((fence.start(), line) for line in fence.group("body").splitlines())
    # Written order: a fenced block before a `run` span runs first.
    return [(at, c.strip()) for at, c in found if c.strip()]


def classify(text: str, policy: Policy) -> ParsedRequest:
    """A deterministic keyword classifier: type, target and a confidence in [0, 1]."""
    words = re.findall(r"[a-z0-9][a-z0-9_.\-]*", text.lower())
    hits = {t: sorted({w for w in words if w in kws}) for t, kws in _KEYWORDS.items()}
    scores = {t: len(found) for t, found in hits.items()}
    target, target_types = _find_target(text, policy)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    cues = [f"{best.value}:{w}" for w in hits[best]]
    if target:
        cues.append(f"target:{target}")
    job_type: JobType | None
    if target and best_score == 0:
        job_type, confidence = target_types[0], 0.8
    elif target and best in target_types:
        job_type = best
        confidence = min(0.95, 0.8 + 0.05 * (best_score - second_score))
    elif target:
        job_type, confidence = target_types[0], 0.5
    elif best_score == 0:
        job_type, confidence = None, 0.0
    else:
        job_type = best if best_score > second_score else None
        confidence = min(0.9, 0.55 + 0.1 * (best_score - second_score)) if job_type else 0.3
    return ParsedRequest(
        job_type=job_type,
        target=target,
        instruction=text.strip(),
        commands=steps_for(job_type, text),
        confidence=round(confidence, 2),
        method="classifier",
        cues=cues,
    )


def _find_target(text: str, policy: Policy) -> tuple[str | None, tuple[JobType, ...]]:
    lowered = text.lower()
    for kind, types in _TARGET_KINDS.items():
        for name in getattr(policy.targets, kind):
            if re.search(rf"(?<![\w.\-]){re.escape(name.lower())}(?![\w\-])", lowered):
                return name, types
    return None, ()


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

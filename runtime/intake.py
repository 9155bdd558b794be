"""Request text -> a parsed request: the grammar first, a keyword classifier second.

`<type> <target>: <instruction>` parses with confidence 1.0; free text gets a type, a target
and a confidence from the classifier. Pure functions: no I/O, no policy decisions.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

from pydantic import BaseModel, Field

from runtime.commands import extract_commands
from runtime.errors import BadRequest, UnknownJobType, UnknownTarget
from runtime.jobs import JobType
from runtime.kinds import registry
from runtime.policy import Policy

EXAMPLE = 'code demo: run `sed -i "s/teh/the/" README.md`'

_GRAMMAR = re.compile(
    r"^\s*(?P<type>[A-Za-z][\w-]*)\s+(?P<target>[A-Za-z0-9][\w.\-]*)\s*:\s*(?P<rest>.*)$", re.S
)
_SCHEDULE = re.compile(r'^\s*schedule\s+"(?P<cron>[^"]+)"\s+(?P<inner>.+)$', re.S | re.I)


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
    if parsed.job_type is not None:
        registry.kind_for(parsed.job_type).check_request(parsed.instruction, parsed.target, policy)
    return parsed


def _parse_grammar(match: re.Match[str], policy: Policy) -> ParsedRequest | None:
    word, target, rest = match.group("type"), match.group("target"), match.group("rest").strip()
    kind = registry.by_alias(word)
    if kind is None:
        aliases = registry.aliases()
        close = difflib.get_close_matches(word.lower(), aliases, n=1, cutoff=0.6)
        if close or target in policy.all_target_names():
            known = ", ".join(sorted({str(t) for t in aliases.values()}))
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownJobType(
                f"unknown job type '{word}'{guess}",
                hint=f"job types: {known}. For example: {EXAMPLE}",
            )
        return None
    job_type = kind.job_type
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
        commands=kind.steps(rest),
        confidence=1.0,
        method="grammar",
        cues=["grammar"],
    )


def steps_for(job_type: JobType | None, instruction: str) -> list[str]:
    """Explicit direct-mode steps, as the job's kind reads them (BadRequest if malformed)."""
    if job_type is None:
        return extract_commands(instruction)
    return registry.kind_for(job_type).steps(instruction)


def classify(text: str, policy: Policy) -> ParsedRequest:
    """A deterministic keyword classifier: type, target and a confidence in [0, 1]."""
    words = re.findall(r"[a-z0-9][a-z0-9_.\-]*", text.lower())
    keywords = {k.job_type: k.keywords for k in registry.kinds() if k.requestable}
    hits = {t: sorted({w for w in words if w in kws}) for t, kws in keywords.items()}
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
    for section in registry.sections():
        types = tuple(k.job_type for k in registry.for_section(section) if k.requestable)
        for name in policy.targets_in(section):
            if re.search(rf"(?<![\w.\-]){re.escape(name.lower())}(?![\w\-])", lowered):
                return name, types
    return None, ()

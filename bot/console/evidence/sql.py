"""A SQL job's evidence, one block per statement the job ran (each `tool.sql.query` event):
the statement highlighted, its duration and row count, the result as a table (from its CSV),
and the plan as a tree with the costliest node marked (plan.py)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from bot.console.evidence import highlight
from bot.console.evidence.artifacts import ArtifactReader, Note, by_sha, read_ref
from bot.console.evidence.plan import Plan, read_plan
from bot.console.evidence.templates import render
from runtime.audit import AuditEvent
from runtime.jobs import ArtifactRef, JobRecord

MAX_ROWS = 500  # result rows shown on the page; the CSV download has all the job kept


@dataclass
class Result:
    header: list[str]
    rows: list[list[str]]
    total: int  # rows in the CSV


@dataclass
class Query:
    statement: Markup
    data: dict[str, Any]
    result: Result | Note | None = None
    plan: Plan | Note | None = None
    files: list[ArtifactRef] = field(default_factory=list)


def read_result(text: str) -> Result:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return Result([], [], 0)
    return Result(rows[0], rows[1 : MAX_ROWS + 1], len(rows) - 1)


def _query(data: dict[str, Any], refs: list[ArtifactRef], store: ArtifactReader) -> Query:
    statement = str(data.get("statement") or "")
    query = Query(highlight.highlight(highlight.lexer_named("postgresql"), statement), data)
    for ref in refs:
        if ref.name.endswith(".csv"):
            text = read_ref(store, ref)
            query.result = text if isinstance(text, Note) else read_result(text)
        elif ref.name.endswith(".json") and "plan" in ref.name:
            text = read_ref(store, ref)
            if isinstance(text, Note):
                query.plan = text
            else:
                try:
                    query.plan = read_plan(text)
                except ValueError as error:
                    query.plan = Note(f"{ref.name} is not a plan the console can read: {error}",
                                      ref.name, ref.sha256)  # fmt: skip
        query.files.append(ref)
    return query


def queries_of(job: JobRecord, events: list[AuditEvent], store: ArtifactReader) -> list[Query]:
    artifacts = by_sha(job)
    queries = [
        _query(event.data, [artifacts[s] for s in event.artifacts if s in artifacts], store)
        for event in events
        if event.kind == "tool.sql.query"
    ]
    if not queries and job.spec.job_type.value == "sql" and job.artifacts:
        # A record without the tool's event (an older run): what the job kept.
        refs = [a for a in job.artifacts if a.name.endswith((".csv", ".json", ".txt"))]
        if refs:
            queries.append(_query(dict(job.result), refs, store))
    return queries


def render_sql(job: JobRecord, events: list[AuditEvent], store: ArtifactReader) -> Markup:
    queries = queries_of(job, events, store)
    # An investigation's findings (the model's report, untrusted text shown as text), read
    # first; its queries are the evidence E1, E2, ... in the order they ran.
    ref = next((a for a in reversed(job.artifacts) if a.name == "findings.md"), None)
    findings = read_ref(store, ref) if ref is not None else None
    if not queries and findings is None:
        return Markup()
    return render(
        "_sql.html", queries=queries, max_rows=MAX_ROWS, is_note=lambda x: isinstance(x, Note),
        findings=findings,
    )  # fmt: skip

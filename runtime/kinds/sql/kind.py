"""SQL jobs: one read-only statement or a standard diagnostic against a database target, with
the results and the plan as evidence (run.py). Writes are refused at intake (statements.py)."""

from __future__ import annotations

from typing import Any

from runtime.jobs import Attachment, Evidence, EvidenceLine, JobRecord, JobType
from runtime.kinds.base import JobContext, JobKind, Outcome
from runtime.tools.base import Tool


class SqlKind(JobKind):
    job_type = JobType.sql
    aliases = ("sql",)
    # fmt: off
    keywords = (
        "select", "query", "queries", "slow", "slowest", "database", "table", "rows", "index",
        "replica", "sql", "postgres", "count", "locks", "bloat",
    )
    # fmt: on
    target_section = "databases"
    tools = ("sql.query",)
    artifact_contract = "results_plus_plan"
    mutating = False
    step_question = (
        "Which read-only statement should it run, or which standard diagnostic? "
        "For example: `SELECT status, count(*) FROM orders GROUP BY 1` or 'top 10 slowest queries'"
    )

    def suggestion(self, target: str) -> tuple[str, str] | None:
        return (f"Top slow queries on {target}", f"sql {target}: top 10 slowest queries")

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        """A SQL job runs without a model when it is a statement or a standard diagnostic."""
        from runtime.kinds.sql.statements import read_request

        return bool(steps) or read_request(instruction).form != "words"

    def check_request(self, instruction: str, target: str | None, policy: Any) -> None:
        from runtime.kinds.sql.statements import check_sql_request

        check_sql_request(instruction, policy, target)

    def answer(self, answer: str, policy: Any, target: str | None) -> dict[str, Any]:
        """A SQL job's answer is what it runs: the job's instruction becomes the statement (or
        the diagnostic's words), refused now if it writes; its steps are cleared, so nothing
        but the answer is read."""
        from runtime.kinds.sql.statements import check_sql_request, unfenced

        statement = unfenced(answer)
        check_sql_request(statement, policy, target)
        return {"instruction": statement, "commands": []}

    def spec_scopes(self, target: Any) -> dict[str, Any]:
        return {"credential_refs": [target.dsn_env]}

    def toolset(self) -> tuple[Tool, ...]:
        from runtime.kinds.sql.investigate import INVESTIGATION_TOOLS
        from runtime.tools.database import DATABASE_TOOLS

        return (*DATABASE_TOOLS, *INVESTIGATION_TOOLS)

    async def replay(self, ctx: JobContext, *, on_base: str | None = None) -> Any:
        """An investigation re-run from its recorded model responses, its queries run again."""
        from runtime.errors import InvalidTransition
        from runtime.kinds.sql.investigate import replay

        if on_base:
            raise InvalidTransition("a SQL job has no branch to replay on; drop --on-base")
        return await replay(ctx)

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.sql.run import execute

        return await execute(ctx)

    def results(self, job: JobRecord) -> Evidence:
        """The statement that ran, the result table and the plan tree to read, the CSV and the
        plan as files; for an investigation, its findings to read and each query's evidence as
        files."""
        named = {a.name: a for a in job.artifacts}
        if "findings.md" in named:
            evidence = sorted((n for n in named if n.startswith("evidence/E")),
                              key=lambda n: int(n[len("evidence/E"):].split(".")[0]))  # fmt: skip
            return Evidence(
                read=[named["findings.md"].sha256],
                attach=[Attachment(sha256=named[n].sha256,
                                   filename=f"{job.job_id}-{n.removeprefix('evidence/')}",
                                   title=f"Evidence {n.removeprefix('evidence/')}")
                        for n in evidence],
            )  # fmt: skip
        lines = []
        if job.result.get("statement"):
            lines.append(EvidenceLine(label="statement", text=str(job.result["statement"]).strip()))
        if job.result.get("diagnostic"):
            lines.append(EvidenceLine(label="diagnostic", text=str(job.result["diagnostic"])))
        if job.result.get("window"):
            lines.append(EvidenceLine(label="window", text=str(job.result["window"])))
        # The plan tree is read with the result and attached as a file (a door that can
        # attach does not post it twice).
        read = [named[name].sha256 for name in ("result.txt", "plan.txt") if name in named]
        files = [("result.csv", "Result (CSV)"), ("plan.txt", "EXPLAIN plan (tree)"),
                 ("plan.json", "EXPLAIN plan (JSON)")]  # fmt: skip
        return Evidence(
            lines=lines,
            read=read,
            attach=[
                Attachment(sha256=named[name].sha256, filename=f"{job.job_id}-{name}", title=title)
                for name, title in files
                if name in named
            ],
        )

"""The console's pages and actions. Each reads or acts through the engine with the signed-in
person as the actor, exactly as the service API does: what a person may see or do is the
engine's decision (four-eyes, approvers, grants), and a refusal is shown as the engine words
it, never a rule of the console's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from markupsafe import Markup

from bot.console.evidence import render_evidence
from bot.console.render import page
from runtime.errors import AcpError, BadRequest

if TYPE_CHECKING:
    from bot.console.app import Console
    from runtime.identity import Actor
    from runtime.jobs import ApprovalRequest, JobRecord

PAGE_SIZE = 50
STATES = ["received", "denied", "needs_clarification", "queued", "running", "awaiting_approval",
          "approved", "rejected", "succeeded", "failed", "cancelled", "rolled_back"]  # fmt: skip
DOORS = ["cli", "slack", "schedule", "console"]


def open_gate(job: JobRecord) -> ApprovalRequest | None:
    return next((g for g in reversed(job.approvals) if g.decision is None), None)


def headline(job: JobRecord) -> str:
    """The change waiting for approval in a sentence, as the job's kind words it."""
    from runtime.kinds import registry

    try:
        shown = registry.kind_for(job.spec.job_type).evidence(job)
    except Exception:  # a kind that cannot read an old record: say what the gate is for
        shown = None
    gate = open_gate(job)
    if shown and shown.headline:
        return shown.headline
    if gate is None:
        return ""
    if shown and shown.lines:  # "merge: 1 file(s), +1 -1 (README.md); merge acp/J-1 into main"
        return f"{gate.action}: {shown.lines[0].text}"
    return f"{gate.action} needs approval"


def _date(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-12-03") from None


def job_filter(query: Any) -> tuple[Any, dict[str, str]]:
    """The job list's filters from the query string (and what the form shows back)."""
    from runtime.jobs import parse_job_id
    from runtime.store.job_store import JobFilter

    shown = {k: query.get(k, "") for k in ("state", "kind", "target", "requester", "door",
                                              "since", "until", "q")}  # fmt: skip
    text = shown["q"].strip()
    job_id = None
    if text:
        with contextlib.suppress(AcpError):  # not an id: words of the request
            job_id, text = parse_job_id(text), ""
    until = _date(shown["until"], "until")
    before = query.get("before")
    where = JobFilter(
        states=[s for s in shown["state"].split(",") if s],
        job_types=[k for k in shown["kind"].split(",") if k],
        target=shown["target"] or None, requester=shown["requester"] or None,
        origin=shown["door"] or None, since=_date(shown["since"], "since"),
        until=until + timedelta(days=1) if until else None, text=text or None, job_id=job_id,
        before_id=int(before) if before and before.isdigit() else None,
    )  # fmt: skip
    return where, shown


def add_routes(app: web.Application, console: Console) -> None:
    engine = console.engine

    def me(request: web.Request) -> Actor:
        return request["actor"]

    def htmx(request: web.Request) -> bool:
        return request.headers.get("HX-Request") == "true"

    async def load(request: web.Request) -> JobRecord:
        from runtime.jobs import parse_job_id

        return await engine.get(parse_job_id(request.match_info["job"]))

    # --- approvals waiting for me (home) -------------------------------------------------

    async def home(request: web.Request) -> web.StreamResponse:
        waiting = await engine.awaiting(me(request).person)
        mine = await engine.jobs(requester=me(request).person, limit=10)
        rows = [(job, open_gate(job), headline(job)) for job in waiting]
        template = "_approvals.html" if htmx(request) else "home.html"
        return page(request, template, nav="home", waiting=rows, mine=mine)

    # --- jobs ----------------------------------------------------------------------------

    async def jobs(request: web.Request) -> web.StreamResponse:
        where, shown = job_filter(request.query)
        found = await engine.search(where, limit=PAGE_SIZE + 1)
        more = found[PAGE_SIZE].id + 1 if len(found) > PAGE_SIZE else None
        listed = found[:PAGE_SIZE]
        from urllib.parse import urlencode

        query = urlencode({k: v for k, v in shown.items() if v})
        template = "_job_rows.html" if request.query.get("rows") == "1" else "jobs.html"
        from runtime.kinds import registry

        return page(
            request, template, nav="jobs", jobs=listed, shown=shown, query=query,
            older=listed[-1].id if more else None, states=STATES, doors=DOORS,
            kinds=sorted(k.job_type for k in registry.kinds()),
        )  # fmt: skip

    async def job_page(request: web.Request) -> web.StreamResponse:
        job = await load(request)
        events = await engine.events(job.id)
        evidence = await asyncio.to_thread(_evidence, job, events, request.query.get("diff"))
        return page(
            request, "job.html", nav="jobs", events=events, evidence=evidence,
            **panel_context(job),
        )  # fmt: skip

    def panel_version(job: JobRecord) -> str:
        """What the panel was rendered from: the job's state, phase and last update."""
        phase = job.phase.value if job.phase is not None else ""
        return f"{job.state.value}/{phase}/{job.updated_at.isoformat()}"

    def panel_context(
        job: JobRecord, refused: AcpError | None = None, *, acted: bool = False
    ) -> dict[str, Any]:
        """The live part of a job page; after an action, the notice above it too (the engine's
        refusal, or nothing), which stays while the panel follows the job."""
        gate = open_gate(job)
        from runtime.kinds import registry

        undoable = job.state.value == "succeeded" and registry.kind_for(
            job.spec.job_type
        ).rollbackable(job)
        return {"job": job, "gate": gate, "headline": headline(job) if gate else "",
                "refused": refused, "acted": acted, "rollbackable": undoable,
                "version": panel_version(job)}  # fmt: skip

    async def panel(request: web.Request) -> web.StreamResponse:
        job = await load(request)
        if request.query.get("shown") == panel_version(job):
            # Nothing the panel shows has changed: no swap, so a reason or an answer being
            # typed into it is not wiped by a refresh (htmx leaves the page as it is on 204).
            return web.Response(status=204)
        return page(request, "_panel.html", **panel_context(job))

    def _evidence(job: JobRecord, events: list, view: str | None) -> Markup:
        return render_evidence(job, events, engine.artifacts, view=view or "unified")

    async def act(request: web.Request, verb: str) -> web.StreamResponse:
        job = await load(request)
        form = await request.post()
        actor = me(request)
        action_hash = str(form.get("hash") or "") or None
        try:
            if verb == "approve":
                job = await engine.approve(job.id, actor, action_hash=action_hash)
            elif verb == "reject":
                reason = str(form.get("reason") or "").strip()
                if not reason:
                    raise BadRequest("a rejection needs a reason", hint="say why, for the "
                                     "requester and the record")  # fmt: skip
                job = await engine.reject(job.id, actor, reason=reason, action_hash=action_hash)
            elif verb == "answer":
                # An option's button and the free-text field share the name: the one given.
                given = [str(v).strip() for v in form.getall("answer", []) if str(v).strip()]
                job = await engine.answer(job.id, actor, given[0] if given else "")
            elif verb == "cancel":
                job = await engine.cancel(job.id, actor, reason=str(form.get("reason") or ""))
            elif verb == "rollback":
                job = await engine.rollback(job.id, actor)
        except AcpError as error:
            if not htmx(request):
                raise
            job = await engine.get(job.id)
            return page(request, "_panel.html", **panel_context(job, error, acted=True))
        if htmx(request):
            return page(request, "_panel.html", **panel_context(job, acted=True))
        raise web.HTTPSeeOther(f"/jobs/{job.job_id}")

    def action(verb: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            return await act(request, verb)

        return handler

    # --- artifacts -----------------------------------------------------------------------

    async def artifact(request: web.Request) -> web.StreamResponse:
        digest = request.match_info["sha256"]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise web.HTTPNotFound()
        try:
            data = await asyncio.to_thread(engine.artifacts.read, digest)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        download = request.query.get("download")
        headers = {"Cache-Control": "private, max-age=86400"}
        if download:
            safe = "".join(c for c in download if c.isalnum() or c in "._-")[:80] or "artifact"
            headers["Content-Disposition"] = f'attachment; filename="{safe}"'
            kind = "application/octet-stream"
        elif data.startswith(b"\x89PNG\r\n\x1a\n"):
            kind = "image/png"
        elif data.startswith(b"\xff\xd8\xff"):
            kind = "image/jpeg"
        else:  # never rendered as a page: text at most, and the CSP allows nothing in it
            kind = "text/plain"
            headers["Content-Disposition"] = "inline"
        response = web.Response(body=data, content_type=kind, headers=headers)
        if kind == "text/plain":
            response.charset = "utf-8"
        return response

    # --- live updates --------------------------------------------------------------------

    async def live(request: web.Request) -> web.StreamResponse:
        from runtime.jobs import parse_job_id

        raw = request.query.get("job")
        return await console.hub.stream(request, parse_job_id(raw) if raw else None)

    # --- routines, audit, policy ---------------------------------------------------------

    async def routines_page(request: web.Request) -> web.StreamResponse:
        from runtime import routines

        listed = []
        for r in await routines.routines(engine):
            listed.append((r, r.next_run(), await routines.last_result(engine, r)))
        return page(request, "routines.html", nav="routines", routines=listed)

    async def routine_verb(request: web.Request) -> web.StreamResponse:
        from runtime import routines

        verb = request.match_info["verb"]
        if verb not in ("pause", "resume"):
            raise web.HTTPNotFound()
        routine_id = routines.parse_routine_id(request.match_info["routine"])
        state = {"pause": "paused", "resume": "active"}[verb]
        await routines.set_state(engine, routine_id, me(request), state)
        raise web.HTTPSeeOther("/routines")

    async def audit_page(request: web.Request) -> web.StreamResponse:
        from runtime.audit import search_events

        q = request.query
        shown = {k: q.get(k, "") for k in ("job", "person", "kind", "since", "until")}
        job_id = None
        if shown["job"]:
            from runtime.jobs import parse_job_id

            job_id = parse_job_id(shown["job"])
        until = _date(shown["until"], "until")
        events = await search_events(
            engine.db, job_id=job_id, actor=shown["person"] or None, kind=shown["kind"] or None,
            since=_date(shown["since"], "since"), limit=200,
            until=until + timedelta(days=1) if until else None,
        )  # fmt: skip
        return page(request, "audit.html", nav="audit", events=events, shown=shown)

    async def audit_verify(request: web.Request) -> web.StreamResponse:
        import time

        started = time.perf_counter()
        try:
            report, error = await engine.verify_audit(), None
        except AcpError as failed:
            report, error = None, failed
        took = time.perf_counter() - started
        return page(request, "_verify.html", report=report, error=error, seconds=took)

    async def policy_page(request: web.Request) -> web.StreamResponse:
        await engine.policies.follow()
        current = engine.policies.current
        return page(request, "policy.html", nav="policy", current=current.describe(),
                    folder=str(engine.settings.policy_dir), check=None, text="")  # fmt: skip

    async def policy_check(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        text = str(form.get("request") or "").strip()
        if not text:
            raise BadRequest("type a request to check, e.g. 'code demo: run the tests'")
        check = engine.check(text, me(request))
        template = "_check.html" if htmx(request) else "policy.html"
        return page(request, template, nav="policy", check=check, text=text,
                    current=engine.policies.current.describe(),
                    folder=str(engine.settings.policy_dir))  # fmt: skip

    r = app.router
    r.add_get("/", home)
    r.add_get("/jobs", jobs)
    r.add_get("/jobs/{job}", job_page)
    r.add_get("/jobs/{job}/panel", panel)
    for verb in ("approve", "reject", "answer", "cancel", "rollback"):
        r.add_post(f"/jobs/{{job}}/{verb}", action(verb))
    r.add_get("/artifacts/{sha256}", artifact)
    r.add_get("/live", live)
    r.add_get("/routines", routines_page)
    r.add_post("/routines/{routine}/{verb}", routine_verb)
    r.add_get("/audit", audit_page)
    r.add_get("/audit/verify", audit_verify)
    r.add_get("/policy", policy_page)
    r.add_post("/policy/check", policy_check)

"""The service API's endpoints: each authenticates the caller (bot.api.auth), calls the engine
and answers JSON. A refusal is the runtime's error as JSON (bot.api.wire), never a traceback.

Scopes a token needs: read (every GET, a policy check or simulation, a replay), submit,
answer, approve (approve and reject), cancel, rollback, routines, tokens. A caller on the Unix
socket has them all; the policy still decides what its person may do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.api.auth import Caller, caller
from bot.api.wire import PREFIX, error_body, status_for
from runtime.errors import AcpError, BadRequest

if TYPE_CHECKING:
    from runtime.engine import Engine

log = logging.getLogger("acp.api")

Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]
MAX_BODY = 1 << 20  # a request (its text is at most 8,000 characters) is far below this
STREAM_POLL_S = 0.25
STREAM_KEEPALIVE_S = 15.0


def _json(
    data: Any, status: int = 200, actor: Caller | None = None, *, error: bool = False
) -> web.Response:
    headers = {"X-Acp-Actor": actor.actor.person} if actor else {}
    if error:
        headers["X-Acp-Error"] = "1"  # a refusal, even when its status is 200 (AlreadyDecided)
    text = json.dumps(data, default=str, ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json",
                        headers=headers)  # fmt: skip


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if (request.content_length or 0) > MAX_BODY:
        raise BadRequest(f"the request body is over {MAX_BODY} bytes")
    try:
        data = json.loads(await request.read() or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the request body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _field(body: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and required:
        raise BadRequest(f"the request body needs '{name}'")
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    return value


class Api:
    """The endpoints over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Set when the service stops: open event streams end at once rather than holding the
        # listener's shutdown until its deadline.
        self.stopping = asyncio.Event()

    def endpoint(self, scope: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                if request.method != "GET":
                    # A policy a job (or another process) put in force is the one this acts
                    # under, even between two of the watcher's looks.
                    await self.engine.policies.follow()
                who = await caller(self.engine, request, scope)
                return await handler(request, who)
            except AcpError as error:
                return _json(error_body(error), status_for(error), error=True)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("API %s %s failed", request.method, request.path)
                return _json(
                    {"error": "AcpError", "message": "the service failed on this request; its "
                     "log says why", "hint": None, "exit_code": 1}, 500, error=True,
                )  # fmt: skip

        return run

    def routes(self) -> list[web.RouteDef]:
        e, p = self.endpoint, PREFIX
        return [
            web.get(f"{p}/health", self.health),
            web.get(f"{p}/whoami", e("read", self.whoami)),
            web.post(f"{p}/jobs", e("submit", self.submit)),
            web.get(f"{p}/jobs", e("read", self.list_jobs)),
            web.get(f"{p}/jobs/{{job}}", e("read", self.show)),
            web.get(f"{p}/jobs/{{job}}/events", e("read", self.job_events)),
            web.post(f"{p}/jobs/{{job}}/approve", e("approve", self.approve)),
            web.post(f"{p}/jobs/{{job}}/reject", e("approve", self.reject)),
            web.post(f"{p}/jobs/{{job}}/answer", e("answer", self.answer)),
            web.post(f"{p}/jobs/{{job}}/cancel", e("cancel", self.cancel)),
            web.post(f"{p}/jobs/{{job}}/rollback", e("rollback", self.rollback)),
            web.post(f"{p}/jobs/{{job}}/replay", e("read", self.replay)),
            web.get(f"{p}/jobs/{{job}}/playwright-test", e("read", self.export_test)),
            web.get(f"{p}/artifacts/{{sha256}}", e("read", self.artifact)),
            web.get(f"{p}/audit/verify", e("read", self.audit_verify)),
            web.get(f"{p}/audit/export", e("read", self.audit_export)),
            web.get(f"{p}/audit/prove/{{job}}", e("read", self.audit_prove)),
            web.get(f"{p}/audit/key", e("read", self.audit_key)),
            web.post(f"{p}/policy/check", e("read", self.policy_check)),
            web.post(f"{p}/policy/simulate", e("read", self.policy_simulate)),
            web.post(f"{p}/policy/explain", e("read", self.policy_explain)),
            web.get(f"{p}/policy", e("read", self.policy_show)),
            web.post(f"{p}/policy/reload", e("submit", self.policy_reload)),
            web.post(f"{p}/policy/propose", e("submit", self.policy_propose)),
            web.get(f"{p}/routines", e("read", self.list_routines)),
            web.get(f"{p}/routines/{{routine}}/history", e("read", self.routine_history)),
            web.post(f"{p}/routines/{{routine}}/{{verb}}", e("routines", self.routine_verb)),
            web.post(f"{p}/tokens", e("tokens", self.token_create)),
            web.get(f"{p}/tokens", e("read", self.token_list)),
            web.delete(f"{p}/tokens/{{token}}", e("tokens", self.token_revoke)),
            web.get(f"{p}/stream", e("read", self.stream)),
        ]

    # --- health ------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """No identity needed: whether the service answers, and how many workers are live."""
        return _json({"ok": True, "live_workers": await self.engine.live_workers(),
                      "policy_hash": self.engine.loaded.sha256})  # fmt: skip

    async def whoami(self, request: web.Request, who: Caller) -> web.Response:
        token = who.token.model_dump(mode="json") if who.token else None
        return _json({"person": who.actor.person, "via": who.actor.via, "token": token})

    # --- jobs --------------------------------------------------------------------------

    def _job_id(self, request: web.Request) -> int:
        from runtime.jobs import parse_job_id

        return parse_job_id(request.match_info["job"])

    async def submit(self, request: web.Request, who: Caller) -> web.Response:
        from runtime.jobs import Origin

        body = await _body(request)
        job = await self.engine.submit(_field(body, "request"), who.actor, Origin.cli)
        return _json(job.model_dump(mode="json"), 201, who)

    async def list_jobs(self, request: web.Request, who: Caller) -> web.Response:
        q = request.query
        requester = who.actor.person if q.get("mine") in ("1", "true") else None
        states = q["state"].split(",") if q.get("state") else None
        try:
            limit = max(1, min(int(q.get("limit", "50")), 1000))
        except ValueError:
            raise BadRequest("limit must be a number") from None
        jobs = await self.engine.jobs(requester=requester, states=states, limit=limit)
        return _json([job.model_dump(mode="json") for job in jobs])

    async def show(self, request: web.Request, who: Caller) -> web.Response:
        job = await self.engine.get(self._job_id(request))
        return _json(job.model_dump(mode="json"))

    async def job_events(self, request: web.Request, who: Caller) -> web.Response:
        events = await self.engine.events(self._job_id(request))
        return _json([event.model_dump(mode="json") for event in events])

    async def approve(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        job = await self.engine.approve(
            self._job_id(request), who.actor, action_hash=_field(body, "hash", required=False)
        )
        return _json(job.model_dump(mode="json"), actor=who)

    async def reject(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        job = await self.engine.reject(
            self._job_id(request),
            who.actor,
            reason=_field(body, "reason", required=False) or "",
            action_hash=_field(body, "hash", required=False),
        )
        return _json(job.model_dump(mode="json"), actor=who)

    async def answer(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        job = await self.engine.answer(self._job_id(request), who.actor, _field(body, "answer"))
        return _json(job.model_dump(mode="json"), actor=who)

    async def cancel(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        job = await self.engine.cancel(
            self._job_id(request), who.actor, reason=_field(body, "reason", required=False) or ""
        )
        return _json(job.model_dump(mode="json"), actor=who)

    async def rollback(self, request: web.Request, who: Caller) -> web.Response:
        job = await self.engine.rollback(self._job_id(request), who.actor)
        return _json(job.model_dump(mode="json"), actor=who)

    async def replay(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        report = await self.engine.replay(
            self._job_id(request), on_base=_field(body, "on_base", required=False)
        )
        return _json(report.model_dump(mode="json"))

    async def export_test(self, request: web.Request, who: Caller) -> web.Response:
        from runtime.kinds import registry

        job = await self.engine.get(self._job_id(request))
        kind = registry.kind_for(job.spec.job_type)
        target = self.engine.policy.targets_for(kind.job_type).get(job.spec.target or "")
        if target is None and kind.target_section:
            raise BadRequest(
                f"target '{job.spec.target}' of {job.job_id} is no longer in the policy"
            )
        script, filename = kind.export_test(job, target)
        return _json({"script": script, "filename": filename})

    async def artifact(self, request: web.Request, who: Caller) -> web.Response:
        digest = request.match_info["sha256"]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BadRequest("an artifact is named by its sha256 (64 hex digits)")
        try:
            data = await asyncio.to_thread(self.engine.artifacts.read, digest)
        except FileNotFoundError:
            raise BadRequest(f"no artifact {digest[:12]}… in the store") from None
        return web.Response(body=data, content_type="application/octet-stream")

    # --- audit -------------------------------------------------------------------------

    async def audit_verify(self, request: web.Request, who: Caller) -> web.Response:
        import time

        started = time.perf_counter()
        report = await self.engine.verify_audit()
        took = time.perf_counter() - started
        return _json({"ok": True, **report.model_dump(mode="json"), "seconds": round(took, 3)})

    async def audit_export(self, request: web.Request, who: Caller) -> web.StreamResponse:
        job = request.query.get("job")
        job_id = None
        if job:
            from runtime.jobs import parse_job_id

            job_id = parse_job_id(job)
        lines = await export_lines(self.engine, job_id, request.query.get("format", "jsonl"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        chunk: list[str] = []
        for line in lines:
            chunk.append(line + "\n")
            if len(chunk) >= 1000:
                await response.write("".join(chunk).encode())
                chunk = []
        await response.write("".join(chunk).encode())
        await response.write_eof()
        return response

    async def audit_prove(self, request: web.Request, who: Caller) -> web.Response:
        from runtime.audit.prove import prove_job

        job = await self.engine.get(self._job_id(request))
        checkpointer = getattr(self.engine, "checkpointer", None)  # the service signs afresh
        return _json(await prove_job(self.engine.db, self.engine.settings, job.id, checkpointer))

    async def audit_key(self, request: web.Request, who: Caller) -> web.Response:
        from runtime.audit.note import public_key_text

        return _json({"key": public_key_text(self.engine.settings)})

    # --- policy ------------------------------------------------------------------------

    async def policy_check(self, request: web.Request, who: Caller) -> web.Response:
        body = await _body(request)
        check = self.engine.check(_field(body, "request"), who.actor)
        return _json(check.model_dump(mode="json"))

    async def policy_simulate(self, request: web.Request, who: Caller) -> web.Response:
        """A proposed policy (its files) tried on the jobs recorded since a time: runs nothing,
        writes nothing but its `policy.simulated` event."""
        from runtime.policy.simulate import proposed_sources
        from runtime.policy_change import simulate_recorded

        body = await _body(request)
        since = _field(body, "since", required=False) or "30d"
        proposed = proposed_sources(body.get("files"), _field(body, "where", required=False))
        report = await simulate_recorded(
            self.engine.db, proposed, in_force_hash=self.engine.loaded.sha256, since=since
        )
        await self.engine.log(None, "policy.simulated", who.actor.label, report.summary())
        return _json(report.model_dump(mode="json"))

    async def policy_explain(self, request: web.Request, who: Caller) -> web.Response:
        """Rule by rule, how the policy in force decides a request of the caller's."""
        from runtime.policy.explain import explain

        body = await _body(request)
        loaded = self.engine.loaded
        explained = explain(loaded.policy, who.actor.person, _field(body, "request"))
        explained.policy_hash = loaded.sha256
        return _json(explained.model_dump(mode="json"))

    async def policy_show(self, request: web.Request, who: Caller) -> web.Response:
        """The policy in force: its hash, since when, from where and by whom; --history."""
        from runtime.store import policy_store

        policies = self.engine.policies
        await policies.follow()
        limit = 50 if request.query.get("history") in ("1", "true") else 1
        async with self.engine.db.engine.connect() as conn:
            loads = await policy_store.history(conn, limit)
        policy = policies.current.loaded.policy
        return _json({
            **policies.current.describe(), "folder": str(self.engine.settings.policy_dir),
            "people": len(policy.people), "roles": len(policy.roles),
            "approval_rules": len(policy.approvals), "examples": len(policy.expect),
            "history": loads,
        })  # fmt: skip

    async def policy_reload(self, request: web.Request, who: Caller) -> web.Response:
        """Read the policy folder again now; a refused one is the error (the old stays)."""
        result = await self.engine.policies.reload("reload", who.actor.label)
        if result.error is not None:
            raise result.error
        return _json({"changed": result.changed, "previous": result.previous,
                      **result.in_force.describe()})  # fmt: skip

    async def policy_propose(self, request: web.Request, who: Caller) -> web.Response:
        """A policy job for the files sent: reviewed, then written and put in force."""
        from runtime.policy_change import propose

        body = await _body(request)
        files = body.get("files")
        if not isinstance(files, dict):
            raise BadRequest("the request body needs 'files': {file name: its text}")
        job = await propose(self.engine, files, who.actor)
        return _json(job.model_dump(mode="json"), 201, who)

    # --- routines ----------------------------------------------------------------------

    async def list_routines(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import routines

        listed = await routines.routines(
            self.engine, include_deleted=request.query.get("all") in ("1", "true")
        )
        out = []
        for r in listed:
            nxt = r.next_run()
            out.append({
                **r.model_dump(mode="json"), "routine_id": r.routine_id,
                "schedule_text": r.schedule.text(), "next_run": nxt.isoformat() if nxt else None,
                "next_run_text": f"{nxt:%Y-%m-%d %H:%M:%S %Z}" if nxt else "-",
                "last_result": await routines.last_result(self.engine, r),
            })  # fmt: skip
        return _json(out)

    async def routine_history(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import routines

        routine_id = routines.parse_routine_id(request.match_info["routine"])
        try:
            limit = max(1, min(int(request.query.get("limit", "50")), 1000))
        except ValueError:
            raise BadRequest("limit must be a number") from None
        firings = await routines.history(self.engine, routine_id, limit=limit)
        return _json([f.model_dump(mode="json") for f in firings])

    async def routine_verb(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import routines

        routine_id = routines.parse_routine_id(request.match_info["routine"])
        verb = request.match_info["verb"]
        body = await _body(request)
        if verb == "run-now":
            job = await routines.run_now(self.engine, routine_id, who.actor)
            return _json({"job": job.model_dump(mode="json") if job else None}, actor=who)
        if verb in ("delete", "change"):
            schedule = _field(body, "schedule", required=verb == "change")
            job = await routines.propose_change(self.engine, routine_id, who.actor, verb,
                                                schedule)  # fmt: skip
            return _json({"job": job.model_dump(mode="json")}, actor=who)
        if verb in ("pause", "resume"):
            state = {"pause": "paused", "resume": "active"}[verb]
            routine = await routines.set_state(self.engine, routine_id, who.actor, state)
            return _json({"routine": {**routine.model_dump(mode="json"),
                                      "routine_id": routine.routine_id}}, actor=who)  # fmt: skip
        raise BadRequest(
            f"no routine action '{verb}'", hint="pause, resume, run-now, delete or change"
        )

    # --- tokens ------------------------------------------------------------------------

    async def token_create(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import tokens
        from runtime.identity import may_manage_tokens

        body = await _body(request)
        person = _field(body, "for", required=False) or who.actor.person
        may_manage_tokens(self.engine.policy, who.actor, person)
        scopes = body.get("scopes") or ["read"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise BadRequest("scopes must be a list of names", hint=", ".join(tokens.SCOPES))
        expires = _field(body, "expires", required=False)
        expires_in: timedelta | None = tokens.parse_expiry(expires) if expires else None
        secret, info = await tokens.create_token(
            self.engine.db, person=person, scopes=scopes, expires_in=expires_in,
            created_by=who.actor.label, max_days=self.engine.policy.authentication.token_max_days,
        )  # fmt: skip
        return _json({"secret": secret, "token": info.model_dump(mode="json")}, 201, who)

    async def token_list(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import tokens
        from runtime.identity import is_token_admin, may_manage_tokens

        person = request.query.get("for") or None
        if person is not None:
            may_manage_tokens(self.engine.policy, who.actor, person)
        elif not is_token_admin(self.engine.policy, who.actor):
            person = who.actor.person  # everyone sees their own; a token admin sees all
        listed = await tokens.list_tokens(self.engine.db, person)
        return _json([info.model_dump(mode="json") for info in listed])

    async def token_revoke(self, request: web.Request, who: Caller) -> web.Response:
        from runtime import tokens
        from runtime.identity import may_manage_tokens

        token_id = request.match_info["token"]
        info = await tokens.get_token(self.engine.db, token_id)
        may_manage_tokens(self.engine.policy, who.actor, info.person)
        info = await tokens.revoke_token(self.engine.db, token_id, by=who.actor.label)
        return _json({"token": info.model_dump(mode="json")}, actor=who)

    # --- the event stream --------------------------------------------------------------

    async def stream(self, request: web.Request, who: Caller) -> web.StreamResponse:
        """Server-sent events: one `job` event per audit event about a job, from `after` (or
        Last-Event-ID) on, so a console can follow jobs change without polling each one."""
        from runtime.store import audit_store

        raw = request.query.get("after") or request.headers.get("Last-Event-ID") or ""
        if raw:
            try:
                after = int(raw)
            except ValueError:
                raise BadRequest("after must be an event number") from None
        else:
            after = await audit_store.last_seq(self.engine.db)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        })  # fmt: skip
        await response.prepare(request)
        idle = 0.0
        while True:
            rows = await audit_store.job_events_after(self.engine.db, after, limit=500)
            for seq, job_id, kind, actor, state in rows:
                data = {"seq": seq, "job": f"J-{job_id}", "kind": kind, "actor": actor,
                        "state": state}  # fmt: skip
                await response.write(
                    f"id: {seq}\nevent: job\ndata: {json.dumps(data)}\n\n".encode()
                )
                after = seq
            if rows:
                idle = 0.0
                continue
            idle += STREAM_POLL_S
            if idle >= STREAM_KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                idle = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), STREAM_POLL_S)
            if self.stopping.is_set():
                await response.write_eof()
                return response


async def export_lines(engine: Engine, job_id: int | None, fmt: str) -> list[str]:
    """The audit log (or one job's part of it) as JSON lines: our events, or OCSF."""
    events = await engine.events(job_id)
    if fmt == "ocsf":
        from importlib.metadata import PackageNotFoundError, version

        from runtime.audit.ocsf import ocsf_lines

        try:
            ours = version("agent-control-plane")
        except PackageNotFoundError:  # run from a checkout that was never installed
            ours = "unknown"
        return list(ocsf_lines(events, product_version=ours))
    if fmt != "jsonl":
        raise BadRequest(f"no export format '{fmt}'", hint="jsonl (the default) or ocsf")
    return [json.dumps(e.model_dump(mode="json"), ensure_ascii=False) for e in events]


def build_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    api = Api(engine)
    app["api"] = api
    app.add_routes(api.routes())
    return app

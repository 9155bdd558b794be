"""The console's aiohttp application: who is asking (the session cookie), whether a POST may
be acted on (same site, the session's CSRF token), and the headers every answer carries (a
strict Content-Security-Policy: scripts only from the console's own pinned files, no inline
script or style, no framing).

The pages (bot.console.pages) and the sign-in (bot.console.signin) are thin: what a person
may see or do is the engine's decision, exactly as for the API, Slack and the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.console.render import STATIC, page
from bot.console.session import COOKIE, Session, Signer
from runtime.errors import AcpError, Unauthenticated, UnknownPerson

if TYPE_CHECKING:
    from bot.console.live import LiveHub
    from bot.console.oidc import Oidc
    from runtime.engine import Engine
    from runtime.identity import Actor

log = logging.getLogger("acp.console")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Reachable without a session: the sign-in pages, the console's own files, its health.
PUBLIC = ("/signin", "/static/", "/health")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """What the console's handlers share: the engine, the cookie signer, the IdPs, the hub."""

    def __init__(
        self, engine: Engine, signer: Signer, oidc: Oidc | None, hub: LiveHub, base_url: str
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.oidc = oidc
        self.hub = hub
        self.base_url = base_url.rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    def actor_for(self, session: Session) -> Actor:
        """The person a session is, by the policy in force now."""
        from runtime.identity import Actor, console_actor, slack_login_actor

        policy = self.engine.policy
        if session.demo_person is not None:
            person = policy.people.get(session.demo_person)
            if not self.demo_sign_in() or person is None or person.service:
                raise Unauthenticated(
                    "the local demo sign-in is no longer allowed for this session",
                    hint="sign in with the identity provider",
                )
            return Actor(session.demo_person, "console", session.demo_person,
                         f"console {session.how}")  # fmt: skip
        if session.slack_user_id:
            return slack_login_actor(policy, session.slack_user_id, how=session.how)
        return console_actor(policy, session.logins, how=session.how)

    def demo_sign_in(self) -> bool:
        """The local sign-in for the demo people: only with no IdP configured, and only when
        the policy allows impersonation (the switch that allows the CLI's `--as`)."""
        return not (self.oidc and self.oidc.providers) and (
            self.engine.policy.authentication.impersonation
        )


def _same_site(request: web.Request, console: Console) -> bool:
    """Whether a state-changing request comes from the console's own pages: the browser's
    Sec-Fetch-Site when it sends one, else the Origin (or Referer) header's host."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return False
    ours = {urlsplit(console.base_url).netloc, request.host}
    return urlsplit(origin).netloc in ours


def refusal(request: web.Request, status: int, title: str, message: str, hint: str | None = None):
    return page(request, "refused.html", status, title=title, message=message, hint=hint)


def build_app(console: Console) -> web.Application:
    from bot.console import pages, signin

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def who(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD") and not _same_site(request, console):
            return refusal(request, 403, "Refused", "A cross-site request was refused: the "
                           "console acts only on requests from its own pages.")  # fmt: skip
        session = console.signer.session(request.cookies.get(COOKIE))
        public = request.path.startswith(PUBLIC)
        if session is not None:
            try:
                request["actor"] = console.actor_for(session)
            except (UnknownPerson, Unauthenticated) as error:
                if not public:
                    response = refusal(request, 403, "Not in the policy", error.message,
                                       error.hint)  # fmt: skip
                    response.del_cookie(COOKIE, path="/")
                    return response
                session = None  # the sign-in pages treat it as no session
        if session is not None:
            request["session"] = session
            request["csrf"] = console.signer.csrf_token(session)
        elif not public:
            if request.method == "GET" and not request.headers.get("HX-Request"):
                raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
            return refusal(request, 401, "Signed out", "Your session has ended.",
                           "Sign in again.")  # fmt: skip
        if request.method not in ("GET", "HEAD") and not request.path.startswith("/signin"):
            form = await request.post() if request.content_type.endswith("form-urlencoded") else {}
            token = request.headers.get("X-CSRF-Token") or form.get("csrf")
            if session is None or not console.signer.csrf_ok(session, token):  # type: ignore[arg-type]
                return refusal(request, 403, "Refused", "This form's CSRF token is missing or "
                               "stale: reload the page and try again.")  # fmt: skip
        return await handler(request)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except AcpError as error:
            from bot.api.wire import status_for

            return refusal(request, status_for(error), "Refused", error.message, error.hint)
        except Exception:
            log.exception("console %s %s failed", request.method, request.path)
            return refusal(request, 500, "Something failed", "The console failed on this "
                           "request; the service's log says why.")  # fmt: skip

    app = web.Application(middlewares=[headers, errors, who], client_max_size=1 << 20)
    app["console"] = console
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/health", lambda _: web.json_response({"ok": True}))
    signin.add_routes(app, console)
    pages.add_routes(app, console)
    return app

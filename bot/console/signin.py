"""Signing in to the console: OpenID Connect with any IdP by issuer URL, "Sign in with Slack",
and, for a local demo only, picking a demo person.

A sign-in proves an identity (the IdP's subject and verified email, or a Slack user id); the
policy's `identities.console` (or `identities.slack`) says which person that is. Someone the
policy does not know gets a page saying so. Every sign-in is an audit event.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from bot.console.render import page
from bot.console.session import COOKIE, SESSION_SECONDS, SIGNIN_COOKIE, SIGNIN_SECONDS, Session
from runtime.errors import Unauthenticated, UnknownPerson

if TYPE_CHECKING:
    from bot.console.app import Console
    from runtime.identity import Actor

PRESESSION = "acp_presession"  # the sign-in page's own CSRF token, before there is a session


def _next(raw: str | None) -> str:
    """Where to go after signing in: a path on the console, never another site."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/"


def _signed_in(console: Console, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE, console.signer.session_cookie(session), max_age=SESSION_SECONDS, path="/",
        httponly=True, samesite="Lax", secure=console.secure_cookies,
    )  # fmt: skip
    response.del_cookie(SIGNIN_COOKIE, path="/signin")
    response.del_cookie(PRESESSION, path="/signin")


async def _record(console: Console, actor: Actor) -> None:
    await console.engine.log(None, "console.signed_in", actor.label, {"person": actor.person})


def add_routes(app: web.Application, console: Console) -> None:
    def presession(request: web.Request) -> tuple[str, str]:
        value = console.signer.unsign("presession", request.cookies.get(PRESESSION))
        sid = value["sid"] if value else secrets.token_urlsafe(16)
        return sid, console.signer.sign("presession", {"sid": sid})

    async def signin_page(request: web.Request) -> web.StreamResponse:
        if request.get("actor") is not None:
            raise web.HTTPSeeOther(_next(request.query.get("next")))
        sid, cookie = presession(request)
        people = []
        if console.demo_sign_in():
            policy = console.engine.policy
            people = [name for name, p in sorted(policy.people.items()) if not p.service]
        providers = console.oidc.providers if console.oidc else []
        response = page(
            request, "signin.html", providers=providers, people=people,
            next=_next(request.query.get("next")),
            signin_csrf=console.signer._mac("presession-csrf", sid.encode()),
        )  # fmt: skip
        response.set_cookie(
            PRESESSION, cookie, max_age=SIGNIN_SECONDS, path="/signin", httponly=True,
            samesite="Strict", secure=console.secure_cookies,
        )  # fmt: skip
        return response

    async def local(request: web.Request) -> web.StreamResponse:
        """The demo sign-in: only when no IdP is configured and the policy allows it."""
        from bot.console.app import refusal

        form = await request.post()
        value = console.signer.unsign("presession", request.cookies.get(PRESESSION))
        token = console.signer._mac("presession-csrf", value["sid"].encode()) if value else None
        if token is None or not secrets.compare_digest(token, str(form.get("csrf", ""))):
            return refusal(request, 403, "Refused", "This sign-in form is stale: open the "
                           "sign-in page again.")  # fmt: skip
        if not console.demo_sign_in():
            return refusal(request, 403, "Refused", "The local demo sign-in is off: an "
                           "identity provider is configured, or the policy does not allow "
                           "impersonation.", "Sign in with your identity provider.")  # fmt: skip
        person = str(form.get("person", ""))
        policy = console.engine.policy
        if person not in policy.people or policy.people[person].service:
            return refusal(request, 403, "Not in the policy",
                           f"'{person}' is not a person in the policy.")  # fmt: skip
        session = Session(logins=[], how="local demo sign-in (impersonation)", demo_person=person)
        actor = console.actor_for(session)
        await _record(console, actor)
        response = web.HTTPSeeOther(_next(str(form.get("next", ""))))
        _signed_in(console, response, session)
        return response

    async def start(request: web.Request) -> web.StreamResponse:
        from bot.console.app import refusal
        from bot.console.oidc import SignInRefused

        name = request.match_info["provider"]
        if console.oidc is None:
            return refusal(request, 404, "No such sign-in", "No identity provider is configured.")
        try:
            started = await console.oidc.start(name, f"{console.base_url}/signin/{name}/callback")
        except SignInRefused as error:
            return refusal(request, 502, "Sign-in failed", error.message)
        pending = {**started.pending, "next": _next(request.query.get("next"))}
        response = web.HTTPFound(started.url)
        response.set_cookie(
            SIGNIN_COOKIE, console.signer.sign("signin", pending), max_age=SIGNIN_SECONDS,
            path="/signin", httponly=True, samesite="Lax", secure=console.secure_cookies,
        )  # fmt: skip
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        from bot.console.app import refusal
        from bot.console.oidc import SignInRefused
        from runtime.identity import console_actor, slack_login_actor

        name = request.match_info["provider"]
        pending = console.signer.unsign("signin", request.cookies.get(SIGNIN_COOKIE))
        if console.oidc is None or pending is None or pending.get("provider") != name:
            return refusal(request, 400, "Sign-in failed", "This sign-in expired or was started "
                           "in another browser.", "Start again from the sign-in page.")  # fmt: skip
        try:
            provider = console.oidc.provider(name)
            claims = await console.oidc.finish(pending, request.query)
        except SignInRefused as error:
            return refusal(request, 403, "Sign-in refused", error.message,
                           "Start again from the sign-in page.")  # fmt: skip
        policy = console.engine.policy
        try:
            if provider.slack:
                if not claims.slack_user_id:
                    raise SignInRefused("Slack's ID token carries no Slack user id")
                how = f"slack oidc {claims.slack_user_id}"
                session = Session(logins=[], how=how, slack_user_id=claims.slack_user_id)
                actor = slack_login_actor(policy, claims.slack_user_id, how=how)
            else:
                logins = [f"{claims.issuer}#{claims.subject}", claims.subject]
                if claims.email and claims.email_verified:
                    logins.append(claims.email)
                how = f"oidc {claims.issuer} (sub {claims.subject})"
                session = Session(logins=logins, how=how)
                actor = console_actor(policy, logins, how=how)
        except SignInRefused as error:
            return refusal(request, 403, "Sign-in refused", error.message)
        except (UnknownPerson, Unauthenticated) as error:
            shown = claims.email or claims.subject
            return refusal(request, 403, "Not in the policy",
                           f"You signed in as {shown}, who is not a person in this "
                           "service's policy.", error.hint)  # fmt: skip
        await _record(console, actor)
        response = web.HTTPSeeOther(_next(pending.get("next")))
        _signed_in(console, response, session)
        return response

    async def signout(request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/signin")
        response.del_cookie(COOKIE, path="/")
        return response

    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin/local", local)
    app.router.add_get("/signin/{provider}", start)
    app.router.add_get("/signin/{provider}/callback", callback)
    app.router.add_post("/signout", signout)

"""A small admin web app for browser jobs, served on 127.0.0.1, and an off-list site.

The admin app (the granted host, 127.0.0.1) has a users list, a disable form, a delete button
behind a confirm, a page that saves through fetch(), a link and a redirect to the off-list
site and an iframe from it, and pages that post a "flags" form by themselves (from their load
handler, from a timer, after a redirect and a meta refresh, or with fetch() in a loop), as
single sign-on pages do. The off-list site is reached as `localhost`, a host name outside
the grant, and counts every request that reaches it. Both count what they receive, so a test
can say exactly how many times a mutation reached the server.

Run it alone (`python tests/standins/admin_site.py`) to try browser jobs by hand.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

USERS = {41: "ana", 42: "bob", 43: "cem"}


def page(body: str, title: str = "admin") -> web.Response:
    return web.Response(
        text=f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>",
        content_type="text/html",
    )


@dataclass
class Site:
    base: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    mutations: Counter[str] = field(default_factory=Counter)  # "POST /users/42/disable": 1
    disabled: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    archived: set[int] = field(default_factory=set)
    logins: list[dict[str, str]] = field(default_factory=list)
    flagged: Counter[int] = field(default_factory=Counter)  # user id: flag posts received
    form_target: int | None = None  # points the disable form at another user (page changes)
    runner: web.AppRunner | None = None

    @property
    def host_port(self) -> str:
        return self.base.split("://", 1)[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _counting(site: Site) -> web.middleware:
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        site.requests.append((request.method, request.path_qs))
        if request.method not in ("GET", "HEAD"):
            site.mutations[f"{request.method} {request.path}"] += 1
        return await handler(request)

    return count


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    return runner, tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def start_offlist() -> Site:
    other = Site()
    app = web.Application(middlewares=[_counting(other)])

    async def anything(request: web.Request) -> web.Response:
        return page("an off-list page <img src='/pixel.png'>", "elsewhere")

    app.router.add_route("*", "/{tail:.*}", anything)
    other.runner, port = await serve(app)
    other.base = f"http://localhost:{port}"
    return other


async def start_admin(offlist: Site) -> Site:
    admin = Site()
    app = web.Application(middlewares=[_counting(admin)])
    routes = web.RouteTableDef()
    off = offlist.base

    def user_id(request: web.Request) -> int:
        uid = int(request.match_info["uid"])
        if uid not in USERS:
            raise web.HTTPNotFound(text="no such user")
        return uid

    @routes.get("/")
    async def home(request: web.Request) -> web.Response:
        return page(
            "<h1>Admin</h1><nav>"
            "<a id=users href='/users'>Users</a> "
            f"<a id=off href='{off}/elsewhere'>Partner portal</a> "
            "<a id=away href='/go-away'>Old reports</a> "
            "<a id=framed href='/framed'>Status board</a></nav>"
        )

    @routes.get("/users")
    async def users(request: web.Request) -> web.Response:
        rows = "".join(
            f"<tr><td>{uid}</td><td><a href='/users/{uid}'>{name}</a></td>"
            f"<td>{_status(admin, uid)}</td></tr>"
            for uid, name in USERS.items()
            if uid not in admin.deleted
        )
        return page(f"<h1>Users</h1><table id=users><tr><th>id</th><th>name</th>"
                    f"<th>status</th></tr>{rows}</table>", "users")  # fmt: skip

    @routes.get("/users/{uid}")
    async def user(request: web.Request) -> web.Response:
        uid = user_id(request)
        target = admin.form_target or uid
        return page(
            f"<h1>User {uid}</h1><p id=status>{_status(admin, uid)}</p>"
            f"<form id=disable method=post action='/users/{target}/disable'>"
            "<input id=reason name=reason value=abuse>"
            "<button id=go>Disable user</button></form>"
            f"<form id=delform method=post action='/users/{uid}/delete'></form>"
            f"<button id=delete onclick=\"if (confirm('Delete user {uid}?')) "
            "document.getElementById('delform').submit()\">Delete user</button>"
            f"<p><a id=notes href='/users/{uid}/notes'>Notes</a></p>",
            f"user {uid}",
        )

    @routes.post("/users/{uid}/disable")
    async def disable(request: web.Request) -> web.Response:
        uid = user_id(request)
        admin.disabled.add(uid)
        raise web.HTTPSeeOther(f"/users/{uid}")

    @routes.post("/users/{uid}/delete")
    async def delete(request: web.Request) -> web.Response:
        uid = user_id(request)
        admin.deleted.add(uid)
        raise web.HTTPSeeOther("/users")

    @routes.get("/users/{uid}/notes")
    async def notes(request: web.Request) -> web.Response:
        uid = user_id(request)
        saved = "archived" if uid in admin.archived else "open"
        return page(
            f"<h1>Notes for user {uid}</h1><p id=saved>{saved}</p>"
            "<button id=archive onclick=\"fetch(location.pathname.replace('/users', '/api/users')"
            ".replace('/notes', '/archive'), {method: 'POST', headers: {'content-type': "
            "'application/json'}, body: JSON.stringify({why: 'done'})})"
            ".then(r => saved.textContent = r.ok ? 'archived' : 'failed', "
            "() => saved.textContent = 'blocked')\">Archive notes</button>",
            "notes",
        )

    @routes.post("/api/users/{uid}/archive")
    async def archive(request: web.Request) -> web.Response:
        admin.archived.add(user_id(request))
        return web.json_response({"ok": True})

    @routes.get("/go-away")
    async def go_away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{off}/landing")

    @routes.get("/framed")
    async def framed(request: web.Request) -> web.Response:
        return page(f"<h1>Status board</h1><iframe id=frame src='{off}/board'></iframe>", "board")

    @routes.get("/live")
    async def live(request: web.Request) -> web.Response:
        ws_off = off.replace("http://", "ws://") + "/socket"
        return page(
            "<h1>Live</h1><p id=own>connecting</p><p id=offsock>connecting</p><script>"
            "const own = new WebSocket(location.href.replace('http', 'ws') + '/echo');"
            "own.onopen = () => own.send('hi');"
            "own.onmessage = (e) => document.getElementById('own').textContent = e.data;"
            f"const off = new WebSocket({ws_off!r});"
            "off.onopen = () => document.getElementById('offsock').textContent = 'open';"
            "off.onclose = () => document.getElementById('offsock').textContent = 'closed';"
            "</script>",
            "live",
        )

    @routes.get("/live/echo")
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo: {message.data}")
        return ws

    # Pages that send a POST by themselves, with no click: the job must pause on each.
    flags_form = (
        "<form id=f method=post action='/users/{uid}/flags'><input name=flag value=review>"
        "</form><p id=flash>posting</p>"
    )
    when = {
        "auto": "addEventListener('load', () => f.submit())",
        "auto-later": "addEventListener('load', () => setTimeout(() => f.submit(), 300))",
    }

    @routes.get("/users/{uid}/{when:auto|auto-later}")
    async def auto_post(request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        script = when[request.match_info["when"]]
        return page(flags_form.format(uid=uid) + f"<script>{script}</script>", "signing in")

    @routes.get("/sso/{uid}")
    async def sso(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/sso/{request.match_info['uid']}/hop")

    @routes.get("/sso/{uid}/hop")
    async def sso_hop(request: web.Request) -> web.Response:
        target = f"/users/{int(request.match_info['uid'])}/auto"
        return web.Response(
            text=f"<!doctype html><meta http-equiv=refresh content='0; url={target}'>hop",
            content_type="text/html",
        )

    @routes.get("/users/{uid}/flag-loop")
    async def flag_loop(request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        return page(
            "<p id=flash>looping</p><script>setInterval(() => fetch("
            f"'/api/users/{uid}/flags', {{method: 'POST', body: 'flag=review'}})"
            ".catch(() => {}), 100)</script>",
            "loop",
        )

    @routes.post("/users/{uid}/flags")
    async def flags(request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        admin.flagged[uid] += 1
        raise web.HTTPSeeOther(f"/users/{uid}/flagged")

    @routes.post("/api/users/{uid}/flags")
    async def api_flags(request: web.Request) -> web.Response:
        admin.flagged[int(request.match_info["uid"])] += 1
        return web.json_response({"ok": True})

    @routes.get("/users/{uid}/flagged")
    async def flagged(request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        return page(f"<p id=flash>flags saved ({admin.flagged[uid]})</p>", "flagged")

    @routes.get("/login")
    async def login_form(request: web.Request) -> web.Response:
        return page(
            "<form method=post action='/login'><input id=user name=user value=ops>"
            "<input id=pw name=password type=password><button id=signin>Sign in</button></form>",
            "login",
        )

    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        admin.logins.append(dict(await request.post()))
        return page("<p id=ok>signed in</p>", "welcome")

    app.add_routes(routes)
    admin.runner, port = await serve(app)
    admin.base = f"http://127.0.0.1:{port}"
    return admin


def _status(site: Site, uid: int) -> str:
    return "disabled" if uid in site.disabled else "active"


async def start() -> tuple[Site, Site]:
    offlist = await start_offlist()
    return await start_admin(offlist), offlist


async def _main() -> None:  # pragma: no cover - for trying it by hand
    admin, offlist = await start()
    print(f"admin app: {admin.base}   off-list site: {offlist.base}")
    await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main())

"""The governed browser tool against real Chromium and local pages.

The admin app is served on 127.0.0.1 (the granted host); a second server, reached as
localhost (a different host name), stands for every off-list site and counts what reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import random
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp import web

from runtime.errors import AcpError, SandboxViolation
from runtime.tools.browser import (
    BrowserGrant,
    BrowserSession,
    MutationPending,
    PageChanged,
    browser_executable,
    close_shared_browser,
    secret_pattern,
)
from tests.standins.admin_site import page, serve

PNG = b"\x89PNG\r\n\x1a\n"
SECRET = "s3cr3t-Pa55 w0rd&=!"


@dataclass
class Server:
    base: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    state: dict[str, object] = field(default_factory=dict)

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]


def _counting(server: Server) -> web.middleware:
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        server.requests.append((request.method, request.path_qs))
        if request.method == "POST":
            server.posts.append((request.path, dict(await request.post())))
        return await handler(request)

    return count


@pytest.fixture
async def sites() -> AsyncIterator[tuple[Server, Server]]:
    other = Server(base="")
    other_app = web.Application(middlewares=[_counting(other)])

    async def other_any(request: web.Request) -> web.Response:
        return page("off-list page <img src='/pixel.png'>")

    other_app.router.add_route("*", "/{tail:.*}", other_any)
    other_runner, other_port = await serve(other_app)
    other.base = f"http://localhost:{other_port}"

    admin = Server(base="", state={"target_user": 42})
    app = web.Application(middlewares=[_counting(admin)])
    routes = web.RouteTableDef()
    off = other.base

    @routes.get("/")
    async def home(request: web.Request) -> web.Response:
        return page(
            "<h1>Admin</h1>"
            "<a id=users href='/users/42'>User 42</a> "
            f"<a id=off href='{off}/elsewhere'>Elsewhere</a> "
            "<a id=dl href='/report.csv'>Get report</a>"
        )

    @routes.get("/users/{uid}")
    async def user(request: web.Request) -> web.Response:
        uid = admin.state["target_user"]
        disabled = admin.state.get("disabled", False)
        return page(
            f"<h1>User 42</h1><p id=status>{'disabled' if disabled else 'active'}</p>"
            f"<form id=disable method=post action='/users/{uid}/disable'>"
            "<input name=reason value=abuse><button id=go>Disable user</button></form>"
            "<form id=search method=get action='/search'>"
            "<input name=q value=bob><button id=find>Search</button></form>"
            "<script>setInterval(async () => {"
            "  const r = await fetch('/users/42/target'); const t = await r.text();"
            "  const f = document.getElementById('disable');"
            "  const want = '/users/' + t + '/disable';"
            "  if (f.getAttribute('action') !== want) f.setAttribute('action', want);"
            "}, 50);</script>"
        )

    @routes.get("/users/42/target")
    async def target(request: web.Request) -> web.Response:
        return web.Response(text=str(admin.state["target_user"]))

    @routes.post("/users/{uid}/disable")
    async def disable(request: web.Request) -> web.Response:
        admin.state["disabled"] = True
        raise web.HTTPSeeOther(f"/users/{request.match_info['uid']}")

    @routes.get("/search")
    async def search(request: web.Request) -> web.Response:
        return page(f"<p id=results>results for {request.query.get('q', '')}</p>")

    @routes.get("/image")
    async def image(request: web.Request) -> web.Response:
        return page(f"<img id=img src='{off}/pixel.png'>")

    @routes.get("/redirect")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/redirect2")

    @routes.get("/redirect2")
    async def redirect2(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{off}/landing")

    @routes.get("/local-redirect")
    async def local_redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/search?q=redirected")

    @routes.get("/iframe")
    async def iframe(request: web.Request) -> web.Response:
        return page(f"<iframe src='{off}/framed'></iframe>")

    @routes.get("/popup")
    async def popup(request: web.Request) -> web.Response:
        return page(f"<button id=open onclick=\"window.open('{off}/popup')\">Open</button>")

    @routes.get("/fetch-delete")
    async def fetch_delete(request: web.Request) -> web.Response:
        return page(
            "<p id=out>loading</p><script>"
            "fetch('/api/delete', {method: 'DELETE'})"
            ".then(() => out.textContent = 'sent', () => out.textContent = 'blocked');"
            "</script>"
        )

    @routes.delete("/api/delete")
    async def api_delete(request: web.Request) -> web.Response:
        return web.Response(text="deleted")

    @routes.get("/report.csv")
    async def report(request: web.Request) -> web.Response:
        return web.Response(
            body=b"a,b\n1,2\n",
            headers={"Content-Disposition": "attachment; filename=report.csv"},
            content_type="text/csv",
        )

    @routes.get("/login")
    async def login_form(request: web.Request) -> web.Response:
        return page(
            "<form method=post action='/login'><input name=user value=ops>"
            "<input id=pw name=password type=password><button>Sign in</button></form>"
        )

    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        return page("<p id=ok>signed in</p>")

    @routes.get("/sign-in")
    async def sign_in(request: web.Request) -> web.Response:
        method = request.query.get("method", "post")
        return page(
            f"<form method={method} action='/signed-in'><input name=user value=ops>"
            "<input id=pw name=password type=password><button id=signin>Sign in</button></form>"
        )

    @routes.route("*", "/signed-in")
    async def signed_in(request: web.Request) -> web.Response:
        # Echoed, escaped, as a careless server does: the value comes back in the page too.
        fields = dict(request.query) if request.method == "GET" else dict(await request.post())
        echo = html.escape(fields.get("password", ""))
        return page(f"<p id=ok>signed in</p><p id=echo>{echo}</p>")

    @routes.get("/busy")
    async def busy(request: web.Request) -> web.Response:
        # It stops answering 200 ms after its load event: a timer started at parse time
        # could fire before a slow (loaded) machine delivered the load, and goto, which
        # waits for the load, would then never finish.
        return page("<p id=x>about to stop answering</p><script>"
                    "addEventListener('load', () => setTimeout(() => { for (;;) {} }, 200))"
                    "</script>")  # fmt: skip

    @routes.get("/post-loop")
    async def post_loop(request: web.Request) -> web.Response:
        # A fetch loop that keeps POSTing: a numbered body each time, or the same one.
        body = "'n=0'" if request.query.get("same") else "'n=' + (++n)"
        return page("<p id=x>looping</p><script>let n = 0; setInterval(() => fetch("
                    "'/api/loop', {method: 'POST', headers: {'content-type': "
                    f"'application/x-www-form-urlencoded'}}, body: {body}}})"
                    ".catch(() => {}), 30)</script>")  # fmt: skip

    @routes.get("/save-then-loop")
    async def save_then_loop(request: web.Request) -> web.Response:
        # Its Save button sends one POST; 300 ms later the page starts POSTing by itself.
        send = ("fetch('/api/loop', {method: 'POST', headers: {'content-type': "
                "'application/x-www-form-urlencoded'}, body: 'n=%s'}).catch(() => {})")  # fmt: skip
        return page(f"<button id=save onclick=\"{send % 'saved'}; setTimeout(() => "
                    f"setInterval(() => {send % 'later'}, 30), 300)\">Save</button>")  # fmt: skip

    @routes.post("/api/loop")
    async def api_loop(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.add_routes(routes)
    runner, port = await serve(app)
    admin.base = f"http://127.0.0.1:{port}"
    try:
        yield admin, other
    finally:
        await runner.cleanup()
        await other_runner.cleanup()


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[BrowserSession]:
    s = await BrowserSession.start(BrowserGrant(domains=["127.0.0.1"]), trace_dir=tmp_path)
    try:
        yield s
    finally:
        await s.stop()
        await close_shared_browser()


async def _eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- read-only browsing ------------------------------------------------------------------


async def test_allowed_navigation_and_png_screenshots(session, sites) -> None:
    admin, other = sites
    step = await session.goto(admin.base + "/")
    assert step.ok and step.url == admin.base + "/"
    await session.click("#users")
    assert session.page.url == admin.base + "/users/42"
    shot = await session.screenshot()
    assert shot.startswith(PNG)
    assert len(session.screenshots) == len(session.steps) == 3
    assert all(s.startswith(PNG) for s in session.screenshots)
    assert all(s.screenshot_sha256 for s in session.steps)
    assert session.refused == []
    assert other.requests == []


async def test_get_search_form_is_not_a_mutation(session, sites) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/users/42")
    await session.fill("#search input[name=q]", "alice")
    await session.click("#find")
    assert await session.page.locator("#results").inner_text() == "results for alice"
    assert admin.posts == []


async def test_same_host_redirect_is_followed(session, sites) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/local-redirect")
    assert await session.page.locator("#results").inner_text() == "results for redirected"


async def test_other_host_reachable_when_granted(tmp_path, sites) -> None:
    """Control for the refusal tests: the off-list server does answer when granted."""
    admin, other = sites
    s = await BrowserSession.start(
        BrowserGrant(domains=["127.0.0.1", "localhost"]), trace_dir=tmp_path
    )
    try:
        await s.goto(admin.base + "/redirect")
        assert s.page.url.startswith(other.base)
        assert "/landing" in other.paths()
    finally:
        await s.stop()
        await close_shared_browser()


# --- escapes -------------------------------------------------------------------------


async def test_goto_other_host_refused(session, sites) -> None:
    _, other = sites
    with pytest.raises(SandboxViolation, match="not in the job's browser grant"):
        await session.goto(other.base + "/")
    assert session.refused[-1]["url"] == other.base + "/"
    assert not session.steps[-1].ok


async def test_link_to_other_host_refused(session, sites) -> None:
    admin, other = sites
    await session.goto(admin.base + "/")
    with pytest.raises(SandboxViolation):
        await session.click("#off")
    assert any(r["url"] == other.base + "/elsewhere" for r in session.refused)
    assert other.requests == []


async def test_subresource_from_other_host_refused(session, sites) -> None:
    admin, other = sites
    await session.goto(admin.base + "/image")
    assert any(
        r["url"] == other.base + "/pixel.png" and r["kind"] == "request" for r in session.refused
    )
    assert other.requests == []


async def test_redirect_chain_to_other_host_refused(session, sites) -> None:
    admin, other = sites
    with pytest.raises(SandboxViolation, match="redirect"):
        await session.goto(admin.base + "/redirect")
    entry = session.refused[-1]
    assert entry["kind"] == "redirect" and entry["url"] == other.base + "/landing"
    assert admin.paths() == ["/redirect", "/redirect2"]
    assert other.requests == []


async def test_iframe_to_other_host_refused(session, sites) -> None:
    admin, other = sites
    await session.goto(admin.base + "/iframe")
    assert any(r["url"] == other.base + "/framed" for r in session.refused)
    assert other.requests == []


async def test_popup_to_other_host_refused(session, sites) -> None:
    admin, other = sites
    await session.goto(admin.base + "/popup")
    await session.click("#open")

    async def refused() -> bool:
        return any(r["url"] == other.base + "/popup" for r in session.refused)

    await _eventually(refused)
    assert other.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "data:text/html,<h1>hi</h1>",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "blob:http://127.0.0.1/x",
        "chrome://settings",
        "about:config",
    ],
)
async def test_forbidden_schemes_refused(session, url) -> None:
    with pytest.raises(SandboxViolation, match="scheme"):
        await session.goto(url)
    assert session.page.url == "about:blank"
    assert session.refused[-1]["url"] == url


async def test_download_refused(session, sites, tmp_path) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/")
    await session.click("#dl")

    async def refused() -> bool:
        return any(r["kind"] == "download" for r in session.refused)

    await _eventually(refused)
    assert session.page.url == admin.base + "/"
    with pytest.raises(SandboxViolation, match="download"):
        await session.goto(admin.base + "/report.csv")
    assert not list(tmp_path.rglob("report.csv"))


# --- mutations -----------------------------------------------------------------------


async def test_disable_user_checkpoint_then_perform_once(session, sites) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/users/42")
    with pytest.raises(MutationPending) as caught:
        await session.click("#go")
    pending = caught.value.pending
    assert "Disable user" in pending.description and "button" in pending.description
    assert "POST" in pending.description and "/users/42/disable" in pending.description
    assert pending.screenshot.startswith(PNG)
    assert "screenshot" not in pending.model_dump()
    await asyncio.sleep(0.3)
    assert admin.posts == []

    await session.perform_pending(pending)
    assert admin.posts == [("/users/42/disable", {"reason": "abuse"})]
    assert await session.page.locator("#status").inner_text() == "disabled"
    assert session.page.url == admin.base + "/users/42"  # the 303 hop, followed
    assert [p for p in admin.paths() if p.endswith("/disable")] == ["/users/42/disable"]
    await session.goto(admin.base + "/")
    assert len(admin.posts) == 1


async def test_highlight_is_in_pending_screenshot_only(session, sites) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/users/42")
    plain = await session.page.screenshot()
    with pytest.raises(MutationPending) as caught:
        await session.click("#go")
    assert caught.value.pending.screenshot != plain
    assert await session.page.locator("#go").get_attribute("style") is None


async def test_page_changed_underneath(session, sites) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/users/42")
    with pytest.raises(MutationPending) as caught:
        await session.click("#go")
    admin.state["target_user"] = 43  # the live page now points the form at another user

    async def changed() -> bool:
        return await session.page.locator("#disable").get_attribute("action") == (
            "/users/43/disable"
        )

    await _eventually(changed)
    with pytest.raises(PageChanged):
        await session.perform_pending(caught.value.pending)
    await asyncio.sleep(0.3)
    assert admin.posts == []


async def test_onload_delete_fetch_held_then_dropped(session, sites) -> None:
    admin, _ = sites
    with pytest.raises(MutationPending) as caught:
        await session.goto(admin.base + "/fetch-delete")
    pending = caught.value.pending
    assert pending.kind == "request"
    assert [(r.method, r.url) for r in pending.requests] == [("DELETE", admin.base + "/api/delete")]
    assert "DELETE" in pending.description
    await asyncio.sleep(0.2)
    assert "DELETE" not in [m for m, _ in admin.requests]  # held, not sent
    assert session.discard_pending() == 1

    async def blocked() -> bool:
        return await session.page.locator("#out").inner_text() == "blocked"

    await _eventually(blocked)
    assert "DELETE" not in [m for m, _ in admin.requests]
    [entry] = session.pending_mutations
    assert entry["method"] == "DELETE" and entry["url"] == admin.base + "/api/delete"


async def test_onload_delete_fetch_released_once(session, sites) -> None:
    admin, _ = sites
    with pytest.raises(MutationPending) as caught:
        await session.goto(admin.base + "/fetch-delete")
    await session.perform_pending(caught.value.pending)

    async def sent() -> bool:
        return await session.page.locator("#out").inner_text() == "sent"

    await _eventually(sent)
    assert [m for m, _ in admin.requests].count("DELETE") == 1


def _loop_bodies(admin: Server) -> list[str]:
    """The bodies of the loop's POSTs that reached the server, in order of arrival."""
    return [urlencode(fields) for path, fields in admin.posts if path == "/api/loop"]


def _shas(bodies: list[str]) -> list[str]:
    return [hashlib.sha256(b.encode()).hexdigest() for b in bodies]


async def test_a_fetch_loop_gets_exactly_the_approved_requests_through(session, sites) -> None:
    """Each approval lets through exactly the requests it showed (by body), once; what the
    loop sends meanwhile and afterwards stays held; a used approval releases nothing. (The
    released requests go out together, so they may reach the server in any order.)"""
    admin, _ = sites
    with pytest.raises(MutationPending) as caught:  # at the goto, or the wait after it
        await session.goto(admin.base + "/post-loop")
        await session.wait(200)
    first = caught.value.pending
    assert first.kind == "request" and len(first.requests) >= 2
    await asyncio.sleep(0.3)  # the loop goes on: all of it held, none of it sent
    assert _loop_bodies(admin) == []
    with pytest.raises(MutationPending) as again:
        await session.perform_pending(first)
    second = again.value.pending
    assert sorted(_shas(_loop_bodies(admin))) == sorted(r.body_sha256 for r in first.requests)
    assert {r.body_sha256 for r in second.requests}.isdisjoint(
        r.body_sha256 for r in first.requests
    )
    with pytest.raises(PageChanged):  # the approval was used: it covers nothing held now
        await session.perform_pending(first)
    await asyncio.sleep(0.3)
    assert sorted(_shas(_loop_bodies(admin))) == sorted(r.body_sha256 for r in first.requests)
    with pytest.raises(MutationPending):
        await session.perform_pending(second)
    approved = [r.body_sha256 for r in [*first.requests, *second.requests]]
    assert sorted(_shas(_loop_bodies(admin))) == sorted(approved)
    dropped = session.discard_pending()
    assert dropped >= 1
    await session.stop()
    await asyncio.sleep(0.3)
    assert sorted(_shas(_loop_bodies(admin))) == sorted(approved)


async def test_identical_requests_are_released_one_approved_request_each(session, sites) -> None:
    """The same POST, again and again: an approval of k of them sends k, never more."""
    admin, _ = sites
    with pytest.raises(MutationPending) as caught:  # at the goto, or the wait after it
        await session.goto(admin.base + "/post-loop?same=1")
        await session.wait(200)
    first = caught.value.pending
    await asyncio.sleep(0.3)
    with pytest.raises(MutationPending) as again:
        await session.perform_pending(first)
    assert _loop_bodies(admin) == ["n=0"] * len(first.requests)
    with pytest.raises(PageChanged):
        await session.perform_pending(first)
    second = again.value.pending
    with pytest.raises(MutationPending):
        await session.perform_pending(second)
    sent = len(first.requests) + len(second.requests)
    assert _loop_bodies(admin) == ["n=0"] * sent
    session.discard_pending()
    await session.stop()
    await asyncio.sleep(0.3)
    assert _loop_bodies(admin) == ["n=0"] * sent


async def test_an_approved_click_lets_through_its_own_request_not_the_pages_later_ones(
    session, sites
) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/save-then-loop")
    with pytest.raises(MutationPending) as caught:
        await session.click("#save")
    await session.perform_pending(caught.value.pending)
    await asyncio.sleep(0.6)  # between steps: the page starts its own loop
    with pytest.raises(MutationPending) as held:
        await session.wait(0)
    assert {r.body_sha256 for r in held.value.pending.requests} == set(_shas(["n=later"]))
    assert _loop_bodies(admin) == ["n=saved"]
    session.discard_pending()
    await session.stop()
    await asyncio.sleep(0.3)
    assert _loop_bodies(admin) == ["n=saved"]


# --- secrets and the trace -----------------------------------------------------------


async def test_fill_secret_not_in_trace(tmp_path, sites) -> None:
    admin, _ = sites
    s = await BrowserSession.start(BrowserGrant(domains=["127.0.0.1"]), trace_dir=tmp_path)
    try:
        await s.goto(admin.base + "/login")
        await s.fill_secret("#pw", SECRET)
        assert await s.page.locator("#pw").input_value() == SECRET
        with pytest.raises(MutationPending) as caught:
            await s.click("text=Sign in")
        await s.perform_pending(caught.value.pending)
        assert await s.page.locator("#ok").inner_text() == "signed in"
    finally:
        trace = await s.stop()
        await close_shared_browser()
    assert admin.posts == [("/login", {"user": "ops", "password": SECRET})]
    with zipfile.ZipFile(trace) as z:
        names = z.namelist()
        assert any(n.endswith(".trace") for n in names)
        assert any(n.endswith(".network") for n in names)
        for name in names:
            data = z.read(name)
            for form in (SECRET, "s3cr3t-Pa55", "s3cr3t-Pa55+w0rd", "s3cr3t-Pa55%20w0rd"):
                assert form.encode() not in data, (name, form)
        everything = b"".join(z.read(n) for n in names)
        # Recorded before the fill and again once the page no longer held the value.
        assert b"/login" in everything and b"signed in" in everything
    assert all(SECRET not in step.detail for step in s.steps)


# Every form a password can take on its way into a trace, written out independently of the
# runtime's own pattern: what a browser, a server or a JSON writer makes of it.
def encoded_forms(secret: str) -> set[str]:
    utf8 = secret.encode()

    def percent(keep: str, plus: bool, upper: bool = True) -> str:
        out = []
        for char in secret:
            if char.isascii() and (char.isalnum() or char in keep):
                out.append(char)
            elif char == " " and plus:
                out.append("+")
            else:
                out.extend(f"%{b:02X}" if upper else f"%{b:02x}" for b in char.encode())
        return "".join(out)

    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret, ensure_ascii=False)[1:-1], ensure_ascii=False)[1:-1],
        percent("*-._", plus=True),  # Chromium's form encoding (application/x-www-form-urlencoded)
        percent("*-._", plus=True, upper=False),
        percent("", plus=False),  # every byte encoded
        percent("", plus=False, upper=False),
        percent("-_.!~*'()", plus=False),  # encodeURIComponent
        html.escape(secret),
        html.escape(secret, quote=False),
        "".join(f"&#{ord(c)};" for c in secret),
        "".join(f"&#x{ord(c):x};" for c in secret),
        "".join(f"&#X{ord(c):X};" for c in secret),
    }
    for offset in range(3):  # base64 of a body holding it, at each alignment
        encoded = base64.b64encode(bytes(offset) + utf8).decode()
        # the characters whose six bits all come from the password's own bytes
        start, end = -(-offset * 8 // 6), (offset + len(utf8)) * 8 // 6
        forms.add(encoded[start:end])
    return {f for f in forms if len(f) >= 6}


def random_passwords(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    printable = [chr(c) for c in range(0x20, 0x7F)]
    found = ["a~b c%d+e&f=g\"h'i<j>k\\l/m#n?o", "pässwörd €~ 🔑"]
    while len(found) < count:
        found.append("".join(rng.choice(printable) for _ in range(rng.randint(8, 24))) + "~")
    return found


def test_secret_pattern_matches_every_encoding_of_arbitrary_passwords() -> None:
    for secret in random_passwords(400, seed=12):
        pattern = secret_pattern(secret)
        for form in encoded_forms(secret):
            text = f"prefix {form} suffix".encode()
            assert pattern.search(text), (secret, form)
            assert form.encode() not in pattern.sub(b"[redacted]", text), (secret, form)


@pytest.mark.parametrize("method", ["get", "post"])
async def test_no_form_of_a_filled_password_reaches_the_trace(tmp_path, sites, method) -> None:
    admin, _ = sites
    passwords = random_passwords(8, seed=7 if method == "get" else 8)
    s = await BrowserSession.start(BrowserGrant(domains=["127.0.0.1"]), trace_dir=tmp_path)
    try:
        for password in passwords:
            await s.goto(f"{admin.base}/sign-in?method={method}")
            await s.fill_secret("#pw", password)
            try:
                await s.click("#signin")
            except MutationPending as caught:  # the POST form waits for its approval
                await s.perform_pending(caught.pending)
            assert await s.page.locator("#ok").inner_text() == "signed in"
            await s.goto(admin.base + "/users/42")
    finally:
        trace = await s.stop()
        await close_shared_browser()
    sent = [fields["password"] for _, fields in admin.posts] if method == "post" else [
        q.split("password=", 1)[1] for m, q in admin.requests if q.startswith("/signed-in")
    ]  # fmt: skip
    assert len(sent) == len(passwords)
    with zipfile.ZipFile(trace) as z:
        names = z.namelist()
        assert "trace.trace" in names and any(n.endswith("-trace.trace") for n in names)
        for name in names:
            data = z.read(name).decode(errors="replace")
            for password in passwords:
                for form in encoded_forms(password):
                    assert form not in data, (name, password, form)
    assert not (tmp_path / ".playwright").exists()  # the live files went with the context


async def test_a_page_that_stops_answering_fails_within_the_step_deadline(tmp_path, sites) -> None:
    admin, _ = sites
    s = await BrowserSession.start(
        BrowserGrant(domains=["127.0.0.1"]), trace_dir=tmp_path, step_timeout_s=5
    )
    started = time.monotonic()
    try:
        await s.goto(admin.base + "/busy")
        await asyncio.sleep(0.3)  # its script now loops for ever
        with pytest.raises(AcpError):
            await s.expect("#x", "never there")
    finally:
        await s.stop()
        await close_shared_browser()
    assert time.monotonic() - started < 45  # each call bounded: never a hang


async def test_trace_zip_is_a_playwright_trace(session, sites, tmp_path) -> None:
    admin, _ = sites
    await session.goto(admin.base + "/")
    await session.click("#users")
    trace = await session.stop()
    assert trace == tmp_path / "trace.zip"
    with zipfile.ZipFile(trace) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert "trace.trace" in names and "trace.network" in names
        assert any(n.startswith("resources/") for n in names)
        events = [json.loads(line) for line in z.read("trace.trace").splitlines() if line]
        assert events[0]["type"] == "context-options"
        assert b"/users/42" in z.read("trace.trace")


async def test_missing_chromium_is_a_clear_error(monkeypatch) -> None:
    from playwright.async_api import async_playwright

    from runtime.errors import AcpError

    monkeypatch.setenv("ACP_CHROMIUM", "/nonexistent/chromium")
    async with async_playwright() as playwright:
        with pytest.raises(AcpError, match="no Chromium to run browser jobs") as caught:
            browser_executable(playwright)
    assert "ACP_CHROMIUM" in (caught.value.hint or "")

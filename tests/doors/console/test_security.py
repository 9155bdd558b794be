"""The console's own defences: a POST without the session's CSRF token or from another site is
refused, a forged or expired session cookie is no session, every page carries a strict CSP and
no inline script or style, the demo sign-in exists only where the policy allows impersonation,
and sign-in never redirects off the console."""

from __future__ import annotations

import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
from aiohttp import web
from playwright.async_api import expect

from bot.console.session import COOKIE, Session, Signer
from tests.doors.console.rig import BUNDLED_POLICY, ConsoleRig, job_id_of, shot

REQUEST = 'code demo: run `sed -i "s/teh/the/" README.md`'


def signed_in(rig: ConsoleRig, person: str) -> tuple[httpx.Client, str]:
    """An HTTP client with `person`'s session (the demo sign-in form), and its CSRF token."""
    client = httpx.Client(base_url=rig.url, headers={"Origin": rig.url}, timeout=10)
    form = client.get("/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    done = client.post("/signin/local", data={"csrf": token, "person": person, "next": "/"})
    assert done.status_code == 303, done.text
    home = client.get("/").text
    return client, re.search(r'name="csrf" value="([^"]+)"', home).group(1)


async def awaiting_job(rig: ConsoleRig) -> str:
    job = job_id_of(rig.acp("submit", "--as", "alice", "--no-wait", REQUEST))
    await rig.wait_state(job, {"awaiting_approval"})
    return job


def state_of(rig: ConsoleRig, job: str) -> str:
    return json.loads(rig.acp("show", job, "--json"))["state"]


async def test_a_post_without_the_csrf_token_is_refused(console: ConsoleRig):
    job = await awaiting_job(console)
    client, token = signed_in(console, "bob")
    refused = client.post(f"/jobs/{job}/cancel", data={"reason": "no token"})
    assert refused.status_code == 403 and "CSRF token" in refused.text
    stale = client.post(f"/jobs/{job}/cancel", data={"csrf": token[:-2] + "xx"})
    assert stale.status_code == 403
    assert state_of(console, job) == "awaiting_approval"
    # The same request with the session's token is acted on (the engine decides the rest).
    done = client.post(f"/jobs/{job}/reject", data={"csrf": token, "reason": "not now"})
    assert done.status_code == 303
    assert state_of(console, job) == "rejected"


async def test_a_cross_site_form_post_is_refused(console: ConsoleRig, unused_tcp_port: int):
    job = await awaiting_job(console)
    # Another site's page that posts a form to the console as soon as it loads.
    evil = web.Application()
    page_html = f"""<!doctype html><form id=f method=post action="{console.url}/jobs/{job}/approve">
      <input name=hash value=x></form><script>document.getElementById('f').submit()</script>"""
    evil.router.add_get("/", lambda _: web.Response(text=page_html, content_type="text/html"))
    runner = web.AppRunner(evil)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        _, bob = await console.page_for("bob")
        await bob.goto(f"http://127.0.0.1:{unused_tcp_port}/")
        await bob.wait_for_url(f"{console.url}/jobs/{job}/approve")
        await expect(bob.locator(".refusal .message")).to_contain_text("cross-site request")
        await shot(bob, "cross-site-refused")
    finally:
        await runner.cleanup()
    assert state_of(console, job) == "awaiting_approval"


async def test_a_forged_or_expired_session_is_no_session(console: ConsoleRig):
    signer = Signer.for_home(Path(console.env["ACP_HOME"]))
    base = {"base_url": console.url, "follow_redirects": False, "timeout": 10}
    expired = Session(logins=[], how="test", demo_person="bob", expires=int(time.time()) - 1)
    other_key = Signer(b"k" * 32).session_cookie(Session(logins=[], how="t", demo_person="bob"))
    good = signer.session_cookie(Session(logins=[], how="test", demo_person="bob"))
    body, _, mac = good.rpartition(".")
    tampered = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB") + "." + mac
    for cookie in (signer.session_cookie(expired), other_key, tampered, "garbage"):
        with httpx.Client(cookies={COOKIE: cookie}, **base) as client:
            answer = client.get("/jobs")
            assert answer.status_code == 303, cookie
            assert answer.headers["location"].startswith("/signin")
    with httpx.Client(cookies={COOKIE: good}, **base) as client:
        assert client.get("/jobs").status_code == 200


async def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(console: ConsoleRig):
    job = await awaiting_job(console)
    client, _ = signed_in(console, "bob")
    pages = ["/", "/jobs", f"/jobs/{job}", "/routines", "/audit", "/policy", "/signin",
             "/jobs?state=nonsense&q=%3Cscript%3E"]  # fmt: skip
    for path in pages:
        answer = client.get(path, follow_redirects=True)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        inline = InlineFinder()
        inline.feed(answer.text)
        assert not inline.found, (path, inline.found)
        assert "<script>alert" not in answer.text


class InlineFinder(HTMLParser):
    """Inline script, style elements, style attributes and on* handlers in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag}[{n}]" for n in names if n == "style" or n.startswith("on")]


async def test_sign_in_never_redirects_off_the_console(console: ConsoleRig):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client = httpx.Client(base_url=console.url, headers={"Origin": console.url}, timeout=10)
        form = client.get("/signin").text
        token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        done = client.post("/signin/local", data={"csrf": token, "person": "bob", "next": target})
        assert done.status_code == 303 and done.headers["location"] == "/", target
    stale = httpx.post(f"{console.url}/signin/local", data={"csrf": "x", "person": "bob"},
                       headers={"Origin": console.url})  # fmt: skip
    assert stale.status_code == 403


async def test_no_demo_sign_in_unless_the_policy_allows_impersonation(tmp_path: Path):
    policy = tmp_path / "policy"
    shutil.copytree(BUNDLED_POLICY, policy)
    default = policy / "default.yml"
    default.write_text(default.read_text().replace("impersonation: true", "impersonation: false"))
    rig = await ConsoleRig(tmp_path, ACP_POLICY_DIR=str(policy)).start()
    try:
        page = httpx.get(f"{rig.url}/signin").text
        assert "Local demo sign-in" not in page and "No way to sign in is configured" in page
        client = httpx.Client(base_url=rig.url, headers={"Origin": rig.url})
        client.get("/signin")  # the pre-session cookie
        token = Signer.for_home(Path(rig.env["ACP_HOME"]))._mac(
            "presession-csrf", b"forged"
        )  # a token for another pre-session: refused before the switch is even read
        refused = client.post("/signin/local", data={"csrf": token, "person": "bob"})
        assert refused.status_code == 403
        # A demo session made while impersonation was on counts for nothing now.
        signer = Signer.for_home(Path(rig.env["ACP_HOME"]))
        cookie = signer.session_cookie(Session(logins=[], how="demo", demo_person="bob"))
        answer = httpx.get(f"{rig.url}/jobs", cookies={COOKIE: cookie})
        assert answer.status_code == 403 and "no longer allowed" in answer.text
    finally:
        await rig.stop()

"""Signing in to the console through OpenID Connect, in a real browser: the IdP stand-in
(tests/standins/oidc_standin.py) speaks the real protocol over HTTP (discovery, JWKS, signed
ID tokens, PKCE, state and nonce). A person is found by `identities.console`; with Sign in
with Slack by their Slack user id; someone the policy does not know gets a page saying so; a
token with a bad signature or for another application is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.doors.console.rig import ConsoleRig, job_id_of, shot
from tests.standins.oidc_standin import OidcStandIn

REQUEST = 'code demo: run `sed -i "s/teh/the/" README.md`'


@pytest.fixture
async def idp():
    async with OidcStandIn() as standin:
        standin.add_user("00u-bob", email="bob@example.com", email_verified=True, name="Bob")
        standin.add_user("00u-mallory", email="mallory@example.com", email_verified=True,
                         name="Mallory")  # fmt: skip
        yield standin


@pytest.fixture
async def console(tmp_path: Path, idp: OidcStandIn):
    rig = ConsoleRig(
        tmp_path, ACP_OIDC_ISSUER=idp.issuer, ACP_OIDC_CLIENT_ID=idp.client_id,
        ACP_OIDC_CLIENT_SECRET=idp.client_secret, ACP_OIDC_LABEL="Sign in with Okta",
    )  # fmt: skip
    await rig.start()
    try:
        yield rig
    finally:
        await rig.stop()


async def sign_in(rig: ConsoleRig, name: str, next_path: str = "/"):
    _, page = await rig.page_for(None)
    await page.goto(f"{rig.url}{next_path}")
    await page.click("text=Sign in with Okta")
    await page.click(f"text=Sign in as {name}")
    return page


async def test_bob_signs_in_with_the_idp_and_approves_as_himself(console: ConsoleRig, idp):
    job = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", REQUEST))
    await console.wait_state(job, {"awaiting_approval"})
    _, first = await console.page_for(None)
    await first.goto(f"{console.url}/signin")
    assert await first.locator("form.demo").count() == 0, "no demo sign-in beside an IdP"
    await shot(first, "signin")

    page = await sign_in(console, "Bob", f"/jobs/{job}")
    await page.wait_for_url(f"{console.url}/jobs/{job}")  # back where he was going
    await expect(page.locator("header .who span")).to_have_text("bob")
    await page.click("button[name=approve]")
    await expect(page.locator("#panel")).not_to_have_attribute("data-state", "awaiting_approval")
    events = [json.loads(line) for line in console.acp("audit", "export").splitlines()]
    signed = [e for e in events if e["kind"] == "console.signed_in"]
    assert signed and signed[-1]["actor"].startswith(f"bob via console oidc {idp.issuer}")
    approved = [e for e in events if e["job_id"] == int(job[2:]) and "approv" in e["kind"]]
    assert any("bob via console oidc" in e["actor"] and "00u-bob" in e["actor"]
               for e in approved), approved  # fmt: skip
    # The authorization request carried PKCE, and the code was exchanged with it.
    (token_call,) = idp.requests_to("token")
    assert token_call.form.get("code_verifier")


async def test_someone_the_policy_does_not_know_sees_so(console: ConsoleRig):
    page = await sign_in(console, "Mallory")
    await expect(page.locator("h1")).to_have_text("Not in the policy")
    await expect(page.locator(".message")).to_contain_text("mallory@example.com")
    await expect(page.locator(".hint")).to_contain_text("identities.console")
    await shot(page, "signin-not-in-policy")
    await page.goto(f"{console.url}/jobs")
    await expect(page).to_have_url(re.compile(r"/signin\?next=(/|%2F)jobs$"))  # not signed in


@pytest.mark.parametrize(
    ("fault", "words"),
    [("other_key", "signature"), ("wrong_audience", "another application"),
     ("expired", "expired")],
)  # fmt: skip
async def test_a_bad_id_token_is_refused(console: ConsoleRig, idp, fault: str, words: str):
    idp.misbehave(fault)
    page = await sign_in(console, "Bob")
    await expect(page.locator("h1")).to_have_text("Sign-in refused")
    await expect(page.locator(".message")).to_contain_text(words)
    assert idp.client_secret not in await page.content()
    await page.goto(f"{console.url}/")
    await expect(page).to_have_url(re.compile(r"/signin\?next=(/|%2F)$"))


async def test_sign_in_with_slack_is_the_same_person_as_in_slack(tmp_path: Path):
    async with OidcStandIn(slack=True) as slack:
        slack.add_user("U0BOB00001", email="bob@corp.example", name="Bob in Slack")
        rig = ConsoleRig(tmp_path, ACP_SLACK_OIDC_ISSUER=slack.issuer,
                         ACP_SLACK_OIDC_CLIENT_ID=slack.client_id,
                         ACP_SLACK_OIDC_CLIENT_SECRET=slack.client_secret)  # fmt: skip
        await rig.start()
        try:
            _, page = await rig.page_for(None)
            await page.goto(f"{rig.url}/signin")
            await page.click("text=Sign in with Slack")
            await page.click("text=Sign in as Bob in Slack")
            await page.wait_for_url(f"{rig.url}/")
            await expect(page.locator("header .who span")).to_have_text("bob")
            await expect(page.locator("header .who span")).to_have_attribute(
                "title", "bob via console slack oidc U0BOB00001"
            )
        finally:
            await rig.stop()
